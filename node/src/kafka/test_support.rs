//! Helpers the API modules' tests share.

use crate::kafka::versions::advertised_range;
use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub(crate) fn text(value: &'static str) -> StrBytes {
    StrBytes::from_static_str(value)
}

/// The versions this node advertises for `api_key`.
pub(crate) fn versions(api_key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (min, max) = advertised_range(api_key).expect("advertised");
    min..=max
}

/// `message` as the other side reads it: encoded for `version` (which fails if a field the
/// version lacks is set) and decoded again, every byte consumed.
pub(crate) fn over_the_wire<T: Encodable + Decodable>(message: &T, version: i16) -> T {
    let mut buffer = BytesMut::new();
    message
        .encode(&mut buffer, version)
        .unwrap_or_else(|error| panic!("encoding v{version}: {error}"));
    let mut bytes = buffer.freeze();
    let decoded = T::decode(&mut bytes, version)
        .unwrap_or_else(|error| panic!("decoding v{version}: {error}"));
    assert!(bytes.is_empty(), "v{version}: {} bytes left", bytes.len());
    decoded
}
