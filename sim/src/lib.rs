//! # myelin-sim: deterministic simulation of Myelin nodes
//!
//! madsim runs real myelin nodes (the node crate's own server, `myelin_node::run_node_with`)
//! and simulated Kafka clients (the `myelin-client` crate over simulated TCP), each on its
//! own virtual IP, in one process, in virtual time, with one seeded RNG. The same seed on
//! the same commit replays the same run, bit for bit: the run's trace digest says so.
//!
//! ## Commands
//! Build with `--cfg madsim` through the cargo aliases of `.cargo/config.toml`:
//! - `cargo sim -- --seed 42` replays one seed: prints the scenario, runs it, prints the
//!   summary (operations attempted, acknowledged and read, faults injected, checks, trace
//!   digest) and, on a violation, the violations and the exact replay command; exits 1.
//! - `cargo sim -- --seeds 0..200 [--jobs 2]` sweeps seeds with a progress bar on stderr, one
//!   summary line per seed on stdout, and lists the failing seeds.
//! - `cargo sim -- --seed 42 --trace run.jsonl` writes every core input and output (and the
//!   faults and client operations) as JSON lines; see [`trace`].
//! - `cargo sim -- --seed 42 --html run.html` writes the run as one self-contained HTML
//!   page, an interactive timeline (see [`timeline`]); with `--shrink`, of the shrunk run.
//! - `cargo sim -- --scenario '<json>'` runs a scenario given as JSON (a shrunk one).
//! - `cargo sim -- --seed 42 --shrink` shrinks a failing scenario and prints the result.
//! - `cargo sim -- --bench` measures simulated seconds and operations per wall second.
//! - `cargo sim --features defects -- --seed 42 --defect ack-before-fsync` runs with a
//!   deliberate bug (see `myelin_core::defects`).
//! - `cargo sim -- --cluster --seed 42` runs a cluster scenario (3 or 5 nodes replicating
//!   one topic); `--groups` a consumer-group scenario; `--transactions` a transaction
//!   scenario (transactional producers, exactly-once copiers, read_committed consumers,
//!   coordinator failovers right after an EndTxn).
//! - `cargo sim-test` runs the simulator's tests (200 seeds of independent nodes, 400
//!   cluster seeds, 200 group seeds, 200 transaction seeds, determinism,
//!   proptest-generated scenarios, regressions, the `--html` page opened in headless
//!   Chromium); `cargo sim-test --features defects` adds the test that each deliberate
//!   defect is caught and shrinks to a short schedule, and a failing run's page.
//!
//! docs/SIMULATION.md is the guide (reading a summary and a trace, the known bugs found).
//!
//! ## Reading order
//! [`scenario`] (what a run does, from a seed), [`simfs`] (the crash model: a file system
//! that loses what was not synced), `harness`
//! (how a run is carried out), `workload` (the clients), `group_member` and `txn_clients`
//! (consumer-group members; transactional producers, copiers and output consumers),
//! [`history`] and [`checkers`]
//! (what is recorded and which invariants are checked), [`trace`] (the trace and its
//! digest), [`timeline`] (the run as an HTML page, `--html`), [`shrink`] (minimal failing
//! schedules).
//!
//! ## Design decisions, and why
//! - **Real nodes, real clients.** A node is `run_node_with`, the same function the `myelin`
//!   binary runs, so the wire layer, the runtime's group commit and the core are all under
//!   test. The only differences are the hooks of `myelin_node::runtime::NodeHooks` (trace,
//!   clock offset, fsync latency, broker seed, the deliberate defect) and the file system.
//! - **One storage engine, a simulated file system** ([`simfs::SimFileSystem`]): every node
//!   runs the real binary's storage engine, `myelin_node::storage::file::FileStorage`, opened
//!   at each start on a file system the harness keeps, with power-loss semantics (unsynced
//!   writes lost or torn, directory entries lost unless the directory was fsynced, sticky
//!   fsync failure). madsim's file system does not lose unsynced writes on a crash, and
//!   tokio's is not simulated. Kill + crash + restart runs the engine's real recovery over
//!   what survived.
//! - **fsync takes time.** Each group-commit sync waits a latency drawn from the scenario's
//!   range before it runs, so crashes land while acknowledgements wait for durability,
//!   which is where durability bugs live.
//! - **Fail-stop without exiting.** Under madsim a node whose storage fails stops its core
//!   task instead of exiting the process; the supervisor sees the failed fsync on the file
//!   system, crashes it and restarts the node.
//! - **Independent nodes or one cluster**: plain seeds run three single-node clusters, one
//!   topic each, clients talking to one node; `--cluster`, `--groups` and
//!   `--transactions` seeds run one replicated cluster. The checkers key everything by
//!   (node, partition).
//! - **Faults aimed at roles**: group scenarios (not cluster ones yet) aim some crashes and
//!   isolations at the current leader of a partition, the controller or the group
//!   coordinator (`scenario::Aim`), resolved when they strike from the leadership the
//!   checkers observed, so the faults land where the protocols are busiest.
//! - **The final check survives a power loss**: after the workload, every fault heals, every
//!   node crashes once more and restarts, and each partition is read back in full. What
//!   was acknowledged (or read) must be there.
//! - **No global state**: per-run state lives in the runtime's tasks and in `Arc`s the
//!   harness holds; each node's broker RNG is seeded from the scenario (rand's thread RNG
//!   would carry state from one run to the next in a sweep).
//! - **One process per run.** A seed replays exactly in a fresh process, but not
//!   necessarily after other runs in the same process: tokio's `select!` draws from an RNG
//!   seeded from a process-wide counter, and madsim seeds std's `HashMap` keys only in a
//!   thread's first runtime. So sweeps, shrinking and the tests run each scenario in a child
//!   process (`harness::run`), and a single `--seed` run is its process's first run.
//! - **Determinism check**: tests compare trace digests of two runs of one seed, and of two
//!   seeds; `madsim`'s own checker only compares RNG calls (and would miss the above).
//! - **Deliberate defects** are compiled only with the `defects` feature, which only the
//!   simulator's commands enable, and are selected per run (`--defect`), never by global
//!   state. CI runs `cargo sim-test --features defects`: one build for every test.

pub mod checkers;
#[cfg(madsim)]
mod group_member;
#[cfg(madsim)]
mod group_protocol;
#[cfg(madsim)]
pub mod harness;
pub mod history;
pub mod scenario;
pub mod shrink;
pub mod simfs;
pub mod timeline;
pub mod trace;
#[cfg(madsim)]
mod txn_clients;
#[cfg(madsim)]
mod workload;

#[cfg(madsim)]
pub use harness::{run, run_in_process, run_seeds, RunOptions, RunReport};
pub use scenario::Scenario;
