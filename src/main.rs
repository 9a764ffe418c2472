//! The `brainmclip` command line: the subcommands' declarations, each handled by `cli/` (which
//! turns arguments into a config and calls the library). The binary is the only place
//! `anyhow` is used.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod cli;

use brainmclip::config::SessionConfig;

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
    /// Header summary of a NIfTI file (and tSNR for a 4-D run), or the series in a DICOM file
    /// or export folder.
    Inspect {
        file: PathBuf,
        #[arg(long, default_value_t = 1 << 26)]
        max_voxels: usize,
        /// Print the DICOM series as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A DICOM series folder to a 4-D NIfTI plus a BIDS sidecar JSON: the volumes `run` sees.
    Convert(cli::dicom::ConvertArgs),
    /// Scanner emulator: write a recorded run into an export directory at TR pace, with faults.
    Replay(Box<cli::replay::ReplayArgs>),
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
        /// Where the vision tower runs.
        #[arg(long, value_enum, default_value = "auto")]
        device: brainmclip::model::device::DeviceChoice,
    },
    /// Simulate a subject and a session (BIDS layout, with ground truth): synthetic data.
    Simulate(cli::simulate::SimulateArgs),
    /// Train the demo world's own CLIP on simulator images and captions (resumable).
    TrainEncoder(cli::train::TrainEncoderArgs),
    /// The bundled synthetic session through the whole pipeline with the shipped models.
    Demo(cli::demo::DemoArgs),
    /// Train the few-step diffusion decoder on simulator images and the encoder's features.
    TrainGenerator(cli::train_generator::TrainGeneratorArgs),
    /// Train a subject's projector from BIDS runs, stimuli and an encoder; score it on test runs.
    Calibrate(cli::calibrate::CalibrateArgs),
    /// Score calibrations on their held-out test trials, side by side.
    Eval(cli::calibrate::EvalArgs),
    /// Single-trial betas (% signal change) from a subject's BIDS runs: a least-squares GLM
    /// per run, one volume per trial, for calibrating from offline responses.
    Betas(cli::betas::BetasArgs),
    /// Serve burn-collective's orchestrator for a training run across several machines.
    Orchestrator(cli::cluster::OrchestratorArgs),
    /// The live daemon: watch the export directory named in the session file.
    Run(cli::run::RunArgs),
    /// A session folder's self-contained HTML report (motion, FD, DVARS, carpet, tSNR,
    /// latency, decoding); `run` and `demo` write it at the end of every run.
    Report {
        /// The session folder (`output.dir`).
        dir: PathBuf,
        /// Which session in that folder (2 for events-2.jsonl); the newest by default.
        #[arg(long)]
        number: Option<u32>,
    },
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
        Command::Inspect {
            file,
            max_voxels,
            json,
        } => {
            if cli::dicom::is_dicom_input(&file) {
                cli::dicom::inspect_cmd(&file, max_voxels, json)?
            } else {
                print!("{}", brainmclip::inspect::inspect(&file, max_voxels)?)
            }
        }
        Command::Convert(args) => cli::dicom::convert_cmd(args)?,
        Command::Replay(args) => cli::replay::replay_cmd(args)?,
        Command::Run(args) => cli::run::run_cmd(args)?,
        Command::Simulate(args) => cli::simulate::simulate_cmd(args)?,
        Command::TrainEncoder(args) => cli::train::train_encoder_cmd(args)?,
        Command::Demo(args) => cli::demo::demo_cmd(args)?,
        Command::TrainGenerator(args) => cli::train_generator::train_generator_cmd(args)?,
        Command::Calibrate(args) => cli::calibrate::calibrate_cmd(args)?,
        Command::Eval(args) => cli::calibrate::eval_cmd(args)?,
        Command::Betas(args) => cli::betas::betas_cmd(args)?,
        Command::Orchestrator(args) => cli::cluster::orchestrator_cmd(args)?,
        Command::Report { dir, number } => {
            let path = brainmclip::report::write_report(&dir, number)?;
            println!("report: {}", path.display());
        }
        Command::Features {
            encoder,
            images,
            out,
            layers,
            batch,
            max_batches,
            device,
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
                device: brainmclip::model::device::select(device)?,
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
