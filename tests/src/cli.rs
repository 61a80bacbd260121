//! Running the `myelin` command-line tool (`topics`, `groups`, `produce`, `consume`,
//! `cluster status`) the way a person or a script does: the built binary, arguments,
//! optional stdin, a timeout, and its exit status, stdout and stderr.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::clients::{self, Finished, StreamingClient};
use crate::node::myelin_binary;

/// Upper bound for one CLI run (a group consumer's first join alone may wait 3 s).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(90);

/// `myelin <args>` as a command, for [`StreamingClient`] and custom runs.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(myelin_binary());
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "0");
    command
}

/// Runs `myelin <args>` with `stdin`, to completion (panics after [`CLI_TIMEOUT`]).
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Finished {
    clients::run(command(args), stdin, CLI_TIMEOUT)
}

/// Runs `myelin <args>` and panics unless it exits 0.
pub fn ok(args: &[&str], stdin: Option<&[u8]>) -> Finished {
    let finished = run(args, stdin);
    assert!(
        finished.status.success(),
        "myelin {} failed\n{}",
        args.join(" "),
        finished.describe()
    );
    finished
}

/// Runs `myelin <args> --json` and parses its stdout as one JSON document.
pub fn json(args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let finished = ok(&with_json, None);
    serde_json::from_str(&finished.stdout).unwrap_or_else(|e| {
        panic!(
            "myelin {} printed no JSON document: {e}\n{}",
            with_json.join(" "),
            finished.describe()
        )
    })
}

/// `myelin topics create NAME --partitions N` against `bootstrap`, which must succeed.
pub fn create_topic(bootstrap: &str, name: &str, partitions: u32) {
    let partitions = partitions.to_string();
    ok(
        &[
            "topics",
            "create",
            name,
            "--partitions",
            &partitions,
            "-b",
            bootstrap,
        ],
        None,
    );
}

/// `myelin produce TOPIC -K :` of `lines` against `bootstrap`, which must succeed.
pub fn produce_keyed(bootstrap: &str, topic: &str, lines: &str) {
    ok(
        &["produce", topic, "-K", ":", "-b", bootstrap],
        Some(lines.as_bytes()),
    );
}

/// Runs `myelin <args> --json`: its JSON document, or why there is none (for polling).
pub fn try_json(args: &[&str]) -> Result<Value, String> {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let finished = run(&with_json, None);
    if !finished.status.success() {
        return Err(finished.describe());
    }
    serde_json::from_str(&finished.stdout).map_err(|e| format!("{e}: {}", finished.describe()))
}

/// Runs `myelin <args>` and panics unless it fails (non-zero exit); returns its output.
pub fn fails(args: &[&str]) -> Finished {
    let finished = run(args, None);
    assert!(
        !finished.status.success(),
        "myelin {} should have failed\n{}",
        args.join(" "),
        finished.describe()
    );
    finished
}

/// Starts a long-running `myelin <args>` (e.g. a group consumer) with stdout collected.
pub fn spawn(args: &[&str]) -> StreamingClient {
    StreamingClient::spawn(command(args))
}

/// Polls `check` every 200 ms until it returns `Some`, panicking with `what` and the last
/// value seen after `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}
