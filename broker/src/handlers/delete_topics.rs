//! DeleteTopics, by name or (v6) by topic id.

use kafka_protocol::{
    messages::{
        delete_topics_response::DeletableTopicResult, DeleteTopicsRequest, DeleteTopicsResponse,
        TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use uuid::Uuid;

use super::{error, text, Ctx};

/// Deletes each topic independently.
pub async fn handle(ctx: &Ctx<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let broker = ctx.broker;
    // v6 names topics in `topics` (name or id); earlier versions in `topic_names`.
    let targets: Vec<(Option<TopicName>, Uuid)> = if ctx.version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        responses.push({
            let name = match name {
                Some(n) => Some(n.0.to_string()),
                None => broker.topic_by_id(id).map(|t| t.record.name.clone()),
            };
            let result = DeletableTopicResult::default()
                .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))))
                .with_topic_id(id);
            let Some(name) = name else {
                responses.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
                continue;
            };
            match broker.delete_topic(&name).await {
                Ok(topic_id) => result.with_topic_id(if ctx.version >= 6 {
                    topic_id
                } else {
                    Uuid::nil()
                }),
                Err(e) => result
                    .with_error_code(error::broker_error(&e).code())
                    .with_error_message(if ctx.version >= 5 {
                        text(error::message(&e))
                    } else {
                        None
                    }),
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
