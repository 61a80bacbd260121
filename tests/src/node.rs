//! One real `myelin` node process: build, start, wait until ready, stop, crash, restart.
//!
//! The node runs as `myelin node --listen 127.0.0.1:PORT --data-dir DIR [flags]` with a
//! temporary data dir that survives restarts of the same [`Node`]. Its stdout and stderr
//! go to `target/e2e-logs/<name>.run<N>.log` (one file per process start), and every
//! failure message of the harness points at that file and quotes its tail. Unless its
//! flags name `--metrics-listen`, a node serves metrics on an ephemeral port, which
//! [`Node::metrics_addr`] reads from its log. Unless they name
//! `--group-initial-rebalance-delay-ms`, nodes start groups without that delay.

use std::fs::{self, File};
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::workspace_root;

/// How long a starting node may take to accept TCP connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a node may take to exit after SIGTERM or SIGINT.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Command-line options of a node beyond `--listen` and `--data-dir`.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// `--auto-create-topics true|false`; `None` keeps the node's default (on).
    pub auto_create_topics: Option<bool>,
    /// `--default-partitions N`; `None` keeps the node's default.
    pub default_partitions: Option<u32>,
    /// Any further arguments, appended as given.
    pub extra_args: Vec<String>,
}

impl NodeConfig {
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(on) = self.auto_create_topics {
            args.push("--auto-create-topics".to_string());
            args.push(on.to_string());
        }
        if let Some(n) = self.default_partitions {
            args.push("--default-partitions".to_string());
            args.push(n.to_string());
        }
        args.extend(self.extra_args.iter().cloned());
        // An ephemeral metrics port (the node logs it; see `Node::metrics_addr`): the
        // default, the Kafka port + 2, may be another test's.
        if !self.extra_args.iter().any(|arg| arg == "--metrics-listen") {
            args.extend(["--metrics-listen".to_string(), "127.0.0.1:0".to_string()]);
        }
        // As Kafka's own integration tests do: a group's first generation starts at once
        // (the node's default waits 3 s for more members); tests of the delay name it.
        if !self
            .extra_args
            .iter()
            .any(|arg| arg == "--group-initial-rebalance-delay-ms")
        {
            args.extend([
                "--group-initial-rebalance-delay-ms".to_string(),
                "0".to_string(),
            ]);
        }
        args
    }
}

