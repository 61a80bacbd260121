//! Model-based tests: runs of the Quint specifications in `specs/`, written as ITF traces
//! by `quint run --mbt`, replayed step by step against the core's own state machines, with
//! the states compared after every step (see the "Model-based tests" section of
//! `specs/README.md`).
//!
//! This module holds what the replays share: running Quint to generate the specs' traces
//! (once per test binary, the three specs at once), reading ITF values, and reporting a
//! divergence. Each protocol's replay is a submodule. They live inside the crate, not in
//! `core/tests/`, because the replication replay drives the in-memory harness of real
//! replicas (`replication_model.rs`, test-only) and the replays compare state the public
//! API does not show (a leader's follower progress, the members waiting in JoinGroup, a
//! partition's open transactions), through accessors that exist in test builds only.
//!
//! Environment, for other runs than CI's:
//! - `MYELIN_MBT_SEED`: Quint's seed (default 1);
//! - `MYELIN_MBT_TRACES`, `MYELIN_MBT_STEPS`: traces per spec and steps per trace (defaults
//!   per spec, chosen for CI's time budget);
//! - `MYELIN_MBT_TRACE`: replay this ITF file (or every `*.itf.json` in this directory)
//!   instead of generating traces, with the one test that replays its spec (a divergence
//!   names it): the other specs' tests have no trace of theirs then.
//!
//! Traces are written to `target/mbt/<module>-seed<seed>/trace_<n>.itf.json`.

mod groups;
mod replication;
mod transactions;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One spec's trace generation: which module of which file, and how much.
pub(crate) struct SpecRun {
    /// The protocol's directory under `specs/`.
    pub protocol: &'static str,
    pub file: &'static str,
    /// The module to run (`--main`).
    pub main: &'static str,
    /// Traces to generate by default (`--n-traces`, `--max-samples`).
    pub traces: usize,
    /// Steps per trace by default (`--max-steps`).
    pub steps: usize,
}

/// One state of a trace: the action that led to it, that action's nondeterministic picks,
/// and the spec's variables by their short names (the instance prefix removed).
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub action: String,
    pub picks: BTreeMap<String, Value>,
    pub vars: BTreeMap<String, Value>,
}

impl State {
    /// Variable `name` (a spec variable, without its module prefix).
    pub fn var(&self, name: &str) -> &Value {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("the trace has no variable {name}"))
    }

    /// The nondeterministic pick `name` of this state's action, if the action made one.
    pub fn pick(&self, name: &str) -> Option<&Value> {
        self.picks.get(name).and_then(option)
    }

    /// The picks this state's action made, as `name=value` (ITF JSON), for a report.
    pub fn picks_made(&self) -> String {
        let made: Vec<String> = self
            .picks
            .keys()
            .filter_map(|name| Some(format!("{name}={}", self.pick(name)?)))
            .collect();
        made.join(" ")
    }

    /// Like `pick`, for a pick the action always makes.
    pub fn picked(&self, name: &str) -> &Value {
        self.pick(name).unwrap_or_else(|| {
            panic!(
                "action {} made no pick {name}: {:?}",
                self.action, self.picks
            )
        })
    }
}

/// A trace read from an ITF file.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    pub path: PathBuf,
    /// The module the trace is a run of: the prefix its variables carry (`main::...`).
    pub main: String,
    pub states: Vec<State>,
}

/// Where a replay and the spec parted: which trace, which step, the action, and the two
/// states as the replay compares them.
#[derive(Debug, Clone)]
pub(crate) struct Divergence {
    pub trace: PathBuf,
    /// The index of the state that differs (state 0 is the initial one).
    pub step: usize,
    pub action: String,
    pub picks: String,
    /// Lines `what: spec ... / code ...`, one per part that differs.
    pub differences: Vec<String>,
    pub spec_state: String,
    pub code_state: String,
    /// The test that replays the spec's traces (to run this trace alone).
    pub test: &'static str,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "spec and code diverge in {} at step {} (action {}, picks {})",
            self.trace.display(),
            self.step,
            self.action,
            self.picks
        )?;
        for difference in &self.differences {
            writeln!(f, "  {difference}")?;
        }
        writeln!(f, "spec state:\n{}", self.spec_state)?;
        writeln!(f, "code state:\n{}", self.code_state)?;
        write!(
            f,
            "replay this trace alone: MYELIN_MBT_TRACE={} cargo test -p myelin-core --lib {}",
            self.trace.display(),
            self.test
        )
    }
}

