//! CreatePartitions: grow a topic.

use kafka_protocol::messages::{
    create_partitions_response::CreatePartitionsTopicResult, CreatePartitionsRequest,
    CreatePartitionsResponse,
};

use super::{error, text, Ctx};

/// Grows each topic independently.
pub async fn handle(ctx: &Ctx<'_>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let broker = ctx.broker;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatePartitionsTopicResult::default().with_name(t.name);
        // The controller validates the brokers named (registered, no duplicates, same count).
        // Clients send an empty list as often as null for "place them for me".
        let assignments = t.assignments.filter(|a| !a.is_empty()).map(|a| {
            a.into_iter()
                .map(|a| a.broker_ids.into_iter().map(|b| b.0).collect())
                .collect()
        });
        results.push(
            match broker
                .create_partitions(&name, t.count, assignments, req.validate_only)
                .await
            {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(error::broker_error(&e).code())
                    .with_error_message(text(error::message(&e))),
            },
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}
