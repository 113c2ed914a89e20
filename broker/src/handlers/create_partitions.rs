//! CreatePartitions: grow a topic.

use kafka_protocol::{
    messages::{
        create_partitions_response::CreatePartitionsTopicResult, CreatePartitionsRequest,
        CreatePartitionsResponse,
    },
    ResponseError,
};

use super::{error, text, Ctx};

/// Grows each topic independently.
pub fn handle(ctx: &Ctx<'_>, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let broker = ctx.broker;
    let node = broker.config.node_id;
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let result = CreatePartitionsTopicResult::default().with_name(t.name);
            if let Some(assignments) = &t.assignments {
                if let Some(bad) = assignments
                    .iter()
                    .find(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node)
                {
                    return result
                        .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                        .with_error_message(text(format!(
                            "assignment {:?} names brokers other than the only broker, {node}",
                            bad.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>()
                        )));
                }
            }
            match broker.create_partitions(&name, t.count, req.validate_only) {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(error::broker_error(&e).code())
                    .with_error_message(text(error::message(&e))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
