//! InitProducerId (api key 22), versions 0-4: a producer id and epoch for an idempotent
//! producer (null transactional id) or a transactional one.
//!
//! From v3 the client may send its current id and epoch to ask for an epoch bump; earlier
//! versions always ask for a new producer (-1/-1). kafka-python 3.x needs this API even
//! for plain producing: it enables idempotence by default. PRODUCER_FENCED exists from v4
//! (KIP-588); older versions get INVALID_PRODUCER_EPOCH, as Kafka sends them.

use crate::kafka::dispatch::{call, ConnectionContext, HandlerError, Reply};
use crate::kafka::transactions::error_for_version;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use myelin_core::api::{ErrorCode, Request, Response};

fn init_producer_id_request(version: i16, request: &InitProducerIdRequest) -> Request {
    let (producer_id, producer_epoch) = if version >= 3 {
        (request.producer_id.0, request.producer_epoch)
    } else {
        (-1, -1)
    };
    Request::InitProducerId {
        connection_id: 0,
        transactional_id: request
            .transactional_id
            .as_ref()
            .map(|id| id.as_str().to_string()),
        transaction_timeout_ms: request.transaction_timeout_ms,
        producer_id,
        producer_epoch,
    }
}

fn init_producer_id_response(
    version: i16,
    error: ErrorCode,
    producer_id: i64,
    producer_epoch: i16,
) -> InitProducerIdResponse {
    let mut body = InitProducerIdResponse::default();
    body.throttle_time_ms = 0;
    body.error_code = error_for_version(ApiKey::InitProducerId, version, error).code();
    body.producer_id = ProducerId(producer_id);
    body.producer_epoch = producer_epoch;
    body
}

pub(crate) async fn handle(
    context: &ConnectionContext,
    version: i16,
    request: InitProducerIdRequest,
) -> Result<Reply, HandlerError> {
    let Response::InitProducerId {
        error,
        producer_id,
        producer_epoch,
    } = call(context, init_producer_id_request(version, &request)).await?
    else {
        return Err(HandlerError::UnexpectedResponse {
            request: "InitProducerId",
        });
    };
    Ok(Reply::small(init_producer_id_response(
        version,
        error,
        producer_id,
        producer_epoch,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::test_support::over_the_wire;
    use crate::kafka::versions::advertised_range;
    use kafka_protocol::messages::TransactionalId;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn init_producer_id_passes_the_transactional_id_timeout_and_resume_from_v3() {
        let (min, max) = advertised_range(ApiKey::InitProducerId).unwrap();
        for version in min..=max {
            let mut request = InitProducerIdRequest::default();
            request.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
            request.transaction_timeout_ms = 60_000;
            if version >= 3 {
                request.producer_id = ProducerId(7);
                request.producer_epoch = 2;
            }
            let request = over_the_wire(&request, version);
            let resume = if version >= 3 { (7, 2) } else { (-1, -1) };
            assert_eq!(
                init_producer_id_request(version, &request),
                Request::InitProducerId {
                    connection_id: 0,
                    transactional_id: Some("tx".into()),
                    transaction_timeout_ms: 60_000,
                    producer_id: resume.0,
                    producer_epoch: resume.1,
                },
                "v{version}"
            );
        }
    }

    #[test]
    fn producer_fenced_is_invalid_producer_epoch_before_v4() {
        let (min, max) = advertised_range(ApiKey::InitProducerId).unwrap();
        for version in min..=max {
            let body = init_producer_id_response(version, ErrorCode::ProducerFenced, -1, -1);
            let body = over_the_wire(&body, version);
            let expected = if version >= 4 { 90 } else { 47 };
            assert_eq!(body.error_code, expected, "v{version}");
            let body = init_producer_id_response(version, ErrorCode::None, 9, 1);
            let body = over_the_wire(&body, version);
            assert_eq!(
                (body.error_code, body.producer_id.0, body.producer_epoch),
                (0, 9, 1)
            );
            for (error, code) in [
                (ErrorCode::ConcurrentTransactions, 51),
                (ErrorCode::InvalidTransactionTimeout, 50),
            ] {
                let body =
                    over_the_wire(&init_producer_id_response(version, error, -1, -1), version);
                assert_eq!(body.error_code, code, "v{version}");
            }
        }
    }
}
