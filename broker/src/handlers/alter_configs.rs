//! AlterConfigs (replace a resource's dynamic configs) and IncrementalAlterConfigs (set, delete,
//! append to or subtract from single keys), for topics and the broker. Changes apply to open
//! logs at once, with no restart.

use kafka_protocol::{
    messages::{
        alter_configs_response::AlterConfigsResourceResponse, incremental_alter_configs_response,
        AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
        IncrementalAlterConfigsResponse,
    },
    ResponseError,
};

use super::{
    describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC},
    error, text, Ctx,
};
use crate::{
    broker::{Broker, BrokerError},
    config::{self, ConfigError, ConfigType},
};

type Changes = Vec<(String, Option<String>)>;

async fn apply(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    changes: &Changes,
    incremental: bool,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    let mapped = |e: BrokerError| (error::broker_error(&e), error::message(&e));
    match resource_type {
        RESOURCE_TOPIC => broker
            .alter_topic_configs(name, changes, incremental, validate_only)
            .await
            .map_err(mapped),
        RESOURCE_BROKER => {
            if !name.is_empty() && name != broker.config.node_id.to_string() {
                return Err((
                    ResponseError::InvalidRequest,
                    format!(
                        "this is broker {}, not broker {name}",
                        broker.config.node_id
                    ),
                ));
            }
            broker
                .alter_broker_configs(changes, incremental, validate_only)
                .await
                .map_err(mapped)
        }
        other => Err((
            ResponseError::InvalidRequest,
            format!("resource type {other} is not supported; use TOPIC (2) or BROKER (4)"),
        )),
    }
}

/// Replaces each resource's dynamic configs with the given set.
pub async fn handle(ctx: &Ctx<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let changes: Changes = r
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let resp = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let applied = apply(
            ctx.broker,
            r.resource_type,
            r.resource_name.as_str(),
            &changes,
            false,
            req.validate_only,
        )
        .await;
        responses.push(match applied {
            Ok(()) => resp,
            Err((code, msg)) => resp
                .with_error_code(code.code())
                .with_error_message(text(msg)),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// Applies each resource's per-key operations.
pub async fn handle_incremental(
    ctx: &Ctx<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let broker = ctx.broker;
    let mut responses = Vec::with_capacity(req.resources.len());
    'resources: for r in req.resources {
        let name = r.resource_name.to_string();
        let resp = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let mut changes = Changes::new();
        for c in &r.configs {
            let key = c.name.to_string();
            let value = c.value.as_ref().map(|v| v.to_string());
            let change = match c.config_operation {
                SET => Ok(value),
                DELETE => Ok(None),
                APPEND | SUBTRACT => list_edit(
                    broker,
                    r.resource_type,
                    &name,
                    &key,
                    value,
                    c.config_operation,
                ),
                op => Err((
                    ResponseError::InvalidRequest,
                    format!("unknown config operation {op}"),
                )),
            };
            match change {
                Ok(v) => changes.push((key, v)),
                Err((code, msg)) => {
                    responses.push(
                        resp.with_error_code(code.code())
                            .with_error_message(text(msg)),
                    );
                    continue 'resources;
                }
            }
        }
        let applied = apply(
            broker,
            r.resource_type,
            &name,
            &changes,
            true,
            req.validate_only,
        )
        .await;
        responses.push(match applied {
            Ok(()) => resp,
            Err((code, msg)) => resp
                .with_error_code(code.code())
                .with_error_message(text(msg)),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// APPEND/SUBTRACT: only for list-typed keys, against the current effective value.
fn list_edit(
    broker: &Broker,
    resource_type: i8,
    resource: &str,
    key: &str,
    value: Option<String>,
    op: i8,
) -> Result<Option<String>, (ResponseError, String)> {
    let invalid = |e: ConfigError| (ResponseError::InvalidConfig, e.to_string());
    let d = config::def(key).ok_or_else(|| invalid(ConfigError::Unknown { key: key.into() }))?;
    if d.ty != ConfigType::List {
        return Err(invalid(ConfigError::NotAllowed {
            key: key.into(),
            reason: "APPEND and SUBTRACT apply only to list configurations".into(),
        }));
    }
    let dynamic = broker.dynamic_broker_configs();
    let current = if resource_type == RESOURCE_TOPIC {
        let overrides = broker
            .topic(resource)
            .map(|t| t.record.overrides())
            .unwrap_or_default();
        broker.config.topic_value(&dynamic, &overrides, key).0
    } else {
        broker.config.broker_value(&dynamic, key).0
    };
    let mut items: Vec<String> = current
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for v in value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if op == APPEND {
            if !items.iter().any(|i| i == v) {
                items.push(v.to_string());
            }
        } else {
            items.retain(|i| i != v);
        }
    }
    Ok(Some(items.join(",")))
}
