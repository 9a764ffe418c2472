//! The decode stage's thread: trial samples (and new feedback targets) in, in order, → the
//! decoder → `DecodeEvent`s out, each decoded trial offered to the generator worker, which sends
//! its images out on the same channel. The session feeds it and forwards what it says; a slow
//! decode therefore delays only decoding, never the log of volumes. Everything it needs is
//! loaded and checked before the first volume (`DecodeSetup::load`), so a bad calibration or a
//! mismatched generator fails at start-up, naming the file.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::decoder::{image_target, text_target, DecodeError, DecodedTrial, Decoder};
use super::generate::{Generation, Predicted, Reconstruction};
use super::retrieval::Gallery;
use crate::clock::now_ns;
use crate::config::SessionConfig;
use crate::model::device::{select, ComputeDevice};
use crate::preprocess::trials::Sample;
use crate::startup::Startup;

/// What the stage is given, in the order it must handle it.
pub enum DecodeInput {
    /// A trial's response, assembled at `sample_ns`.
    Sample { sample: Sample, sample_ns: u64 },
    /// A new feedback target as text (from the window or a client).
    SetTargetText(String),
}

/// What the stage (and its generator worker) says.
#[derive(Debug, Clone)]
pub enum DecodeEvent {
    Decoded(DecodedTrial),
    Generated(Reconstruction),
    TargetChanged {
        text: String,
        at_ns: u64,
    },
    Error(String),
    /// The stage has decoded everything it was given and the generator has drawn what it
    /// could; `skipped` trials were passed over while it was busy.
    Finished {
        skipped: usize,
    },
}

/// Samples waiting for the decoder: decoding takes milliseconds and every trial is decoded, so
/// this only fills if the decoder has stopped; the session then waits rather than drop a trial.
const INPUT_CAPACITY: usize = 1024;

/// The calibration, targets, gallery and generator of a session, loaded and checked.
pub struct DecodeSetup {
    decoder: Decoder,
    generator: Option<PathBuf>,
    config: crate::config::DecodeConfig,
    device: ComputeDevice,
}

impl DecodeSetup {
    /// `None` when the session decodes nothing (no `decode.calibration`). Each step (the
    /// decoder, the gallery) is reported to `startup`.
    pub fn load(
        config: &SessionConfig,
        startup: &Startup,
    ) -> Result<Option<DecodeSetup>, DecodeError> {
        let d = &config.decode;
        let Some(dir) = &d.calibration else {
            return match &d.generator {
                Some(g) => Err(DecodeError::File {
                    path: g.clone(),
                    message: "decode.generator needs decode.calibration".into(),
                }),
                None => Ok(None),
            };
        };
        let loading = startup.step("loading the decoder");
        let device = select(d.device)?;
        // Config validation guarantees an encoder wherever a target or gallery is set.
        let target = match (&d.target_text, &d.target_image, &d.encoder) {
            (Some(text), _, Some(encoder)) => Some(text_target(encoder, text, device)?),
            (None, Some(image), Some(encoder)) => Some(image_target(encoder, image, device)?),
            _ => None,
        };
        let mut decoder = Decoder::load(dir, &config.preprocess, target, device)?;
        loading.done(Some(device.to_string()));
        if let (Some(g), Some(encoder)) = (&d.gallery, &d.encoder) {
            let gallery = Gallery::load_reporting(g, encoder, device, startup).map_err(|e| {
                DecodeError::File {
                    path: g.clone(),
                    message: e.to_string(),
                }
            })?;
            tracing::info!(
                "gallery: {} candidate images from {}{}",
                gallery.names.len(),
                g.display(),
                if gallery.cached {
                    " (embeddings from its cache)"
                } else {
                    ""
                }
            );
            decoder = decoder.with_gallery(gallery);
        }
        Ok(Some(DecodeSetup {
            decoder,
            generator: d.generator.clone(),
            config: d.clone(),
            device,
        }))
    }

    /// Where the models run.
    pub fn device(&self) -> ComputeDevice {
        self.device
    }

    pub fn gallery(&self) -> Option<Arc<Gallery>> {
        self.decoder.gallery().cloned()
    }