/// How a trace's replay ended without a divergence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Replayed {
    /// Every step was replayed and compared.
    Complete { steps: usize },
    /// The replay stopped before the end at a step the code cannot be driven to take (the
    /// spec is more liberal there; see the replay's doc): the steps before were compared.
    Stopped { steps: usize, reason: String },
}

impl Replayed {
    pub fn steps(&self) -> usize {
        match self {
            Replayed::Complete { steps } | Replayed::Stopped { steps, .. } => *steps,
        }
    }
}

/// One spec's replay: the core's state machines driven by a trace's actions, and the state
/// both sides are compared on.
pub(crate) trait Replay {
    type Abstraction: PartialEq + std::fmt::Debug;
    /// The test that replays every trace of the spec (a divergence names it).
    const TEST: &'static str;
    /// Takes the step from `before` to `state` on the code. An error says the code cannot
    /// be driven to take it (the spec is more liberal there): the replay stops, not fails.
    fn apply(&mut self, before: &State, state: &State) -> Result<(), String>;
    fn spec_abstraction(state: &State) -> Self::Abstraction;
    fn code_abstraction(&self) -> Self::Abstraction;
    /// The abstractions' parts, as (name, spec, code) triples, for a divergence's report.
    fn parts(spec: &Self::Abstraction, code: &Self::Abstraction) -> Vec<(String, String, String)>;
}

/// Replays `trace` on `system`, comparing the states after every step.
pub(crate) fn replay_on<R: Replay>(
    trace: &Trace,
    mut system: R,
) -> Result<Replayed, Box<Divergence>> {
    for (index, state) in trace.states.iter().enumerate() {
        if index > 0 {
            if let Err(reason) = system.apply(&trace.states[index - 1], state) {
                return Ok(Replayed::Stopped {
                    steps: index - 1,
                    reason: format!("step {index} ({}): {reason}", state.action),
                });
            }
        }
        let spec = R::spec_abstraction(state);
        let code = system.code_abstraction();
        if spec != code {
            return Err(Box::new(Divergence {
                trace: trace.path.clone(),
                step: index,
                action: state.action.clone(),
                picks: state.picks_made(),
                differences: differences(&R::parts(&spec, &code)),
                spec_state: format!("{spec:#?}"),
                code_state: format!("{code:#?}"),
                test: R::TEST,
            }));
        }
    }
    Ok(Replayed::Complete {
        steps: trace.states.len() - 1,
    })
}

/// Asserts that some trace diverges when the code runs `defect` (`replay` replays a trace
/// with it), and prints where.
#[cfg(feature = "defects")]
pub(crate) fn assert_defect_caught(
    protocol: &str,
    defect: crate::defects::Defect,
    traces: &[Trace],
    replay: impl Fn(&Trace) -> Result<Replayed, Box<Divergence>>,
) {
    match traces.iter().find_map(|trace| replay(trace).err()) {
        Some(divergence) => eprintln!(
            "mbt {protocol}: {defect} caught at step {} of {} ({}): {}",
            divergence.step,
            divergence.trace.display(),
            divergence.action,
            divergence.differences.join("; ")
        ),
        None => panic!("{defect}: no trace diverged"),
    }
}

/// Compares two renderings of the same abstraction field by field: `parts` are
/// (name, spec, code) triples; the names of those that differ come back as report lines.
fn differences(parts: &[(String, String, String)]) -> Vec<String> {
    parts
        .iter()
        .filter(|(_, spec, code)| spec != code)
        .map(|(name, spec, code)| format!("{name}: spec {spec}  /  code {code}"))
        .collect()
}

fn env_number(name: &str) -> Option<usize> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

fn workspace_dir() -> PathBuf {
    let core = Path::new(env!("CARGO_MANIFEST_DIR"));
    core.parent().unwrap_or(core).to_path_buf()
}

fn specs_dir() -> PathBuf {
    workspace_dir().join("specs")
}

/// Every spec's traces, generated once per test binary, all three at once: the test
/// harness runs as many tests at a time as there are CPUs, and a test waiting for its
/// spec's traces would hold one of those places while only one Quint process runs.
static TRACES: OnceLock<BTreeMap<&'static str, Vec<Trace>>> = OnceLock::new();

