//! myelin-core: placeholder doc, rewritten below once the broker lands.
pub mod api;
pub mod batch;
pub mod broker;
pub mod metadata;
