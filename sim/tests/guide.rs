//! The guide's runs still show what the guide says (`docs/guide/`). Every chapter ends with
//! "Replay it": `cargo sim` commands in its fenced code blocks. `docs/guide/runs.json` lists
//! each of them with what its chapter claims about it: the run passes, or fails with the
//! named invariants (and then breaks none without its defect); its trace holds at least
//! (or at most) so many lines of a kind whose event contains a text; a `--shrink` run
//! shrinks to at most so many faults. This test replays every run and checks
//! every claim, and checks that the chapters name exactly the runs the list holds, so a
//! chapter cannot point to a run nobody replays. (Simulation builds with the feature only:
//! `cargo sim-test --features defects --test guide`.)
#![cfg(all(madsim, feature = "defects"))]

use myelin_core::defects::Defect;
use myelin_sim::shrink::shrink;
use myelin_sim::{run, RunOptions, RunReport, Scenario};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One run of the guide and what its chapter says about it (an entry of `runs.json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuideRun {
    /// The chapter's file name, under `docs/guide/`.
    chapter: String,
    /// The command exactly as the chapter prints it.
    command: String,
    /// The invariants the run breaks (empty: it passes).
    #[serde(default)]
    fails_with: Vec<String>,
    /// What its trace holds.
    #[serde(default)]
    trace: Vec<TraceClaim>,
    /// Some node's core was told one sync covered at least this many appends (group commit).
    #[serde(default)]
    sync_covers_appends_at_least: Option<u64>,
    /// For a `--shrink` command: the shrunk scenario keeps at most this many faults and
    /// still breaks the same invariants.
    #[serde(default)]
    shrinks_to_faults_at_most: Option<usize>,
}

/// At least `at_least` (and at most `at_most`, if given) trace lines of `kind` (of `node`,
/// if given) whose event contains `contains`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceClaim {
    kind: String,
    #[serde(default)]
    node: Option<u64>,
    #[serde(default)]
    contains: String,
    #[serde(default)]
    at_least: u64,
    #[serde(default)]
    at_most: Option<u64>,
}

/// What a `cargo sim` command of the guide runs.
#[derive(Debug)]
struct Replay {
    scenario: Scenario,
    defect: Option<Defect>,
    shrink: bool,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("sim/ sits in the workspace")
        .to_path_buf()
}

fn guide() -> PathBuf {
    workspace().join("docs").join("guide")
}

/// Parses a guide command: `cargo sim [--features defects] -- [--cluster|--groups|
/// --transactions] (--seed N | --scenario "$(cat FILE)") [--defect NAME] [--trace FILE]
/// [--html FILE] [--shrink]`.
fn parse_command(command: &str) -> Result<Replay, String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let Some(dashes) = words.iter().position(|word| *word == "--") else {
        return Err(format!("no `--` in `{command}`"));
    };
    let with_features = words[..dashes].join(" ");
    if with_features != "cargo sim" && with_features != "cargo sim --features defects" {
        return Err(format!("`{command}` is not a `cargo sim` run"));
    }
    let mut generate: fn(u64) -> Scenario = Scenario::generate;
    let mut scenario = None;
    let mut defect = None;
    let mut shrink = false;
    let mut arguments = words[dashes + 1..].iter();
    while let Some(flag) = arguments.next() {
        let mut value = || {
            arguments
                .next()
                .copied()
                .ok_or_else(|| format!("{flag} has no value in `{command}`"))
        };
        match *flag {
            "--cluster" => generate = Scenario::generate_cluster,
            "--groups" => generate = Scenario::generate_groups,
            "--transactions" => generate = Scenario::generate_transactions,
            "--seed" => {
                let seed = value()?;
                scenario = Some(Err(seed
                    .parse::<u64>()
                    .map_err(|_| format!("bad seed {seed} in `{command}`"))?));
            }
            "--scenario" => {
                // The shell's `"$(cat FILE)"`, split at its space.
                let cat = value()?;
                let file = value()?
                    .strip_suffix(")\"")
                    .filter(|_| cat == "\"$(cat")
                    .ok_or_else(|| format!("--scenario wants \"$(cat FILE)\" in `{command}`"))?;
                let json = std::fs::read_to_string(workspace().join(file))
                    .map_err(|error| format!("{file}: {error}"))?;
                scenario = Some(Ok(
                    Scenario::from_json(&json).map_err(|error| format!("{file}: {error}"))?
                ));
            }
            "--defect" => {
                let name = value()?;
                defect = Some(
                    Defect::from_name(name)
                        .ok_or_else(|| format!("unknown defect {name} in `{command}`"))?,
                );
            }
            "--shrink" => shrink = true,
            "--trace" | "--html" => {
                value()?;
            }
            other => return Err(format!("unexpected {other} in `{command}`")),
        }
    }
    if defect.is_some() && !with_features.ends_with("defects") {
        return Err(format!("`{command}` names a defect without the feature"));
    }
    let scenario = match scenario {
        Some(Ok(scenario)) => scenario,
        Some(Err(seed)) => generate(seed),
        None => return Err(format!("`{command}` names no seed and no scenario")),
    };
    Ok(Replay {
        scenario,
        defect,
        shrink,
    })
}

/// The `cargo sim` lines of a chapter's fenced code blocks.
fn chapter_commands(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut commands = Vec::new();
    for line in markdown.lines() {
        let line = line.trim();
        if line.starts_with("```") {
            in_code = !in_code;
        } else if in_code && line.starts_with("cargo sim") {
            commands.push(line.to_string());
        }
    }
    commands
}

/// The chapters: `docs/guide/NN-*.md`.
fn chapters() -> BTreeMap<String, String> {
    std::fs::read_dir(guide())
        .expect("docs/guide exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".md") && name.starts_with(|c: char| c.is_ascii_digit())
        })
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).expect("a readable chapter"),
            )
        })
        .collect()
}