    /// What the feedback value means, for the window and the log.
    pub fn feedback_label(&self) -> Option<String> {
        let d = &self.config;
        match (&d.target_text, &d.target_image, &d.gallery) {
            (Some(t), _, _) => Some(format!("cosine with \"{t}\"")),
            (None, Some(i), _) => Some(format!("cosine with {}", i.display())),
            (None, None, Some(_)) => Some("identification among the gallery".to_string()),
            _ => None,
        }
    }
}

/// The running stage: `send` inputs, `close` when no more will come; it then finishes on its
/// own and says `Finished`.
pub struct DecodeStage {
    input: Option<Sender<DecodeInput>>,
    thread: Option<JoinHandle<()>>,
}

impl DecodeStage {
    /// Loads the generator (when the setup names one) and starts the stage's thread.
    pub fn start(setup: DecodeSetup, out: Sender<DecodeEvent>) -> Result<DecodeStage, DecodeError> {
        let generation = match &setup.generator {
            Some(dir) => {
                let calibration = setup.decoder.calibration();
                let p = &calibration.info.projector;
                let n = &calibration.norm;
                let predicted = Predicted {
                    tokens: p.detail_tokens,
                    width: p.detail_width,
                    dim: p.semantic_dim,
                    embedding_norm: Some(Predicted::rms_norm(&n.embedding_mean, &n.embedding_std)),
                };
                let drawn = out.clone();
                Some(Generation::start_into(
                    dir,
                    &setup.config,
                    predicted,
                    move |r| drawn.send(DecodeEvent::Generated(r)).is_ok(),
                )?)
            }
            None => None,
        };
        let (input, inbox) = bounded(INPUT_CAPACITY);
        let encoder = setup.config.encoder.clone();
        let decoder = setup.decoder;
        let thread = std::thread::Builder::new()
            .name("decode".into())
            .spawn(move || run(decoder, generation, encoder, inbox, out))
            .map_err(|e| DecodeError::File {
                path: PathBuf::from("decode"),
                message: format!("cannot start the decode thread: {e}"),
            })?;
        Ok(DecodeStage {
            input: Some(input),
            thread: Some(thread),
        })
    }

    /// False once the stage has stopped.
    pub fn send(&self, input: DecodeInput) -> bool {
        self.input.as_ref().is_some_and(|i| i.send(input).is_ok())
    }

    /// No more input: the stage decodes what it has, waits for the generator, and ends.
    pub fn close(&mut self) {
        self.input = None;
    }
}

impl Drop for DecodeStage {
    fn drop(&mut self) {
        self.input = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    mut decoder: Decoder,
    generation: Option<Generation>,
    encoder: Option<PathBuf>,
    inbox: Receiver<DecodeInput>,
    out: Sender<DecodeEvent>,
) {
    for input in inbox.iter() {
        let event = match input {
            DecodeInput::Sample { sample, sample_ns } => match decoder.decode(&sample, sample_ns) {
                Ok(trial) => {
                    if let Some(g) = &generation {
                        g.submit(trial.clone());
                    }
                    DecodeEvent::Decoded(trial)
                }
                Err(e) => DecodeEvent::Error(format!("trial {}: {e}", sample.trial.id)),
            },
            DecodeInput::SetTargetText(text) => set_target(&mut decoder, encoder.as_deref(), text),
        };
        if out.send(event).is_err() {
            return;
        }
    }
    let skipped = generation.map_or(0, |g| {
        let skipped = g.skipped();
        g.finish();
        skipped
    });
    let _ = out.send(DecodeEvent::Finished { skipped });
}

fn set_target(
    decoder: &mut Decoder,
    encoder: Option<&std::path::Path>,
    text: String,
) -> DecodeEvent {
    let Some(encoder) = encoder else {
        return DecodeEvent::Error(format!(
            "feedback target {text:?}: decode.encoder is not set: no text tower to embed it"
        ));
    };
    match text_target(encoder, &text, decoder.compute_device()) {
        Ok(target) => {
            decoder.set_target(Some(target));
            tracing::info!("feedback target set: {text:?}");
            DecodeEvent::TargetChanged {
                text,
                at_ns: now_ns(),
            }
        }
        Err(e) => DecodeEvent::Error(format!("feedback target {text:?}: {e}")),
    }
}
