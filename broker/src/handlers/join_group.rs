//! JoinGroup: a long poll that completes when the group's join phase does (see
//! `coordinator::group::state` for the rebalance protocol).

use std::time::Duration;

use kafka_protocol::{
    messages::{join_group_response::JoinGroupResponseMember, JoinGroupRequest, JoinGroupResponse},
    protocol::StrBytes,
};

use super::{error, Ctx};
use crate::coordinator::group::JoinRequest;

/// A protocol timeout in ms as a `Duration` (negative means zero, which the checks refuse).
pub fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Joins the member and waits for the rebalance.
pub async fn handle(ctx: &Ctx<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let session_timeout = millis(req.session_timeout_ms);
    let join = JoinRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        // Kafka prints the client's address as Java's InetAddress does: `/1.2.3.4`.
        client_host: ctx.peer.map(|p| format!("/{}", p.ip())).unwrap_or_default(),
        session_timeout,
        // v0 had no rebalance timeout: the session timeout served for both.
        rebalance_timeout: if ctx.version >= 1 {
            millis(req.rebalance_timeout_ms)
        } else {
            session_timeout
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: ctx.version >= 4,
        supports_skip_assignment: ctx.version >= 9,
    };
    let r = ctx.broker.groups.join(join).await;
    let code = r.error.as_ref().map_or(0, |e| error::group_error(e).code());
    let members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                .with_metadata(m.metadata)
        })
        .collect();
    // Before v7 the protocol name is not nullable.
    let protocol_name = match r.protocol_name {
        Some(name) => Some(StrBytes::from_string(name)),
        None if ctx.version < 7 => Some(StrBytes::default()),
        None => None,
    };
    JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(protocol_name)
        .with_leader(StrBytes::from_string(r.leader))
        .with_skip_assignment(ctx.version >= 9 && r.skip_assignment)
        .with_member_id(StrBytes::from_string(r.member_id))
        .with_members(members)
}
