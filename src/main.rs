//! The `brainmclip` command line: one subcommand per job. The only place `anyhow` is used.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod cli;

use brainmclip::config::SessionConfig;
use brainmclip::ingest::replay::{run_replay, FaultKind, OutFormat, ReplayOptions, WriteMode};

#[derive(Parser)]
#[command(
    name = "brainmclip",
    version,
    about = "Live fMRI-to-image decoding beside the scanner"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a complete, commented session file (every option at its default), or check one.
    Config {
        /// Print the example session.toml.
        #[arg(long)]
        example: bool,
        /// Validate this session file and print it with defaults filled in.
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
    },
    /// Header summary of a NIfTI file (and tSNR for a 4-D run).
    Inspect {
        file: PathBuf,
        #[arg(long, default_value_t = 1 << 26)]
        max_voxels: usize,
    },
    /// Scanner emulator: write a recorded run into an export directory at TR pace, with faults.
    Replay(Box<ReplayArgs>),
    /// CLIP detail and semantic targets of a folder of images, into one safetensors file.
    Features {
        /// A Hugging Face CLIP folder (config.json + model.safetensors).
        #[arg(long)]
        encoder: PathBuf,
        #[arg(long)]
        images: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Encoder blocks averaged for the detail target, 1-based (11-20 for ViT-L/14).
        #[arg(long, default_value = "11-20")]
        layers: String,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Stop after this many new batches (a rerun resumes).
        #[arg(long)]
        max_batches: Option<usize>,
    },
    /// Simulate a subject and a session (BIDS layout, with ground truth): synthetic data.
    Simulate(SimulateArgs),
    /// Train the demo world's own CLIP on simulator images and captions (resumable).
    TrainEncoder(cli::train::TrainEncoderArgs),
    /// The bundled synthetic session through the whole pipeline with the shipped models.
    Demo(cli::demo::DemoArgs),
    /// Train the few-step diffusion decoder on simulator images and the encoder's features.
    TrainGenerator(cli::train::TrainGeneratorArgs),
    /// Train a subject's projector from BIDS runs, stimuli and an encoder; score it on test runs.
    Calibrate(cli::calibrate::CalibrateArgs),
    /// Score calibrations on their held-out test trials, side by side.
    Eval(cli::calibrate::EvalArgs),
    /// The live daemon: watch the export directory named in the session file.
    Run(cli::run::RunArgs),
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// A 4-D NIfTI run, or a folder of 3-D volumes.
    source: PathBuf,
    /// The export directory to write into.
    #[arg(long)]
    to: PathBuf,
    /// TR in seconds (default: the source header's pixdim[4]).
    #[arg(long)]
    tr: Option<f64>,
    /// Speed factor (10 = ten times faster than the scanner).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    #[arg(long, value_enum, default_value = "nii.gz")]
    format: OutFormat,
    /// atomic: temp file + rename; chunked: in place, in chunks with pauses.
    #[arg(long, default_value = "atomic", value_parser = ["atomic", "chunked"])]
    write: String,
    #[arg(long, default_value_t = 65536)]
    chunk_bytes: usize,
    #[arg(long, default_value_t = 5.0)]
    chunk_pause_ms: f64,
    #[arg(long, default_value = "vol")]
    prefix: String,
    #[arg(long, default_value_t = 1)]
    first_index: u32,
    /// Replay only the first N volumes.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A fault at an output index, e.g. `--fault 5:drop` (repeatable). Kinds: drop, swap,
    /// duplicate, preallocate, truncate-late, truncate-never.
    #[arg(long, value_name = "INDEX:KIND")]
    fault: Vec<String>,
    /// A fault probability per volume, e.g. `--rate drop=0.05` (repeatable).
    #[arg(long, value_name = "KIND=P")]
    rate: Vec<String>,
    /// Delay each write by a uniform random 0..J ms.
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// How many TRs after a truncated write the file is completed (truncate-late).
    #[arg(long, default_value_t = 2.0)]
    complete_late_trs: f64,
    /// Manifest path (default: DIR/replay_manifest.json).
    #[arg(long)]
    manifest: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SimulateArgs {
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

fn simulate(args: SimulateArgs) -> Result<()> {
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

fn parse_kind(text: &str) -> Result<FaultKind> {
    <FaultKind as clap::ValueEnum>::from_str(text, true).map_err(|_| {
        anyhow::anyhow!(
            "unknown fault kind {text:?}; expected drop, swap, duplicate, preallocate, truncate-late or truncate-never"
        )
    })
}

fn replay(args: Box<ReplayArgs>) -> Result<()> {
    let mut o = ReplayOptions::new(&args.source, &args.to);
    o.tr_s = args.tr;
    o.speed = args.speed;
    o.format = args.format;
    o.write = if args.write == "chunked" {
        WriteMode::Chunked {
            chunk_bytes: args.chunk_bytes,
            pause: Duration::from_secs_f64(args.chunk_pause_ms.max(0.0) / 1e3),
        }
    } else {
        WriteMode::Atomic
    };
    o.prefix = args.prefix;
    o.first_index = args.first_index;
    o.limit = args.limit;
    o.seed = args.seed;
    o.jitter_ms = args.jitter_ms;
    o.complete_late_trs = args.complete_late_trs;
    o.manifest = args.manifest;
    let mut faults = BTreeMap::new();
    for f in &args.fault {
        let (index, kind) = f
            .split_once(':')
            .with_context(|| format!("--fault {f:?}: expected INDEX:KIND"))?;
        let index: u32 = index
            .parse()
            .with_context(|| format!("--fault {f:?}: {index:?} is not an index"))?;
        faults.insert(index, parse_kind(kind)?);
    }
    o.faults_at = faults;
    for r in &args.rate {
        let (kind, p) = r
            .split_once('=')
            .with_context(|| format!("--rate {r:?}: expected KIND=P"))?;
        let p: f64 = p
            .parse()
            .with_context(|| format!("--rate {r:?}: {p:?} is not a probability"))?;
        if !(0.0..=1.0).contains(&p) {
            bail!("--rate {r:?}: the probability must be within 0..1");
        }
        o.rates.push((parse_kind(kind)?, p));
    }
    eprintln!(
        "replaying {} into {} ...",
        o.source.display(),
        o.to.display()
    );
    let manifest = run_replay(&o)?;
    let faults: Vec<String> = manifest
        .volumes
        .iter()
        .filter_map(|v| v.fault.map(|k| format!("{}:{k:?}", v.index)))
        .collect();
    println!(
        "wrote {} volumes ({} file operations) into {} at TR {:.3} s / speed {}; faults: {}",
        manifest.n_volumes,
        manifest.actions.len(),
        o.to.display(),
        manifest.tr_s,
        manifest.speed,
        if faults.is_empty() {
            "none".to_string()
        } else {
            faults.join(", ")
        }
    );
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Config { example, check } => match (example, check) {
            (true, _) => print!("{}", brainmclip::config::EXAMPLE),
            (false, Some(path)) => {
                let config = SessionConfig::load(&path)?;
                println!("{}", toml::to_string_pretty(&config)?);
                eprintln!("{}: valid", path.display());
            }
            (false, None) => {
                bail!("say --example to print a session file, or --check FILE to validate one")
            }
        },
        Command::Inspect { file, max_voxels } => {
            print!("{}", brainmclip::inspect::inspect(&file, max_voxels)?)
        }
        Command::Replay(args) => replay(args)?,
        Command::Run(args) => cli::run::run_cmd(args)?,
        Command::Simulate(args) => simulate(args)?,
        Command::TrainEncoder(args) => cli::train::train_encoder_cmd(args)?,
        Command::Demo(args) => cli::demo::demo_cmd(args)?,
        Command::TrainGenerator(args) => cli::train::train_generator_cmd(args)?,
        Command::Calibrate(args) => cli::calibrate::calibrate_cmd(args)?,
        Command::Eval(args) => cli::calibrate::eval_cmd(args)?,
        Command::Features {
            encoder,
            images,
            out,
            layers,
            batch,
            max_batches,
        } => {
            let (a, b) = layers
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .with_context(|| format!("--layers {layers:?}: expected FIRST-LAST, e.g. 11-20"))?;
            let job = brainmclip::features::FeatureJob {
                encoder,
                images,
                out: out.clone(),
                layers: (a, b),
                batch,
                max_batches,
                progress: true,
            };
            let summary = brainmclip::features::compute_features(&job)?;
            println!(
                "{} images: {} batches computed, {} reused; {}",
                summary.images,
                summary.computed_batches,
                summary.reused_batches,
                if summary.complete {
                    format!("wrote {}", out.display())
                } else {
                    "stopped early: run again to resume".into()
                }
            );
        }
    }
    Ok(())
}
