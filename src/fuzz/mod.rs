//! A mutation fuzzer for the parsers that take bytes from outside the process: the NIfTI-1
//! header and single-volume reader, gzip verification (and the `.nii.gz` read behind it), the
//! DICOM reader, the Siemens CSA parser, the session TOML and the feedback server's client
//! lines.
//!
//! What it is: a deterministic mutator over the repository's real fixture files (`mutate`,
//! `seeds`: input `i` of a run with seed `s` is the same bytes everywhere), the targets, each a
//! public entry point called with the production limits (`targets`), and a runner that calls
//! each input under `catch_unwind` and reports accepted and rejected inputs, crashes (with the
//! input saved), inputs slower than a limit, the slowest input and peak memory (`runner`).
//! `cargo run --example fuzz -- --inputs 1000000` runs a million inputs per target;
//! `tests/fuzz.rs` runs 10 000 in CI.
//!
//! What it is not: coverage-guided (no instrumentation, so no corpus grows: stable Rust and no
//! extra toolchain were the constraint), and not a memory limiter: a parser that allocates from
//! a hostile size without a bound aborts the process, which no `catch_unwind` can report; the
//! peak memory in the report is where a loose bound shows first. It never changes a parser.

mod mutate;
mod report;
mod runner;
mod seeds;
mod targets;
mod text;

use std::path::PathBuf;
use std::sync::Arc;

pub use mutate::{Grammar, Mutator, MAX_STACKED_EDITS};
pub use report::{Crash, FuzzReport, Hang, TargetReport};
pub use runner::{peak_rss_bytes, run, run_input, run_target, FuzzOptions};
pub use seeds::MAX_DICOM_SEED_BYTES;
pub use targets::{target_names, targets};

/// What a target made of one input (a panic is neither: the runner records it as a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The parser returned a value.
    Accepted,
    /// The parser returned an error.
    Rejected,
}

/// One parser under test.
#[derive(Clone)]
pub struct Target {
    pub name: &'static str,
    /// What it calls, for the report.
    pub about: &'static str,
    /// Its seeds and how they are mutated (shared with the runner's watchdog, which rebuilds a
    /// hung input from its index).
    pub mutator: Arc<Mutator>,
    pub run: fn(&[u8]) -> Outcome,
}

/// Why the fuzzer could not start.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error("{path}: cannot read a fuzz seed: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: a gzip seed does not inflate: {source}")]
    Inflate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "target {target}: no seed files under {root} (expected the crate's folder, with \
         tests/fixtures)"
    )]
    NoSeeds { target: &'static str, root: PathBuf },
    #[error("unknown fuzz target {name:?}; the targets are {known}")]
    UnknownTarget { name: String, known: String },
}
