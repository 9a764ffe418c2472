//! The window's time-series plots (egui_plot), drawn from the viewer state: motion and FD,
//! global signal, mean z-score per ROI group, the feedback value per trial, and per-stage
//! latency per volume and per trial.

use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::state::ViewerState;

const HEIGHT: f32 = 105.0;

fn plot(ui: &mut egui::Ui, id: &str, title: &str, lines: Vec<(&str, Vec<[f64; 2]>)>) {
    ui.label(egui::RichText::new(title).strong());
    Plot::new(id)
        .height(HEIGHT)
        .legend(Legend::default())
        .allow_scroll(false)
        .allow_zoom(false)
        .allow_drag(false)
        .show(ui, |p| {
            for (name, points) in lines {
                p.line(Line::new(name, PlotPoints::new(points)));
            }
        });
}

/// `(volume index, value)` for each volume where `f` gives a value.
fn series(
    state: &ViewerState,
    f: impl Fn(&super::message::VolumeView) -> Option<f64>,
) -> Vec<[f64; 2]> {
    state
        .volumes
        .iter()
        .filter_map(|v| f(v).map(|y| [v.index as f64, y]))
        .collect()
}

pub fn draw(ui: &mut egui::Ui, state: &ViewerState) {
    let motion = |axis: usize| series(state, move |v| v.motion.map(|m| m[axis] as f64));
    plot(
        ui,
        "translation",
        "Translation (mm)",
        vec![("x", motion(0)), ("y", motion(1)), ("z", motion(2))],
    );
    plot(
        ui,
        "rotation",
        "Rotation (degrees)",
        vec![
            ("pitch", motion(3)),
            ("roll", motion(4)),
            ("yaw", motion(5)),
        ],
    );
    plot(
        ui,
        "fd",
        "Framewise displacement (mm)",
        vec![("FD", series(state, |v| v.fd_mm.map(f64::from)))],
    );
    plot(
        ui,
        "global",
        "Global signal",
        vec![("global", series(state, |v| Some(v.global_signal as f64)))],
    );
    plot(
        ui,
        "zscores",
        "Mean z-score per ROI group",
        vec![
            (
                "all visual (detail)",
                series(state, |v| v.mean_z_detail.map(f64::from)),
            ),
            (
                "high-level (semantic)",
                series(state, |v| v.mean_z_semantic.map(f64::from)),
            ),
        ],
    );
    let feedback_title = state
        .session
        .as_ref()
        .and_then(|s| s.feedback_label.clone())
        .map_or("Feedback value per trial".to_string(), |l| {
            format!("Feedback per trial: {l}")
        });
    plot(
        ui,
        "feedback",
        &feedback_title,
        vec![("feedback", state.feedback_series())],
    );
    let per_trial = |f: fn(&super::state::GalleryEntry) -> Option<f64>| -> Vec<[f64; 2]> {
        state
            .gallery
            .values()
            .filter_map(|e| f(e).map(|y| [e.trial as f64, y]))
            .collect()
    };
    plot(
        ui,
        "latency_volume",
        "Latency per volume (ms): file seen -> read -> preprocessed",
        vec![
            ("read", series(state, |v| Some(v.read_ms))),
            ("preprocess", series(state, |v| Some(v.preprocess_ms))),
        ],
    );
    plot(
        ui,
        "latency_trial",
        "Latency per trial (ms)",
        vec![
            ("decode", per_trial(|e| e.decode_ms)),
            ("generate", per_trial(|e| e.generate_ms)),
            ("seen -> drawn", per_trial(|e| e.seen_to_drawn_ms)),
        ],
    );
}