const SPECS: [&SpecRun; 3] = [&replication::SPEC, &groups::SPEC, &transactions::SPEC];

/// The traces of `spec` (see [`TRACES`]).
pub(crate) fn traces(spec: &SpecRun) -> &'static [Trace] {
    let all = TRACES.get_or_init(|| {
        std::thread::scope(|scope| {
            let running: Vec<_> = SPECS
                .iter()
                .map(|spec| (spec.main, scope.spawn(move || traces_of(spec))))
                .collect();
            running
                .into_iter()
                .map(|(main, generating)| {
                    let traces = generating
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    (main, traces)
                })
                .collect()
        })
    });
    &all[spec.main]
}

/// The traces of `spec`, generated by Quint into the target directory, or read from
/// `MYELIN_MBT_TRACE`.
fn traces_of(spec: &SpecRun) -> Vec<Trace> {
    if let Ok(given) = std::env::var("MYELIN_MBT_TRACE") {
        // Tests run in core/: a relative path may be the workspace's.
        let given = Path::new(&given);
        let given = if given.exists() {
            given.to_path_buf()
        } else {
            workspace_dir().join(given)
        };
        return read_given(&given, spec);
    }
    generate(spec)
}

/// The traces at `given` (a file, or a directory of `*.itf.json`) that are runs of `spec`.
fn read_given(given: &Path, spec: &SpecRun) -> Vec<Trace> {
    let files: Vec<PathBuf> = if given.is_dir() {
        itf_files(given)
    } else {
        vec![given.to_path_buf()]
    };
    files
        .iter()
        .map(|file| read_trace(file))
        .filter(|trace| trace.main == spec.main)
        .collect()
}

fn itf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.to_string_lossy().ends_with(".itf.json"))
        .collect();
    // trace_2 before trace_10.
    files.sort_by_key(|path| {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let number: String = name.chars().filter(char::is_ascii_digit).collect();
        (number.parse::<u64>().unwrap_or(u64::MAX), name.to_string())
    });
    files
}

/// Runs `quint run --mbt` on the spec and reads the traces it wrote.
fn generate(spec: &SpecRun) -> Vec<Trace> {
    let seed = env_number("MYELIN_MBT_SEED").unwrap_or(1);
    let traces = env_number("MYELIN_MBT_TRACES").unwrap_or(spec.traces);
    let steps = env_number("MYELIN_MBT_STEPS").unwrap_or(spec.steps);
    let specs = specs_dir();
    let quint = specs.join("node_modules/.bin/quint");
    assert!(
        quint.exists(),
        "Quint is not installed ({} is missing): the model-based tests generate their \
         traces with it. Run tests/setup, or `cd specs && npm ci --no-audit --no-fund`.",
        quint.display()
    );
    let out = workspace_dir()
        .join("target/mbt")
        .join(format!("{}-seed{seed}", spec.main));
    // Quint's runs are a function of the spec, the Quint installed, the seed and the
    // counts: traces written from the same ones (by another test binary of this workspace,
    // e.g. the core's tests with and without `defects`) are reused, not generated again.
    let stamp_path = out.join("stamp");
    let stamp = format!(
        "{} {traces} traces {steps} steps seed {seed}\n{}\n{}",
        spec.main,
        read_text(&specs.join(spec.protocol).join(spec.file)),
        read_text(&specs.join("package-lock.json"))
    );
    if std::fs::read_to_string(&stamp_path).is_ok_and(|written| written == stamp) {
        let files = itf_files(&out);
        if files.len() == traces {
            eprintln!(
                "mbt: {traces} traces of {} reused from {}",
                spec.main,
                out.display()
            );
            return files.iter().map(|file| read_trace(file)).collect();
        }
    }
    // Traces of an earlier run with other counts must not mix with these.
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", out.display()));
    let started = std::time::Instant::now();
    let output = Command::new(&quint)
        .current_dir(specs.join(spec.protocol))
        .args(["run", "--backend", "typescript", "--mbt"])
        .arg(format!("--main={}", spec.main))
        .arg(format!("--max-samples={traces}"))
        .arg(format!("--n-traces={traces}"))
        .arg(format!("--max-steps={steps}"))
        .arg(format!("--seed={seed}"))
        .arg(format!(
            "--out-itf={}/trace_{{seq}}.itf.json",
            out.display()
        ))
        .arg(spec.file)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", quint.display()));
    assert!(
        output.status.success(),
        "quint run of {}/{} failed ({}):\n{}\n{}",
        spec.protocol,
        spec.file,
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let files = itf_files(&out);
    assert_eq!(
        files.len(),
        traces,
        "quint wrote {} traces of {} into {}, not {traces}",
        files.len(),
        spec.main,
        out.display()
    );
    std::fs::write(&stamp_path, stamp)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", stamp_path.display()));
    eprintln!(
        "mbt: {traces} traces of {} ({steps} steps at most, seed {seed}) generated in {:.1} s \
         into {}",
        spec.main,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    files.iter().map(|file| read_trace(file)).collect()
}

/// Reads an ITF trace written by `quint run --mbt`.
fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

pub(crate) fn read_trace(path: &Path) -> Trace {
    let text = read_text(path);
    let json: Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()));
    let states = json["states"]
        .as_array()
        .unwrap_or_else(|| panic!("{} has no states", path.display()))
        .iter()
        .map(|state| {
            let object = state
                .as_object()
                .unwrap_or_else(|| panic!("{}: a state is not an object", path.display()));
            let action = object
                .get("mbt::actionTaken")
                .and_then(Value::as_str)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: a state has no mbt::actionTaken (run quint with --mbt)",
                        path.display()
                    )
                })
                .to_string();
            let picks = object
                .get("mbt::nondetPicks")
                .and_then(Value::as_object)
                .map(|picks| picks.clone().into_iter().collect())
                .unwrap_or_default();
            let vars = object
                .iter()
                .filter(|(name, _)| !name.starts_with('#') && !name.starts_with("mbt::"))
                .map(|(name, value)| {
                    let short = name.rsplit("::").next().unwrap_or(name);
                    (short.to_string(), value.clone())
                })
                .collect();
            State {
                action,
                picks,
                vars,
            }
        })
        .collect();
    let main = json["vars"]
        .as_array()
        .and_then(|vars| vars.first())
        .and_then(Value::as_str)
        .and_then(|var| var.split("::").next())
        .unwrap_or_default()
        .to_string();
    Trace {
        path: path.to_path_buf(),
        main,
        states,
    }
}

