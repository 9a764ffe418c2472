//! Between a raw volume and the decoder: motion (realignment and framewise displacement), ROI
//! masks, rolling z-scores and trial assembly.
//!
//! The pipeline that runs these per volume comes with the preprocessing issue; this module
//! never reads files or talks to the network.

pub mod masks;
pub mod realign;
pub mod trials;
pub mod zscore;
