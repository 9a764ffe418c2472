//! Between a raw volume and the decoder: motion (realignment and framewise displacement), ROI
//! masks, rolling z-scores and trial assembly.
//!
//! Masks and events are read from files at start-up; per volume, everything here is pure
//! computation (the threads that run it belong to the pipeline).

pub mod masks;
pub mod realign;
pub mod slices;
pub mod trials;
pub mod zscore;
