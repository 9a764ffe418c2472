//! `demo`: the bundled synthetic session through the whole live pipeline with the shipped
//! models (`brainmclip::demo`), in the window where there is a display, scored into
//! `summary.json`. Everything in it is synthetic: a simulated brain and small models trained on
//! the simulator's world, not real data.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use brainmclip::demo::{prepare, score::score, Collected, Collector, DemoOptions};
use brainmclip::session::SessionSpec;

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
    /// The subject's calibration (relative paths are also looked for beside the executable and
    /// in the source tree; see --assets).
    #[arg(long, default_value = "calibration/demo")]
    calibration: PathBuf,
    #[arg(long, default_value = "assets/demo-generator")]
    generator: PathBuf,
    /// A folder holding the shipped `assets/` and `calibration/` (or set BRAINMCLIP_ASSETS).
    #[arg(long, value_name = "DIR")]
    assets: Option<PathBuf>,
    /// Denoising steps per image.
    #[arg(long, default_value_t = 4)]
    steps: usize,
    /// Classifier-free guidance scale (1 = none).
    #[arg(long, default_value_t = 1.0)]
    guidance: f64,
    /// Where the projector, the generator and the CLIP towers run.
    #[arg(long, value_enum, default_value = "auto")]
    device: brainmclip::model::device::DeviceChoice,
}

pub fn demo_cmd(args: DemoArgs) -> Result<()> {
    let window = !args.headless && brainmclip::ui::display_available();
    if !args.headless && !window {
        eprintln!("no display (DISPLAY and WAYLAND_DISPLAY are unset): running headless");
    }
    let options = DemoOptions {
        out: args.out,
        test_run: args.test_run,
        speed: args.speed,
        calibration: args.calibration,
        generator: args.generator,
        assets: args.assets,
        steps: args.steps,
        guidance: args.guidance,
        device: args.device,
    };
    let collected = Arc::new(Mutex::new(Collected::default()));
    let title = window.then(|| {
        format!(
            "brainmclip demo: simulated subject, test run {} (synthetic data)",
            options.test_run
        )
    });
    // Prepared on the run's thread, so the window is open (showing each step) meanwhile.
    let sink = Collector(collected.clone());
    let prepare_options = options.clone();
    let (outcome, demo) = super::window::run_prepared(title, move |startup| {
        let demo = prepare(&prepare_options, startup)?;
        let mut spec = SessionSpec::new(demo.config.clone());
        spec.replay = Some(demo.replay.clone());
        spec.sinks.push(Box::new(sink));
        Ok((spec, demo))
    })?;
    super::run::print_outcome(&outcome);
    let collected = collected.lock().unwrap_or_else(|p| p.into_inner());
    let summary = score(&demo, &collected, &options)?;
    let path = outcome.output_dir.join("summary.json");
    brainmclip::atomic::write_atomic(&path, serde_json::to_string_pretty(&summary)?.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    println!("demo: {summary}; summary: {}", path.display());
    super::run::write_session_report(&outcome);
    Ok(())
}
