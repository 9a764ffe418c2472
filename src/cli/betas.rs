//! `betas`: single-trial response estimates from a subject's BIDS runs (`train::betas`), for
//! calibrating from offline betas. Turns the arguments into a `BetasJob` and prints a summary;
//! the GLM itself is the library's.

use std::path::PathBuf;

use anyhow::Result;

use brainmclip::train::betas::{estimate_betas, BetasJob};

#[derive(clap::Args)]
pub struct BetasArgs {
    /// BIDS root (with sub-<subject>/func/*_bold.nii.gz and *_events.tsv).
    #[arg(long)]
    bids: PathBuf,
    /// Subject label, e.g. 01 (a leading "sub-" is accepted).
    #[arg(long)]
    subject: String,
    /// Output folder for sub-<subject>_desc-singletrial_betas.nii.gz and .tsv.
    #[arg(long)]
    out: PathBuf,
    /// A session file for [preprocess] (masks, motion, dummy scans); masks default to the
    /// BIDS anat/sub-<subject>_desc-visual_dseg.nii.gz and .tsv.
    #[arg(long)]
    session: Option<PathBuf>,
    /// Highest Legendre drift degree (0 = intercept only); default: per run, the highest up
    /// to 3 that the design can tell apart from its trials.
    #[arg(long)]
    drift_degree: Option<usize>,
    /// Volumes to leave out at the start of each run (default: the session file's, else the
    /// run sidecar's DummyScans, else 0).
    #[arg(long)]
    dummy_scans: Option<u32>,
}

pub fn betas_cmd(args: BetasArgs) -> Result<()> {
    let mut job = BetasJob::new(args.bids, &args.subject, args.out);
    job.session = args.session;
    job.drift_degree = args.drift_degree;
    job.dummy_scans = args.dummy_scans;
    let s = estimate_betas(&job)?;
    let degrees: Vec<String> = s
        .per_run
        .iter()
        .map(|r| r.drift_degree.to_string())
        .collect();
    println!(
        "betas: {} runs, {} trials, {} voxels in {:.1} s (drift degrees {}) -> {} and {}",
        s.runs,
        s.trials,
        s.voxels,
        s.seconds,
        degrees.join(","),
        s.betas.display(),
        s.table.display()
    );
    Ok(())
}
