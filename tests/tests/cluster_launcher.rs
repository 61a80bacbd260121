//! `myelin cluster` passes a signal on to its nodes and waits for them, and stops the
//! cluster when one node dies.
//!
//! The launcher runs as a real process with two nodes; its output and its nodes' go to
//! `target/e2e-logs/cluster_launcher.<test>.log`. These tests look at processes, ports and
//! exit statuses only, not at replication. The launcher's ports follow its fixed scheme
//! (base, base + 1, base + 2, base + 10000, ...: Kafka, peers, metrics), so each test picks a
//! base whose six ports are free, below the ephemeral range the other tests' free ports come from.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use myelin_tests::node::{logs_dir, myelin_binary, read_lossy, signal, tail, wait_with_deadline};
use tempfile::TempDir;

/// Longer than the launcher's own limits (30 s to start, 30 s to stop), so that its own
/// reports, not ours, explain a slow node.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// A running `myelin cluster --nodes 2`.
struct Launcher {
    child: Option<Child>,
    log_path: PathBuf,
    base_port: u16,
    data_dir: TempDir,
    /// The node processes once the cluster was announced: (node id, pid), by node id.
    nodes: Vec<(u16, libc::pid_t)>,
}

impl Launcher {
    /// Starts the launcher with a base port found at or after `search_from` and waits until
    /// it announces the bootstrap servers.
    fn start(name: &str, search_from: u16) -> Launcher {
        let base_port = free_base_port(search_from);
        let data_dir = tempfile::Builder::new()
            .prefix("myelin-launcher-")
            .tempdir()
            .expect("create a temporary data dir");
        let log_path = logs_dir().join(format!("cluster_launcher.{name}.log"));
        let log = File::create(&log_path).expect("create the launcher's log file");
        let child = Command::new(myelin_binary())
            .args(["cluster", "--nodes", "2", "--base-port"])
            .arg(base_port.to_string())
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--", "--default-partitions", "2"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn myelin cluster");
        let mut launcher = Launcher {
            child: Some(child),
            log_path,
            base_port,
            data_dir,
            nodes: Vec::new(),
        };
        launcher.wait_until_ready();
        launcher.nodes = launcher.find_nodes();
        launcher
    }

    fn wait_until_ready(&mut self) {
        let announcement = format!(
            "bootstrap servers: 127.0.0.1:{},127.0.0.1:{}",
            self.base_port,
            self.base_port + 10_000
        );
        let started = Instant::now();
        while !read_lossy(&self.log_path).contains(&announcement) {
            if let Some(status) = self.child_mut().try_wait().expect("query the launcher") {
                panic!(
                    "the launcher exited ({status}) before announcing the cluster\n{}",
                    self.diagnostics()
                );
            }
            if started.elapsed() > WAIT_LIMIT {
                panic!(
                    "the launcher did not announce '{announcement}' within {WAIT_LIMIT:?}\n{}",
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the launcher was started")
    }

    fn pid(&self) -> libc::pid_t {
        let child = self.child.as_ref().expect("the launcher was started");
        libc::pid_t::try_from(child.id()).expect("pid fits pid_t")
    }

    /// The launcher's node processes: (node id, pid), by node id.
    fn find_nodes(&self) -> Vec<(u16, libc::pid_t)> {
        let mut nodes: Vec<_> = children_of(self.pid())
            .into_iter()
            .filter_map(|pid| Some((flag_value(pid, "--node-id")?.parse().ok()?, pid)))
            .collect();
        nodes.sort_unstable();
        nodes
    }

    /// Waits for the launcher to exit; panics with its log if it does not in time.
    fn wait_for_exit(&mut self) -> ExitStatus {
        match wait_with_deadline(self.child_mut(), WAIT_LIMIT) {
            Some(status) => {
                self.child = None;
                status
            }
            None => panic!(
                "the launcher did not exit within {WAIT_LIMIT:?}\n{}",
                self.diagnostics()
            ),
        }
    }

    fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    fn diagnostics(&self) -> String {
        format!(
            "launcher log {} (last lines):\n{}",
            self.log_path.display(),
            tail(&self.log_path, 60)
        )
    }
}

impl Drop for Launcher {
    /// A failed test must not leave nodes behind, even ones the launcher abandoned: kill
    /// them, then the launcher.
    fn drop(&mut self) {
        let data_dir = self.data_dir.path().display().to_string();
        for (_, pid) in &self.nodes {
            // The pid may have been reused since: kill only a process on our data dir.
            if flag_value(*pid, "--data-dir").is_some_and(|dir| dir.starts_with(&data_dir)) {
                // SAFETY: kill(2) has no memory effects.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A base port whose six ports (two nodes: Kafka, peers, metrics) can be bound now. Below
/// 32768, where the kernel's ephemeral ports (the other tests' free ports) never land.
fn free_base_port(search_from: u16) -> u16 {
    let first = search_from + u16::try_from(std::process::id() % 500).expect("below 500");
    (first..first + 500)
        .find(|base| {
            [0, 1, 2, 10_000, 10_001, 10_002]
                .iter()
                .all(|offset| TcpListener::bind(("127.0.0.1", base + offset)).is_ok())
        })
        .unwrap_or_else(|| panic!("no free base port in {first}..{}", first + 500))
}

/// The pids whose parent is `parent`, from /proc.
fn children_of(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let entries = std::fs::read_dir("/proc").expect("read /proc");
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            // `pid (command) state ppid ...`; the command may hold spaces and parentheses.
            let stat = read_lossy(&PathBuf::from(format!("/proc/{pid}/stat")));
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
            ppid == Some(parent)
        })
        .collect()
}

/// The value after `flag` on a process's command line.
fn flag_value(pid: libc::pid_t, flag: &str) -> Option<String> {
    let command_line = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = command_line
        .split(|byte| *byte == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    let at = args.iter().position(|arg| arg == flag)?;
    args.get(at + 1).cloned()
}

fn is_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn sigterm_to_the_launcher_stops_every_node_cleanly() {
    let mut launcher = Launcher::start("sigterm", 10_000);
    let nodes = launcher.nodes.clone();
    assert_eq!(
        nodes.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![1, 2],
        "the launcher runs nodes 1 and 2\n{}",
        launcher.diagnostics()
    );
    for (id, pid) in &nodes {
        assert_eq!(
            flag_value(*pid, "--default-partitions").as_deref(),
            Some("2"),
            "node {id} got the flags after --"
        );
    }
    for port in [launcher.base_port, launcher.base_port + 10_000] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "a node serves Kafka on {port}\n{}",
            launcher.diagnostics()
        );
        // Its metrics are on the Kafka port + 2, as the launcher says.
        let metrics = format!("127.0.0.1:{}", port + 2);
        assert!(
            launcher
                .log()
                .contains(&format!("metrics http://{metrics}/metrics")),
            "the launcher prints {metrics}\n{}",
            launcher.diagnostics()
        );
        let mut scrape = TcpStream::connect(&metrics).expect("connect to the metrics port");
        scrape
            .set_read_timeout(Some(WAIT_LIMIT))
            .expect("set a read timeout");
        scrape
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .expect("send a scrape");
        let mut answer = String::new();
        scrape.read_to_string(&mut answer).expect("read the scrape");
        assert!(
            answer.starts_with("HTTP/1.1 200 OK") && answer.contains("myelin_requests_total"),
            "{answer}"
        );
    }

    signal(launcher.child_mut(), libc::SIGTERM);
    let status = launcher.wait_for_exit();
    assert!(
        status.success(),
        "the launcher exits 0 after SIGTERM, not {status}\n{}",
        launcher.diagnostics()
    );
    let log = launcher.log();
    for (id, pid) in nodes {
        assert!(
            log.contains(&format!("node {id} stopped (exit status: 0)")),
            "node {id} shut down cleanly\n{}",
            launcher.diagnostics()
        );
        assert!(
            !is_alive(pid),
            "node {id} (pid {pid}) outlived the launcher"
        );
    }
}

#[test]
fn a_node_that_dies_stops_the_others_and_fails_the_launcher() {
    let mut launcher = Launcher::start("node_dies", 11_100);
    let nodes = launcher.nodes.clone();
    let victim = nodes
        .iter()
        .find(|(id, _)| *id == 2)
        .map(|(_, pid)| *pid)
        .unwrap_or_else(|| panic!("no node 2 among {nodes:?}\n{}", launcher.diagnostics()));
    // SAFETY: kill(2) has no memory effects; node 2 is our launcher's unreaped child.
    assert_eq!(
        unsafe { libc::kill(victim, libc::SIGKILL) },
        0,
        "kill node 2"
    );

    let status = launcher.wait_for_exit();
    assert!(
        !status.success(),
        "the launcher fails when a node dies\n{}",
        launcher.diagnostics()
    );
    let log = launcher.log();
    assert!(
        log.contains("node 2 exited (signal: 9 (SIGKILL))"),
        "the launcher names the node that died\n{}",
        launcher.diagnostics()
    );
    assert!(
        log.contains("node 1 stopped (exit status: 0)"),
        "the other node was stopped cleanly\n{}",
        launcher.diagnostics()
    );
    for (id, pid) in nodes {
        assert!(
            !is_alive(pid),
            "node {id} (pid {pid}) outlived the launcher"
        );
    }
}
