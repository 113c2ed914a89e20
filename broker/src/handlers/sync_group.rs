//! SyncGroup: the leader hands in the assignment; every member waits for its own.

use kafka_protocol::{
    messages::{SyncGroupRequest, SyncGroupResponse},
    protocol::StrBytes,
};

use super::{error, Ctx};
use crate::coordinator::group::SyncRequest;

/// Syncs the member and waits for its assignment.
pub async fn handle(ctx: &Ctx<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    let sync = SyncRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        generation: req.generation_id,
        protocol_type: req.protocol_type.map(|s| s.to_string()),
        protocol_name: req.protocol_name.map(|s| s.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    match ctx.broker.groups.sync(sync).await {
        Ok(a) => {
            let response = SyncGroupResponse::default().with_assignment(a.assignment);
            if ctx.version >= 5 {
                response
                    .with_protocol_type(a.protocol_type.map(StrBytes::from_string))
                    .with_protocol_name(a.protocol_name.map(StrBytes::from_string))
            } else {
                response
            }
        }
        Err(e) => SyncGroupResponse::default().with_error_code(error::group_error(&e).code()),
    }
}
