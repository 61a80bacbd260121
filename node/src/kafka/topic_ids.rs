//! Topic UUID to name mapping for the APIs that address topics by id (Fetch v13+, Metadata
//! and DeleteTopics by id).
//!
//! The core speaks topic names. Each connection keeps a small map filled from the core's
//! metadata (every Metadata response seen on the connection feeds it too) and refreshes it
//! in full when an id is missing or an entry is older than `TOPIC_ID_CACHE_TTL_MS`, so a
//! deleted topic's id stops resolving soon after the deletion.

use crate::kafka::dispatch::{call, ConnectionContext, HandlerError};
use myelin_core::api::{Request, Response, TopicInfo};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How long a learned id stays trusted without asking the core again.
const TOPIC_ID_CACHE_TTL_MS: u64 = 1000;
/// Entries kept at most; a refresh replaces the whole map anyway.
const TOPIC_ID_CACHE_ENTRIES_MAX: usize = 100_000;

#[derive(Default)]
pub(crate) struct TopicIdCache {
    /// topic id -> (name, when learned). Never held across an await.
    names_by_id: Mutex<HashMap<u128, (String, Instant)>>,
}

impl TopicIdCache {
    /// Records what a Metadata answer said about topic ids.
    pub fn learn(&self, topics: &[TopicInfo]) {
        let now = Instant::now();
        let Ok(mut names_by_id) = self.names_by_id.lock() else {
            return;
        };
        for topic in topics.iter().filter(|topic| topic.topic_id != 0) {
            if names_by_id.len() >= TOPIC_ID_CACHE_ENTRIES_MAX {
                break;
            }
            names_by_id.insert(topic.topic_id, (topic.name.clone(), now));
        }
    }

    /// The names of `ids` that exist; unknown ids are absent from the answer.
    pub async fn resolve(
        &self,
        context: &ConnectionContext,
        ids: &[u128],
    ) -> Result<HashMap<u128, String>, HandlerError> {
        if let Some(known) = self.lookup_fresh(ids) {
            return Ok(known);
        }
        let response = call(
            context,
            Request::Metadata {
                topics: None,
                allow_auto_create: false,
            },
        )
        .await?;
        let Response::Metadata { topics, .. } = response else {
            return Err(HandlerError::UnexpectedResponse {
                request: "Metadata",
            });
        };
        let now = Instant::now();
        let refreshed: HashMap<u128, (String, Instant)> = topics
            .into_iter()
            .filter(|topic| topic.topic_id != 0)
            .take(TOPIC_ID_CACHE_ENTRIES_MAX)
            .map(|topic| (topic.topic_id, (topic.name, now)))
            .collect();
        let known = ids
            .iter()
            .filter_map(|id| refreshed.get(id).map(|(name, _)| (*id, name.clone())))
            .collect();
        if let Ok(mut names_by_id) = self.names_by_id.lock() {
            *names_by_id = refreshed;
        }
        Ok(known)
    }

    /// Every id's name if all are cached and fresh; `None` sends the caller to the core.
    fn lookup_fresh(&self, ids: &[u128]) -> Option<HashMap<u128, String>> {
        let names_by_id = self.names_by_id.lock().ok()?;
        let ttl = Duration::from_millis(TOPIC_ID_CACHE_TTL_MS);
        ids.iter()
            .map(|id| {
                let (name, learned_at) = names_by_id.get(id)?;
                (learned_at.elapsed() < ttl).then(|| (*id, name.clone()))
            })
            .collect()
    }
}
