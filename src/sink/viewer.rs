//! The window as a sink: session events translated into the viewer's typed messages
//! (`ui::message`). Sends never block the session: the channel is bounded and a full one drops
//! the message and counts it (the recorder still has everything). Stimulus images and gallery
//! thumbnails are read here, off the window's thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use super::{Sink, SinkError};
use crate::decode::retrieval::{read_rgb8, Gallery, THUMBNAIL};
use crate::decode::{DecodedTrial, Reconstruction};
use crate::event::{SessionEvent, SessionStarted};
use crate::ingest::IngestEvent;
use crate::ui::message::{
    ReconstructionView, Retrieved, Rgb, SessionInfo, TrialView, ViewerMessage, VolumeView,
};

pub struct ViewerSink {
    tx: Sender<ViewerMessage>,
    title: String,
    /// The folder `stim_file` paths are relative to.
    stimuli: Option<PathBuf>,
    gallery: Option<Arc<Gallery>>,
    /// Volume index → file seen (ns), and trial → its last volume's seen time.
    seen: HashMap<u32, u64>,
    trial_seen: HashMap<u64, u64>,
    /// The newest trial decoded and the newest drawn: a newer decoded one waits for the
    /// generator.
    newest_decoded: Option<u64>,
    newest_drawn: Option<u64>,
    pub dropped: u64,
    closed: bool,
}

fn ms(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1e6
}

impl ViewerSink {
    /// A sink for the window titled `title`; it learns the rest from the session's `Started`.
    pub fn new(tx: Sender<ViewerMessage>, title: &str) -> ViewerSink {
        ViewerSink {
            tx,
            title: title.to_string(),
            stimuli: None,
            gallery: None,
            seen: HashMap::new(),
            trial_seen: HashMap::new(),
            newest_decoded: None,
            newest_drawn: None,
            dropped: 0,
            closed: false,
        }
    }

    fn started(&mut self, s: &SessionStarted) -> ViewerMessage {
        self.stimuli = s.stimuli.clone();
        self.gallery = s.gallery.clone();
        ViewerMessage::Session(SessionInfo {
            title: self.title.clone(),
            volumes: s.volumes,
            tr_s: s.tr_s,
            device: s.device.clone(),
            output_dir: s.output_dir.clone(),
            feedback_label: s.feedback_label.clone(),
            monitor: s.monitor.clone(),
        })
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

    /// The window's message for a session event, if it shows one.
    fn message(&mut self, event: &SessionEvent) -> Option<ViewerMessage> {
        Some(match event {
            SessionEvent::Started(s) => self.started(s),
            SessionEvent::Volume(v) => {
                self.seen.insert(v.index, v.seen_ns);
                ViewerMessage::Volume(VolumeView {
                    index: v.index,
                    motion: v.motion,
                    fd_mm: v.fd,
                    global_signal: v.global_signal,
                    mean_z_detail: v.mean_z_detail,
                    mean_z_semantic: v.mean_z_semantic,
                    monitor: v.monitor.clone(),
                    read_ms: ms(v.seen_ns, v.read_ns),
                    preprocess_ms: ms(v.read_ns, v.preprocessed_ns),
                    slices: v.slices.clone(),
                    roi: v.roi_slices.clone(),
                })
            }
            SessionEvent::Dummy { index } => ViewerMessage::Dummy { index: *index },
            SessionEvent::Gap(IngestEvent::Late(v)) => ViewerMessage::Late { index: v.index },
            SessionEvent::Gap(IngestEvent::Missing { index, .. }) => {
                ViewerMessage::Missing { index: *index }
            }
            SessionEvent::Gap(IngestEvent::Rejected { index, reason, .. }) => {
                ViewerMessage::Rejected {
                    index: *index,
                    reason: reason.clone(),
                }
            }
            SessionEvent::Gap(IngestEvent::Warning { message, .. }) => {
                ViewerMessage::Problem(message.clone())
            }
            SessionEvent::Sample(s) => {
                if let Some(last) = s.volumes.iter().filter_map(|i| self.seen.get(i)).max() {
                    self.trial_seen.insert(s.trial, *last);
                }
                return None;
            }
            SessionEvent::Decoded(d) => {
                self.newest_decoded = Some(d.trial);
                self.decoded(d)
            }
            SessionEvent::Generated(r) => {
                self.newest_drawn = Some(r.trial);
                self.reconstruction(r)?
            }
            SessionEvent::Error { stage, message, .. } => {
                ViewerMessage::Problem(format!("{stage}: {message}"))
            }
            SessionEvent::Ended(s) => ViewerMessage::Ended(format!(
                "{} volumes delivered, {} missing, {} late, {} rejected; {} trials",
                s.counts.delivered, s.counts.missing, s.counts.late, s.counts.rejected, s.samples
            )),
            SessionEvent::Gap(_)
            | SessionEvent::Displayed { .. }
            | SessionEvent::DisplayPaused { .. }
            | SessionEvent::TargetChanged { .. }
            // The monitor's figures came with their volume; the maps are for the report.
            | SessionEvent::Monitor(_)
            | SessionEvent::QualityMaps(_) => return None,
        })
    }

    /// Events waiting for preprocessing, and whether a decoded trial waits for the generator.
    fn queues(&self, event: &SessionEvent) -> Option<ViewerMessage> {
        let SessionEvent::Volume(v) = event else {
            return None;
        };
        Some(ViewerMessage::Queues {
            pipeline: v.queued,
            generator_waiting: self.newest_decoded > self.newest_drawn,
        })
    }

    fn image(&self, stimulus: &str) -> Option<Rgb> {
        if let Some(why) = crate::preprocess::trials::unsafe_stimulus_name(stimulus) {
            tracing::warn!("window: {why}");
            return None;
        }
        let path = self.stimuli.as_ref()?.join(stimulus);
        match read_rgb8(&path, None) {
            Ok((rgb, w, h)) => Rgb::new(w, h, rgb),
            Err(e) => {
                tracing::warn!("window: {e}");
                None
            }
        }
    }

    fn decoded(&self, d: &DecodedTrial) -> ViewerMessage {
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
        ViewerMessage::Trial(TrialView {
            trial: d.trial,
            stimulus_name: d.stimulus.clone(),
            stimulus: d.stimulus.as_deref().and_then(|s| self.image(s)),
            feedback: d.feedback,
            top,
            decode_ms: ms(d.sample_ns, d.decoded_ns),
        })
    }

    fn reconstruction(&self, r: &Reconstruction) -> Option<ViewerMessage> {
        let image = Rgb::new(r.size, r.size, r.rgb.clone())?;
        Some(ViewerMessage::Reconstruction(ReconstructionView {
            trial: r.trial,
            image,
            generate_ms: ms(r.decoded_ns, r.generated_ns),
            seen_to_drawn_ms: self
                .trial_seen
                .get(&r.trial)
                .map(|&seen| ms(seen, r.generated_ns)),
            skipped_before: r.skipped_before,
        }))
    }
}

impl Sink for ViewerSink {
    fn name(&self) -> &str {
        "viewer"
    }

    /// Once the window has closed, events are let go without a word (the run may go on).
    fn event(&mut self, event: &SessionEvent) -> Result<(), SinkError> {
        if let Some(m) = self.message(event) {
            self.send(m);
        }
        if let Some(m) = self.queues(event) {
            self.send(m);
        }
        Ok(())
    }
}