// ---------------------------------------------------------------------------------------
// ITF values (https://apalache-mc.org/docs/adr/015adr-trace.html)

/// An integer (`{"#bigint": "12"}`, or a plain JSON number).
pub(crate) fn int(value: &Value) -> i64 {
    if let Some(number) = value.as_i64() {
        return number;
    }
    value["#bigint"]
        .as_str()
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("not an ITF integer: {value}"))
}

pub(crate) fn boolean(value: &Value) -> bool {
    value
        .as_bool()
        .unwrap_or_else(|| panic!("not an ITF boolean: {value}"))
}

pub(crate) fn string(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not an ITF string: {value}"))
}

/// A tuple's elements (`{"#tup": [...]}`).
pub(crate) fn tuple(value: &Value) -> &[Value] {
    value["#tup"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("not an ITF tuple: {value}"))
}

/// A list (a JSON array).
pub(crate) fn list(value: &Value) -> &[Value] {
    value
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("not an ITF list: {value}"))
}

/// A set's elements (`{"#set": [...]}`).
pub(crate) fn set(value: &Value) -> &[Value] {
    value["#set"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("not an ITF set: {value}"))
}

/// A map's (key, value) pairs (`{"#map": [[k, v], ...]}`).
pub(crate) fn map(value: &Value) -> Vec<(&Value, &Value)> {
    value["#map"]
        .as_array()
        .unwrap_or_else(|| panic!("not an ITF map: {value}"))
        .iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([key, value]) => (key, value),
            _ => panic!("not an ITF map entry: {pair}"),
        })
        .collect()
}

/// A variant's tag and its value (`{"tag": "Leader", "value": ...}`).
pub(crate) fn variant(value: &Value) -> (&str, &Value) {
    let tag = value["tag"]
        .as_str()
        .unwrap_or_else(|| panic!("not an ITF variant: {value}"));
    (tag, &value["value"])
}

/// `Some(v)` / `None` as Quint's `--mbt` writes nondeterministic picks.
pub(crate) fn option(value: &Value) -> Option<&Value> {
    match variant(value) {
        ("Some", inner) => Some(inner),
        ("None", _) => None,
        (tag, _) => panic!("not an option: tag {tag}"),
    }
}
