//! The `--html` timeline opens in a real browser: headless Chromium (Debian's chromium and
//! chromium-driver), driven by selenium from `sim/tests/timeline_page.py` with
//! `<workspace>/.venv/bin/python`. tests/setup installs all three; a missing one fails the
//! test, it is never skipped. Pages and screenshots are kept in `target/timeline/`.
//!
//! Run with `cargo sim-test --test timeline_browser` (the failing run needs
//! `--features defects`, as `tests/run` passes).
#![cfg(madsim)]

use myelin_sim::Scenario;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One browser at a time: the machine has few cores.
static BROWSER: Mutex<()> = Mutex::new(());

/// The cluster seed of the 30-simulated-second run.
const CLUSTER_SEED: u64 = 1;

const SETUP_HINT: &str = "run tests/setup (tests/run does), which installs chromium, \
chromium-driver and the Python virtualenv .venv with selenium (tests/requirements.txt)";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the sim crate lives in the workspace")
        .to_path_buf()
}

fn output_dir() -> PathBuf {
    let dir = workspace_root().join("target").join("timeline");
    std::fs::create_dir_all(&dir).expect("creating target/timeline");
    dir
}

/// Runs the simulator with `args` and `--html PAGE`; returns its exit code.
fn simulate(args: &[&str], page: &Path) -> i32 {
    let output = Command::new(env!("CARGO_BIN_EXE_myelin-sim"))
        .args(args)
        .arg("--html")
        .arg(page)
        .output()
        .expect("running myelin-sim");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        page.is_file(),
        "myelin-sim {args:?} wrote no page; it said:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.status.code().unwrap_or(-1)
}

/// Opens `page` in headless Chromium, saves `screenshot`, returns what the page showed.
fn open_in_browser(page: &Path, screenshot: &Path) -> Value {
    let python = workspace_root().join(".venv").join("bin").join("python");
    assert!(
        python.is_file(),
        "{} is missing: {SETUP_HINT}",
        python.display()
    );
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(Path::new(tool).is_file(), "{tool} is missing: {SETUP_HINT}");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/timeline_page.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(page)
        .arg(screenshot)
        .output()
        .expect("running timeline_page.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "timeline_page.py failed ({}): {}{}\n{SETUP_HINT}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("timeline_page.py printed no JSON ({error}): {stdout}"));
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    println!("{}: {shown}", page.display());
    shown
}

fn count(shown: &Value, field: &str) -> u64 {
    shown[field].as_u64().unwrap_or(0)
}

fn text<'a>(shown: &'a Value, field: &str) -> &'a str {
    shown[field].as_str().unwrap_or("")
}

fn assert_no_console_error(shown: &Value) {
    let errors = shown["console_errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
}

#[test]
fn a_thirty_second_cluster_run_shows_its_lanes_faults_and_partitions() {
    let _browser = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let mut scenario = Scenario::generate_cluster(CLUSTER_SEED);
    scenario.duration_ms = 30_000;
    assert_eq!(scenario.nodes, 3, "the seed names a 3-node cluster");
    let dir = output_dir();
    let page = dir.join("cluster-30s.html");
    let code = simulate(&["--scenario", &scenario.to_json()], &page);
    assert_eq!(code, 0, "the run passes");
    let shown = open_in_browser(&page, &dir.join("cluster-30s.png"));
    assert_no_console_error(&shown);

    let lanes: Vec<String> = shown["lanes"]
        .as_array()
        .map(|lanes| {
            lanes
                .iter()
                .filter_map(|l| l.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for node in 1..=3 {
        assert!(
            lanes.contains(&format!("node {node}")),
            "no lane of node {node}: {lanes:?}"
        );
    }
    let clients = lanes
        .iter()
        .filter(|lane| lane.starts_with("client "))
        .count();
    assert_eq!(
        clients,
        scenario.clients.len(),
        "a lane per client: {lanes:?}"
    );
    assert!(
        count(&shown, "faults") + count(&shown, "downs") >= 2,
        "the scenario's crash and cut-off show as spans: {shown}"
    );
    assert!(count(&shown, "downs") >= 1, "a crash shows as a down span");
    let filtered: Vec<&str> = shown["node_filter_lanes"]
        .as_array()
        .map(|lanes| lanes.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let filtered_nodes: Vec<&&str> = filtered.iter().filter(|l| l.starts_with("node ")).collect();
    assert_eq!(
        filtered_nodes,
        [&"node 1"],
        "the node filter keeps node 1's lane: {filtered:?}"
    );
    assert_eq!(
        count(&shown, "partition_filter_charts"),
        1,
        "the partition filter keeps one chart"
    );
    let partitions = shown["partitions"].to_string();
    assert!(
        partitions.contains("events-0"),
        "a chart per partition: {partitions}"
    );
    assert!(
        count(&shown, "leaders") >= 3,
        "each partition's leaders: {shown}"
    );
    assert_eq!(
        count(&shown, "violations"),
        0,
        "a passing run has no violation marker"
    );
    assert!(
        text(&shown, "clicked_record").contains("\"kind\""),
        "clicking a fault shows its trace record: {shown}"
    );
    // From navigation start to the end of the load event (the page draws while it loads).
    // Reported, not asserted: speed is a benchmark's business (README), never a test's.
    let load_ms = shown["navigation"]["load_ms"].as_f64();
    let report = format!("30-simulated-second 3-node run: page loaded in {load_ms:?} ms\n");
    eprint!("{report}");
    std::fs::write(output_dir().join("load-time.txt"), report).expect("writing the load time");
}

/// A run with a deliberate replication defect: the page marks the violation where the
/// checker saw it and highlights what led to it.
#[cfg(feature = "defects")]
#[test]
fn a_failing_runs_page_marks_the_violation_and_what_led_to_it() {
    const DEFECT: &str = "minority-high-watermark";
    const SEED: &str = "2";
    let _browser = BROWSER.lock().unwrap_or_else(|p| p.into_inner());
    let dir = output_dir();
    let page = dir.join(format!("defect-{DEFECT}.html"));
    let code = simulate(&["--cluster", "--seed", SEED, "--defect", DEFECT], &page);
    assert_eq!(code, 1, "seed {SEED} catches {DEFECT}");
    let shown = open_in_browser(&page, &dir.join(format!("defect-{DEFECT}.png")));
    assert_no_console_error(&shown);
    assert!(
        count(&shown, "violations") >= 1,
        "a violation marker: {shown}"
    );
    assert!(
        count(&shown, "lead_up") >= 1,
        "events before it are highlighted: {shown}"
    );
    assert!(
        text(&shown, "verdict").contains("violation"),
        "the page says the run failed: {shown}"
    );
    assert!(
        text(&shown, "clicked_record").contains("\"check\""),
        "clicking the marker shows the checker's trace record: {shown}"
    );
}

/// A run that panics (here a replication defect's run trips the core's own assertion)
/// still gets its page: what happened up to the panic, and the panic marked.
#[cfg(feature = "defects")]
#[test]
fn a_run_that_panics_still_writes_its_page() {
    let page = output_dir().join("panic-minority-high-watermark.html");
    let code = simulate(
        &[
            "--cluster",
            "--seed",
            "5",
            "--defect",
            "minority-high-watermark",
        ],
        &page,
    );
    assert_eq!(code, 1, "the run fails");
    let html = std::fs::read_to_string(&page).expect("the page was written");
    assert!(
        html.contains("PANIC after the last event shown"),
        "the panic is marked"
    );
    assert!(
        html.contains("\"kind\":\"down\""),
        "the crashes before it are shown"
    );
}
