//! Locating and running the third-party Kafka clients.
//!
//! Python scripts run with `<workspace>/.venv/bin/python`, JavaScript ones with `node`
//! from PATH and kafkajs from `tests/js/node_modules`, and kcat from PATH. `tests/run`
//! installs all of them. A missing tool is a test failure whose message says so; the
//! tests never skip.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::node::Node;
use crate::workspace_root;

/// Upper bound for one client run (each one handles a few hundred messages).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

const SETUP_HINT: &str = "run `tests/run`, which installs kcat, the Python virtualenv \
(.venv, from tests/requirements.txt) and kafkajs (tests/js), then runs every test";

/// `<workspace>/.venv/bin/python`, with confluent-kafka and kafka-python installed.
pub fn python() -> PathBuf {
    let python = workspace_root().join(".venv").join("bin").join("python");
    assert!(
        python.is_file(),
        "{} is missing: {SETUP_HINT}",
        python.display()
    );
    python
}

/// The kcat executable.
pub fn kcat() -> PathBuf {
    find_in_path("kcat").unwrap_or_else(|| panic!("kcat is not on PATH: {SETUP_HINT}"))
}

/// The Node.js executable, after checking that kafkajs is installed in `tests/js`.
pub fn node_js() -> PathBuf {
    let node = find_in_path("node").unwrap_or_else(|| panic!("node is not on PATH: {SETUP_HINT}"));
    let kafkajs = workspace_root().join("tests/js/node_modules/kafkajs/package.json");
    assert!(
        kafkajs.is_file(),
        "kafkajs is not installed ({} is missing): {SETUP_HINT}",
        kafkajs.display()
    );
    node
}

/// The first executable called `name` on PATH.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A command that runs `tests/clients/<script>` with `--bootstrap` pointing at `node`.
pub fn python_script(node: &Node, script: &str) -> Command {
    let mut command = Command::new(python());
    command
        .arg(workspace_root().join("tests/clients").join(script))
        .arg("--bootstrap")
        .arg(node.bootstrap());
    command
}

/// A command that runs `tests/js/<script>` with `--bootstrap` pointing at `node`.
pub fn js_script(node: &Node, script: &str) -> Command {
    let mut command = Command::new(node_js());
    command
        .arg(workspace_root().join("tests/js").join(script))
        .arg("--bootstrap")
        .arg(node.bootstrap());
    command
}

/// The outcome of a finished client process.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Both output streams, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            truncate(&self.stdout, 4000),
            truncate(&self.stderr, 4000)
        )
    }
}

/// Runs `command` to completion, feeding it `stdin`, and kills it after `timeout`.
/// Panics (with its output so far) on timeout.
pub fn run(mut command: Command, stdin: Option<&[u8]>, timeout: Duration) -> Finished {
    let shown = format!("{command:?}");
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        // Written from a thread so a client that stops reading cannot block the timeout.
        // A client that exits early closes the pipe; its exit status tells the story.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("query client process") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    match status {
        Some(status) => Finished {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{shown} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            truncate(&stdout, 4000),
            truncate(&stderr, 4000)
        ),
    }
}

/// Runs a client script that prints one JSON summary; panics unless it exits 0 with
/// valid JSON. Failure messages include the node's log tail.
pub fn run_json(node: &Node, command: Command) -> Value {
    let shown = format!("{command:?}");
    let finished = run(command, None, CLIENT_TIMEOUT);
    if !finished.status.success() {
        panic!(
            "client failed: {shown}\n{}\n{}",
            finished.describe(),
            node.diagnostics()
        );
    }
    parse_summary(&finished.stdout).unwrap_or_else(|| {
        panic!(
            "client printed no JSON summary: {shown}\n{}",
            finished.describe()
        )
    })
}

/// The JSON document on stdout (the whole output, or else its last non-empty line).
pub fn parse_summary(stdout: &str) -> Option<Value> {
    serde_json::from_str(stdout.trim()).ok().or_else(|| {
        stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| serde_json::from_str(l).ok())
    })
}

/// Runs `tests/clients/<script> --bootstrap .. <args>` and returns its JSON summary.
pub fn python_json(node: &Node, script: &str, args: &[&str]) -> Value {
    let mut command = python_script(node, script);
    command.args(args);
    run_json(node, command)
}

/// Creates `topic` with `partitions` partitions through confluent-kafka's admin API.
pub fn create_topic(node: &Node, topic: &str, partitions: u32) {
    let partitions = partitions.to_string();
    python_json(
        node,
        "ck_create_topic.py",
        &["--topic", topic, "--partitions", &partitions],
    );
}

/// Reads the whole topic with confluent-kafka (assign from the beginning, no group).
pub fn ck_consume(node: &Node, topic: &str) -> Value {
    python_json(node, "ck_consume.py", &["--topic", topic])
}

/// A client process whose stdout lines are collected while it runs.
pub struct StreamingClient {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

impl StreamingClient {
    /// Starts `command` with stdout collected line by line.
    pub fn spawn(mut command: Command) -> StreamingClient {
        let shown = format!("{command:?}");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => sink.lock().expect("lines lock").push(line),
                    Err(_) => break,
                }
            }
        });
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        StreamingClient {
            child,
            lines,
            reader: Some(reader),
            stderr: Some(stderr),
        }
    }

    /// The stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// The stdout lines so far from the `start`th on (none if there are not that many), for
    /// callers that follow a long output without copying it all each time.
    pub fn lines_from(&self, start: usize) -> Vec<String> {
        let lines = self.lines.lock().expect("lines lock");
        lines
            .get(start..)
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks the process to stop (SIGTERM).
    pub fn terminate(&self) {
        crate::node::signal(&self.child, libc::SIGTERM);
    }

    /// Interrupts the process as Ctrl-C does (SIGINT).
    pub fn interrupt(&self) {
        crate::node::signal(&self.child, libc::SIGINT);
    }

    /// Waits up to `timeout` for the process to exit; returns whether it did.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> bool {
        crate::node::wait_with_deadline(&mut self.child, timeout).is_some()
    }

    /// Kills the process (SIGKILL; nothing happens to one that has exited) and returns all
    /// its stdout lines and its stderr.
    pub fn kill(mut self) -> (Vec<String>, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stdout reader");
        }
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().expect("stderr reader"))
            .unwrap_or_default();
        (self.lines(), stderr)
    }
}

impl Drop for StreamingClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain<R: Read + Send + 'static>(mut pipe: R) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[... {start} bytes cut ...]{}", &text[start..])
}
