//! `replay`: the scanner emulator's command line. Turns the arguments (faults, rates, write
//! mode) into `ReplayOptions` and runs `brainmclip::ingest::replay`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use brainmclip::ingest::replay::{run_replay, FaultKind, OutFormat, ReplayOptions, WriteMode};

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// A 4-D NIfTI run, a folder of 3-D volumes, or a DICOM series folder (its files are
    /// written as they are, one volume's files per TR).
    source: PathBuf,
    /// For a DICOM folder: which series ("auto", a series number, or a regex on
    /// SeriesDescription).
    #[arg(long, default_value = "auto")]
    series: String,
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

fn parse_kind(text: &str) -> Result<FaultKind> {
    <FaultKind as clap::ValueEnum>::from_str(text, true).map_err(|_| {
        anyhow::anyhow!(
            "unknown fault kind {text:?}; expected drop, swap, duplicate, preallocate, truncate-late or truncate-never"
        )
    })
}

pub fn replay_cmd(args: Box<ReplayArgs>) -> Result<()> {
    let mut o = ReplayOptions::new(&args.source, &args.to);
    o.tr_s = args.tr;
    o.speed = args.speed;
    o.format = args.format;
    o.series = args.series.clone();
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
