//! ListGroups: every group on this coordinator, filtered by state (v4+, KIP-518) and type
//! (v5+, KIP-848: every group here is `classic`).

use kafka_protocol::{
    messages::{list_groups_response::ListedGroup, GroupId, ListGroupsRequest, ListGroupsResponse},
    protocol::StrBytes,
};

use super::{error, Ctx};

/// Lists the groups.
pub fn handle(ctx: &Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let (err, listings) = ctx.broker.groups.list_groups();
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = req
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let groups = listings
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.name().to_ascii_lowercase()))
        .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type))
                .with_group_state(StrBytes::from_static_str(g.state.name()))
                .with_group_type(StrBytes::from_static_str("classic"))
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(err.map_or(0, |e| error::group_error(&e).code()))
        .with_groups(groups)
}
