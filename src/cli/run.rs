//! `run`: the live daemon on a scanner export directory (or an in-process replay of a recorded
//! run): the pipeline's events logged to `events.jsonl` and `qa.tsv`, published to the feedback
//! server, and — with a calibration — every trial decoded and drawn (`brainmclip::decode`), the
//! reconstructions saved as PNGs with their telemetry.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};

use brainmclip::config::SessionConfig;
use brainmclip::decode::{
    image_target, text_target, DecodedTrial, Decoder, Generation, Reconstruction,
};
use brainmclip::ingest::replay::{run_replay, ReplayOptions};
use brainmclip::ingest::IngestEvent;
use brainmclip::pipeline::{Pipeline, PipelineEvent};
use brainmclip::sink::feedback::FeedbackServer;
use brainmclip::sink::viewer::ViewerSink;
use brainmclip::ui::message::{SessionInfo, ViewerCommand, ViewerMessage};

/// The window's side of a run: the messages it draws and the commands it sends back.
pub struct ViewerLink {
    pub title: String,
    pub messages: crossbeam_channel::Sender<ViewerMessage>,
    pub commands: crossbeam_channel::Receiver<ViewerCommand>,
}

/// What a run decoded and drew, for callers that score it (`demo`).
#[derive(Default)]
pub struct RunOutcome {
    pub decoded: Vec<DecodedTrial>,
    pub reconstructions: Vec<Reconstruction>,
    pub skipped: usize,
    pub out_dir: PathBuf,
    /// (volume file seen, volume index) for latency figures.
    pub volume_seen_ns: Vec<(u32, u64)>,
    /// (trial, when the window first showed its reconstruction), with a window.
    pub displayed_ns: Vec<(u64, u64)>,
}

/// Runs `job` on a worker thread with a window on this (the main) thread, or on this thread
/// alone when `window` is false. Closing the window ends the job's run; the window stays
/// open after the run ends until it is closed.
pub fn with_window<T: Send + 'static>(
    window: bool,
    title: &str,
    job: impl FnOnce(Option<ViewerLink>) -> Result<T> + Send + 'static,
) -> Result<T> {
    if !window {
        return job(None);
    }
    // Bounded: a stalled window drops messages (counted) rather than holding up the run.
    let (messages, inbox) = crossbeam_channel::bounded(4096);
    let (commands_tx, commands) = crossbeam_channel::unbounded();
    let link = ViewerLink {
        title: title.to_string(),
        messages,
        commands,
    };
    let worker = std::thread::Builder::new()
        .name("run".into())
        .spawn(move || job(Some(link)))
        .context("cannot start the run thread")?;
    let shown = brainmclip::ui::run_window(title, inbox, Some(commands_tx));
    let result = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the run thread panicked"))?;
    shown?;
    result
}

pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `run --replay --speed max`: fifty times the scanner's pace, which this pipeline sustains on
/// two cores for 64x64x36 volumes (read ~1 ms, realign ~8 ms per volume at a 30 ms TR).
const MAX_REPLAY_SPEED: f64 = 50.0;

pub fn run(
    config_path: PathBuf,
    dir: Option<PathBuf>,
    replay_source: Option<PathBuf>,
    speed: String,
    window: bool,
) -> Result<RunOutcome> {
    let config = SessionConfig::load(&config_path)?;
    if window && !brainmclip::ui::display_available() {
        bail!("--window: no display here (DISPLAY and WAYLAND_DISPLAY are unset)");
    }
    let title = format!("brainmclip run: {}", config_path.display());
    with_window(window, &title, move |link| {
        run_config(config, dir, replay_source, speed, link)
    })
}

