//! The command line of `myelin-sim` (simulation builds only).

use clap::Parser;
use myelin_sim::shrink::shrink;
use myelin_sim::{run, run_in_process, RunOptions, RunReport, Scenario};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Runs Myelin nodes under madsim with faults, and checks what clients saw.
#[derive(Parser, Debug)]
#[command(name = "myelin-sim", about, long_about = None)]
struct Args {
    /// Replay one seed.
    #[arg(long, conflicts_with_all = ["seeds", "scenario", "bench"])]
    seed: Option<u64>,
    /// Sweep a range of seeds, `A..B` (B excluded).
    #[arg(long, value_parser = parse_range, conflicts_with_all = ["scenario", "bench"])]
    seeds: Option<(u64, u64)>,
    /// Run a scenario given as JSON (as printed for a shrunk failure).
    #[arg(long, conflicts_with = "bench")]
    scenario: Option<String>,
    /// Write the run's trace as JSON lines to FILE (single runs only).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Write the run as one self-contained HTML page to FILE: an interactive timeline
    /// (single runs only; with --shrink, of the shrunk run).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Shrink a failing run to a minimal fault schedule (single runs only).
    #[arg(long)]
    shrink: bool,
    /// Most runs a shrink may make.
    #[arg(long, default_value_t = 300)]
    shrink_runs: usize,
    /// Simulations a sweep runs at once (each in a process of its own).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Measure simulated seconds and operations per wall second (1 and 3 nodes).
    #[arg(long)]
    bench: bool,
    /// Print only the run's report, as one line of JSON (how sweeps run each seed in a
    /// process of its own).
    #[arg(long, hide = true)]
    report_json: bool,
    /// Seeds name cluster scenarios (3 or 5 nodes replicating one topic, with splits and
    /// one-way links among the faults) instead of independent nodes.
    #[arg(long)]
    cluster: bool,
    /// Seeds name consumer-group scenarios (3 nodes, one group of members that crash,
    /// leave, pause and are cut off, alongside node faults).
    #[arg(long, conflicts_with = "cluster")]
    groups: bool,
    /// Seeds name transaction scenarios (3 nodes; transactional producers, exactly-once
    /// copiers in a consumer group, read_committed and read_uncommitted consumers, with
    /// client crashes, expirations and coordinator failovers among the faults).
    #[arg(long, conflicts_with_all = ["cluster", "groups"])]
    transactions: bool,
    /// Run with a deliberate defect (needs `--features defects`): ack-before-fsync,
    /// read-above-high-watermark, skip-recovery-crc, skip-directory-fsync,
    /// skip-segment-fsync, skip-replica-state-fsync, forget-producer-state-on-restart, or
    /// one of the replication,
    /// group and transaction defects of `myelin_core::defects`.
    #[arg(long)]
    defect: Option<String>,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("'{text}' is not a range like 0..200"))?;
    let start: u64 = start
        .parse()
        .map_err(|_| format!("bad range start in '{text}'"))?;
    let end: u64 = end
        .parse()
        .map_err(|_| format!("bad range end in '{text}'"))?;
    if end <= start {
        return Err(format!("the range '{text}' is empty"));
    }
    Ok((start, end))
}

fn run_options(args: &Args) -> Result<RunOptions, String> {
    let options = RunOptions::with_trace(args.trace.clone()).with_html(args.html.clone());
    let Some(name) = &args.defect else {
        return Ok(options);
    };
    #[cfg(feature = "defects")]
    return myelin_core::defects::Defect::from_name(name)
        .map(|defect| options.with_defect(defect))
        .ok_or_else(|| format!("unknown defect '{name}'"));
    #[cfg(not(feature = "defects"))]
    Err(format!(
        "--defect {name} needs a build with the defects feature: cargo sim --features defects -- ..."
    ))
}

