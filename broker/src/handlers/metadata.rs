//! Metadata: brokers, and topics with their partitions' leaders and replicas. Creates topics
//! that do not exist when the client allows it and `auto.create.topics.enable` is set.

use std::collections::BTreeMap;

use kafka_protocol::{
    messages::{
        metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        },
        BrokerId, MetadataRequest, MetadataResponse, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use uuid::Uuid;

use super::{error, text, Ctx, OPS_NOT_REQUESTED};
use crate::broker::{Broker, BrokerError, Topic};

/// Kafka's bit set of topic operations (READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS): with no ACLs yet, every client may do all of them.
pub const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// Describes every requested topic.
pub fn handle(ctx: &Ctx<'_>, req: MetadataRequest) -> MetadataResponse {
    let broker = ctx.broker;
    let node = broker.config.node_id;
    // Before v4 the request had no flag: auto-creation was always allowed.
    let allow_create =
        (ctx.version < 4 || req.allow_auto_topic_creation) && broker.config.auto_create_topics;
    let ops = |requested: bool| {
        if requested {
            TOPIC_OPERATIONS
        } else {
            OPS_NOT_REQUESTED
        }
    };
    let topic_ops = ops(req.include_topic_authorized_operations);

    let topics = match req.topics {
        None => broker
            .topics()
            .iter()
            .map(|t| describe(t, node, topic_ops))
            .collect(),
        Some(wanted) => wanted
            .into_iter()
            .map(|w| match (w.name, w.topic_id) {
                (Some(name), _) => by_name(broker, name, allow_create, node, topic_ops),
                (None, id) if id != Uuid::nil() => match broker.topic_by_id(id) {
                    Some(t) => describe(&t, node, topic_ops),
                    None => MetadataResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicId.code())
                        .with_topic_id(id)
                        .with_topic_authorized_operations(topic_ops),
                },
                (None, _) => MetadataResponseTopic::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_topic_authorized_operations(topic_ops),
            })
            .collect(),
    };

    let advertised = &broker.config.advertised[0];
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(node))
            .with_host(StrBytes::from_string(advertised.host.clone()))
            .with_port(i32::from(advertised.port))
            .with_rack(broker.config.rack.clone().map(StrBytes::from_string))])
        .with_cluster_id(text(broker.cluster_id()))
        .with_controller_id(BrokerId(node))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPS_NOT_REQUESTED)
}

fn by_name(
    broker: &Broker,
    name: TopicName,
    allow_create: bool,
    node: i32,
    topic_ops: i32,
) -> MetadataResponseTopic {
    let n = name.0.as_str().to_string();
    if let Some(t) = broker.topic(&n) {
        return describe(&t, node, topic_ops);
    }
    let failed = |code: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(code.code())
            .with_topic_authorized_operations(topic_ops)
    };
    if !allow_create {
        return failed(ResponseError::UnknownTopicOrPartition);
    }
    match broker.create_topic(&n, -1, -1, &BTreeMap::new(), false) {
        Ok(_) | Err(BrokerError::TopicExists(_)) => match broker.topic(&n) {
            Some(t) => describe(&t, node, topic_ops),
            None => failed(ResponseError::LeaderNotAvailable),
        },
        Err(e) => {
            tracing::info!(topic = n, error = %e, "auto-creation refused");
            failed(error::broker_error(&e))
        }
    }
}

fn describe(topic: &Topic, node: i32, topic_ops: i32) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.tp.partition)
                .with_leader_id(BrokerId(node))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(vec![BrokerId(node)])
                .with_isr_nodes(vec![BrokerId(node)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(
            topic.record.name.clone(),
        ))))
        .with_topic_id(topic.record.id)
        .with_is_internal(topic.record.name == crate::coordinator::group::OFFSETS_TOPIC)
        .with_partitions(partitions)
        .with_topic_authorized_operations(topic_ops)
}
