//! The window as a sink: pipeline events, decoded trials and reconstructions translated into
//! the viewer's typed messages (`ui::message`). Sends never block the pipeline: the channel is
//! bounded and a full one drops the message and counts it (the recorder still has
//! everything). Stimulus images and gallery thumbnails are read here, off the window's thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use crate::decode::{DecodedTrial, Reconstruction};
use crate::ingest::IngestEvent;
use crate::pipeline::PipelineEvent;
use crate::retrieval::{read_rgb8, Gallery, THUMBNAIL};
use crate::ui::message::{
    ReconstructionView, Retrieved, Rgb, SessionInfo, TrialView, ViewerMessage, VolumeView,
};

pub struct ViewerSink {
    tx: Sender<ViewerMessage>,
    /// The folder `stim_file` paths are relative to.
    stimuli: Option<PathBuf>,
    gallery: Option<Arc<Gallery>>,
    /// Volume index → file seen (ns), and trial → its last volume's seen time.
    seen: HashMap<u32, u64>,
    trial_seen: HashMap<u64, u64>,
    /// The scanner's index of the run's first volume: samples count volumes from 0 there.
    first_index: u32,
    pub dropped: u64,
    closed: bool,
}

fn ms(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1e6
}

impl ViewerSink {
    pub fn new(
        tx: Sender<ViewerMessage>,
        session: SessionInfo,
        stimuli: Option<PathBuf>,
        gallery: Option<Arc<Gallery>>,
        first_index: u32,
    ) -> ViewerSink {
        let mut sink = ViewerSink {
            tx,
            stimuli,
            gallery,
            seen: HashMap::new(),
            trial_seen: HashMap::new(),
            first_index,
            dropped: 0,
            closed: false,
        };
        sink.send(ViewerMessage::Session(session));
        sink
    }

    /// False once the window has gone.
    pub fn open(&self) -> bool {
        !self.closed
    }

    fn send(&mut self, m: ViewerMessage) {
        match self.tx.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped += 1,
            Err(TrySendError::Disconnected(_)) => self.closed = true,
        }
    }

    pub fn pipeline_event(&mut self, event: &PipelineEvent) {
        let message = match event {
            PipelineEvent::Volume(v) => {
                self.seen.insert(v.index, v.seen_ns);
                ViewerMessage::Volume(VolumeView {
                    index: v.index,
                    motion: v.motion,
                    fd_mm: v.fd,
                    global_signal: v.global_signal,
                    mean_z_detail: v.mean_z_detail,
                    mean_z_semantic: v.mean_z_semantic,
                    read_ms: ms(v.seen_ns, v.read_ns),
                    preprocess_ms: ms(v.read_ns, v.preprocessed_ns),
                    slices: v.slices.clone(),
                    roi: v.roi_slices.clone(),
                })
            }
            PipelineEvent::Dummy { index } => ViewerMessage::Dummy { index: *index },
            PipelineEvent::Ingest(IngestEvent::Late(v)) => ViewerMessage::Late { index: v.index },
            PipelineEvent::Ingest(IngestEvent::Missing { index, .. }) => {
                ViewerMessage::Missing { index: *index }
            }
            PipelineEvent::Ingest(IngestEvent::Rejected { index, reason, .. }) => {
                ViewerMessage::Rejected {
                    index: *index,
                    reason: reason.clone(),
                }
            }
            PipelineEvent::Ingest(IngestEvent::Warning { message, .. }) => {
                ViewerMessage::Problem(message.clone())
            }
            PipelineEvent::Ingest(_) => return,
            PipelineEvent::Sample(s) => {
                let first = self.first_index;
                if let Some(last) = s
                    .volumes
                    .iter()
                    .filter_map(|k| self.seen.get(&(k + first)))
                    .max()
                {
                    self.trial_seen.insert(s.trial, *last);
                }
                return;
            }
            PipelineEvent::Error(m) => ViewerMessage::Problem(m.clone()),
            PipelineEvent::Ended {
                ingest, samples, ..
            } => ViewerMessage::Ended(format!(
                "{} volumes delivered, {} missing, {} late, {} rejected; {samples} trials",
                ingest.delivered, ingest.missing, ingest.late, ingest.rejected
            )),
        };
        self.send(message);
    }

    fn image(&self, stimulus: &str) -> Option<Rgb> {
        let path = self.stimuli.as_ref()?.join(stimulus);
        match read_rgb8(&path, None) {
            Ok((rgb, w, h)) => Rgb::new(w, h, rgb),
            Err(e) => {
                tracing::warn!("window: {e}");
                None
            }
        }
    }

    pub fn decoded(&mut self, d: &DecodedTrial) {
        let top = d
            .retrieved
            .iter()
            .map(|m| Retrieved {
                name: m.name.clone(),
                cosine: m.cosine,
                image: self
                    .gallery
                    .as_ref()
                    .and_then(|g| g.thumbnails.get(m.index))
                    .and_then(|t| Rgb::new(THUMBNAIL, THUMBNAIL, t.clone())),
            })
            .collect();
        let message = ViewerMessage::Trial(TrialView {
            trial: d.trial,
            stimulus_name: d.stimulus.clone(),
            stimulus: d.stimulus.as_deref().and_then(|s| self.image(s)),
            feedback: d.feedback,
            top,
            decode_ms: ms(d.sample_ns, d.decoded_ns),
        });
        self.send(message);
    }

    pub fn reconstruction(&mut self, r: &Reconstruction) {
        let Some(image) = Rgb::new(r.size, r.size, r.rgb.clone()) else {
            return;
        };
        let message = ViewerMessage::Reconstruction(ReconstructionView {
            trial: r.trial,
            image,
            generate_ms: ms(r.decoded_ns, r.generated_ns),
            seen_to_drawn_ms: self
                .trial_seen
                .get(&r.trial)
                .map(|&seen| ms(seen, r.generated_ns)),
            skipped_before: r.skipped_before,
        });
        self.send(message);
    }

    pub fn queues(&mut self, pipeline: usize, generator_waiting: bool) {
        self.send(ViewerMessage::Queues {
            pipeline,
            generator_waiting,
        });
    }
}
