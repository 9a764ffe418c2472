//! The typed stream the window consumes (`ViewerMessage`); what it sends back is the session's
//! command type (`crate::event::SessionCommand`). The window knows nothing else about the pipeline: a scripted stream of
//! these messages is all its tests need, and any producer (a live run, a replay, a recorded
//! log) can drive it.

use std::sync::Arc;

use crate::preprocess::slices::OrthoSlices;

/// An RGB image, 8 bits per channel, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub pixels: Arc<Vec<u8>>,
}

impl Rgb {
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Option<Rgb> {
        (pixels.len() == width * height * 3).then(|| Rgb {
            width,
            height,
            pixels: Arc::new(pixels),
        })
    }
}

/// Once, when the run starts.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub title: String,
    /// Volumes the run should have (after dummies too), when known.
    pub volumes: Option<u32>,
    pub tr_s: f64,
    /// Where the models run (e.g. "CPU (2 threads)").
    pub device: String,
    /// The session folder: snapshots are saved there.
    pub output_dir: std::path::PathBuf,
    /// What the feedback value is (e.g. "cosine with \"a red circle\"").
    pub feedback_label: Option<String>,
    /// The console's thresholds and limits.
    pub monitor: crate::config::MonitorConfig,
}

/// One preprocessed volume.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeView {
    pub index: u32,
    /// [tx ty tz] mm, [rx ry rz] degrees.
    pub motion: Option<[f32; 6]>,
    pub fd_mm: Option<f32>,
    pub global_signal: f32,
    pub mean_z_detail: Option<f32>,
    pub mean_z_semantic: Option<f32>,
    /// The console's figures after this volume (usable minutes, DVARS, flags, tSNR).
    pub monitor: Option<crate::preprocess::monitor::MonitorFigures>,
    /// File seen → read, read → preprocessed, ms.
    pub read_ms: f64,
    pub preprocess_ms: f64,
    pub slices: Option<Arc<OrthoSlices<f32>>>,
    pub roi: Option<Arc<OrthoSlices<u8>>>,
}

/// A retrieved gallery image and its cosine with the decoded embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieved {
    pub name: String,
    pub cosine: f32,
    pub image: Option<Rgb>,
}

/// A decoded trial (before its image is drawn).
#[derive(Debug, Clone, PartialEq)]
pub struct TrialView {
    pub trial: u64,
    pub stimulus_name: Option<String>,
    pub stimulus: Option<Rgb>,
    pub feedback: Option<f64>,
    pub top: Vec<Retrieved>,
    /// Sample assembled → decoded, ms.
    pub decode_ms: f64,
}

/// A drawn reconstruction.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconstructionView {
    pub trial: u64,
    pub image: Rgb,
    /// Decoded → drawn, and the trial's last volume file seen → drawn, ms.
    pub generate_ms: f64,
    pub seen_to_drawn_ms: Option<f64>,
    pub skipped_before: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ViewerMessage {
    /// A start-up step began, advanced or ended (before and until the first volume).
    Startup(crate::startup::StartupUpdate),
    Session(SessionInfo),
    Volume(VolumeView),
    Dummy {
        index: u32,
    },
    Missing {
        index: u32,
    },
    Late {
        index: u32,
    },
    Rejected {
        index: Option<u32>,
        reason: String,
    },
    Trial(TrialView),
    Reconstruction(ReconstructionView),
    /// Events waiting between stages, and whether a trial waits for the generator.
    Queues {
        pipeline: usize,
        generator_waiting: bool,
    },
    /// A problem worth showing (the run goes on unless it says otherwise).
    Problem(String),
    Ended(String),
}
