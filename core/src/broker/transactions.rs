//! The transaction coordinator's place in the broker (work in progress: every transactional
//! request is refused until the coordinator lands).

use super::Broker;
use crate::api::{ErrorCode, Output, PeerMessage, Request, RequestId, Response};
use crate::replication::NodeId;

impl Broker {
    /// Every transaction API except TxnOffsetCommit (a group API).
    pub(super) fn transaction_request(
        &mut self,
        _now_ms: i64,
        id: RequestId,
        request: Request,
        outputs: &mut Vec<Output>,
    ) {
        let error = ErrorCode::CoordinatorNotAvailable;
        let response = match request {
            Request::FindTransactionCoordinator { transactional_ids } => Response::FindCoordinator(
                transactional_ids
                    .into_iter()
                    .map(|group_id| crate::api::CoordinatorResult {
                        group_id,
                        error,
                        node: None,
                    })
                    .collect(),
            ),
            Request::AddPartitionsToTxn { partitions, .. } => {
                Response::AddPartitionsToTxn(partitions.into_iter().map(|p| (p, error)).collect())
            }
            Request::AddOffsetsToTxn { .. } => Response::AddOffsetsToTxn { error },
            Request::EndTxn { .. } => Response::EndTxn { error },
            Request::DescribeTransactions { transactional_ids } => Response::DescribeTransactions(
                transactional_ids
                    .into_iter()
                    .map(|transactional_id| crate::api::TransactionDescription {
                        transactional_id,
                        error,
                        state: crate::api::TxnState::Empty,
                        producer_id: -1,
                        producer_epoch: -1,
                        timeout_ms: -1,
                        start_ms: -1,
                        partitions: Vec::new(),
                    })
                    .collect(),
            ),
            Request::ListTransactions { .. } => Response::ListTransactions {
                error: ErrorCode::None,
                transactions: Vec::new(),
                unknown_state_filters: Vec::new(),
            },
            Request::DescribeProducers { partitions } => Response::DescribeProducers(
                partitions
                    .into_iter()
                    .map(|partition| crate::api::DescribedProducers {
                        partition,
                        error,
                        producers: Vec::new(),
                    })
                    .collect(),
            ),
            other => unreachable!("not a transaction request: {other:?}"),
        };
        outputs.push(Output::Respond { id, response });
    }

    pub(super) fn on_transaction_peer(
        &mut self,
        _now_ms: i64,
        _from: NodeId,
        _message: PeerMessage,
        _outputs: &mut Vec<Output>,
    ) {
    }
}
