//! `myelin-sim`: replay a seed, sweep a range of seeds, shrink a failure, or benchmark the
//! simulator. Run it through the cargo alias (`cargo sim -- --help`); see the crate doc.

#[cfg(madsim)]
mod cli;

#[cfg(madsim)]
fn main() {
    std::process::exit(cli::main());
}

#[cfg(not(madsim))]
fn main() {
    eprintln!(
        "myelin-sim runs only in a simulation build (--cfg madsim): use `cargo sim -- --seed 42` \
         (the alias in .cargo/config.toml)"
    );
    std::process::exit(2);
}