fn runs() -> Vec<GuideRun> {
    let json = std::fs::read_to_string(guide().join("runs.json")).expect("docs/guide/runs.json");
    serde_json::from_str(&json).expect("runs.json is a list of runs")
}

/// The claims of `run` its trace (JSON lines) does not bear out.
fn unmet_trace_claims(run: &GuideRun, trace: &str) -> Vec<String> {
    let lines: Vec<serde_json::Value> = trace
        .lines()
        .map(|line| serde_json::from_str(line).expect("a trace line is JSON"))
        .collect();
    let mut unmet = Vec::new();
    for claim in &run.trace {
        let found = lines
            .iter()
            .filter(|line| line["kind"] == claim.kind.as_str())
            .filter(|line| claim.node.is_none_or(|node| line["node"] == node))
            .filter(|line| {
                line["event"]
                    .as_str()
                    .is_some_and(|event| event.contains(&claim.contains))
            })
            .count() as u64;
        if found < claim.at_least || claim.at_most.is_some_and(|most| found > most) {
            unmet.push(format!(
                "{found} line(s) of kind {}{} containing {:?}, not the {}..={} claimed",
                claim.kind,
                claim
                    .node
                    .map(|n| format!(" of node {n}"))
                    .unwrap_or_default(),
                claim.contains,
                claim.at_least,
                claim
                    .at_most
                    .map(|most| most.to_string())
                    .unwrap_or_default()
            ));
        }
    }
    if let Some(wanted) = run.sync_covers_appends_at_least {
        let widest = widest_sync(&lines);
        if widest < wanted {
            unmet.push(format!(
                "the widest sync covered {widest} append(s), not the {wanted} claimed"
            ));
        }
    }
    unmet
}

/// The most appends one `Synced` input made durable on a node (between two of its syncs).
fn widest_sync(lines: &[serde_json::Value]) -> u64 {
    let mut last_synced: BTreeMap<u64, u64> = BTreeMap::new();
    let mut widest = 0;
    for line in lines {
        let (Some(node), Some(event)) = (line["node"].as_u64(), line["event"].as_str()) else {
            continue;
        };
        if line["kind"] == "start" {
            last_synced.remove(&node);
        }
        let Some(rest) = event.strip_prefix("Synced { through_sequence: ") else {
            continue;
        };
        let through: u64 = rest.trim_end_matches(" }").parse().expect("a sequence");
        if let Some(previous) = last_synced.insert(node, through) {
            widest = widest.max(through.saturating_sub(previous));
        }
    }
    widest
}

/// Replays one run and returns what does not hold of what its chapter says.
fn check_run(run_entry: &GuideRun, simulator: &Path) -> Vec<String> {
    let replay = match parse_command(&run_entry.command) {
        Ok(replay) => replay,
        Err(error) => return vec![error],
    };
    let trace_path = std::env::temp_dir().join(format!(
        "myelin-guide-{}-{}.jsonl",
        std::process::id(),
        run_entry.command.bytes().fold(0u64, |hash, byte| hash
            .wrapping_mul(31)
            .wrapping_add(byte.into()))
    ));
    let mut options = RunOptions::with_trace(Some(trace_path.clone()));
    options.defect = replay.defect;
    let report: RunReport = run(&replay.scenario, &options, simulator);
    let trace = std::fs::read_to_string(&trace_path).unwrap_or_default();
    let _ = std::fs::remove_file(&trace_path);
    let mut problems = Vec::new();
    let broken = report.failure_signature();
    let claimed: BTreeSet<String> = run_entry.fails_with.iter().cloned().collect();
    if claimed.is_empty() {
        if !report.passed() {
            problems.push(format!("it fails:\n{}", report.summary()));
        }
    } else {
        if !claimed.is_subset(&broken) {
            problems.push(format!(
                "it breaks {broken:?}, not every one of {claimed:?}:\n{}",
                report.summary()
            ));
        }
        if let Some(defect) = replay.defect {
            // A shrunk scenario may read too little to prove progress: only the invariants
            // count here, as in `defects.rs`.
            let healthy = run(&replay.scenario, &RunOptions::default(), simulator);
            if !healthy.failure_signature().is_empty() {
                problems.push(format!(
                    "it fails without {defect} too:\n{}",
                    healthy.summary()
                ));
            }
        }
    }
    problems.extend(unmet_trace_claims(run_entry, &trace));
    match (replay.shrink, run_entry.shrinks_to_faults_at_most) {
        (true, Some(faults_max)) => {
            problems.extend(unmet_shrink_claim(&report, &options, faults_max, simulator))
        }
        (false, None) => {}
        _ => problems
            .push("a --shrink command, and only one, claims shrinks_to_faults_at_most".into()),
    }
    problems
        .into_iter()
        .map(|problem| format!("{} `{}`: {problem}", run_entry.chapter, run_entry.command))
        .collect()
}

