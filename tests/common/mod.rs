//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use brainmclip::config::{SessionConfig, WatchMode};
use brainmclip::ingest::nifti_write::NiftiSpec;
use brainmclip::ingest::{Datatype, Ingest, IngestEvent};

/// A session config for the simulated subject in `bids` (its masks and the run's events).
pub fn simulated_session(
    bids: &Path,
    bold: &Path,
    sim: &brainmclip::sim::SimConfig,
    out: &Path,
) -> SessionConfig {
    let sub = bids.join(format!("sub-{}", sim.subject));
    let mut c = SessionConfig::default();
    c.session.tr = sim.tr;
    c.session.volumes = sim.volumes_per_run as u32;
    c.ingest.dir = out.join("export");
    c.ingest.poll_interval_ms = 20;
    // At 20x a TR is 75 ms; the default 1.5 TR deadline leaves 37 ms of slack, which a loaded
    // 2-core CI machine (the generator drawing in the same process) can overrun, declaring a
    // volume that was merely slow missing. Four TRs still find the dropped volume quickly.
    c.ingest.deadline_tr = 4.0;
    let p = &mut c.preprocess;
    p.dummy_scans = sim.dummy_scans as u32;
    p.labels = Some(sub.join(format!("anat/sub-{}_desc-visual_dseg.nii.gz", sim.subject)));
    p.label_table = Some(sub.join(format!("anat/sub-{}_desc-visual_dseg.tsv", sim.subject)));
    p.events = Some(std::path::PathBuf::from(
        bold.to_string_lossy()
            .replace("_bold.nii.gz", "_events.tsv"),
    ));
    c.output.dir = out.join("session");
    c.feedback.enabled = false;
    c
}

/// A 30-volume simulated run (32-pixel images, seed 5) in `d/bids` and a session on it: its
/// simulation settings, the run's file and the session config.
pub fn short_simulated_session(
    d: &Path,
) -> (
    brainmclip::sim::SimConfig,
    std::path::PathBuf,
    SessionConfig,
) {
    let sim = brainmclip::sim::SimConfig {
        volumes_per_run: 30,
        train_runs: 1,
        test_runs: 0,
        image_size: 32,
        ..brainmclip::sim::SimConfig::default()
    };
    let bids = d.join("bids");
    let bold = brainmclip::sim::simulate(&sim, &bids, 5)
        .expect("simulate")
        .runs[0]
        .clone();
    let config = simulated_session(&bids, &bold, &sim, d);
    (sim, bold, config)
}

pub fn session(dir: &Path, watch: WatchMode, tr_s: f64, volumes: u32) -> SessionConfig {
    let mut c = SessionConfig::default();
    c.session.tr = tr_s;
    c.session.volumes = volumes;
    c.ingest.dir = dir.to_owned();
    c.ingest.watch = watch;
    c.ingest.poll_interval_ms = 20;
    c.ingest.quiet_trs = 20.0;
    c
}

/// Every event until `RunEnded` (included), or panics after `limit`.
pub fn collect(ingest: &Ingest, limit: Duration) -> Vec<IngestEvent> {
    let start = Instant::now();
    let mut events = Vec::new();
    loop {
        let left = limit.checked_sub(start.elapsed()).unwrap_or_else(|| {
            panic!(
                "no RunEnded within {limit:?}; got {}",
                summary(&events).join(" ")
            )
        });
        match ingest.events().recv_timeout(left) {
            Ok(e) => {
                let end = matches!(e, IngestEvent::RunEnded { .. });
                events.push(e);
                if end {
                    return events;
                }
            }
            Err(_) => panic!(
                "no RunEnded within {limit:?}; got {}",
                summary(&events).join(" ")
            ),
        }
    }
}

/// "v1 m2 l2 r3 d4 w end" pictures of an event list.
pub fn summary(events: &[IngestEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            IngestEvent::Volume(v) => format!("v{}", v.index),
            IngestEvent::Late(v) => format!("l{}", v.index),
            IngestEvent::Missing { index, .. } => format!("m{index}"),
            IngestEvent::Rejected { index, .. } => {
                format!("r{}", index.map_or("?".into(), |i| i.to_string()))
            }
            IngestEvent::Duplicate { index, .. } => format!("d{index}"),
            IngestEvent::Warning { .. } => "w".into(),
            IngestEvent::RunEnded { .. } => "end".into(),
        })
        .collect()
}

/// A smooth deterministic int16-range volume that differs per `seed`.
pub fn volume_values(dims: [usize; 3], seed: u32) -> Vec<f32> {
    let mut out = Vec::with_capacity(dims.iter().product());
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                let v = 1000.0
                    + 300.0 * ((x as f32 * 0.3 + seed as f32 * 0.7).sin() + (y as f32 * 0.2).cos())
                    + 10.0 * z as f32
                    + ((x * 31 + y * 17 + z * 7 + seed as usize * 13) % 23) as f32;
                out.push(v.round());
            }
        }
    }
    out
}

pub fn int16_spec(dims: &[usize], tr_s: f32) -> NiftiSpec {
    let mut spec = NiftiSpec::new(dims, [3.0, 3.0, 3.5], Datatype::I16);
    spec.tr_s = Some(tr_s);
    spec
}

/// Every event with the clock time it was received, until `RunEnded`.
pub fn collect_timed(ingest: &Ingest, limit: Duration) -> Vec<(IngestEvent, u64)> {
    let start = Instant::now();
    let mut events = Vec::new();
    while let Some(left) = limit.checked_sub(start.elapsed()) {
        match ingest.events().recv_timeout(left) {
            Ok(e) => {
                let end = matches!(e, IngestEvent::RunEnded { .. });
                events.push((e, brainmclip::clock::now_ns()));
                if end {
                    return events;
                }
            }
            Err(_) => break,
        }
    }
    let got: Vec<IngestEvent> = events.into_iter().map(|(e, _)| e).collect();
    panic!(
        "no RunEnded within {limit:?}; got {}",
        summary(&got).join(" ")
    )
}

/// A tiny untrained demo-style CLIP (32 px, patch 8: 17 tokens of width 32, 16-d embeddings)
/// saved as a Hugging Face folder in `dir`.
pub fn tiny_encoder(dir: &Path) {
    use brainmclip::train::encoder::EncoderTrainConfig;
    let config = EncoderTrainConfig {
        image_size: 32,
        width: 32,
        vision_layers: 3,
        text_width: 32,
        text_layers: 1,
        heads: 2,
        projection_dim: 16,
        detail_layers: (1, 2),
        ..EncoderTrainConfig::default()
    };
    let model = config.init::<burn::backend::Flex>(&burn::backend::flex::FlexDevice);
    brainmclip::model::save::save_clip(&model, &config.hf_config(), dir, false).unwrap();
}
