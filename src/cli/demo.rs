//! `demo`: the bundled synthetic session through the whole live pipeline. It simulates (fixed
//! seed) a held-out test run of the demo subject — the same simulated subject `calibration/demo`
//! was calibrated on, with images it never saw in training — replays it into an export folder
//! at scanner speed (TR 1.5 s; `--speed` to go faster), and runs the daemon with the shipped
//! encoder, projector and generator: every trial decoded, reconstructions drawn and saved.
//! At the end it scores the session (identification, PixCorr, SSIM, latency) into
//! `summary.json`. Everything here is synthetic: a simulated brain and small models trained on
//! the simulator's world, not real data.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use brainmclip::config::SessionConfig;
use brainmclip::metrics::{bootstrap, grain, greyscale, pixcorr, ssim, two_way_identification};
use brainmclip::sim::design::RunKind;
use brainmclip::sim::{run_kinds, simulate_runs, SimConfig};
use brainmclip::train::generator::{load_generator, Conditioner};

use super::run::{run_config, with_window};

/// The demo's feedback target: a prompt in the demo encoder's vocabulary.
pub const DEMO_TARGET: &str = "a large red circle";

/// The demo subject's simulation: `brainmclip simulate --out sim-demo --seed 0 --train-runs 36
/// --test-runs 5` is what `calibration/demo` was calibrated on.
pub const DEMO_SEED: u64 = 0;
pub const DEMO_TRAIN_RUNS: usize = 36;
pub const DEMO_TEST_RUNS: usize = 5;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Speed factor over the scanner (TR 1.5 s), or "max".
    #[arg(long, default_value = "1")]
    speed: String,
    /// No window: write the session folder and the summary only (automatic where there is no
    /// display).
    #[arg(long)]
    headless: bool,
    /// Where the simulated run, the export folder and the session go.
    #[arg(long, default_value = "demo-out")]
    out: PathBuf,
    /// Which held-out test run to replay (1 = the first).
    #[arg(long, default_value_t = 1)]
    test_run: usize,
    #[arg(long, default_value = "calibration/demo")]
    calibration: PathBuf,
    #[arg(long, default_value = "assets/demo-generator")]
    generator: PathBuf,
    /// Denoising steps per image.
    #[arg(long, default_value_t = 4)]
    steps: usize,
    /// Classifier-free guidance scale (1 = none).
    #[arg(long, default_value_t = 1.0)]
    guidance: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

fn read_rgb(path: &Path) -> Result<(Vec<f32>, usize)> {
    let img = image::open(path)
        .with_context(|| format!("{}: cannot read image", path.display()))?
        .to_rgb8();
    let size = img.width() as usize;
    Ok((
        img.as_raw().iter().map(|&v| v as f32 / 255.0).collect(),
        size,
    ))
}