/// Starts `size` nodes of one cluster (node ids 1..=size, each with its own Kafka port,
/// peer port and data dir) and waits until each accepts connections. `name` names the log
/// files (`<name>.node<id>.run<N>.log`).
pub fn start_cluster(name: &str, size: i32) -> Vec<Node> {
    let mut peer_ports: Vec<u16> = Vec::new();
    while peer_ports.len() < size as usize {
        let port = free_port();
        if !peer_ports.contains(&port) {
            peer_ports.push(port);
        }
    }
    let peers = peer_ports
        .iter()
        .zip(1..)
        .map(|(port, id)| format!("{id}=127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    (1..=size)
        .map(|id| {
            let config = NodeConfig {
                extra_args: vec![
                    "--node-id".into(),
                    id.to_string(),
                    "--peers".into(),
                    peers.clone(),
                ],
                ..NodeConfig::default()
            };
            Node::start_with(&format!("{name}.node{id}"), config)
        })
        .collect()
}

/// Every node's diagnostics (status and log tail), for a failing cluster test's message.
pub fn cluster_diagnostics(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(Node::diagnostics)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The bootstrap list of every running node of a cluster.
pub fn cluster_bootstrap(nodes: &mut [Node]) -> String {
    nodes
        .iter_mut()
        .filter_map(|node| node.is_running().then(|| node.bootstrap()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A running (or stopped) node with its own data dir. Dropping it kills the process.
pub struct Node {
    name: String,
    config: NodeConfig,
    data_dir: TempDir,
    port: u16,
    child: Option<Child>,
    runs: u32,
    log_path: PathBuf,
}

impl Node {
    /// Starts a node with default options. `name` names its log files; use the test name.
    pub fn start(name: &str) -> Node {
        Node::start_with(name, NodeConfig::default())
    }

    /// Starts a node with the given options and waits until it accepts connections.
    pub fn start_with(name: &str, config: NodeConfig) -> Node {
        let data_dir = tempfile::Builder::new()
            .prefix("myelin-e2e-")
            .tempdir()
            .expect("create a temporary data dir");
        let mut node = Node {
            name: name.to_string(),
            config,
            data_dir,
            port: free_port(),
            child: None,
            runs: 0,
            log_path: PathBuf::new(),
        };
        node.spawn();
        node
    }

    /// Where the current run serves `/metrics`, as its log says (`None` if it says not).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        let log = read_lossy(&self.log_path);
        let (_, rest) = log.rsplit_once("metrics on http://")?;
        rest.split_once("/metrics")?.0.parse().ok()
    }

    /// `127.0.0.1:PORT`, for `--bootstrap` / `-b`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The address the node listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The node's data dir (kept across restarts).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The log file of the current (or last) process.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// Panics (quoting the log) unless the process is still running.
    pub fn assert_running(&mut self, context: &str) {
        let status = match self.child.as_mut() {
            None => panic!("{context}: the node was not started"),
            Some(child) => child.try_wait().expect("query node process"),
        };
        if let Some(status) = status {
            self.child = None;
            panic!(
                "{context}: the node process exited ({status})\n{}",
                self.diagnostics()
            );
        }
    }

    /// Graceful stop with SIGTERM; panics unless the process exits with status 0 in time.
    pub fn stop(&mut self) {
        self.stop_with_signal(libc::SIGTERM, "SIGTERM");
    }

    /// Graceful stop with SIGINT (Ctrl-C); panics unless the process exits with status 0.
    pub fn interrupt(&mut self) {
        self.stop_with_signal(libc::SIGINT, "SIGINT");
    }

    /// Crash: SIGKILL, no chance to flush or clean up.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("kill: the node is not running");
        signal(&child, libc::SIGKILL);
        child.wait().expect("wait for the killed node");
    }

    /// Starts the node again on the same data dir (after [`stop`](Self::stop) or
    /// [`kill`](Self::kill)). Keeps the port when it is free, else picks a new one.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart: stop or kill the node before restarting it"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !port_is_free(self.port) {
            if Instant::now() > deadline {
                self.port = free_port();
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        self.spawn();
    }

    /// Starts the node again on the same data dir and expects it to refuse to start: waits
    /// for the process to exit and returns its status and its whole log. Panics if it
    /// still runs after `timeout`.
    pub fn restart_expecting_exit(&mut self, timeout: Duration) -> (ExitStatus, String) {
        assert!(
            self.child.is_none(),
            "restart: stop or kill the node before restarting it"
        );
        let mut child = self.next_run();
        match wait_with_deadline(&mut child, timeout) {
            Some(status) => (status, read_lossy(&self.log_path)),
            None => {
                kill_and_reap(&mut child);
                panic!(
                    "the node still runs {timeout:?} after its start\n{}",
                    self.diagnostics()
                );
            }
        }
    }

    /// The last lines of the current log file.
    pub fn log_tail(&self) -> String {
        tail(&self.log_path, 60)
    }

    /// A block for failure messages: where the log is and how it ends.
    pub fn diagnostics(&self) -> String {
        format!(
            "node log {} (last lines):\n{}",
            self.log_path.display(),
            self.log_tail()
        )
    }

    fn stop_with_signal(&mut self, sig: libc::c_int, sig_name: &str) {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{sig_name}: the node is not running"));
        signal(&child, sig);
        let status = wait_with_deadline(&mut child, STOP_TIMEOUT);
        match status {
            None => {
                kill_and_reap(&mut child);
                panic!(
                    "the node did not exit within {STOP_TIMEOUT:?} of {sig_name}\n{}",
                    self.diagnostics()
                );
            }
            Some(status) if !status.success() => panic!(
                "the node exited with {status} after {sig_name}; a clean shutdown exits 0\n{}",
                self.diagnostics()
            ),
            Some(_) => {}
        }
    }

    /// Spawns the process for the next run, its output to that run's log file.
    fn next_run(&mut self) -> Child {
        let binary = myelin_binary();
        self.runs += 1;
        self.log_path = logs_dir().join(format!("{}.run{}.log", self.name, self.runs));
        let log = File::create(&self.log_path).expect("create node log file");
        Command::new(binary)
            .arg("node")
            .arg("--listen")
            .arg(self.bootstrap())
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(self.config.args())
            // Plain log files (tracing-subscriber honours NO_COLOR).
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()))
    }

    /// Spawns the process and waits until the port accepts connections. Retries with a
    /// new port (at most twice) only when the log says the address was already in use.
    fn spawn(&mut self) {
        for attempt in 0..3 {
            let mut child = self.next_run();
            match wait_until_ready(&mut child, self.addr(), START_TIMEOUT) {
                Ready::Yes => {
                    self.child = Some(child);
                    return;
                }
                Ready::Exited(status) => {
                    let log = read_lossy(&self.log_path);
                    if attempt < 2 && log.to_lowercase().contains("address already in use") {
                        self.port = free_port();
                        continue;
                    }
                    panic!(
                        "the node exited during startup ({status})\n{}",
                        self.diagnostics()
                    );
                }
                Ready::TimedOut => {
                    kill_and_reap(&mut child);
                    panic!(
                        "the node did not accept connections on {} within {START_TIMEOUT:?}\n{}",
                        self.addr(),
                        self.diagnostics()
                    );
                }
            }
        }
        unreachable!("the loop returns or panics");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() && !self.log_path.as_os_str().is_empty() {
            eprintln!("node log of the failed test: {}", self.log_path.display());
        }
    }
}

enum Ready {
    Yes,
    Exited(ExitStatus),
    TimedOut,
}

fn wait_until_ready(child: &mut Child, addr: SocketAddr, timeout: Duration) -> Ready {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("query node process") {
            return Ready::Exited(status);
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok() {
            return Ready::Yes;
        }
        if Instant::now() > deadline {
            return Ready::TimedOut;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL, then waits for the process so that it leaves no zombie.
fn kill_and_reap(child: &mut Child) {
    signal(child, libc::SIGKILL);
    let _ = child.wait();
}

/// The child's exit status, or `None` if it still runs after `timeout`.
pub fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("query node process") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to the child process.
pub fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child,
    // which has not been reaped yet, so it cannot have been reused.
    let rc = unsafe { libc::kill(pid, sig) };
    assert!(
        rc == 0,
        "kill({pid}, {sig}) failed: {}",
        std::io::Error::last_os_error()
    );
}

/// Where test nodes' ports come from: below Linux's ephemeral range (32768-60999), so that
/// while a node is down no outgoing connection or `bind(0)` of any process takes the port
/// it restarts on (its peer port cannot change: the other nodes dial it).
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_768;

/// A TCP port on 127.0.0.1 that was free a moment ago, from [`TEST_PORTS`]. Each call of
/// this process starts its search at the next port, from a start that differs between
/// processes (tests run in several processes at once).
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let seed = std::process::id().wrapping_mul(7919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.subsec_nanos());
    let _ = NEXT.compare_exchange(
        u32::MAX,
        seed % span,
        std::sync::atomic::Ordering::Relaxed,
        std::sync::atomic::Ordering::Relaxed,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % span;
        let port = TEST_PORTS.start + u16::try_from(offset).expect("offset within the span");
        if port_is_free(port) {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}")
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `<workspace>/target/e2e-logs`, created on first use.
pub fn logs_dir() -> PathBuf {
    let dir = workspace_root().join("target").join("e2e-logs");
    fs::create_dir_all(&dir).expect("create target/e2e-logs");
    dir
}

/// The `myelin` binary under test: `$MYELIN_BIN` if set, else the debug build of the
/// workspace, built by `cargo build -p myelin-node --bin myelin` once per test process.
pub fn myelin_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("MYELIN_BIN") {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "MYELIN_BIN={} is not a file",
                path.display()
            );
            return path;
        }
        build_myelin()
    })
}

fn build_myelin() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "-p",
            "myelin-node",
            "--bin",
            "myelin",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .expect("run cargo build");
    assert!(
        output.status.success(),
        "`cargo build -p myelin-node --bin myelin` failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let executable = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "myelin")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .expect("cargo build reported no executable for the `myelin` bin target");
    assert!(
        executable.is_file(),
        "built binary {} is missing",
        executable.display()
    );
    executable
}

/// The last `lines` lines of a log file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = read_lossy(path);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    if all.is_empty() {
        "(log is empty)".to_string()
    } else {
        all[start..].join("\n")
    }
}

/// A file's text (lossy), or empty if it cannot be read.
pub fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The batches of a partition as a node stored them: every batch header of its segments in
/// log order, and why a segment's scan stopped early (a torn or corrupt tail), if one did.
pub fn stored_batches(
    data_dir: &Path,
    topic: &str,
    partition: i32,
) -> (Vec<myelin_core::batch::BatchHeader>, Vec<String>) {
    let dir = data_dir.join("topics").join(format!("{topic}-{partition}"));
    let mut segments: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
                .collect()
        })
        .unwrap_or_default();
    segments.sort();
    let mut headers = Vec::new();
    let mut stops = Vec::new();
    for segment in segments {
        let Some(base) = segment
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse().ok())
        else {
            continue;
        };
        let bytes = fs::read(&segment).unwrap_or_default();
        let scan = myelin_core::batch::scan_batches(&bytes, base);
        headers.extend(scan.batches.iter().map(|batch| batch.header));
        if let Some(reason) = &scan.stop_reason {
            stops.push(format!("scan of {} stopped: {reason}", segment.display()));
        }
    }
    (headers, stops)
}