/// Most runs a shrink may make (the command line's default).
const SHRINK_RUNS_MAX: usize = 300;

/// Shrinks the failing run `caught` as `--shrink` does; returns what does not hold of "it
/// shrinks to at most `faults_max` faults and still fails the same way".
fn unmet_shrink_claim(
    caught: &RunReport,
    options: &RunOptions,
    faults_max: usize,
    simulator: &Path,
) -> Vec<String> {
    if caught.failure_signature().is_empty() {
        return vec!["it does not fail, so there is nothing to shrink".into()];
    }
    let options = options.without_trace();
    let shrunk = shrink(caught.scenario.clone(), SHRINK_RUNS_MAX, |candidate| {
        run(candidate, &options, simulator).fails_like(caught)
    });
    let mut problems = Vec::new();
    if !run(&shrunk, &options, simulator).fails_like(caught) {
        problems.push(format!("the shrunk scenario does not fail:\n{shrunk}"));
    }
    if shrunk.faults.len() > faults_max {
        problems.push(format!(
            "it shrinks to {} faults, not at most {faults_max}:\n{shrunk}",
            shrunk.faults.len()
        ));
    }
    problems
}

#[test]
fn every_chapter_names_only_runs_the_guide_test_replays() {
    let chapters = chapters();
    assert!(
        chapters.len() >= 7,
        "the guide has {} chapters",
        chapters.len()
    );
    let listed: BTreeSet<(String, String)> = runs()
        .into_iter()
        .map(|run| (run.chapter, run.command))
        .collect();
    let mut named = BTreeSet::new();
    for (chapter, markdown) in &chapters {
        let commands = chapter_commands(markdown);
        assert!(
            !commands.is_empty(),
            "{chapter} has no run to replay (a `cargo sim` line in a code block)"
        );
        assert!(
            markdown.contains("## Replay it") && markdown.contains("## What to look for"),
            "{chapter} lacks its \"Replay it\" or \"What to look for\" section"
        );
        named.extend(
            commands
                .into_iter()
                .map(|command| (chapter.clone(), command)),
        );
    }
    let unlisted: Vec<_> = named.difference(&listed).collect();
    let unnamed: Vec<_> = listed.difference(&named).collect();
    assert!(
        unlisted.is_empty(),
        "chapters name runs docs/guide/runs.json does not list: {unlisted:#?}"
    );
    assert!(
        unnamed.is_empty(),
        "docs/guide/runs.json lists runs no chapter names: {unnamed:#?}"
    );
}

#[test]
fn every_run_of_the_guide_shows_what_its_chapter_says() {
    let simulator = Path::new(env!("CARGO_BIN_EXE_myelin-sim"));
    let runs = runs();
    let problems: Vec<String> = std::thread::scope(|scope| {
        let halves: Vec<_> = runs
            .chunks(runs.len().div_ceil(2).max(1))
            .map(|half| {
                scope.spawn(move || {
                    half.iter()
                        .flat_map(|run_entry| check_run(run_entry, simulator))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|half| half.join().expect("a checking thread"))
            .collect()
    });
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_claim_the_trace_does_not_bear_out_is_reported() {
    let claim = |contains: &str, at_least| TraceClaim {
        kind: "in".into(),
        node: Some(1),
        contains: contains.into(),
        at_least,
        at_most: None,
    };
    let run_entry = GuideRun {
        chapter: "test".into(),
        command: String::new(),
        fails_with: Vec::new(),
        trace: vec![claim("Synced", 2), claim("Tick", 1)],
        sync_covers_appends_at_least: Some(3),
        shrinks_to_faults_at_most: None,
    };
    let trace = [
        r#"{"t_us":1,"node":1,"kind":"in","event":"Synced { through_sequence: 1 }"}"#,
        r#"{"t_us":2,"node":1,"kind":"in","event":"Synced { through_sequence: 3 }"}"#,
        r#"{"t_us":3,"node":2,"kind":"in","event":"Tick"}"#,
    ]
    .join("\n");
    let unmet = unmet_trace_claims(&run_entry, &trace);
    assert_eq!(unmet.len(), 2, "{unmet:?}");
    assert!(unmet[0].contains("Tick"), "{unmet:?}");
    assert!(unmet[1].contains("covered 2"), "{unmet:?}");
    assert!(parse_command("cargo sim -- --seed 1 --defect ack-before-fsync").is_err());
    assert!(
        parse_command("cargo sim -- --cluster --seed 7 --trace run.jsonl --html r.html").is_ok()
    );
}
