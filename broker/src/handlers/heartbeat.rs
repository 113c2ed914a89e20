//! Heartbeat: keeps a member's session alive and tells it when the group rebalances.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{error, Ctx};

/// Records the member's heartbeat.
pub fn handle(ctx: &Ctx<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    let result = ctx.broker.groups.heartbeat(
        req.group_id.0.as_str(),
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
        req.generation_id,
    );
    HeartbeatResponse::default()
        .with_error_code(result.err().map_or(0, |e| error::group_error(&e).code()))
}
