//! Between a raw volume and the decoder: motion (realignment and framewise displacement), ROI
//! masks, rolling z-scores and trial assembly.
//!
//! Masks and events are read from files at start-up; per volume, everything in the modules
//! below is pure computation, and `stage` runs them on the stage's own thread.

pub mod masks;
pub mod monitor;
pub mod quality;
pub mod realign;
pub mod slices;
pub mod stage;
pub mod trials;
pub mod zscore;
