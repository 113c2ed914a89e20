//! InitProducerId for idempotent producers: a fresh producer id, or (KIP-360) the same id with
//! a bumped epoch when the producer presents its current id and epoch.

use kafka_protocol::{
    messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId},
    ResponseError,
};

use super::{error, Ctx};

/// Hands out a producer id and epoch.
pub async fn handle(ctx: &Ctx<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        // The transaction coordinator is not built yet: a clear refusal, not a retry loop.
        return resp.with_error_code(ResponseError::UnsupportedVersion.code());
    }
    // KIP-360: an idempotent producer that hit an error may bump its epoch and keep its id.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return resp
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match ctx.broker.allocate_producer_id().await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "could not allocate a producer id");
            resp.with_error_code(error::broker_error(&e).code())
        }
    }
}
