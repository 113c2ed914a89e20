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
use crate::{broker::Broker, config::DEFS};

/// Creates (or validates) each topic independently.
pub async fn handle(ctx: &Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let broker = ctx.broker;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
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
            results.push(fail(
                ResponseError::InvalidRequest,
                format!("topic `{name}` appears more than once in the request"),
            ));
            continue;
        }
        if !t.assignments.is_empty() && (t.num_partitions != -1 || t.replication_factor != -1) {
            results.push(fail(
                ResponseError::InvalidRequest,
                "give either replica assignments or a partition count and replication factor, not both".into(),
            ));
            continue;
        }
        // The controller validates explicit assignments against the registered brokers.
        let assignments: Vec<(i32, Vec<i32>)> = t
            .assignments
            .iter()
            .map(|a| {
                (
                    a.partition_index,
                    a.broker_ids.iter().map(|b| b.0).collect(),
                )
            })
            .collect();
        let mut configs = BTreeMap::new();
        let mut null_config = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => null_config = Some(c.name.to_string()),
            }
        }
        if let Some(key) = null_config {
            results.push(fail(
                ResponseError::InvalidConfig,
                format!("configuration `{key}` has a null value"),
            ));
            continue;
        }
        let created = broker
            .create_topic(
                &name,
                t.num_partitions,
                t.replication_factor,
                assignments,
                &configs,
                req.validate_only,
            )
            .await;
        results.push(match created {
            Ok(created) => {
                let mut r = result
                    .with_num_partitions(created.partitions)
                    .with_replication_factor(created.replication_factor);
                if ctx.version >= 7 && !req.validate_only {
                    r = r.with_topic_id(created.id);
                }
                if ctx.version >= 5 {
                    r = r.with_configs(Some(resulting_configs(broker, &configs)));
                }
                r
            }
            Err(e) => fail(error::broker_error(&e), error::message(&e)),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn resulting_configs(
    broker: &Broker,
    configs: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    let dynamic = broker.dynamic_broker_configs();
    let overrides = crate::config::Properties::from_stored(configs);
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