/// `run` on a session config already loaded (the demo builds its own).
pub fn run_config(
    mut config: SessionConfig,
    dir: Option<PathBuf>,
    replay_source: Option<PathBuf>,
    speed: String,
    viewer: Option<ViewerLink>,
) -> Result<RunOutcome> {
    if let Some(dir) = dir {
        config.ingest.dir = dir;
    }
    std::fs::create_dir_all(&config.output.dir)
        .with_context(|| format!("output.dir {}: cannot create", config.output.dir.display()))?;
    // Never overwrite an earlier session's log.
    let free = |stem: &str, ext: &str| {
        (1..)
            .map(|n: u32| {
                let name = if n == 1 {
                    format!("{stem}.{ext}")
                } else {
                    format!("{stem}-{n}.{ext}")
                };
                config.output.dir.join(name)
            })
            .find(|p| !p.exists() && !partial(p).exists())
            .context("no free file name in output.dir")
    };
    // The recorder writes `<name>.partial` line by line (flushed, so a crash loses nothing)
    // and renames it to its final name when the run ends: a file under the final name is
    // always complete.
    let log_path = free("events", "jsonl")?;
    let qa_path = free("qa", "tsv")?;
    let create = |p: &PathBuf| -> Result<std::io::BufWriter<std::fs::File>> {
        Ok(std::io::BufWriter::new(
            std::fs::File::create(partial(p))
                .with_context(|| format!("{}: cannot create", partial(p).display()))?,
        ))
    };
    let (mut log, mut qa) = (create(&log_path)?, create(&qa_path)?);
    writeln!(qa, "index\ttrans_x_mm\ttrans_y_mm\ttrans_z_mm\trot_x_deg\trot_y_deg\trot_z_deg\tfd_mm\tglobal_signal\tmean_z_detail\tmean_z_semantic")?;

    // An in-process replay runs the scanner clock `factor` times faster: deadlines follow.
    let mut replay_options: Option<ReplayOptions> = None;
    if let Some(source) = &replay_source {
        let factor: f64 = match speed.as_str() {
            "max" => MAX_REPLAY_SPEED,
            other => other
                .parse()
                .with_context(|| format!("--speed {other:?}: expected a number or \"max\""))?,
        };
        if !(factor.is_finite() && factor > 0.0) {
            bail!("--speed {speed}: expected a positive factor");
        }
        let scanner_tr = if config.session.tr > 0.0 {
            config.session.tr
        } else {
            brainmclip::ingest::replay::Source::open(source, config.ingest.max_voxels)?
                .tr_s()
                .with_context(|| {
                    format!("{}: no TR in the header; set session.tr", source.display())
                })?
        };
        config.session.tr = scanner_tr;
        config.session.clock_speed = factor;
        std::fs::create_dir_all(&config.ingest.dir).with_context(|| {
            format!("ingest.dir {}: cannot create", config.ingest.dir.display())
        })?;
        let mut o = ReplayOptions::new(source, &config.ingest.dir);
        o.speed = factor;
        o.tr_s = Some(scanner_tr);
        o.manifest = Some(config.output.dir.join("replay_manifest.json"));
        replay_options = Some(o);
    }
    let feedback = if config.feedback.enabled {
        let server = FeedbackServer::start(
            &config.feedback.address,
            config.feedback.max_clients,
            config.feedback.backlog,
        )?;
        tracing::info!("feedback server on {} (JSON lines)", server.address());
        Some(server)
    } else {
        None
    };
    let mut outcome = RunOutcome {
        out_dir: config.output.dir.clone(),
        ..RunOutcome::default()
    };
    let d = &config.decode;
    let mut decoder = match &d.calibration {
        Some(dir) => {
            // Config validation guarantees an encoder wherever a target or gallery is set.
            let target = match (&d.target_text, &d.target_image, &d.encoder) {
                (Some(text), _, Some(encoder)) => Some(text_target(encoder, text)?),
                (None, Some(image), Some(encoder)) => Some(image_target(encoder, image)?),
                _ => None,
            };
            let decoder = Decoder::load(dir, &config.preprocess, target)?;
            Some(match (&d.gallery, &d.encoder) {
                (Some(g), Some(encoder)) => {
                    let gallery = brainmclip::retrieval::Gallery::load(g, encoder)?;
                    tracing::info!(
                        "gallery: {} candidate images from {}",
                        gallery.names.len(),
                        g.display()
                    );
                    decoder.with_gallery(gallery)
                }
                _ => decoder,
            })
        }
        None => None,
    };
    let feedback_label = match (&d.target_text, &d.target_image, &d.gallery) {
        (Some(t), _, _) => Some(format!("cosine with \"{t}\"")),
        (None, Some(i), _) => Some(format!("cosine with {}", i.display())),
        (None, None, Some(_)) => Some("identification among the gallery".to_string()),
        _ => None,
    };
    let generation = match (&decoder, &config.decode.generator) {
        (Some(d), Some(dir)) => {
            let p = &d.calibration().info.projector;
            Some(Generation::start(
                dir,
                &config.decode,
                p.detail_tokens,
                p.detail_width,
                p.semantic_dim,
            )?)
        }
        (None, Some(_)) => bail!("decode.generator needs decode.calibration"),
        _ => None,
    };
    let images_dir = config.output.dir.join("reconstructions");
    if generation.is_some() {
        std::fs::create_dir_all(&images_dir)
            .with_context(|| format!("{}: cannot create", images_dir.display()))?;
    }
    let (mut window, commands) = match viewer {
        Some(link) => {
            let session = SessionInfo {
                title: link.title,
                volumes: (config.session.volumes > 0).then_some(config.session.volumes),
                tr_s: config.session.tr,
                device: brainmclip::model::device::ComputeDevice::Cpu.to_string(),
                output_dir: config.output.dir.clone(),
                feedback_label,
            };
            let gallery = decoder.as_ref().and_then(|d| d.gallery().cloned());
            let sink = ViewerSink::new(
                link.messages,
                session,
                config.decode.stimuli.clone(),
                gallery,
                config.session.first_index,
            );
            (Some(sink), link.commands)
        }
        None => (None, crossbeam_channel::never()),
    };
    let pipeline = Pipeline::start(&config, feedback.as_ref().map(|f| f.markers().clone()))?;
    let window_stop = pipeline.stop_flag();
    let stop = pipeline.stop_flag();
    if let Some(o) = replay_options.as_mut() {
        o.stop = Some(pipeline.stop_flag());
    }
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            // Ctrl-C or SIGTERM: end the run; everything received is still processed and logged.
            rt.block_on(shutdown_signal());
            stop.store(true, Ordering::SeqCst);
        }
    });
    let replay_thread = replay_options.map(|o| std::thread::spawn(move || run_replay(&o)));
    tracing::info!(
        "watching {} ({:?} mode)",
        config.ingest.dir.display(),
        config.ingest.watch
    );
    let fmt = |v: Option<f32>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    let never = crossbeam_channel::never();
    let drawn = generation.as_ref().map_or(&never, |g| g.results());
    let mut commands = commands;
    loop {
        let event = crossbeam_channel::select! {
            recv(pipeline.events()) -> event => match event {
                Ok(event) => event,
                Err(_) => break,
            },
            recv(drawn) -> reconstruction => {
                if let Ok(r) = reconstruction {
                    let record = save_reconstruction(&images_dir, &r)?;
                    emit(&mut log, feedback.as_ref(), &record)?;
                    if let Some(w) = window.as_mut() {
                        w.reconstruction(&r);
                    }
                    outcome.reconstructions.push(r);
                }
                continue;
            }
            recv(commands) -> command => {
                match command {
                    Ok(c) => {
                        if let ViewerCommand::Displayed { trial, displayed_ns } = c {
                            outcome.displayed_ns.push((trial, displayed_ns));
                        }
                        let record = window_command(c, &config, decoder.as_mut());
                        emit(&mut log, feedback.as_ref(), &record)?;
                    }
                    Err(_) => {
                        // The window was closed: end the run (what was received is still logged).
                        window_stop.store(true, Ordering::SeqCst);
                        commands = crossbeam_channel::never();
                    }
                }
                continue;
            }
        };
        if let Some(w) = window.as_mut() {
            w.pipeline_event(&event);
        }
        let mut extra = Vec::new();
        let record = match &event {
            PipelineEvent::Volume(v) => {
                let m = v.motion.unwrap_or([f32::NAN; 6]);
                writeln!(
                    qa,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:.3}\t{}\t{}",
                    v.index,
                    fmt(v.motion.map(|_| m[0])),
                    fmt(v.motion.map(|_| m[1])),
                    fmt(v.motion.map(|_| m[2])),
                    fmt(v.motion.map(|_| m[3])),
                    fmt(v.motion.map(|_| m[4])),
                    fmt(v.motion.map(|_| m[5])),
                    fmt(v.fd),
                    v.global_signal,
                    fmt(v.mean_z_detail),
                    fmt(v.mean_z_semantic)
                )?;
                tracing::info!(
                    "volume {:>4}  fd {} mm  {:.1} ms seen→preprocessed",
                    v.index,
                    fmt(v.fd),
                    v.preprocessed_ns.saturating_sub(v.seen_ns) as f64 / 1e6
                );
                let mut r = serde_json::to_value(v)?;
                r["event"] = "volume".into();
                r
            }
            PipelineEvent::Dummy { index } => serde_json::json!({"event": "dummy", "index": index}),
            PipelineEvent::Ingest(e) => {
                match e {
                    IngestEvent::Late(v) => tracing::warn!(
                        "volume {:>4}  late (after its Missing record): in the rolling statistics, in no sample",
                        v.index
                    ),
                    IngestEvent::Missing { index, .. } => {
                        tracing::warn!("volume {index:>4}  missing at its deadline")
                    }
                    IngestEvent::Rejected {
                        index,
                        path,
                        reason,
                        ..
                    } => tracing::warn!(
                        "volume {}  rejected: {reason} ({})",
                        index.map_or("?".into(), |i| i.to_string()),
                        path.display()
                    ),
                    IngestEvent::Duplicate { index, path, .. } => {
                        tracing::warn!("volume {index:>4}  duplicate ignored: {}", path.display())
                    }
                    IngestEvent::Warning { message, .. } => tracing::warn!("{message}"),
                    IngestEvent::Volume(v) => tracing::warn!(
                        "volume {:>4}  not preprocessed (see the error above)",
                        v.index
                    ),
                    IngestEvent::RunEnded { .. } => {}
                }
                e.to_log_record()
            }
            PipelineEvent::Sample(s) => {
                tracing::info!(
                    "trial {:>4}  sample from volumes {:?} ({} missing)",
                    s.trial,
                    s.volumes,
                    s.missing
                );
                if let Some(d) = decoder.as_mut() {
                    match d.decode(&s.sample, s.sample_ns) {
                        Ok(trial) => {
                            let mut r = serde_json::to_value(&trial)?;
                            r["event"] = "decoded".into();
                            extra.push(r);
                            if let Some(g) = &generation {
                                g.submit(trial.clone());
                            }
                            if let Some(w) = window.as_mut() {
                                w.decoded(&trial);
                            }
                            outcome.decoded.push(trial);
                        }
                        Err(e) => {
                            tracing::error!("{e}");
                            extra.push(
                                serde_json::json!({"event": "error", "message": e.to_string()}),
                            );
                        }
                    }
                }
                let mut r = serde_json::to_value(s)?;
                r["event"] = "sample".into();
                r
            }
            PipelineEvent::Error(message) => {
                tracing::error!("{message}");
                serde_json::json!({"event": "error", "message": message})
            }
            PipelineEvent::Ended {
                ingest,
                samples,
                guarded_scores,
            } => {
                println!(
                    "run ended: {} delivered, {} late, {} missing, {} rejected, {} duplicates; {samples} trial samples; log: {}, QA: {}",
                    ingest.delivered, ingest.late, ingest.missing, ingest.rejected, ingest.duplicates,
                    log_path.display(), qa_path.display()
                );
                serde_json::json!({"event": "run_ended", "counts": ingest, "samples": samples, "guarded_z_scores": guarded_scores})
            }
        };
        if let (Some(server), true) = (
            &feedback,
            matches!(
                event,
                PipelineEvent::Volume(_) | PipelineEvent::Sample(_) | PipelineEvent::Ended { .. }
            ),
        ) {
            server.publish(&record);
        }
        serde_json::to_writer(&mut log, &record)?;
        writeln!(log)?;
        for r in &extra {
            emit(&mut log, feedback.as_ref(), r)?;
        }
        log.flush()?;
        qa.flush()?;
        if let PipelineEvent::Volume(v) = &event {
            outcome.volume_seen_ns.push((v.index, v.seen_ns));
        }
        if let Some(w) = window.as_mut() {
            w.queues(
                pipeline.events().len(),
                generation.as_ref().is_some_and(|g| g.waiting()),
            );
        }
        if matches!(event, PipelineEvent::Ended { .. }) {
            break;
        }
    }
    if let Some(g) = generation {
        outcome.skipped = g.skipped();
        for r in g.finish() {
            let record = save_reconstruction(&images_dir, &r)?;
            emit(&mut log, feedback.as_ref(), &record)?;
            if let Some(w) = window.as_mut() {
                w.reconstruction(&r);
            }
            outcome.reconstructions.push(r);
        }
        log.flush()?;
        println!(
            "{} trials decoded, {} reconstructions drawn ({} skipped while the generator was busy) in {}",
            outcome.decoded.len(),
            outcome.reconstructions.len(),
            outcome.skipped,
            images_dir.display()
        );
    }
    if let Some(t) = replay_thread {
        if let Ok(Err(e)) = t.join() {
            tracing::warn!("replay: {e}");
        }
    }
    for (writer, path) in [(log, &log_path), (qa, &qa_path)] {
        let file = writer
            .into_inner()
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", partial(path).display()))?;
        file.sync_all()
            .with_context(|| format!("{}: cannot sync", partial(path).display()))?;
        std::fs::rename(partial(path), path)
            .with_context(|| format!("{}: cannot rename into place", path.display()))?;
    }
    Ok(outcome)
}

