//! LeaveGroup: members leave at once instead of waiting for their sessions to expire; from v3
//! several at a time, and static members by `group.instance.id` alone (KIP-345).

use kafka_protocol::messages::{
    leave_group_response::MemberResponse, LeaveGroupRequest, LeaveGroupResponse,
};

use super::{error, Ctx};

/// Removes the members.
pub fn handle(ctx: &Ctx<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let batched = ctx.version >= 3;
    let members: Vec<(String, Option<String>)> = if batched {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let results = match ctx.broker.groups.leave(req.group_id.0.as_str(), &members) {
        Ok(results) => results,
        Err(e) => {
            return LeaveGroupResponse::default().with_error_code(error::group_error(&e).code())
        }
    };
    let code = |r: &Result<(), _>| r.as_ref().err().map_or(0, |e| error::group_error(e).code());
    if !batched {
        // One member: its outcome is the request's.
        return LeaveGroupResponse::default().with_error_code(results.first().map_or(0, code));
    }
    let responses = req
        .members
        .into_iter()
        .zip(&results)
        .map(|(m, r)| {
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(code(r))
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}
