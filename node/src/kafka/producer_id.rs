//! InitProducerId (api key 22), versions 0-4: a producer id and epoch for an idempotent
//! producer (null transactional id) or a transactional one.
//!
//! From v3 the client may send its current id and epoch to ask for an epoch bump; earlier
//! versions always ask for a new producer (-1/-1). kafka-python 3.x needs this API even
//! for plain producing: it enables idempotence by default.

use crate::kafka::dispatch::{call, ConnectionContext, HandlerError, Reply};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use myelin_core::api::{Request, Response};

pub(crate) async fn handle(
    context: &ConnectionContext,
    version: i16,
    request: InitProducerIdRequest,
) -> Result<Reply, HandlerError> {
    let (producer_id, producer_epoch) = if version >= 3 {
        (request.producer_id.0, request.producer_epoch)
    } else {
        (-1, -1)
    };
    let core_request = Request::InitProducerId {
        transactional_id: request
            .transactional_id
            .as_ref()
            .map(|id| id.as_str().to_string()),
        transaction_timeout_ms: request.transaction_timeout_ms,
        producer_id,
        producer_epoch,
    };
    let Response::InitProducerId {
        error,
        producer_id,
        producer_epoch,
    } = call(context, core_request).await?
    else {
        return Err(HandlerError::UnexpectedResponse {
            request: "InitProducerId",
        });
    };
    let mut body = InitProducerIdResponse::default();
    body.throttle_time_ms = 0;
    body.error_code = error.code();
    body.producer_id = ProducerId(producer_id);
    body.producer_epoch = producer_epoch;
    Ok(Reply::small(body))
}
