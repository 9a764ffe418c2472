//! A small line plot as a PNG (loss curves in calibration and training reports): axes, one
//! coloured polyline per series on a log or linear y scale, no text (the legend and figures
//! live in the report JSON beside it).

use std::path::Path;

use image::{Rgb, RgbImage};

pub const COLOURS: [[u8; 3]; 6] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
];

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), colour: [u8; 3]) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
            let (px, py) = (x.round() as i64 + dx, y.round() as i64 + dy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, Rgb(colour));
            }
        }
    }
}

/// Plots each series (y values at x = 0, 1, ...) and writes a PNG; `log_y` for losses.
pub fn plot_series(path: &Path, series: &[Vec<f64>], log_y: bool) -> Result<(), String> {
    let (w, h, margin) = (720u32, 420u32, 40.0f64);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let tf = |v: f64| if log_y { v.max(1e-12).log10() } else { v };
    let values: Vec<f64> = series
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .map(tf)
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (lo, hi) = if lo < hi {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let n = series.iter().map(Vec::len).max().unwrap_or(1).max(2);
    let x_of = |i: usize| margin + (w as f64 - 2.0 * margin) * i as f64 / (n - 1) as f64;
    let y_of = |v: f64| h as f64 - margin - (h as f64 - 2.0 * margin) * (tf(v) - lo) / (hi - lo);
    let axis = [90, 90, 90];
    line(
        &mut img,
        (margin, margin),
        (margin, h as f64 - margin),
        axis,
    );
    line(
        &mut img,
        (margin, h as f64 - margin),
        (w as f64 - margin, h as f64 - margin),
        axis,
    );
    for (k, s) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let points: Vec<(f64, f64)> = s
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| (x_of(i), y_of(v)))
            .collect();
        for pair in points.windows(2) {
            line(&mut img, pair[0], pair[1], colour);
        }
    }
    img.save(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}
