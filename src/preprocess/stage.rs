//! The preprocessing stage: ingest events in, on its own thread, → motion (realignment, FD),
//! masks, rolling z-scores → trial samples out, as one typed stream of `PreprocessEvent`s. The
//! live session (`crate::session`) and calibration (`PreprocessStage::offline`) both use it, so
//! training samples are made by the same code as live ones. It is not the decoder and writes
//! nothing: what happens to its events is the session's and the sinks' business.
//!
//! Every volume is preprocessed, in order (the rolling statistics must see each one); nothing
//! is dropped before this stage. A late volume (arriving after its slot was declared missing)
//! is reported, joins the rolling statistics, and makes no sample (its trial slot has passed).
//! Telemetry: each volume carries its seen, read and preprocessed times in integer ns.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;

use crate::clock::now_ns;
use crate::config::{MotionMode, SessionConfig, ZScoreMode};
use crate::geometry::framewise_displacement;
use crate::ingest::{
    read_volume_file, EndReason, Ingest, IngestCounts, IngestEvent, ReadError, RunReader,
    StartError, Volume,
};
use crate::preprocess::masks::{MaskError, Masks};
use crate::preprocess::monitor::MonitorFigures;
use crate::preprocess::quality::{QualityMaps, RunQuality};
use crate::preprocess::realign::Realigner;
use crate::preprocess::slices::{roi_labels, slice_point, OrthoSlices, VolumeSlices};
use crate::preprocess::trials::{read_events, Marker, Sample, TrialAssembler, TrialError};
use crate::preprocess::zscore::{RollingZ, ZMode};

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error(transparent)]
    Ingest(#[from] StartError),
    #[error("preprocess.events: {0}")]
    Events(#[from] TrialError),
    #[error("preprocess.reference: {0}")]
    Reference(#[from] ReadError),
    #[error("{0}")]
    Run(ReadError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// What preprocessing made of one volume.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeReport {
    /// The scanner's acquisition index.
    pub index: u32,
    pub path: PathBuf,
    pub dims: [usize; 3],
    /// Rigid motion relative to the reference ([tx ty tz] mm, [rx ry rz] degrees).
    pub motion: Option<[f32; 6]>,
    /// Framewise displacement from the previous volume, mm.
    pub fd: Option<f32>,
    /// Mean intensity over the detail mask (or the whole volume without masks).
    pub global_signal: f32,
    pub mean_z_detail: Option<f32>,
    pub mean_z_semantic: Option<f32>,
    pub non_finite: usize,
    pub seen_ns: u64,
    pub read_ns: u64,
    pub preprocessed_ns: u64,
    /// Ingest events waiting for this stage when the volume was done (a backlog means
    /// preprocessing is not keeping up with the scanner).
    pub queued: usize,
    /// Per slice (z order), seconds from the first acquired slice, where the file says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slice_times_s: Option<Vec<f64>>,
    /// Usable data so far, DVARS, flags and tSNR (`preprocess::monitor`); logged as the
    /// `monitor` record that follows the volume's.
    #[serde(skip)]
    pub monitor: Option<MonitorFigures>,
    /// The carpet plot's row for this volume (`preprocess::quality`).
    #[serde(skip)]
    pub carpet: Option<Arc<[f32]>>,
    /// Orthogonal planes of the (realigned) volume, and of the ROI labels, for the window.
    #[serde(skip)]
    pub slices: Option<VolumeSlices>,
    #[serde(skip)]
    pub roi_slices: Option<Arc<OrthoSlices<u8>>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    pub trial: u64,
    pub onset_s: f64,
    pub trial_type: String,
    pub stimulus: Option<String>,
    /// The scanner's acquisition indices of the volumes averaged.
    pub volumes: Vec<u32>,
    pub missing: u32,
    pub detail_voxels: usize,
    pub semantic_voxels: usize,
    /// Mean response over the detail / semantic voxels (a one-number summary per trial).
    pub mean_detail: f32,
    pub mean_semantic: f32,
    pub sample_ns: u64,
    #[serde(skip)]
    pub sample: Sample,
}

#[derive(Debug, Clone)]
pub enum PreprocessEvent {
    /// A volume through preprocessing.
    Volume(VolumeReport),
    /// A dummy scan, left out.
    Dummy { index: u32 },
    /// The ingest events that are not in-order volumes, passed on as they are.
    Ingest(IngestEvent),
    /// A trial's response.
    Sample(SampleReport),
    /// A problem that stopped preprocessing (the run's remaining volumes are still reported).
    Error(String),
    /// The run's tSNR map and carpet layout, after its last volume (none without volumes).
    QualityMaps(Arc<QualityMaps>),
    /// Nothing more will come.
    Ended {
        ingest: IngestCounts,
        samples: usize,
        guarded_scores: u64,
    },
}

pub struct PreprocessStage {
    events: Receiver<PreprocessEvent>,
    ingest_stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PreprocessStage {
    /// Starts ingest and preprocessing; `markers` are live trial onsets (the feedback server's).
    pub fn start(
        config: &SessionConfig,
        markers: Option<Receiver<Marker>>,
    ) -> Result<PreprocessStage, PreprocessError> {
        let ingest = Ingest::start(config)?;
        let events = ingest.events().clone();
        let stop = ingest.stop_flag();
        PreprocessStage::with_source(config, markers, events, stop, Box::new(ingest))
    }

    /// Preprocesses a recorded 4-D run through the same stage as the live path (motion, masks,
    /// rolling z-scores, trials from `preprocess.events`), as fast as it reads: what
    /// calibration uses, so training and live samples are made by one piece of code.
    pub fn offline(
        config: &SessionConfig,
        run: &std::path::Path,
    ) -> Result<PreprocessStage, PreprocessError> {
        let mut reader =
            RunReader::open(run, config.ingest.max_voxels).map_err(PreprocessError::Run)?;
        let (tx, rx) = bounded(4);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_reader = stop.clone();
        let first = config.session.first_index;
        let path = run.to_owned();
        let geometry = reader.header().geometry();
        let reader_thread = std::thread::Builder::new()
            .name("offline-reader".into())
            .spawn(move || {
                let mut counts = IngestCounts::default();
                let mut last_index = None;
                let mut k = 0u32;
                while let Some(next) = reader.next_volume() {
                    if stop_reader.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let index = first + k;
                    k += 1;
                    let event = match next {
                        Ok((data, non_finite)) => {
                            counts.delivered += 1;
                            counts.non_finite_volumes += u32::from(non_finite > 0);
                            last_index = Some(index);
                            let at = now_ns();
                            IngestEvent::Volume(Volume {
                                index,
                                path: path.clone(),
                                geometry: geometry.clone(),
                                data,
                                non_finite,
                                seen_ns: at,
                                read_ns: at,
                                slice_times_s: None,
                            })
                        }
                        Err(e) => {
                            counts.rejected += 1;
                            let rejected = IngestEvent::Rejected {
                                index: Some(index),
                                path: path.clone(),
                                reason: e.to_string(),
                                at_ns: now_ns(),
                            };
                            // A read error ends a 4-D stream: nothing after it can be trusted.
                            let _ = tx.send(rejected);
                            break;
                        }
                    };
                    if tx.send(event).is_err() {
                        return;
                    }
                }
                let _ = tx.send(IngestEvent::RunEnded {
                    reason: EndReason::AllVolumes,
                    last_index,
                    counts,
                    at_ns: now_ns(),
                });
            })
            .map_err(PreprocessError::Thread)?;
        PreprocessStage::with_source(config, None, rx, stop, Box::new(reader_thread))
    }

    /// The preprocessing thread on any stream of ingest events; `source` is kept alive (and
    /// dropped, ending it) with the thread.
    fn with_source(
        config: &SessionConfig,
        markers: Option<Receiver<Marker>>,
        events: Receiver<IngestEvent>,
        ingest_stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        source: Box<dyn Send>,
    ) -> Result<PreprocessStage, PreprocessError> {
        let trials = match &config.preprocess.events {
            Some(path) => read_events(path)?,
            None => Vec::new(),
        };
        let reference = match &config.preprocess.reference {
            Some(path) => Some(read_volume_file(path, config.ingest.max_voxels)?.data),
            None => None,
        };
        let (tx, rx) = bounded(config.ingest.channel_capacity.max(16));
        let stage = Preprocess::new(
            config.clone(),
            trials,
            reference,
            tx,
            markers.unwrap_or_else(crossbeam_channel::never),
        );
        let thread = std::thread::Builder::new()
            .name("preprocess".into())
            .spawn(move || {
                stage.run(&events);
                drop(source);
            })
            .map_err(PreprocessError::Thread)?;
        Ok(PreprocessStage {
            events: rx,
            ingest_stop,
            thread: Some(thread),
        })
    }

    pub fn events(&self) -> &Receiver<PreprocessEvent> {
        &self.events
    }

    /// Ends the run early (the stream then finishes with what was received).
    pub fn stop_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.ingest_stop.clone()
    }
}

impl Drop for PreprocessStage {
    fn drop(&mut self) {
        self.ingest_stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        while self.events.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                while self.events.try_recv().is_ok() {}
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let _ = t.join();
        }
    }
}

/// Per-volume scratch space, reused: resliced volume, masked values, their z-scores.
#[derive(Default)]
struct Buffers {
    resliced: Vec<f32>,
    detail: Vec<f32>,
    semantic: Vec<f32>,
    z_detail: Vec<f32>,
    z_semantic: Vec<f32>,
}

struct Preprocess {
    config: SessionConfig,
    out: Sender<PreprocessEvent>,
    assembler: TrialAssembler,
    reference: Option<Vec<f32>>,
    realigner: Option<Realigner>,
    masks: Option<Masks>,
    /// Where the display planes cut the volume, and the ROI labels on them.
    slice_at: [usize; 3],
    roi_slices: Option<Arc<OrthoSlices<u8>>>,
    z_detail: Option<RollingZ>,
    z_semantic: Option<RollingZ>,
    previous_motion: Option<[f32; 6]>,
    /// The monitor, tSNR map and carpet (built once masks are known).
    quality: Option<RunQuality>,
    initialised: bool,
    failed: bool,
    samples: usize,
    buffers: Buffers,
    markers: Receiver<Marker>,
}

impl Preprocess {
    fn new(
        config: SessionConfig,
        trials: Vec<crate::preprocess::trials::Trial>,
        reference: Option<Vec<f32>>,
        out: Sender<PreprocessEvent>,
        markers: Receiver<Marker>,
    ) -> Preprocess {
        let p = &config.preprocess;
        let tr = if config.session.tr > 0.0 {
            config.session.tr
        } else {
            1.0
        };
        let window = (p.trial_window_start_s, p.trial_window_end_s);
        let assembler = if p.continuous {
            TrialAssembler::continuous(tr, window)
        } else {
            TrialAssembler::new(tr, window, trials)
        }
        .with_first_index(config.session.first_index);
        Preprocess {
            assembler,
            reference,
            realigner: None,
            masks: None,
            slice_at: [0; 3],
            roi_slices: None,
            z_detail: None,
            z_semantic: None,
            previous_motion: None,
            quality: None,
            initialised: false,
            failed: false,
            samples: 0,
            buffers: Default::default(),
            markers,
            out,
            config,
        }
    }

    fn send(&mut self, event: PreprocessEvent) -> bool {
        self.out.send(event).is_ok()
    }

    fn run(mut self, events: &Receiver<IngestEvent>) {
        let first = self.config.session.first_index;
        loop {
            let event = crossbeam_channel::select! {
                recv(events) -> event => match event {
                    Ok(event) => event,
                    Err(_) => return,
                },
                recv(self.markers) -> marker => {
                    if let Ok(m) = marker {
                        let id = self.assembler.add_trial(m.onset_s, m.duration_s, m.trial_type, m.stimulus);
                        tracing::debug!("live marker: trial {id} at {} s", m.onset_s);
                    }
                    continue;
                }
            };
            let keep_going = match event {
                IngestEvent::Volume(v) => {
                    let k = v.index.saturating_sub(first);
                    if k < self.config.preprocess.dummy_scans {
                        self.send(PreprocessEvent::Dummy { index: v.index })
                    } else {
                        self.volume(v, k, events.len())
                    }
                }
                IngestEvent::Missing { index, .. }
                | IngestEvent::Rejected {
                    index: Some(index), ..
                } => {
                    let k = index.saturating_sub(first);
                    let sizes = self.mask_sizes();
                    let samples = self.assembler.missing_volume(k, sizes.0, sizes.1);
                    self.send(PreprocessEvent::Ingest(event)) && self.send_samples(samples)
                }
                IngestEvent::RunEnded { counts, .. } => {
                    let samples = self.assembler.finish();
                    self.send_samples(samples);
                    let guarded = self.z_detail.as_ref().map_or(0, |z| z.guarded)
                        + self.z_semantic.as_ref().map_or(0, |z| z.guarded);
                    let samples = self.samples;
                    if let Some(maps) = self.quality.as_ref().and_then(RunQuality::finish) {
                        self.send(PreprocessEvent::QualityMaps(Arc::new(maps)));
                    }
                    self.send(PreprocessEvent::Ended {
                        ingest: counts,
                        samples,
                        guarded_scores: guarded,
                    });
                    return;
                }
                IngestEvent::Late(v) => {
                    self.absorb_late(&v);
                    self.send(PreprocessEvent::Ingest(IngestEvent::Late(v)))
                }
                other => self.send(PreprocessEvent::Ingest(other)),
            };
            if !keep_going {
                return;
            }
        }
    }

    /// A late volume (its slot was already declared missing) joins the rolling statistics so
    /// the baseline of later volumes includes it; it makes no sample and does not move the
    /// motion trace (its parameters are estimated from the last on-time volume's).
    fn absorb_late(&mut self, v: &Volume) {
        let k = v.index.saturating_sub(self.config.session.first_index);
        if !self.initialised || self.failed || k < self.config.preprocess.dummy_scans {
            return;
        }
        let (Some(masks), Some(z1), Some(z2)) =
            (&self.masks, &mut self.z_detail, &mut self.z_semantic)
        else {
            return;
        };
        let mut resliced = Vec::new();
        let mut data: &[f32] = &v.data;
        if let (Some(realigner), MotionMode::Realign) =
            (&self.realigner, self.config.preprocess.motion)
        {
            match realigner.estimate(&v.data, self.previous_motion.unwrap_or([0.0; 6])) {
                Ok(params) => {
                    realigner.reslice(&v.data, &params, &mut resliced);
                    data = &resliced;
                }
                Err(e) => {
                    tracing::warn!("late volume {}: {e}; left out of the statistics", v.index);
                    return;
                }
            }
        }
        let (mut detail, mut semantic) = (Vec::new(), Vec::new());
        Masks::gather(&masks.detail, data, &mut detail);
        Masks::gather(&masks.semantic, data, &mut semantic);
        z1.absorb(&detail, k as f64);
        z2.absorb(&semantic, k as f64);
    }

    fn mask_sizes(&self) -> (usize, usize) {
        self.masks
            .as_ref()
            .map_or((0, 0), |m| (m.detail.len(), m.semantic.len()))
    }

    fn send_samples(&mut self, samples: Vec<Sample>) -> bool {
        for sample in samples {
            self.samples += 1;
            let report = SampleReport {
                trial: sample.trial.id,
                onset_s: sample.trial.onset_s,
                trial_type: sample.trial.trial_type.clone(),
                stimulus: sample.trial.stimulus.clone(),
                volumes: sample.volumes.clone(),
                missing: sample.missing,
                detail_voxels: sample.detail.len(),
                semantic_voxels: sample.semantic.len(),
                mean_detail: mean(&sample.detail),
                mean_semantic: mean(&sample.semantic),
                sample_ns: now_ns(),
                sample,
            };
            if !self.send(PreprocessEvent::Sample(report)) {
                return false;
            }
        }
        true
    }

    /// Sets up what needs the first volume's grid: the reference, masks, z-score state.
    fn initialise(&mut self, v: &Volume) -> Result<(), String> {
        let p = &self.config.preprocess;
        let g = &v.geometry;
        if self.config.session.tr <= 0.0 {
            match g.tr_s {
                Some(tr) => self.assembler.set_tr(tr),
                None => {
                    return Err(format!(
                        "{}: no TR in session.tr or the header; trial timing needs one",
                        v.path.display()
                    ))
                }
            }
        }
        if p.motion != MotionMode::Off {
            let reference = self.reference.take().unwrap_or_else(|| v.data.clone());
            let realigner = Realigner::new(&reference, g.dims, g.voxel_size)
                .map_err(|e| format!("motion reference: {e}"))?;
            self.realigner = Some(realigner);
        }
        if let (Some(labels), Some(table)) = (&p.labels, &p.label_table) {
            let masks = Masks::load(labels, table, g, self.config.ingest.affine_tolerance_mm)
                .map_err(|e: MaskError| e.to_string())?;
            let mode = match p.zscore {
                ZScoreMode::Window => ZMode::Window(p.zscore_window),
                ZScoreMode::Exponential => ZMode::Exponential(p.zscore_half_life),
            };
            self.z_detail = Some(RollingZ::new(masks.detail.len(), mode, p.detrend));
            self.z_semantic = Some(RollingZ::new(masks.semantic.len(), mode, p.detrend));
            self.slice_at = slice_point(g.dims, &masks.detail);
            let labels = roi_labels(g.dims, &masks.detail, &masks.semantic);
            self.roi_slices = OrthoSlices::cut(&labels, g.dims, self.slice_at).map(Arc::new);
            self.masks = Some(masks);
        } else {
            self.slice_at = slice_point(g.dims, &[]);
        }
        Ok(())
    }

    fn volume(&mut self, v: Volume, k: u32, queued: usize) -> bool {
        if self.failed {
            return self.send(PreprocessEvent::Ingest(IngestEvent::Volume(v)));
        }
        if !self.initialised {
            self.initialised = true;
            if let Err(message) = self.initialise(&v) {
                self.failed = true;
                return self.send(PreprocessEvent::Error(message));
            }
        }
        let Buffers {
            resliced,
            detail,
            semantic,
            z_detail: zd,
            z_semantic: zs,
        } = &mut self.buffers;
        let mut motion = None;
        let mut fd = None;
        let mut data: &[f32] = &v.data;
        if let Some(realigner) = &self.realigner {
            let start = self.previous_motion.unwrap_or([0.0; 6]);
            match realigner.estimate(&v.data, start) {
                Ok(params) => {
                    fd = self
                        .previous_motion
                        .map(|p| framewise_displacement(&p, &params));
                    self.previous_motion = Some(params);
                    motion = Some(params);
                    if self.config.preprocess.motion == MotionMode::Realign {
                        realigner.reslice(&v.data, &params, resliced);
                        data = resliced;
                    }
                }
                Err(e) => {
                    let message = format!("{}: {e}", v.path.display());
                    return self.send(PreprocessEvent::Error(message));
                }
            }
        }
        let (mut mean_z_detail, mut mean_z_semantic) = (None, None);
        let global_signal;
        if let (Some(masks), Some(z1), Some(z2)) =
            (&self.masks, &mut self.z_detail, &mut self.z_semantic)
        {
            Masks::gather(&masks.detail, data, detail);
            Masks::gather(&masks.semantic, data, semantic);
            global_signal = mean(detail);
            z1.push_at(detail, k as f64, zd);
            z2.push_at(semantic, k as f64, zs);
            mean_z_detail = Some(mean(zd));
            mean_z_semantic = Some(mean(zs));
        } else {
            global_signal = mean(data);
        }
        let monitored = if self.masks.is_some() {
            &detail[..]
        } else {
            data
        };
        let tr_s = match (self.config.session.tr, v.geometry.tr_s) {
            (tr, _) if tr > 0.0 => tr,
            (_, Some(tr)) if tr > 0.0 => tr,
            _ => 1.0,
        };
        let (config, masks) = (&self.config.monitor, self.masks.as_ref());
        let quality = self
            .quality
            .get_or_insert_with(|| RunQuality::new(config.clone(), masks));
        let (figures, carpet) = quality.push(fd, monitored, data, &v.geometry, tr_s);
        let samples = self.assembler.push_volume(k, zd, zs);
        let slices = OrthoSlices::cut(data, v.geometry.dims, self.slice_at).map(Arc::new);
        let report = VolumeReport {
            index: v.index,
            path: v.path.clone(),
            dims: v.geometry.dims,
            motion,
            fd,
            global_signal,
            mean_z_detail,
            mean_z_semantic,
            non_finite: v.non_finite,
            seen_ns: v.seen_ns,
            read_ns: v.read_ns,
            preprocessed_ns: now_ns(),
            queued,
            slice_times_s: v.slice_times_s.clone(),
            monitor: Some(figures),
            carpet: Some(carpet),
            slices,
            roi_slices: self.roi_slices.clone(),
        };
        self.send(PreprocessEvent::Volume(report)) && self.send_samples(samples)
    }
}

fn mean(values: &[f32]) -> f32 {
    let (sum, n) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((0.0f64, 0usize), |(s, n), &v| (s + v as f64, n + 1));
    if n == 0 {
        0.0
    } else {
        (sum / n as f64) as f32
    }
}