/// Returns the process exit code: 0 passed, 1 a run failed, 2 bad usage.
pub fn main() -> i32 {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args = Args::parse();
    let options = match run_options(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return 2;
        }
    };
    if args.bench {
        return bench();
    }
    if let Some((start, end)) = args.seeds {
        return sweep(start, end, args.jobs.max(1), generator(&args), &options);
    }
    let scenario = match (&args.scenario, args.seed) {
        (Some(json), _) => match Scenario::from_json(json) {
            Ok(scenario) => scenario,
            Err(message) => {
                eprintln!("error: {message}");
                return 2;
            }
        },
        (None, Some(seed)) => generator(&args)(seed),
        (None, None) => {
            eprintln!("error: say what to run: --seed N, --seeds A..B, --scenario JSON or --bench (see --help)");
            return 2;
        }
    };
    if args.report_json {
        let report = run_in_process(&scenario, &options);
        println!(
            "{}",
            serde_json::to_string(&report).expect("a report always serializes")
        );
        return 0;
    }
    single(&scenario, &options, args.shrink, args.shrink_runs)
}

/// This binary, to run scenarios in child processes.
fn this_executable() -> PathBuf {
    std::env::current_exe().expect("the path of the running executable")
}

fn single(scenario: &Scenario, options: &RunOptions, want_shrink: bool, shrink_runs: usize) -> i32 {
    print!("{scenario}");
    let _ = std::io::stdout().flush();
    // The first (and only) run of this process: it replays exactly (see `run_in_process`).
    let report = run_in_process(scenario, options);
    print!("{}", report.summary());
    if let (Some(path), None) = (&options.html_path, &report.html_error) {
        println!("timeline: {}", path.display());
    }
    if report.passed() {
        return 0;
    }
    println!("replay: {}", report.replay_command());
    if want_shrink {
        if report.failure_signature().is_empty() {
            println!("not shrinking: the run failed only for lack of progress");
            return 1;
        }
        let quiet = options.without_trace();
        let mut runs = 0;
        let shrunk = shrink(scenario.clone(), shrink_runs, |candidate| {
            runs += 1;
            let candidate_report = run(candidate, &quiet, &this_executable());
            let fails = candidate_report.fails_like(&report);
            eprint!(
                "\rshrinking: {runs} runs, {} faults in the last candidate   ",
                candidate.faults.len()
            );
            fails
        });
        eprintln!();
        println!("shrunk after {runs} runs to:");
        print!("{shrunk}");
        // The page shows the shrunk run (it replaces the first run's page).
        let html = quiet.clone().with_html(options.html_path.clone());
        let shrunk_report = run(&shrunk, &html, &this_executable());
        for violation in shrunk_report.checks.violations.iter().take(5) {
            println!("  VIOLATION {violation}");
        }
        println!("replay: {}", shrunk_report.replay_command());
        if let Some(error) = &shrunk_report.html_error {
            println!("html file error: {error}");
        }
    }
    1
}

/// One line per seed, for sweeps.
fn sweep_line(report: &RunReport) -> String {
    let verdict = if report.passed() { "ok  " } else { "FAIL" };
    format!(
        "seed {:>6} {verdict} nodes {} acked {:>5} read {:>6} faults {:>2} crashes {:>2} checks {:>7} digest {:016x} wall {:>5} ms",
        report.scenario.seed,
        report.scenario.nodes,
        report.counts.acknowledged(),
        report.counts.records_read,
        report.faults.total_injected(),
        report.faults.crashes,
        report.checks.total_checks(),
        report.trace_digest,
        report.wall.as_millis()
    )
}

fn progress_bar(done: u64, total: u64, failing: usize, elapsed: Duration) {
    const WIDTH: u64 = 40;
    let filled = (done * WIDTH / total.max(1)) as usize;
    eprint!(
        "\r[{}{}] {done}/{total} seeds, {failing} failing, {:.1} s ",
        "#".repeat(filled),
        ".".repeat(WIDTH as usize - filled),
        elapsed.as_secs_f64()
    );
    let _ = std::io::stderr().flush();
}

/// What a seed names, by the command line's shape flags.
fn generator(args: &Args) -> fn(u64) -> Scenario {
    if args.transactions {
        Scenario::generate_transactions
    } else if args.groups {
        Scenario::generate_groups
    } else if args.cluster {
        Scenario::generate_cluster
    } else {
        Scenario::generate
    }
}

