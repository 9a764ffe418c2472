//! The window's time-series plots (egui_plot), drawn from the viewer state: motion and FD,
//! global signal, mean z-score per ROI group, the feedback value per trial, and per-stage
//! latency per volume and per trial. FD carries the monitor's thresholds as lines and the
//! volumes over its limit as red points; standardised DVARS its limit and its spikes.

use eframe::egui;
use egui_plot::{HLine, Legend, Line, LineStyle, Plot, PlotPoints, PlotUi, Points};

use super::state::ViewerState;

const HEIGHT: f32 = 105.0;

const FLAGGED: egui::Color32 = egui::Color32::from_rgb(235, 70, 50);

fn plot(ui: &mut egui::Ui, id: &str, title: &str, lines: Vec<(&str, Vec<[f64; 2]>)>) {
    plot_with(ui, id, title, lines, |_| {});
}

/// A plot with lines and whatever `extra` adds (threshold lines, flagged points).
fn plot_with(
    ui: &mut egui::Ui,
    id: &str,
    title: &str,
    lines: Vec<(&str, Vec<[f64; 2]>)>,
    extra: impl FnOnce(&mut PlotUi),
) {
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
            extra(p);
        });
}

/// Dashed lines at `levels` and the flagged points in red.
fn limits_and_flags(
    p: &mut PlotUi,
    levels: Vec<(String, f64)>,
    flagged_name: &str,
    flagged: Vec<[f64; 2]>,
) {
    for (name, y) in levels {
        p.hline(HLine::new(name, y).style(LineStyle::dashed_loose()));
    }
    if !flagged.is_empty() {
        p.points(
            Points::new(flagged_name, PlotPoints::new(flagged))
                .color(FLAGGED)
                .radius(3.5),
        );
    }
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
    let monitor = state.session.as_ref().map(|s| s.monitor.clone());
    let figures = |v: &super::message::VolumeView| v.monitor.clone();
    let fd_levels = monitor.as_ref().map_or(Vec::new(), |m| {
        m.fd_thresholds_mm
            .iter()
            .map(|t| (format!("{t} mm"), f64::from(*t)))
            .collect()
    });
    let fd_flagged = series(state, |v| {
        figures(v)
            .filter(|f| f.fd_over_limit)
            .and(v.fd_mm.map(f64::from))
    });
    plot_with(
        ui,
        "fd",
        "Framewise displacement (mm)",
        vec![("FD", series(state, |v| v.fd_mm.map(f64::from)))],
        |p| limits_and_flags(p, fd_levels, "over the FD limit", fd_flagged),
    );
    let dvars_limit = monitor.as_ref().map_or(Vec::new(), |m| {
        vec![(
            format!("limit {}", m.std_dvars_limit),
            f64::from(m.std_dvars_limit),
        )]
    });
    let spikes = series(state, |v| {
        figures(v)
            .filter(|f| f.dvars_spike)
            .and_then(|f| f.std_dvars.map(f64::from))
    });
    plot_with(
        ui,
        "dvars",
        "Standardised DVARS",
        vec![(
            "std DVARS",
            series(state, |v| {
                figures(v).and_then(|f| f.std_dvars.map(f64::from))
            }),
        )],
        |p| limits_and_flags(p, dvars_limit, "spike", spikes),
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
