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
use crate::{
    broker::{Broker, BrokerError},
    cluster::image::{MetadataImage, TopicImage, NO_LEADER},
};

/// Kafka's bit set of topic operations (READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS): with no ACLs yet, every client may do all of them.
pub const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// Describes every requested topic.
pub async fn handle(ctx: &Ctx<'_>, req: MetadataRequest) -> MetadataResponse {
    let broker = ctx.broker;
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
        None => {
            let image = broker.image();
            image
                .topics
                .values()
                .map(|t| describe(&image, t, topic_ops))
                .collect()
        }
        Some(wanted) => {
            let mut out = Vec::with_capacity(wanted.len());
            for w in wanted {
                out.push(match (w.name, w.topic_id) {
                    (Some(name), _) => by_name(broker, name, allow_create, topic_ops).await,
                    (None, id) if id != Uuid::nil() => {
                        let image = broker.image();
                        match image.topic_by_id(id) {
                            Some(t) => describe(&image, t, topic_ops),
                            None => MetadataResponseTopic::default()
                                .with_error_code(ResponseError::UnknownTopicId.code())
                                .with_topic_id(id)
                                .with_topic_authorized_operations(topic_ops),
                        }
                    }
                    (None, _) => MetadataResponseTopic::default()
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_topic_authorized_operations(topic_ops),
                });
            }
            out
        }
    };

    // Taken after any auto-creation, so the brokers listed include every leader named. Each is
    // given by its address on the listener this request came in on (Kafka's rule: a client of
    // the PLAIN listener must not be sent to REPLICATION addresses it may not reach).
    let image = broker.image();
    let brokers = image
        .live_brokers()
        .filter_map(|b| {
            let e = b.endpoint(ctx.listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(e.host.clone()))
                    .with_port(i32::from(e.port))
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(text(image.cluster_id.clone()))
        .with_controller_id(BrokerId(controller_id(broker, &image)))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPS_NOT_REQUESTED)
}

/// Clients cannot reach the quorum's controllers: as in KRaft, Metadata and DescribeCluster
/// name a live broker as the controller — this one — and admin requests sent to it are
/// forwarded to the active controller. (Naming the Raft leader instead would send clients to
/// a dead node for as long as it takes to fence it.) The active controller is visible in
/// `/metrics` (`kafka_controller_kafkacontroller_active_controller_count`).
pub fn controller_id(broker: &Broker, _image: &MetadataImage) -> i32 {
    broker.config.node_id
}

async fn by_name(
    broker: &Broker,
    name: TopicName,
    allow_create: bool,
    topic_ops: i32,
) -> MetadataResponseTopic {
    let n = name.0.as_str().to_string();
    {
        let image = broker.image();
        if let Some(t) = image.topics.get(&n) {
            return describe(&image, t, topic_ops);
        }
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
    match broker
        .create_topic(&n, -1, -1, Vec::new(), &BTreeMap::new(), false)
        .await
    {
        Ok(_) | Err(BrokerError::TopicExists(_)) => {
            let image = broker.image();
            match image.topics.get(&n) {
                Some(t) => describe(&image, t, topic_ops),
                None => failed(ResponseError::LeaderNotAvailable),
            }
        }
        Err(e) => {
            tracing::info!(topic = n, error = %e, "auto-creation refused");
            failed(error::broker_error(&e))
        }
    }
}

fn ids(list: &[i32]) -> Vec<BrokerId> {
    list.iter().copied().map(BrokerId).collect()
}

fn describe(image: &MetadataImage, topic: &TopicImage, topic_ops: i32) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let offline: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| !image.is_live(*r))
                .collect();
            let leader = if image.is_live(p.leader) {
                p.leader
            } else {
                NO_LEADER
            };
            let r = MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline));
            if leader == NO_LEADER {
                r.with_error_code(ResponseError::LeaderNotAvailable.code())
            } else {
                r
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name == crate::coordinator::group::OFFSETS_TOPIC)
        .with_partitions(partitions)
        .with_topic_authorized_operations(topic_ops)
}
