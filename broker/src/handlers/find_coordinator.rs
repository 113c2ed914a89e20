//! FindCoordinator: which broker coordinates a group (this one) or a transactional id (none
//! yet: transactions are not built, so those keys get COORDINATOR_NOT_AVAILABLE with a message).

use kafka_protocol::{
    messages::{
        find_coordinator_response::Coordinator, BrokerId, FindCoordinatorRequest,
        FindCoordinatorResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::{error, text, Ctx};
use crate::coordinator::group::{partition_for, GroupError, OFFSETS_TOPIC};

/// Kafka's `CoordinatorType`.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;
const SHARE: i8 = 2;

/// Answers every key of the request (one before v4, a batch from v4 on — KIP-699).
pub async fn handle(ctx: &Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let key_type = if ctx.version >= 1 {
        req.key_type
    } else {
        GROUP
    };
    // Kafka creates __consumer_offsets on the first FindCoordinator for a group.
    if key_type == GROUP {
        if let Err(e) = ctx.broker.ensure_offsets_topic().await {
            tracing::warn!(error = %crate::handlers::error::message(&e), "could not create __consumer_offsets");
        }
    }
    if ctx.version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| find(ctx, key_type, key))
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = find(ctx, key_type, req.key);
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(c.error_message)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

fn find(ctx: &Ctx<'_>, key_type: i8, key: StrBytes) -> Coordinator {
    let broker = ctx.broker;
    let failed = |code: ResponseError, message: String| {
        Coordinator::default()
            .with_key(key.clone())
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(code.code())
            .with_error_message(text(message))
    };
    match key_type {
        GROUP => {
            // The coordinator is the leader of the group's __consumer_offsets partition.
            let image = broker.image();
            let Some(topic) = image.topics.get(OFFSETS_TOPIC) else {
                return failed(
                    ResponseError::CoordinatorNotAvailable,
                    "__consumer_offsets does not exist yet".into(),
                );
            };
            let p = partition_for(key.as_str(), topic.partition_count());
            let leader = topic.partition(p).map(|s| s.leader).unwrap_or(-1);
            let endpoint = image
                .brokers
                .get(&leader)
                .filter(|b| !b.fenced)
                .map(|b| b.endpoint(ctx.listener));
            let e = match endpoint {
                Some(Some(e)) => e,
                Some(None) => {
                    return failed(
                        ResponseError::CoordinatorNotAvailable,
                        format!(
                            "the coordinator, broker {leader}, has no `{}` listener",
                            ctx.listener
                        ),
                    )
                }
                None => {
                    return failed(
                        ResponseError::CoordinatorNotAvailable,
                        format!("partition {p} of __consumer_offsets has no live leader"),
                    )
                }
            };
            // While __consumer_offsets loads on this broker, it is still the coordinator: the
            // group requests answer COORDINATOR_LOAD_IN_PROGRESS, as in Kafka.
            if leader == broker.config.node_id {
                if let Err(e @ GroupError::CoordinatorNotAvailable) =
                    broker.groups.check_available()
                {
                    return failed(error::group_error(&e), e.to_string());
                }
            }
            Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(leader))
                .with_host(StrBytes::from_string(e.host.clone()))
                .with_port(i32::from(e.port))
        }
        TRANSACTION => failed(
            ResponseError::CoordinatorNotAvailable,
            "transactions are not supported by this broker yet (no transaction coordinator)".into(),
        ),
        SHARE => failed(
            ResponseError::CoordinatorNotAvailable,
            "share groups (KIP-932) are not supported by this broker".into(),
        ),
        other => failed(
            ResponseError::InvalidRequest,
            format!("unknown coordinator key type {other}"),
        ),
    }
}
