//! `simulate`: the simulator's command line. Turns the arguments into a `SimConfig`, simulates
//! the subject and session (`brainmclip::sim`), and optionally exports one run like a scanner.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use brainmclip::config::SessionConfig;
use brainmclip::ingest::replay::{run_replay, ReplayOptions};

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Output folder (BIDS root).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A session file whose [simulate] section to use (otherwise the defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    train_runs: Option<usize>,
    #[arg(long)]
    test_runs: Option<usize>,
    #[arg(long)]
    volumes_per_run: Option<usize>,
    /// "3mm" (64x64x36) or "1.8mm" (NSD's 81x104x83).
    #[arg(long)]
    grid: Option<String>,
    /// Then write run N (see --export-run) into this directory at TR pace, as a scanner would.
    #[arg(long)]
    export_to: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    export_run: usize,
    /// Speed factor for --export-to.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
}

pub fn simulate_cmd(args: SimulateArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => SessionConfig::load(path)?.simulate,
        None => brainmclip::sim::SimConfig::default(),
    };
    if let Some(n) = args.train_runs {
        config.train_runs = n;
    }
    if let Some(n) = args.test_runs {
        config.test_runs = n;
    }
    if let Some(n) = args.volumes_per_run {
        config.volumes_per_run = n;
    }
    if let Some(grid) = &args.grid {
        config.grid = match grid.as_str() {
            "3mm" => brainmclip::sim::GridChoice::Mm3,
            "1.8mm" => brainmclip::sim::GridChoice::Nsd,
            other => bail!("--grid {other:?}: expected \"3mm\" or \"1.8mm\""),
        };
    }
    let started = std::time::Instant::now();
    let summary = brainmclip::sim::simulate(&config, &args.out, args.seed)?;
    println!(
        "simulated sub-{} into {} in {:.1} s: {} runs ({} training images, {} test images x {}); voxels per area: {}",
        config.subject,
        summary.root.display(),
        started.elapsed().as_secs_f64(),
        summary.runs.len(),
        summary.n_train_images,
        summary.n_test_images,
        config.test_repeats,
        summary.voxels_per_area.iter().map(|(a, n)| format!("{a} {n}")).collect::<Vec<_>>().join(", ")
    );
    if let Some(dir) = &args.export_to {
        let run = summary
            .runs
            .get(args.export_run.wrapping_sub(1))
            .with_context(|| {
                format!(
                    "--export-run {}: the session has runs 1 to {}",
                    args.export_run,
                    summary.runs.len()
                )
            })?;
        let mut o = ReplayOptions::new(run, dir);
        o.speed = args.speed;
        o.tr_s = Some(config.tr);
        eprintln!(
            "exporting {} into {} at TR pace (speed {}) ...",
            run.display(),
            dir.display(),
            args.speed
        );
        let manifest = run_replay(&o)?;
        println!(
            "exported {} volumes into {}",
            manifest.n_volumes,
            dir.display()
        );
    }
    Ok(())
}