/// Where a recorder file is written until the run ends.
fn partial(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Carries out a command from the window; returns its log record.
fn window_command(
    command: ViewerCommand,
    config: &SessionConfig,
    decoder: Option<&mut Decoder>,
) -> serde_json::Value {
    match command {
        ViewerCommand::SetTargetText(text) => {
            let result = match (decoder, &config.decode.encoder) {
                (Some(d), Some(encoder)) => text_target(encoder, &text)
                    .map(|t| d.set_target(Some(t)))
                    .map_err(|e| e.to_string()),
                (None, _) => Err("nothing is decoded in this run (no decode.calibration)".into()),
                (_, None) => {
                    Err("decode.encoder is not set: no text tower to embed the target".into())
                }
            };
            match result {
                Ok(()) => {
                    tracing::info!("feedback target set from the window: {text:?}");
                    serde_json::json!({"event": "target", "text": text, "at_ns": brainmclip::clock::now_ns()})
                }
                Err(e) => {
                    tracing::warn!("feedback target {text:?}: {e}");
                    serde_json::json!({"event": "error", "message": format!("feedback target {text:?}: {e}")})
                }
            }
        }
        ViewerCommand::Displayed {
            trial,
            displayed_ns,
        } => {
            serde_json::json!({"event": "displayed", "trial": trial, "displayed_ns": displayed_ns})
        }
    }
}

/// Writes one record to the log (a line) and to the feedback clients.
fn emit(
    log: &mut impl Write,
    feedback: Option<&FeedbackServer>,
    record: &serde_json::Value,
) -> Result<()> {
    if let Some(server) = feedback {
        server.publish(record);
    }
    serde_json::to_writer(&mut *log, record)?;
    writeln!(log)?;
    Ok(())
}

/// `reconstructions/trial-NNNN.png` and its log record.
fn save_reconstruction(dir: &std::path::Path, r: &Reconstruction) -> Result<serde_json::Value> {
    let path = dir.join(format!("trial-{:04}.png", r.trial));
    let image = image::RgbImage::from_raw(r.size as u32, r.size as u32, r.rgb.clone())
        .context("reconstruction of the wrong size")?;
    let tmp = dir.join(format!(".trial-{:04}.png.tmp", r.trial));
    image
        .save_with_format(&tmp, image::ImageFormat::Png)
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("{}: cannot write", path.display()))?;
    let mut record = serde_json::to_value(r)?;
    record["event"] = "generated".into();
    record["file"] = path.display().to_string().into();
    Ok(record)
}
