//! Decoding, the last stages before the sinks: a trial's sample → predicted CLIP features and the
//! feedback value (`decoder`), → an image (`generate`), with the gallery that names the closest
//! known images (`retrieval`); `stage` runs them on their own threads beside the session. It
//! reads no volumes and writes no files: what it makes goes out as `DecodeEvent`s.

pub mod decoder;
pub mod gallery_cache;
pub mod generate;
pub mod retrieval;
pub mod stage;

pub use decoder::{
    image_target, text_target, DecodeError, DecodedTrial, Decoder, Match, RETRIEVED,
};
pub use generate::{Generation, Predicted, Reconstruction};
pub use stage::{DecodeEvent, DecodeSetup, DecodeStage};
