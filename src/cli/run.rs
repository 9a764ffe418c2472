//! `run`: the live daemon on a scanner export directory (or an in-process replay of a recorded
//! run). Turns the arguments into a session and runs it (`brainmclip::session`).

use std::path::PathBuf;

use anyhow::{bail, Result};

use brainmclip::config::SessionConfig;
use brainmclip::session::{ReplaySource, SessionOutcome, SessionSpec};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The session file. Without one, `--replay` runs on the defaults (no decoding): the
    /// recorded run is written into a fresh folder under the system's temp dir, and the log and
    /// QA go to `session-out/`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override ingest.dir.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Feed this recorded run (4-D NIfTI, folder of volumes, or DICOM series folder) into
    /// ingest.dir in-process, as a scanner.
    #[arg(long, value_name = "SRC")]
    replay: Option<PathBuf>,
    /// With --replay: speed factor, or "max" for as fast as possible.
    #[arg(long, default_value = "1")]
    speed: String,
    /// Show the live window (needs a display).
    #[arg(long)]
    window: bool,
    /// Continue the unfinished session in this folder (the `output.dir` of a run that was
    /// killed or crashed) with the same --config: its partial logs are finished as they are, a
    /// new part starts linked to them, the volumes already on disk rebuild the rolling
    /// statistics without their samples being sent again, and the run goes on live.
    #[arg(long, value_name = "SESSION_DIR")]
    resume: Option<PathBuf>,
}

pub fn run_cmd(args: RunArgs) -> Result<()> {
    // The export folder this command made for itself (removed at the end), if any.
    let mut own_export = None;
    let mut config = match (&args.config, &args.replay) {
        (Some(path), _) => SessionConfig::load(path)?,
        (None, Some(_)) => {
            let mut config = SessionConfig::default();
            config.ingest.dir = std::env::temp_dir().join(format!(
                "brainmclip-replay-{}-{}",
                std::process::id(),
                brainmclip::clock::now_ns()
            ));
            own_export = Some(config.ingest.dir.clone());
            config
        }
        (None, None) => bail!(
            "--config FILE is needed to watch a scanner (or give --replay SRC to replay a \
             recorded run on the defaults)"
        ),
    };
    if let Some(dir) = args.dir {
        config.ingest.dir = dir;
    }
    if let Some(dir) = &args.resume {
        if args.replay.is_some() {
            bail!("--resume continues a live session; it does not go with --replay");
        }
        config.output.dir = dir.clone();
    } else if brainmclip::session::resume::has_unfinished(&config.output.dir) {
        eprintln!(
            "{}: holds an unfinished session (killed or crashed); this run starts a new one \
             beside it. `run --resume {}` would continue it.",
            config.output.dir.display(),
            config.output.dir.display()
        );
    }
    if args.window && !brainmclip::ui::display_available() {
        bail!("--window: no display here (DISPLAY and WAYLAND_DISPLAY are unset)");
    }
    let mut spec = SessionSpec::new(config);
    spec.resume = args.resume.is_some();
    spec.replay = args
        .replay
        .clone()
        .map(|path| ReplaySource::new(path, &args.speed))
        .transpose()?;
    let label = match (&args.config, &args.replay) {
        (Some(config), _) => config.display().to_string(),
        (None, Some(replay)) => replay.display().to_string(),
        (None, None) => String::new(),
    };
    let title = args.window.then(|| format!("brainmclip run: {label}"));
    let outcome = super::window::run_session(spec, title);
    if let Some(dir) = own_export {
        // Only copies of the recording are in it; the log and QA are in output.dir.
        let _ = std::fs::remove_dir_all(dir);
    }
    let outcome = outcome?;
    print_outcome(&outcome);
    write_session_report(&outcome);
    Ok(())
}

/// The run's totals on stdout, with where its files are.
pub fn print_outcome(o: &SessionOutcome) {
    let s = &o.summary;
    let c = &s.counts;
    println!(
        "run ended: {} delivered, {} late, {} missing, {} rejected, {} duplicates; {} trial samples; log: {}, QA: {}",
        c.delivered, c.late, c.missing, c.rejected, c.duplicates, s.samples,
        o.log.display(), o.qa.display()
    );
    if s.decoded > 0 {
        println!(
            "{} trials decoded, {} reconstructions drawn ({} skipped while the generator was busy) in {}",
            s.decoded,
            s.generated,
            s.skipped_by_generator,
            o.output_dir.join("reconstructions").display()
        );
    }
    for p in &o.sink_problems {
        eprintln!("sink {}: {}", p.sink, p.message);
    }
}

/// The run's HTML report beside its log; a report that cannot be written is a warning, since
/// everything it would show is already on disk.
pub fn write_session_report(o: &SessionOutcome) {
    match brainmclip::report::write_report_for_log(&o.log) {
        Ok(path) => println!("report: {}", path.display()),
        Err(e) => eprintln!("report not written: {e}"),
    }
}
