//! The API versions this node advertises in ApiVersions and accepts on the wire.
//!
//! Every entry must lie inside what the `kafka-protocol` crate can decode (the request
//! type's `VERSIONS`) and encode (the response type's `VERSIONS`); `ApiKey::valid_versions`
//! overstates some APIs, so the tests below check the request and response types directly.
//! The codec refuses any request outside this table before decoding it.
//!
//! No finalized features are advertised (in particular no `transaction.version`), and no
//! version of "transaction v2" (KIP-890 part 2: Produce v12+, EndTxn v5, InitProducerId v6,
//! AddPartitionsToTxn v4+ from clients): every client keeps the classic transaction flow.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// One advertised API and its inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AdvertisedApi {
    pub api_key: ApiKey,
    pub version_min: i16,
    pub version_max: i16,
}

const fn advertised(api_key: ApiKey, version_min: i16, version_max: i16) -> AdvertisedApi {
    AdvertisedApi {
        api_key,
        version_min,
        version_max,
    }
}

/// What clients may send. Lower bounds are what the crate still decodes; upper bounds stop
/// where a newer version would need semantics the node lacks (Produce v11+, InitProducerId
/// v5+, AddOffsetsToTxn, EndTxn and TxnOffsetCommit v4+ bring TRANSACTION_ABORTABLE and
/// "transactions v2"; AddPartitionsToTxn v4+ is broker-to-broker; Fetch v17+ is for KRaft
/// replicas; ListTransactions v2 filters by a transactional-id pattern).
pub(crate) const ADVERTISED_APIS: [AdvertisedApi; 34] = [
    advertised(ApiKey::Produce, 3, 10),
    advertised(ApiKey::Fetch, 4, 16),
    advertised(ApiKey::ListOffsets, 1, 10),
    advertised(ApiKey::Metadata, 0, 13),
    advertised(ApiKey::ApiVersions, 0, 4),
    advertised(ApiKey::CreateTopics, 2, 7),
    advertised(ApiKey::DeleteTopics, 1, 6),
    advertised(ApiKey::InitProducerId, 0, 4),
    advertised(ApiKey::DescribeConfigs, 1, 4),
    advertised(ApiKey::FindCoordinator, 0, 6),
    advertised(ApiKey::JoinGroup, 0, 9),
    advertised(ApiKey::SyncGroup, 0, 5),
    advertised(ApiKey::Heartbeat, 0, 4),
    advertised(ApiKey::LeaveGroup, 0, 5),
    advertised(ApiKey::OffsetCommit, 2, 9),
    advertised(ApiKey::OffsetFetch, 1, 9),
    advertised(ApiKey::ListGroups, 0, 5),
    advertised(ApiKey::DescribeGroups, 0, 6),
    advertised(ApiKey::OffsetForLeaderEpoch, 2, 4),
    advertised(ApiKey::AddPartitionsToTxn, 0, 3),
    advertised(ApiKey::AddOffsetsToTxn, 0, 3),
    advertised(ApiKey::EndTxn, 0, 3),
    advertised(ApiKey::TxnOffsetCommit, 0, 3),
    advertised(ApiKey::DescribeProducers, 0, 0),
    advertised(ApiKey::DescribeTransactions, 0, 0),
    advertised(ApiKey::ListTransactions, 0, 1),
    advertised(ApiKey::DeleteGroups, 0, 2),
    advertised(ApiKey::OffsetDelete, 0, 0),
    advertised(ApiKey::DescribeLogDirs, 1, 4),
    advertised(ApiKey::DeleteRecords, 0, 2),
    advertised(ApiKey::CreatePartitions, 0, 3),
    advertised(ApiKey::AlterConfigs, 0, 2),
    advertised(ApiKey::IncrementalAlterConfigs, 0, 1),
    // v2 adds fenced brokers, which only KRaft's broker registrations have.
    advertised(ApiKey::DescribeCluster, 0, 1),
];

/// Kafka's UNSUPPORTED_VERSION error code.
pub(crate) const UNSUPPORTED_VERSION: i16 = 35;

/// The advertised range of `api_key`, or `None` when the node does not serve that API.
pub(crate) fn advertised_range(api_key: ApiKey) -> Option<(i16, i16)> {
    ADVERTISED_APIS
        .iter()
        .find(|api| api.api_key == api_key)
        .map(|api| (api.version_min, api.version_max))
}

