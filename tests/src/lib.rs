//! Harness for the end-to-end tests: runs the real `myelin` binary and drives it with
//! real third-party Kafka clients (kcat, confluent-kafka, kafka-python, kafkajs) and
//! with raw bytes on a TCP socket.
//!
//! - [`node`]: build the binary (once per test process), start it on a free port with a
//!   temporary data dir, wait until it accepts connections, stop it with SIGTERM/SIGINT
//!   or crash it with SIGKILL, restart it on the same data dir.
//! - [`clients`]: locate the client tools and run the scripts in `tests/clients` and
//!   `tests/js`, which print one JSON summary each. A missing tool fails the test with a
//!   hint to run `tests/run`, which installs everything.
//! - [`cli`]: run the `myelin` command-line tool with arguments, stdin and a timeout.
//! - [`records`]: the message scheme shared with the scripts and the checks on what was
//!   produced and consumed.
//! - [`wire`]: hand-built Kafka frames for the malformed-input tests.
//!
//! The binary is built with `cargo build -p myelin-node --bin myelin` by the harness itself,
//! so a plain `cargo test -p myelin-tests` tests the current sources. Set `MYELIN_BIN` to a
//! binary path to skip the build and test that binary instead.

pub mod cli;
pub mod clients;
pub mod node;
pub mod records;
pub mod wire;

pub use node::{Node, NodeConfig};

use std::path::PathBuf;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("tests crate lives inside the workspace")
        .to_path_buf()
}

/// Runs `future` to its end on a runtime of its own (for tests that drive `myelin-client`
/// from synchronous test functions).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}
