//! The group coordinator (in progress, #5): answers the group APIs. Until the offsets log
//! is wired in, every group request is answered COORDINATOR_NOT_AVAILABLE.

use super::Broker;
use crate::api::{
    CoordinatorResult, ErrorCode, JoinResponse, Output, Request, RequestId, Response, SyncResponse,
};
use bytes::Bytes;

impl Broker {
    pub(super) fn group_request(
        &mut self,
        _now_ms: i64,
        id: RequestId,
        request: Request,
        outputs: &mut Vec<Output>,
    ) {
        let error = ErrorCode::CoordinatorNotAvailable;
        let response = match request {
            Request::FindCoordinator { groups } => Response::FindCoordinator(
                groups
                    .into_iter()
                    .map(|group_id| CoordinatorResult {
                        group_id,
                        error,
                        node: None,
                    })
                    .collect(),
            ),
            Request::JoinGroup { join, .. } => Response::JoinGroup(JoinResponse {
                error,
                generation: -1,
                protocol_name: None,
                leader: String::new(),
                member_id: join.member_id,
                members: Vec::new(),
            }),
            Request::SyncGroup { .. } => Response::SyncGroup(SyncResponse {
                error,
                assignment: Bytes::new(),
            }),
            Request::Heartbeat { .. } => Response::Heartbeat { error },
            Request::LeaveGroup { .. } => Response::LeaveGroup {
                error,
                members: Vec::new(),
            },
            Request::OffsetCommit { commits, .. } => Response::OffsetCommit(
                commits
                    .into_iter()
                    .map(|commit| (commit.partition, error))
                    .collect(),
            ),
            Request::OffsetFetch { .. } => Response::OffsetFetch {
                error,
                partitions: Vec::new(),
            },
            Request::ListGroups => Response::ListGroups {
                error,
                groups: Vec::new(),
            },
            Request::DescribeGroups { groups } => Response::DescribeGroups(
                groups
                    .into_iter()
                    .map(|group_id| crate::api::DescribedGroup {
                        group_id,
                        error,
                        description: None,
                    })
                    .collect(),
            ),
            _ => unreachable!("only group requests are routed here"),
        };
        outputs.push(Output::Respond { id, response });
    }
}
