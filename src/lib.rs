//! brainmclip: live fMRI-to-image decoding beside the scanner.
//!
//! The crate is laid out as the pipeline runs (see the README): `ingest` brings volumes in from
//! the scanner's export directory; later stages (preprocessing, decoding, generation, sinks,
//! the window) consume its typed event stream.

pub mod atomic;
pub mod clock;
pub mod config;
pub mod decode;
pub mod features;
pub mod ingest;
pub mod inspect;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod preprocess;
pub mod retrieval;
pub mod sim;
pub mod sink;
pub mod train;
pub mod tsv;
pub mod ui;
