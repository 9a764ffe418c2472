//! Training jobs run by the CLI: the demo world's CLIP (`encoder.rs`, its vocabulary and its
//! evaluation). Projector calibration and generator training come with their issues.

pub mod across;
pub mod betas;
pub mod calibrate;
pub mod calibrate_run;
pub mod checkpoint;
pub mod degrade;
pub mod demo_text;
pub mod ema;
pub mod encoder;
pub mod encoder_eval;
pub mod evaluate;
pub mod generator;
pub mod generator_eval;
pub mod image_folder;
pub mod layout;
pub mod parallel;
pub mod probe;
pub mod projector_train;
pub mod reconstruct;
pub mod ridge;
pub mod ridge_baseline;
pub mod select;
pub mod trial_betas;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on stderr, or a hidden one (tests, `--quiet`).
pub fn progress_bar(visible: bool, total: u64, what: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} eta {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    bar
}
