//! DeleteGroups: remove empty groups and their offsets (NON_EMPTY_GROUP while members remain).

use kafka_protocol::messages::{
    delete_groups_response::DeletableGroupResult, DeleteGroupsRequest, DeleteGroupsResponse,
};

use super::{error, Ctx};

/// Deletes every requested group.
pub fn handle(ctx: &Ctx<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|id| {
            let code = ctx
                .broker
                .groups
                .delete_group(id.0.as_str())
                .err()
                .map_or(0, |e| error::group_error(&e).code());
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
