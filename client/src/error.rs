//! The client's error type.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

/// Everything that can go wrong talking to a broker.
///
/// After an [`Error::Io`], [`Error::Timeout`], [`Error::FrameTooLarge`] or
/// [`Error::CorrelationMismatch`] the connection's byte stream is in an unknown state: the
/// [`Connection`](crate::Connection) marks itself broken and every later call returns
/// [`Error::Broken`]; reconnect. The other errors (a broker error code, a response that did
/// not decode although its frame was read whole, an unsupported version, ...) leave the
/// connection usable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket failed (connect refused, reset, unexpected end of stream, ...).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// An operation did not finish in time.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// What was being done ("connect", "Fetch request", ...).
        op: String,
        /// The deadline that passed.
        after: Duration,
    },

    /// A request could not be encoded, or a response (or record batch) could not be decoded.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The peer announced a frame larger than `ClientConfig::max_frame_bytes` (or a negative
    /// or too short one). Nothing was allocated for it.
    #[error("refused frame of {size} bytes (limit {max})")]
    FrameTooLarge {
        /// The announced frame length.
        size: i64,
        /// The configured limit.
        max: usize,
    },

    /// The response's correlation id is not the one of the request just sent.
    #[error("correlation id mismatch: sent {expected}, received {received}")]
    CorrelationMismatch {
        /// Correlation id of the request.
        expected: i32,
        /// Correlation id found in the response header.
        received: i32,
    },

    /// The broker answered with a non-zero Kafka error code.
    #[error("{api:?} failed with broker error {code} ({}){}", error_name(*.code), message_suffix(.message))]
    Broker {
        /// The API that failed.
        api: ApiKey,
        /// The Kafka error code (see [`kafka_protocol::ResponseError`]).
        code: i16,
        /// The broker's error message, when the response version carries one.
        message: Option<String>,
    },

    /// No version of this API is supported by both the broker and this client (or the
    /// requested version is outside the client's / the message type's range).
    #[error("{api:?}: no usable version ({detail})")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// Why.
        detail: String,
    },

    /// The response is well-formed but does not answer the question (e.g. the partition asked
    /// for is missing).
    #[error("unexpected response: {0}")]
    UnexpectedResponse(String),

    /// The caller passed something the client cannot send (e.g. an empty record list).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// An earlier failure left this connection unusable; open a new one.
    #[error("connection is broken by an earlier failure: {0}")]
    Broken(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The Kafka error code, if this is an [`Error::Broker`].
    pub fn broker_code(&self) -> Option<i16> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True if this is a broker error with exactly this Kafka error.
    pub fn is_broker_error(&self, error: ResponseError) -> bool {
        self.broker_code() == Some(error.code())
    }

    /// True for failures worth retrying: a retriable Kafka error code, a timeout or an I/O
    /// error (the latter two on a new connection).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Broker { code, .. } => {
                ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable())
            }
            Error::Io(_) | Error::Timeout { .. } | Error::Broken(_) => true,
            _ => false,
        }
    }

    /// True for failures a transactional client retries (as Kafka's clients do): those of
    /// [`Error::is_retriable`] and CONCURRENT_TRANSACTIONS (51), which Kafka's error table
    /// does not mark retriable but which only says "the coordinator is still busy with the
    /// previous transition".
    pub fn is_transaction_retriable(&self) -> bool {
        self.is_retriable() || self.is_broker_error(ResponseError::ConcurrentTransactions)
    }

    /// True if the request went to a node that is not (or not yet) the coordinator:
    /// NOT_COORDINATOR (16) or COORDINATOR_NOT_AVAILABLE (15). Look the coordinator up again.
    pub fn needs_coordinator_lookup(&self) -> bool {
        self.is_broker_error(ResponseError::NotCoordinator)
            || self.is_broker_error(ResponseError::CoordinatorNotAvailable)
    }

    /// True if this producer was fenced by a newer one with the same transactional id (or
    /// its epoch is stale): PRODUCER_FENCED (90) or INVALID_PRODUCER_EPOCH (47).
    pub fn is_fenced(&self) -> bool {
        self.is_broker_error(ResponseError::ProducerFenced)
            || self.is_broker_error(ResponseError::InvalidProducerEpoch)
    }

    /// True if the connection can no longer be used after this error.
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            Error::Io(_)
                | Error::Timeout { .. }
                | Error::FrameTooLarge { .. }
                | Error::CorrelationMismatch { .. }
                | Error::Broken(_)
        )
    }

    pub(crate) fn protocol(context: &str, err: impl std::fmt::Display) -> Self {
        Error::Protocol(format!("{context}: {err}"))
    }

    /// `Ok(())` for code 0, else [`Error::Broker`].
    pub(crate) fn check(api: ApiKey, code: i16, message: Option<&str>) -> Result<()> {
        if code == 0 {
            Ok(())
        } else {
            Err(Error::Broker {
                api,
                code,
                message: message.map(str::to_owned),
            })
        }
    }
}

fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => e.to_string(),
        None => "NONE".to_owned(),
    }
}

fn message_suffix(message: &Option<String>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_error_display_and_helpers() {
        let e = Error::Broker {
            api: ApiKey::Produce,
            code: 45,
            message: Some("gap".into()),
        };
        let s = e.to_string();
        assert!(s.contains("45"), "{s}");
        assert!(s.contains("OutOfOrderSequenceNumber"), "{s}");
        assert!(s.ends_with(": gap"), "{s}");
        assert_eq!(e.broker_code(), Some(45));
        assert!(e.is_broker_error(ResponseError::OutOfOrderSequenceNumber));
        assert!(!e.breaks_connection());
        assert!(Error::check(ApiKey::Fetch, 0, None).is_ok());
        let retriable = Error::check(ApiKey::Fetch, 6, None).unwrap_err();
        assert!(retriable.is_retriable()); // NOT_LEADER_OR_FOLLOWER
    }

    #[test]
    fn transaction_error_classes() {
        let code = |code| Error::Broker {
            api: ApiKey::EndTxn,
            code,
            message: None,
        };
        assert!(!code(51).is_retriable());
        assert!(code(51).is_transaction_retriable());
        assert!(code(14).is_transaction_retriable());
        assert!(!code(90).is_transaction_retriable());
        assert!(code(16).needs_coordinator_lookup() && code(15).needs_coordinator_lookup());
        assert!(!code(14).needs_coordinator_lookup());
        assert!(code(90).is_fenced() && code(47).is_fenced() && !code(48).is_fenced());
    }
}
