//! Subcommand handlers: each turns its arguments into a config and calls the library, one file
//! per family of jobs.

pub mod betas;
pub mod calibrate;
pub mod cluster;
pub mod demo;
pub mod dicom;
pub mod eval_images;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod train;
pub mod train_generator;
pub mod window;
