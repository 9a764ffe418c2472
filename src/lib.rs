//! brainmclip: live fMRI-to-image decoding beside the scanner.
//!
//! The crate is laid out as the pipeline runs (see the README's layout): `ingest` brings volumes
//! in from the scanner's export directory, `preprocess` cleans them and assembles trials,
//! `decode` turns trials into features, feedback and images, `event` is the one typed stream
//! they make, `sink` sends it out; `session` runs those stages as one live daemon. `model` holds the networks, `train` fits
//! them (it imports the runtime; the runtime never imports it), `sim` simulates subjects, `ui`
//! is the window and `demo` the bundled synthetic session.

pub mod assets;
pub mod atomic;
pub mod chart;
pub mod clock;
pub mod config;
pub mod decode;
pub mod demo;
pub mod event;
pub mod features;
pub mod fuzz;
pub mod geometry;
pub mod ingest;
pub mod inspect;
pub mod metrics;
pub mod model;
pub mod preprocess;
pub mod report;
pub mod session;
pub mod sim;
pub mod sink;
pub mod startup;
pub mod train;
pub mod tsv;
pub mod ui;
