//! CreateTopics, including `validate_only`, explicit assignments and per-topic configs. From v5
//! the response echoes each topic's resulting configs, partition count and replication factor.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::{
    messages::{
        create_topics_response::{CreatableTopicConfigs, CreatableTopicResult},
        CreateTopicsRequest, CreateTopicsResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::{error, text, Ctx};
use crate::{broker::Broker, config::DEFS, metadata::TopicRecord};

/// Creates (or validates) each topic independently.
pub fn handle(ctx: &Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let broker = ctx.broker;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let result = CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            let fail = |code: ResponseError, msg: String| {
                result
                    .clone()
                    .with_error_code(code.code())
                    .with_error_message(text(msg))
            };
            if seen.get(&name).copied().unwrap_or(0) > 1 {
                return fail(
                    ResponseError::InvalidRequest,
                    format!("topic `{name}` appears more than once in the request"),
                );
            }
            let mut partitions = t.num_partitions;
            let mut replication = t.replication_factor;
            if !t.assignments.is_empty() {
                if partitions != -1 || replication != -1 {
                    return fail(
                        ResponseError::InvalidRequest,
                        "give either replica assignments or a partition count and replication factor, not both".into(),
                    );
                }
                let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
                indexes.sort_unstable();
                if indexes != (0..indexes.len() as i32).collect::<Vec<_>>() {
                    return fail(
                        ResponseError::InvalidReplicaAssignment,
                        "assignments must cover partitions 0..n exactly once".into(),
                    );
                }
                for a in &t.assignments {
                    if a.broker_ids.len() != 1 || a.broker_ids[0].0 != broker.config.node_id {
                        return fail(
                            ResponseError::InvalidReplicaAssignment,
                            format!(
                                "partition {} is assigned to brokers {:?}; the only broker is {}",
                                a.partition_index,
                                a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>(),
                                broker.config.node_id
                            ),
                        );
                    }
                }
                partitions = t.assignments.len() as i32;
                replication = 1;
            }
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                match &c.value {
                    Some(v) => {
                        configs.insert(c.name.to_string(), v.to_string());
                    }
                    None => {
                        return fail(
                            ResponseError::InvalidConfig,
                            format!("configuration `{}` has a null value", c.name.as_str()),
                        );
                    }
                }
            }
            match broker.create_topic(&name, partitions, replication, &configs, req.validate_only) {
                Ok(record) => {
                    let mut r = result
                        .with_num_partitions(record.partitions)
                        .with_replication_factor(record.replication_factor);
                    if ctx.version >= 7 && !req.validate_only {
                        r = r.with_topic_id(record.id);
                    }
                    if ctx.version >= 5 {
                        r = r.with_configs(Some(resulting_configs(broker, &record)));
                    }
                    r
                }
                Err(e) => fail(error::broker_error(&e), error::message(&e)),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(results)
}

fn resulting_configs(broker: &Broker, record: &TopicRecord) -> Vec<CreatableTopicConfigs> {
    let dynamic = broker.dynamic_broker_configs();
    let overrides = record.overrides();
    DEFS.iter()
        .filter(|d| d.broker_synonym.is_some())
        .map(|d| {
            let (value, source) = broker.config.topic_value(&dynamic, &overrides, d.name);
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(d.name))
                .with_value(value.map(StrBytes::from_string))
                .with_config_source(source as i8)
        })
        .collect()
}
