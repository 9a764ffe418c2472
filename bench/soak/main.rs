//! The soak (issue "Soak"): 10 000 volumes at a TR of 20-50 ms through the whole live path of the
//! demo (ingest from a watched export folder, realignment, masks, rolling z-scores, trials,
//! decoding and drawing with the shipped demo models, the feedback server with two subscribers).
//! Prints RSS every 500 volumes, latency p50/p99 per 1 000 volumes, the counts, and the budgets:
//! RSS flat within ±5 % after warm-up, no missed or misread volume, the p99 latency of the last
//! 1 000 within 1.2x of the second 1 000 (and both subscribers got every record). Exits 1 when a
//! budget fails, 2 when the soak could not run.
//!
//! ```sh
//! cargo run --example soak -- --volumes 10000
//! cargo run --release --example soak -- --volumes 10000 --tr-ms 20 --work soak-out
//! ```
//! About six minutes at TR 30 ms on a 2-core machine (five of feeding; the first start also
//! simulates the run and embeds the gallery, both kept in `--work` for the next one). A
//! 1 000-volume version runs in CI (`tests/soak.rs`).

#[path = "soak.rs"]
mod soak;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Soak the live path: many volumes at a fast TR, RSS, latency and budgets")]
struct Args {
    /// Volumes written (the demo run cycled with continuous numbering).
    #[arg(long, default_value_t = soak::DEFAULT_VOLUMES)]
    volumes: u32,
    /// Milliseconds between volumes.
    #[arg(long, default_value_t = soak::DEFAULT_TR_MS)]
    tr_ms: f64,
    /// Where the simulated run (kept between soaks), the export folder and the session go.
    #[arg(long, default_value = "soak-out")]
    work: PathBuf,
    /// ingest.deadline_tr for the session.
    #[arg(long, default_value_t = soak::DEFAULT_DEADLINE_TR)]
    deadline_tr: f64,
    /// Do not rank trials in the run's gallery (saves its first embedding, about 50 s).
    #[arg(long)]
    no_gallery: bool,
    /// Remove each volume file once preprocessed instead of leaving the export folder to grow
    /// as a scanner's does.
    #[arg(long)]
    remove_files: bool,
}

fn main() -> ExitCode {
    // Warnings (a missing volume, a sink falling behind) as they happen; RUST_LOG for more.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut options = soak::SoakOptions::new(args.work);
    options.volumes = args.volumes;
    options.tr_ms = args.tr_ms;
    options.deadline_tr = args.deadline_tr;
    options.gallery = !args.no_gallery;
    options.keep_files = !args.remove_files;
    match soak::run_soak(options) {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}
