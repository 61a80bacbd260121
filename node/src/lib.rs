//! myelin-node: the async shell around myelin-core (placeholder doc).
pub mod kafka;
pub mod runtime;
pub mod storage;