/// The ApiVersions answer for `version` (0..=4). Optional tagged fields (supported and
/// finalized features, the ZooKeeper migration flag) stay at their defaults, which the crate
/// omits from the wire: librdkafka 2.0.2 fails on default-valued tagged fields.
pub(crate) fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.error_code = error_code;
    response.throttle_time_ms = 0;
    response.api_keys = ADVERTISED_APIS
        .iter()
        .map(|api| {
            let mut entry = ApiVersion::default();
            entry.api_key = api.api_key as i16;
            entry.min_version = api.version_min;
            entry.max_version = api.version_max;
            entry
        })
        .collect();
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Message, VersionRange};

    fn is_advertised(api_key: ApiKey, version: i16) -> bool {
        advertised_range(api_key).is_some_and(|(min, max)| (min..=max).contains(&version))
    }

    /// The decodable request range and the encodable response range of each API.
    fn crate_ranges(api_key: ApiKey) -> (VersionRange, VersionRange) {
        match api_key {
            ApiKey::Produce => (ProduceRequest::VERSIONS, ProduceResponse::VERSIONS),
            ApiKey::Fetch => (FetchRequest::VERSIONS, FetchResponse::VERSIONS),
            ApiKey::ListOffsets => (ListOffsetsRequest::VERSIONS, ListOffsetsResponse::VERSIONS),
            ApiKey::Metadata => (MetadataRequest::VERSIONS, MetadataResponse::VERSIONS),
            ApiKey::ApiVersions => (ApiVersionsRequest::VERSIONS, ApiVersionsResponse::VERSIONS),
            ApiKey::CreateTopics => (
                CreateTopicsRequest::VERSIONS,
                CreateTopicsResponse::VERSIONS,
            ),
            ApiKey::DeleteTopics => (
                DeleteTopicsRequest::VERSIONS,
                DeleteTopicsResponse::VERSIONS,
            ),
            ApiKey::InitProducerId => (
                InitProducerIdRequest::VERSIONS,
                InitProducerIdResponse::VERSIONS,
            ),
            ApiKey::DescribeConfigs => (
                DescribeConfigsRequest::VERSIONS,
                DescribeConfigsResponse::VERSIONS,
            ),
            ApiKey::FindCoordinator => (
                FindCoordinatorRequest::VERSIONS,
                FindCoordinatorResponse::VERSIONS,
            ),
            ApiKey::JoinGroup => (JoinGroupRequest::VERSIONS, JoinGroupResponse::VERSIONS),
            ApiKey::SyncGroup => (SyncGroupRequest::VERSIONS, SyncGroupResponse::VERSIONS),
            ApiKey::Heartbeat => (HeartbeatRequest::VERSIONS, HeartbeatResponse::VERSIONS),
            ApiKey::LeaveGroup => (LeaveGroupRequest::VERSIONS, LeaveGroupResponse::VERSIONS),
            ApiKey::OffsetCommit => (
                OffsetCommitRequest::VERSIONS,
                OffsetCommitResponse::VERSIONS,
            ),
            ApiKey::OffsetFetch => (OffsetFetchRequest::VERSIONS, OffsetFetchResponse::VERSIONS),
            ApiKey::ListGroups => (ListGroupsRequest::VERSIONS, ListGroupsResponse::VERSIONS),
            ApiKey::OffsetForLeaderEpoch => (
                OffsetForLeaderEpochRequest::VERSIONS,
                OffsetForLeaderEpochResponse::VERSIONS,
            ),
            ApiKey::DescribeGroups => (
                DescribeGroupsRequest::VERSIONS,
                DescribeGroupsResponse::VERSIONS,
            ),
            ApiKey::AddPartitionsToTxn => (
                AddPartitionsToTxnRequest::VERSIONS,
                AddPartitionsToTxnResponse::VERSIONS,
            ),
            ApiKey::AddOffsetsToTxn => (
                AddOffsetsToTxnRequest::VERSIONS,
                AddOffsetsToTxnResponse::VERSIONS,
            ),
            ApiKey::EndTxn => (EndTxnRequest::VERSIONS, EndTxnResponse::VERSIONS),
            ApiKey::TxnOffsetCommit => (
                TxnOffsetCommitRequest::VERSIONS,
                TxnOffsetCommitResponse::VERSIONS,
            ),
            ApiKey::DescribeProducers => (
                DescribeProducersRequest::VERSIONS,
                DescribeProducersResponse::VERSIONS,
            ),
            ApiKey::DescribeTransactions => (
                DescribeTransactionsRequest::VERSIONS,
                DescribeTransactionsResponse::VERSIONS,
            ),
            ApiKey::ListTransactions => (
                ListTransactionsRequest::VERSIONS,
                ListTransactionsResponse::VERSIONS,
            ),
            ApiKey::DeleteGroups => (
                DeleteGroupsRequest::VERSIONS,
                DeleteGroupsResponse::VERSIONS,
            ),
            ApiKey::OffsetDelete => (
                OffsetDeleteRequest::VERSIONS,
                OffsetDeleteResponse::VERSIONS,
            ),
            ApiKey::DeleteRecords => (
                DeleteRecordsRequest::VERSIONS,
                DeleteRecordsResponse::VERSIONS,
            ),
            ApiKey::DescribeLogDirs => (
                DescribeLogDirsRequest::VERSIONS,
                DescribeLogDirsResponse::VERSIONS,
            ),
            ApiKey::CreatePartitions => (
                CreatePartitionsRequest::VERSIONS,
                CreatePartitionsResponse::VERSIONS,
            ),
            ApiKey::AlterConfigs => (
                AlterConfigsRequest::VERSIONS,
                AlterConfigsResponse::VERSIONS,
            ),
            ApiKey::IncrementalAlterConfigs => (
                IncrementalAlterConfigsRequest::VERSIONS,
                IncrementalAlterConfigsResponse::VERSIONS,
            ),
            ApiKey::DescribeCluster => (
                DescribeClusterRequest::VERSIONS,
                DescribeClusterResponse::VERSIONS,
            ),
            other => panic!("{other:?} is advertised but has no crate range in this test"),
        }
    }

    #[test]
    fn advertised_versions_never_exceed_what_the_crate_decodes_and_encodes() {
        for api in ADVERTISED_APIS {
            let (request, response) = crate_ranges(api.api_key);
            let valid = api.api_key.valid_versions();
            assert!(api.version_min <= api.version_max, "{api:?}");
            for range in [request, response, valid] {
                assert!(
                    range.min <= api.version_min && api.version_max <= range.max,
                    "{api:?} exceeds the crate's {range}"
                );
            }
        }
    }

    #[test]
    fn each_api_is_advertised_once() {
        for (index, api) in ADVERTISED_APIS.iter().enumerate() {
            assert!(
                ADVERTISED_APIS[index + 1..]
                    .iter()
                    .all(|other| other.api_key != api.api_key),
                "{api:?} twice"
            );
        }
    }

    #[test]
    fn no_version_of_transactions_v2_or_of_the_broker_to_broker_forms_is_advertised() {
        // Beyond these, clients switch to the epoch bump per transaction (KIP-890 part 2)
        // or expect TRANSACTION_ABORTABLE; AddPartitionsToTxn v4+ is brokers' verification.
        for (api_key, version_max) in [
            (ApiKey::Produce, 10),
            (ApiKey::InitProducerId, 4),
            (ApiKey::AddPartitionsToTxn, 3),
            (ApiKey::AddOffsetsToTxn, 3),
            (ApiKey::EndTxn, 3),
            (ApiKey::TxnOffsetCommit, 3),
        ] {
            let (_, max) = advertised_range(api_key).expect("advertised");
            assert!(max <= version_max, "{api_key:?} up to v{max}");
        }
        assert_eq!(advertised_range(ApiKey::WriteTxnMarkers), None);
        let response = api_versions_response(0);
        assert!(response.finalized_features.is_empty());
        assert!(response.supported_features.is_empty());
    }

    #[test]
    fn the_versions_every_tested_client_sends_are_advertised() {
        // From KAFKA-WIRE.md: what kcat, confluent-kafka, kafka-python and kafkajs sent.
        let sent: [(ApiKey, &[i16]); 22] = [
            (ApiKey::ApiVersions, &[2, 3, 4]),
            (ApiKey::Metadata, &[4, 6, 13]),
            (ApiKey::Produce, &[7, 9, 10]),
            (ApiKey::Fetch, &[11, 12, 16]),
            (ApiKey::ListOffsets, &[2, 3, 7, 10]),
            (ApiKey::InitProducerId, &[0, 1, 3, 4]),
            (ApiKey::CreateTopics, &[3, 4, 7]),
            (ApiKey::DeleteTopics, &[1, 4, 6]),
            (ApiKey::DescribeConfigs, &[1, 2, 4]),
            (ApiKey::FindCoordinator, &[2, 6]),
            (ApiKey::JoinGroup, &[5, 7]),
            (ApiKey::SyncGroup, &[3, 5]),
            (ApiKey::Heartbeat, &[3, 4]),
            (ApiKey::LeaveGroup, &[1, 3, 5]),
            (ApiKey::OffsetCommit, &[5, 7, 8, 9]),
            (ApiKey::OffsetFetch, &[4, 7, 8, 9]),
            (ApiKey::ListGroups, &[2, 5]),
            (ApiKey::DescribeGroups, &[2, 5, 6]),
            // From TRANSACTIONS.md: librdkafka 0 (and 0-3 for TxnOffsetCommit, 0-1 for
            // EndTxn), kafkajs 0-1, kafka-python up to 3.
            (ApiKey::AddPartitionsToTxn, &[0, 1, 3]),
            (ApiKey::AddOffsetsToTxn, &[0, 1, 3]),
            (ApiKey::TxnOffsetCommit, &[0, 1, 2, 3]),
            (ApiKey::EndTxn, &[0, 1, 3]),
        ];
        for (api_key, versions) in sent {
            for &version in versions {
                assert!(is_advertised(api_key, version), "{api_key:?} v{version}");
            }
        }
    }

    #[test]
    fn api_versions_v3_reply_carries_no_tagged_fields() {
        use bytes::BytesMut;
        use kafka_protocol::protocol::Encodable;
        let response = api_versions_response(0);
        let mut encoded = BytesMut::new();
        response.encode(&mut encoded, 3).unwrap();
        // error (2) + compact array length (1) + an entry per API of (2+2+2+1 tag byte) +
        // throttle (4) + an empty tagged-field section (1).
        assert_eq!(encoded.len(), 2 + 1 + ADVERTISED_APIS.len() * 7 + 4 + 1);
        assert_eq!(encoded[encoded.len() - 1], 0, "no tagged fields");
    }
}
