//! The mutation fuzzer (`brainmclip::fuzz`) over every parser that takes outside bytes: NIfTI
//! header and volume, gzip verification, DICOM, CSA, the session TOML, feedback client lines.
//!
//! Run (a million inputs per target; the DICOM target, with seeds up to 600 KB, is the slowest):
//!     cargo run --example fuzz -- --inputs 1000000
//! Options: `--seed S` (default 1), `--target NAME` (repeatable; default all; `--list` names
//! them), `--crashes DIR` (default `fuzz-crashes`), `--hang-ms MS` (default 2000),
//! `--abort-after-s S` (an input still running after S seconds is saved and the process aborted),
//! `--replay N` (run input N of each chosen target outside the catcher, so a panic prints its
//! backtrace and an abort happens in the open). It prints one line per target as it finishes,
//! then the report, and exits 1 when any input crashed or hung (2 when it could not start).
//! A crash's input is saved as `<crashes>/<target>/<hash>.bin`; make it a test in
//! `tests/fuzz.rs` (`mod regressions`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use brainmclip::fuzz::{self, FuzzOptions, FuzzReport};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Mutation fuzzer for brainmclip's parsers of outside bytes")]
struct Args {
    /// Inputs per target.
    #[arg(long, default_value_t = 1_000_000)]
    inputs: u64,
    /// The run's seed: input N of a target is the same bytes for the same seed everywhere.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A target to run (repeatable); all when none is given.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Where crashing and hanging inputs are saved.
    #[arg(long, default_value = "fuzz-crashes")]
    crashes: PathBuf,
    /// An input slower than this many ms counts as a hang.
    #[arg(long, default_value_t = 2000)]
    hang_ms: u64,
    /// An input still running after this many seconds is saved and the process aborted.
    #[arg(long, default_value_t = 10)]
    abort_after_s: u64,
    /// Run only input N of each chosen target, without catching a panic.
    #[arg(long)]
    replay: Option<u64>,
    /// List the targets and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let targets = match fuzz::targets(root, &args.targets) {
        Ok(targets) => targets,
        Err(e) => {
            eprintln!("fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    if args.list {
        for t in &targets {
            println!(
                "{:<14} {} seeds, inputs up to {} bytes: {}",
                t.name,
                t.mutator.seeds().len(),
                t.mutator.max_len(),
                t.about
            );
        }
        return ExitCode::SUCCESS;
    }
    if let Some(index) = args.replay {
        for t in &targets {
            let input = t.mutator.input(args.seed, index);
            eprintln!(
                "{}: input {index} of --seed {} ({} bytes)",
                t.name,
                args.seed,
                input.len()
            );
            let outcome = (t.run)(&input);
            println!("{}: {outcome:?}", t.name);
        }
        return ExitCode::SUCCESS;
    }
    let options = FuzzOptions {
        hang_limit: Duration::from_millis(args.hang_ms),
        abort_after: Some(Duration::from_secs(args.abort_after_s.max(1))),
        crash_dir: Some(args.crashes.clone()),
        ..FuzzOptions::default()
    };
    eprintln!(
        "fuzzing {} target(s), {} inputs each, --seed {}; crashes to {}",
        targets.len(),
        args.inputs,
        args.seed,
        args.crashes.display()
    );
    let mut report = FuzzReport::default();
    for target in &targets {
        // Named before it starts: a parser that aborts the process (out of memory, a stack
        // overflow) leaves this as the last line.
        eprintln!(
            "{}: {} seeds ({})",
            target.name,
            target.mutator.seeds().len(),
            target.about
        );
        let result = fuzz::run_target(target, args.inputs, args.seed, &options);
        eprintln!("{result}");
        report.targets.push(result);
    }
    println!("{report}");
    if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