pub fn demo_cmd(args: DemoArgs) -> Result<()> {
    let window = !args.headless && brainmclip::ui::display_available();
    if !args.headless && !window {
        eprintln!("no display (DISPLAY and WAYLAND_DISPLAY are unset): running headless");
    }
    let sim = SimConfig {
        train_runs: DEMO_TRAIN_RUNS,
        test_runs: DEMO_TEST_RUNS,
        ..SimConfig::default()
    };
    let test_runs: Vec<usize> = run_kinds(&sim, DEMO_SEED)
        .into_iter()
        .filter(|(_, k)| *k == RunKind::Test)
        .map(|(r, _)| r)
        .collect();
    let run = *test_runs
        .get(args.test_run.wrapping_sub(1))
        .with_context(|| {
            format!(
                "--test-run {}: the demo subject has test runs 1 to {}",
                args.test_run,
                test_runs.len()
            )
        })?;
    let bids = args.out.join("sim");
    eprintln!(
        "simulating test run {run} of the demo subject (seed {DEMO_SEED}) into {} ...",
        bids.display()
    );
    let summary = simulate_runs(&sim, &bids, DEMO_SEED, Some(&[run]))?;
    let bold = summary
        .runs
        .first()
        .context("the simulation wrote no run")?
        .clone();
    let sub = bids.join(format!("sub-{}", sim.subject));
    let events = PathBuf::from(
        bold.to_string_lossy()
            .replace("_bold.nii.gz", "_events.tsv"),
    );
    let mut config = SessionConfig::default();
    config.session.tr = sim.tr;
    config.session.volumes = sim.volumes_per_run as u32;
    config.ingest.dir = args.out.join("export");
    let p = &mut config.preprocess;
    p.dummy_scans = sim.dummy_scans as u32;
    p.labels = Some(sub.join(format!("anat/sub-{}_desc-visual_dseg.nii.gz", sim.subject)));
    p.label_table = Some(sub.join(format!("anat/sub-{}_desc-visual_dseg.tsv", sim.subject)));
    p.events = Some(events);
    config.output.dir = args.out.join("session");
    config.feedback.address = "127.0.0.1:0".into();
    config.decode.calibration = Some(args.calibration.clone());
    config.decode.generator = Some(args.generator.clone());
    config.decode.steps = args.steps;
    config.decode.guidance = args.guidance;
    // The window shows each trial's stimulus and its top-3 among the run's images; the
    // feedback value is the cosine with a text target, as a neurofeedback session would use.
    let (info, _) = load_generator::<burn::backend::Flex>(&args.generator, &Default::default())?;
    config.decode.encoder = Some(PathBuf::from(&info.encoder));
    config.decode.stimuli = Some(bids.clone());
    config.decode.gallery = Some(bids.join("stimuli"));
    config.decode.target_text = Some(DEMO_TARGET.to_string());
    // A fresh export folder and session: a rerun must not see the last run's files.
    for dir in [&config.ingest.dir, &config.output.dir] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("{}: cannot clear", dir.display()))?;
        }
    }
    let speed = args.speed.clone();
    let source = bold.clone();
    let title = format!("brainmclip demo: simulated subject, test run {run} (synthetic data)");
    let outcome = with_window(window, &title, move |link| {
        run_config(config, None, Some(source), speed, link)
    })?;

    // Score the session against what was shown.
    let conditioner = Conditioner::load(Path::new(&info.encoder))?;
    let mut truth_embeddings = Vec::new();
    let mut decoded_embeddings = Vec::new();
    for d in &outcome.decoded {
        let Some(stim) = &d.stimulus else { continue };
        let (rgb, size) = read_rgb(&bids.join(stim))?;
        let e = brainmclip::train::generator_eval::embed_images(&conditioner, &[rgb], size)?;
        truth_embeddings.push(e.into_iter().next().unwrap_or_default());
        decoded_embeddings.push(d.embedding.clone());
    }
    let identification = bootstrap(
        &two_way_identification(&decoded_embeddings, &truth_embeddings),
        1000,
        1,
    );
    let (mut pc, mut ss) = (Vec::new(), Vec::new());
    let (mut drawn_grain, mut true_grain) = (Vec::new(), Vec::new());
    for r in &outcome.reconstructions {
        let Some(stim) = &r.stimulus else { continue };
        let (truth, size) = read_rgb(&bids.join(stim))?;
        if size != r.size {
            continue;
        }
        let drawn: Vec<f32> = r.rgb.iter().map(|&v| v as f32 / 255.0).collect();
        pc.push(pixcorr(&drawn, &truth));
        ss.push(ssim(&greyscale(&drawn), &greyscale(&truth), size, size));
        drawn_grain.push(grain(&greyscale(&drawn), size, size));
        true_grain.push(grain(&greyscale(&truth), size, size));
    }
    // Pixel noise in what was drawn, beside the stimuli's (`metrics::grain`).
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (grain_drawn, grain_stimuli) = (mean(&drawn_grain), mean(&true_grain));
    // Latency: the trial's last volume file seen → its reconstruction drawn.
    let seen: std::collections::HashMap<u32, u64> =
        outcome.volume_seen_ns.iter().copied().collect();
    let mut latency_ms: Vec<f64> = outcome
        .reconstructions
        .iter()
        .filter_map(|r| {
            let last_seen = seen.values().filter(|&&t| t <= r.sample_ns).max()?;
            Some(r.generated_ns.saturating_sub(*last_seen) as f64 / 1e6)
        })
        .collect();
    latency_ms.sort_by(f64::total_cmp);
    // With the window: the trial's last volume seen → its reconstruction first on screen.
    let sample_ns: std::collections::HashMap<u64, u64> = outcome
        .reconstructions
        .iter()
        .map(|r| (r.trial, r.sample_ns))
        .collect();
    let mut displayed_ms: Vec<f64> = outcome
        .displayed_ns
        .iter()
        .filter_map(|(trial, shown)| {
            let sampled = sample_ns.get(trial)?;
            let last_seen = seen.values().filter(|&&t| t <= *sampled).max()?;
            Some(shown.saturating_sub(*last_seen) as f64 / 1e6)
        })
        .collect();
    displayed_ms.sort_by(f64::total_cmp);
    let (pixcorr_estimate, ssim_estimate) = (bootstrap(&pc, 1000, 2), bootstrap(&ss, 1000, 3));
    let report = serde_json::json!({
        "what": "synthetic: a simulated subject and small models trained on the simulator's world",
        "subject_seed": DEMO_SEED,
        "run": run,
        "trials_decoded": outcome.decoded.len(),
        "reconstructions": outcome.reconstructions.len(),
        "skipped_by_generator": outcome.skipped,
        "semantic_identification": identification,
        "pixcorr": pixcorr_estimate,
        "ssim": ssim_estimate,
        "grain": grain_drawn,
        "stimulus_grain": grain_stimuli,
        "latency_ms_p50": percentile(&latency_ms, 0.5),
        "latency_ms_p95": percentile(&latency_ms, 0.95),
        "displayed": displayed_ms.len(),
        "seen_to_displayed_ms_p50": (!displayed_ms.is_empty()).then(|| percentile(&displayed_ms, 0.5)),
        "seen_to_displayed_ms_p95": (!displayed_ms.is_empty()).then(|| percentile(&displayed_ms, 0.95)),
        "speed": args.speed,
        "steps": args.steps,
        "guidance": args.guidance,
    });
    let path = outcome.out_dir.join("summary.json");
    brainmclip::atomic::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    println!(
        "demo: {} trials decoded; semantic 2-way identification {}; reconstructions {} (PixCorr {}, SSIM {}, grain {:.4}, stimuli {:.4}); volume seen → image drawn p50 {:.0} ms, p95 {:.0} ms; summary: {}",
        outcome.decoded.len(),
        identification,
        outcome.reconstructions.len(),
        pixcorr_estimate,
        ssim_estimate,
        grain_drawn,
        grain_stimuli,
        percentile(&latency_ms, 0.5),
        percentile(&latency_ms, 0.95),
        path.display()
    );
    Ok(())
}
