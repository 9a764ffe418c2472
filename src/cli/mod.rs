//! Subcommand handlers that do not fit in `main.rs`, one file per family of jobs.

pub mod calibrate;
pub mod demo;
pub mod run;
pub mod train;
