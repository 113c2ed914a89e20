//! DescribeGroups: state, protocol and members (with metadata and assignments once Stable).

use kafka_protocol::{
    messages::{
        describe_groups_response::{DescribedGroup, DescribedGroupMember},
        DescribeGroupsRequest, DescribeGroupsResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::{error, text, Ctx, OPS_NOT_REQUESTED};

/// Kafka's bit set of group operations (READ, DELETE, DESCRIBE): with no ACLs yet, every client
/// may do all of them.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// Describes every requested group.
pub fn handle(ctx: &Ctx<'_>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let ops = if ctx.version >= 3 && req.include_authorized_operations {
        GROUP_OPERATIONS
    } else {
        OPS_NOT_REQUESTED
    };
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(ops);
            match ctx.broker.groups.describe_group(id.0.as_str()) {
                Ok(Some(g)) => described
                    .with_group_state(StrBytes::from_static_str(g.state.name()))
                    .with_protocol_type(StrBytes::from_string(g.protocol_type))
                    .with_protocol_data(StrBytes::from_string(g.protocol))
                    .with_members(
                        g.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(StrBytes::from_string(m.member_id))
                                    .with_group_instance_id(
                                        m.group_instance_id.map(StrBytes::from_string),
                                    )
                                    .with_client_id(StrBytes::from_string(m.client_id))
                                    .with_client_host(StrBytes::from_string(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
                // Before v6 an unknown group is described as Dead with no error (Kafka's
                // behaviour); v6 reports GROUP_ID_NOT_FOUND (KIP-1043).
                Ok(None) if ctx.version >= 6 => described
                    .with_group_state(StrBytes::from_static_str("Dead"))
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(text(format!("group {} not found", id.0.as_str()))),
                Ok(None) => described.with_group_state(StrBytes::from_static_str("Dead")),
                Err(e) => {
                    let described = described.with_error_code(error::group_error(&e).code());
                    if ctx.version >= 6 {
                        described.with_error_message(text(e.to_string()))
                    } else {
                        described
                    }
                }
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
