//! The operator's subcommands of the `myelin` binary: `topics`, `groups`, `produce`,
//! `consume` and `cluster status`, built on `myelin-client`.
//!
//! Every subcommand takes `-b/--bootstrap` (a comma-separated `host:port` list, tried in
//! turn until one answers) and `--json` (one JSON document on stdout instead of aligned
//! tables), exits non-zero on failure and says in its error what to do next. Requests go
//! to the broker that serves them: partition leaders for Produce, Fetch and ListOffsets,
//! the group's coordinator for the group APIs; a stale leader or coordinator
//! (NOT_LEADER_OR_FOLLOWER, NOT_COORDINATOR, a lost connection, ...) makes the client look
//! the cluster up again and retry, until [`client::RETRY_FOR`] has passed. Every wait has a
//! timeout.

pub mod client;
pub mod consume;
pub mod groups;
pub mod output;
pub mod produce;
pub mod status;
pub mod topics;

use clap::Args;

/// The broker to ask first.
pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// Options every client subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Brokers to ask first, comma-separated host:port; each is tried until one answers.
    #[arg(short = 'b', long, global = true, default_value = DEFAULT_BOOTSTRAP)]
    pub bootstrap: String,
    /// Print one JSON document (for scripts) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}