fn sweep(
    start: u64,
    end: u64,
    jobs: usize,
    generate: fn(u64) -> Scenario,
    options: &RunOptions,
) -> i32 {
    let total = end - start;
    let next = AtomicU64::new(start);
    let done = AtomicU64::new(0);
    let results: Mutex<Vec<RunReport>> = Mutex::new(Vec::new());
    let began = Instant::now();
    let exe = this_executable();
    let options = options.without_trace();
    progress_bar(0, total, 0, Duration::ZERO);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    return;
                }
                let scenario = generate(seed);
                let report = run(&scenario, &options, &exe);
                let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
                results.push(report);
                let failing = results.iter().filter(|r| !r.passed()).count();
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress_bar(finished, total, failing, began.elapsed());
            });
        }
    });
    eprintln!();
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|report| report.scenario.seed);
    for report in &results {
        println!("{}", sweep_line(report));
    }
    let failing: Vec<&RunReport> = results.iter().filter(|report| !report.passed()).collect();
    let acked: u64 = results.iter().map(|r| r.counts.acknowledged()).sum();
    let crashes: u64 = results.iter().map(|r| r.faults.crashes).sum();
    let faults: u64 = results.iter().map(|r| r.faults.total_injected()).sum();
    println!(
        "{} seeds in {:.1} s: {} passed, {} failed; {acked} batches acknowledged, {faults} faults injected, {crashes} crashes",
        results.len(),
        began.elapsed().as_secs_f64(),
        results.len() - failing.len(),
        failing.len()
    );
    if failing.is_empty() {
        return 0;
    }
    println!("failing seeds:");
    for report in failing {
        let first = report
            .panic
            .clone()
            .map(|panic| format!("panic: {panic}"))
            .or_else(|| report.checks.violations.first().map(|v| v.to_string()))
            .unwrap_or_default();
        println!("  {}   # {first}", report.replay_command());
    }
    1
}

/// Simulated seconds and operations per wall second, for 1 and 3 nodes, without faults.
/// Each row runs `RUNS` seeds and reports the median run (and the slowest and fastest
/// simulated seconds per wall second, to show the noise of a shared machine).
fn bench() -> i32 {
    const RUNS: u64 = 9;
    const DURATION_MS: u64 = 30_000;
    println!(
        "benchmark: {RUNS} runs of {} s of simulated workload per row (median run), no faults",
        DURATION_MS / 1000
    );
    println!(
        "{:>5}  {:>7}  {:>13}  {:>13}  {:>17}  {:>18}",
        "nodes", "clients", "sim s/wall s", "(min..max)", "client ops/wall s", "core events/wall s"
    );
    for nodes in [1u8, 3] {
        // (sim s per wall s, client ops per wall s, core events per wall s, clients)
        let mut rates: Vec<(f64, f64, f64, usize)> = Vec::new();
        for seed in 0..RUNS {
            let scenario = Scenario::benchmark(seed, nodes, DURATION_MS);
            let report = run(&scenario, &RunOptions::default(), &this_executable());
            if let Some(panic) = &report.panic {
                eprintln!("benchmark run panicked: {panic}");
                return 1;
            }
            let wall = report.wall.as_secs_f64().max(1e-9);
            let operations = report.counts.produce_attempts_sent + report.counts.fetches;
            rates.push((
                report.simulated.as_secs_f64() / wall,
                operations as f64 / wall,
                report.trace_events as f64 / wall,
                scenario.clients.len(),
            ));
        }
        rates.sort_by(|a, b| a.0.total_cmp(&b.0));
        let median = rates[rates.len() / 2];
        let clients = rates.iter().map(|rate| rate.3).sum::<usize>() as f64 / rates.len() as f64;
        println!(
            "{nodes:>5}  {clients:>7.1}  {:>13.1}  {:>13}  {:>17.0}  {:>18.0}",
            median.0,
            format!("{:.0}..{:.0}", rates[0].0, rates[rates.len() - 1].0),
            median.1,
            median.2
        );
    }
    0
}
