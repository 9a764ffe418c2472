//! Between a raw volume and the decoder: motion (realignment and framewise displacement).
//!
//! Masks, rolling z-scores and trial assembly join here in the preprocessing issue; this module
//! never reads files or talks to the network.

pub mod realign;
pub mod zscore;
