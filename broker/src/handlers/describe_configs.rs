//! DescribeConfigs for topics and for the broker, with sources, synonyms and documentation.

use kafka_protocol::{
    messages::{
        describe_configs_response::{
            DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
        },
        DescribeConfigsRequest, DescribeConfigsResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::{text, Ctx};
use crate::config::{ConfigDef, ConfigSource, Properties, DEFS};

/// Kafka's resource type codes.
pub const RESOURCE_TOPIC: i8 = 2;
/// The broker resource.
pub const RESOURCE_BROKER: i8 = 4;

/// Describes each resource independently.
pub fn handle(ctx: &Ctx<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let broker = ctx.broker;
    let dynamic = broker.dynamic_broker_configs();
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let keys: Option<Vec<String>> = r
                .configuration_keys
                .map(|ks| ks.iter().map(|k| k.to_string()).collect());
            let wanted = |d: &ConfigDef| {
                keys.as_ref()
                    .is_none_or(|ks| ks.iter().any(|k| k == d.name))
            };
            let entry = |d: &ConfigDef, value: Option<String>, source: ConfigSource, synonyms| {
                let mut e = DescribeConfigsResourceResult::default()
                    .with_name(StrBytes::from_static_str(d.name))
                    .with_value(value.map(StrBytes::from_string))
                    .with_read_only(!d.dynamic)
                    .with_config_source(source as i8)
                    .with_is_sensitive(false)
                    .with_config_type(d.ty as i8);
                if req.include_synonyms {
                    e = e.with_synonyms(synonyms);
                }
                if req.include_documentation {
                    e = e.with_documentation(text(d.doc));
                }
                e
            };
            match r.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = broker.topic(r.resource_name.as_str()) else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(text(format!(
                                "topic `{}` does not exist",
                                r.resource_name.as_str()
                            )));
                    };
                    let overrides = topic.record.overrides();
                    let configs = DEFS
                        .iter()
                        .filter(|d| d.broker_synonym.is_some() && wanted(d))
                        .map(|d| {
                            let (value, source) =
                                broker.config.topic_value(&dynamic, &overrides, d.name);
                            entry(
                                d,
                                value,
                                source,
                                topic_synonyms(ctx, d, &dynamic, &overrides),
                            )
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let name = r.resource_name.as_str();
                    if !name.is_empty() && name != broker.config.node_id.to_string() {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(text(format!(
                                "this is broker {}; ask broker {name} about its own configs",
                                broker.config.node_id
                            )));
                    }
                    let configs = DEFS
                        .iter()
                        .filter(|d| d.broker_synonym.is_none() && wanted(d))
                        .map(|d| {
                            let (value, source) = broker.config.broker_value(&dynamic, d.name);
                            entry(d, value, source, broker_synonyms(ctx, d, &dynamic))
                        })
                        .collect();
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(text(format!(
                        "resource type {other} is not supported; use TOPIC (2) or BROKER (4)"
                    ))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn synonym(name: &str, value: &str, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value.to_string())))
        .with_source(source as i8)
}

/// Every place a topic config's value could come from, highest precedence first.
fn topic_synonyms(
    ctx: &Ctx<'_>,
    d: &ConfigDef,
    dynamic: &Properties,
    overrides: &Properties,
) -> Vec<DescribeConfigsSynonym> {
    let mut out = Vec::new();
    if let Some(v) = overrides.get(d.name) {
        out.push(synonym(d.name, v, ConfigSource::DynamicTopic));
    }
    if let Some(b) = d.broker_synonym.and_then(crate::config::def) {
        out.extend(broker_synonyms(ctx, b, dynamic));
    }
    out
}

fn broker_synonyms(
    ctx: &Ctx<'_>,
    d: &ConfigDef,
    dynamic: &Properties,
) -> Vec<DescribeConfigsSynonym> {
    let mut out = Vec::new();
    if let Some(v) = dynamic.get(d.name) {
        out.push(synonym(d.name, v, ConfigSource::DynamicDefaultBroker));
    }
    if let Some(v) = ctx.broker.config.props.get(d.name) {
        out.push(synonym(d.name, v, ConfigSource::StaticBroker));
    }
    if let Some(v) = d.default {
        out.push(synonym(d.name, v, ConfigSource::Default));
    }
    out
}
