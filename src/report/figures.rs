//! The report's figures as PNG bytes: line charts through `crate::chart` (motion, FD with its
//! thresholds and flagged volumes, DVARS, global signal, feedback), and three drawings of our
//! own on the same canvas: the carpet plot (voxels × volumes, each voxel z-scored over the
//! run, rows grouped by ROI with a labelled band), axial slices of the tSNR map with their
//! colour scale, and per-stage latency histograms. Every axis is named with its unit.

use plotters::prelude::*;

use crate::chart::{lines_png, render, Chart, Drawing, XySeries, FONT};

pub const SIZE: (u32, u32) = (900, 320);

/// A line (or points) series from `(x, y)` pairs.
pub fn series(name: &str, points: Vec<(f64, f64)>, as_points: bool) -> XySeries {
    XySeries {
        name: name.into(),
        points,
        as_points,
    }
}

pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[XySeries],
    levels: &[(String, f64)],
) -> Result<Vec<u8>, String> {
    let chart = Chart {
        title,
        x_label,
        y_label,
        log_y: false,
    };
    lines_png(&chart, lines, levels, SIZE)
}

/// Carpet rows are z-scored per voxel and shown from -2 (black) to +2 (white).
const CARPET_RANGE: f32 = 2.0;
const CARPET_SIZE: (u32, u32) = (900, 460);
/// Group band colours (rows of the first group, then the second ...).
const BANDS: [RGBColor; 4] = [
    RGBColor(230, 140, 40),
    RGBColor(60, 190, 220),
    RGBColor(150, 200, 90),
    RGBColor(200, 120, 200),
];

/// `columns[t][row]`: one column per volume (`indices[t]`), rows grouped as `groups`.
pub fn carpet(
    columns: &[Vec<f32>],
    indices: &[u32],
    groups: &[(String, usize)],
) -> Result<Vec<u8>, String> {
    let rows = columns.first().map_or(0, Vec::len);
    let t = columns.len();
    // Each voxel's mean and sd over the run, then the z-scored value per block of pixels.
    let mut stats = vec![(0.0f64, 0.0f64); rows];
    for column in columns {
        for (r, &v) in column.iter().enumerate() {
            stats[r].0 += f64::from(v);
            stats[r].1 += f64::from(v) * f64::from(v);
        }
    }
    let n = t.max(1) as f64;
    let stats: Vec<(f32, f32)> = stats
        .iter()
        .map(|&(s, ss)| {
            let mean = s / n;
            let sd = (ss / n - mean * mean).max(0.0).sqrt();
            (mean as f32, sd as f32)
        })
        .collect();
    let row_bin = rows.div_ceil(400).max(1);
    let col_bin = t.div_ceil(800).max(1);
    let first = f64::from(indices.first().copied().unwrap_or(0));
    let last = f64::from(indices.last().copied().unwrap_or(0)) + 1.0;
    let band = ((last - first) * 0.03).max(1.0);
    render(CARPET_SIZE, |root| -> Drawing {
        root.fill(&WHITE)?;
        let mut plot = ChartBuilder::on(root)
            .caption(
                "Carpet plot: mask voxels over time (z-scored per voxel, -2 black to +2 white)",
                (FONT, 18),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(first - band..last, 0.0..rows.max(1) as f64)?;
        plot.configure_mesh()
            .disable_mesh()
            .x_desc("volume (acquisition index)")
            .y_desc("voxel (grouped by ROI)")
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 12))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        let mut cells = Vec::new();
        for c0 in (0..t).step_by(col_bin) {
            let c1 = (c0 + col_bin).min(t);
            for r0 in (0..rows).step_by(row_bin) {
                let r1 = (r0 + row_bin).min(rows);
                let (mut sum, mut count) = (0.0f32, 0usize);
                for column in &columns[c0..c1] {
                    for (r, &v) in column[r0..r1].iter().enumerate() {
                        let (mean, sd) = stats[r0 + r];
                        if sd > 0.0 && v.is_finite() {
                            sum += (v - mean) / sd;
                            count += 1;
                        }
                    }
                }
                let z = if count == 0 { 0.0 } else { sum / count as f32 };
                let grey = ((z.clamp(-CARPET_RANGE, CARPET_RANGE) / CARPET_RANGE + 1.0) * 127.5)
                    .round() as u8;
                let x0 = f64::from(indices[c0]);
                let x1 = f64::from(indices[c1 - 1]) + 1.0;
                // Rows from the top: the first group at the top of the plot.
                let (y0, y1) = ((rows - r1) as f64, (rows - r0) as f64);
                cells.push(Rectangle::new(
                    [(x0, y0), (x1, y1)],
                    RGBColor(grey, grey, grey).filled(),
                ));
            }
        }
        plot.draw_series(cells)?;
        let mut top = rows as f64;
        for (k, (name, count)) in groups.iter().enumerate() {
            let bottom = top - *count as f64;
            let colour = BANDS[k % BANDS.len()];
            plot.draw_series([Rectangle::new(
                [(first - band, bottom), (first, top)],
                colour.filled(),
            )])?;
            // The group's name on a white tag at the top of its rows, readable over the grey.
            let (x, y) = plot.backend_coord(&(first, top));
            let label = format!("{name} ({count} voxels)");
            let font = (FONT, 14).into_font();
            let (w, h) = font.box_size(&label).unwrap_or((200, 14));
            root.draw(&Rectangle::new(
                [(x + 4, y + 4), (x + 12 + w as i32, y + 10 + h as i32)],
                WHITE.filled(),
            ))?;
            root.draw(&Rectangle::new(
                [(x + 4, y + 4), (x + 12 + w as i32, y + 10 + h as i32)],
                colour.stroke_width(2),
            ))?;
            root.draw(&Text::new(label, (x + 8, y + 7), font))?;
            top = bottom;
        }
        Ok(())
    })
}

/// Black → red → yellow → white, for 0 ≤ f ≤ 1.
fn heat(f: f32) -> RGBColor {
    let f = f.clamp(0.0, 1.0) * 3.0;
    let c = |x: f32| (x.clamp(0.0, 1.0) * 255.0) as u8;
    RGBColor(c(f), c(f - 1.0), c(f - 2.0))
}

/// Up to eight axial slices of `map` (x fastest, then y, then z), evenly spaced through the
/// slices that hold any non-zero value, on one colour scale from 0 to the 99th percentile.
pub fn tsnr_slices(map: &[f32], dims: [usize; 3]) -> Result<Vec<u8>, String> {
    let [nx, ny, nz] = dims;
    let at = |x: usize, y: usize, z: usize| map[x + nx * (y + ny * z)];
    let filled: Vec<usize> = (0..nz)
        .filter(|&z| (0..nx * ny).any(|i| map[i + nx * ny * z] > 0.0))
        .collect();
    let shown: Vec<usize> = if filled.len() <= 8 {
        filled.clone()
    } else {
        (0..8)
            .map(|k| filled[(2 * k + 1) * filled.len() / 16])
            .collect()
    };
    let mut positive: Vec<f32> = map
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    positive.sort_unstable_by(f32::total_cmp);
    let top = positive
        .get(positive.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(1.0)
        .max(1e-6);
    let cols = shown.len().clamp(1, 4);
    let grid_rows = shown.len().div_ceil(4).max(1);
    let size = (900u32, 100 + 215 * grid_rows as u32);
    render(size, |root| -> Drawing {
        root.fill(&WHITE)?;
        let title = format!(
            "tSNR map, axial slices z = {:?} (voxels; colour 0 black to {top:.0} white)",
            shown
        );
        root.draw(&Text::new(title, (12, 10), (FONT, 18)))?;
        // The colour scale, labelled at both ends.
        for i in 0..300 {
            let colour = heat(i as f32 / 299.0);
            root.draw(&Rectangle::new(
                [(300 + i, 40), (301 + i, 58)],
                colour.filled(),
            ))?;
        }
        root.draw(&Text::new("0", (285, 42), (FONT, 14)))?;
        root.draw(&Text::new(format!("{top:.0}"), (608, 42), (FONT, 14)))?;
        let cell = 190.0 / nx.max(ny) as f64;
        for (k, &z) in shown.iter().enumerate() {
            let (ox, oy) = (12 + (k % cols) as i32 * 220, 80 + (k / cols) as i32 * 215);
            root.draw(&Text::new(format!("z = {z}"), (ox, oy), (FONT, 13)))?;
            for y in 0..ny {
                for x in 0..nx {
                    let v = at(x, y, z);
                    let colour = heat(if v.is_finite() { v / top } else { 0.0 });
                    // Anterior (high y) at the top.
                    let px = ox + (x as f64 * cell) as i32;
                    let py = oy + 16 + ((ny - 1 - y) as f64 * cell) as i32;
                    let w = cell.ceil() as i32;
                    root.draw(&Rectangle::new(
                        [(px, py), (px + w, py + w)],
                        colour.filled(),
                    ))?;
                }
            }
        }
        Ok(())
    })
}

/// One histogram per named stage, side by side: how many volumes or trials took how long.
pub fn latency_histograms(stages: &[(&str, &str, Vec<f64>)]) -> Result<Vec<u8>, String> {
    let size = (900u32, 300u32);
    render(size, |root| -> Drawing {
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, stages.len().max(1)));
        for ((name, unit, values), panel) in stages.iter().zip(&panels) {
            let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            let hi = finite.iter().copied().fold(0.0f64, f64::max).max(1e-3) * 1.05;
            let bins = 20usize;
            let mut counts = vec![0u32; bins];
            for v in &finite {
                let b = ((v / hi) * bins as f64) as usize;
                counts[b.min(bins - 1)] += 1;
            }
            let most = counts.iter().copied().max().unwrap_or(0).max(1);
            let mut plot = ChartBuilder::on(panel)
                .caption(format!("{name} (n = {})", finite.len()), (FONT, 15))
                .margin(8)
                .x_label_area_size(40)
                .y_label_area_size(45)
                .build_cartesian_2d(0.0..hi, 0.0..f64::from(most) * 1.1)?;
            plot.configure_mesh()
                .x_desc("ms")
                .y_desc(*unit)
                .axis_desc_style((FONT, 13))
                .label_style((FONT, 11))
                .x_labels(4)
                .y_labels(4)
                .x_label_formatter(&crate::chart::tick)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .draw()?;
            let width = hi / bins as f64;
            plot.draw_series(counts.iter().enumerate().map(|(b, &c)| {
                let x0 = b as f64 * width;
                Rectangle::new(
                    [(x0, 0.0), (x0 + width, f64::from(c))],
                    crate::chart::COLOURS[0].filled(),
                )
            }))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(png: &[u8]) -> image::RgbImage {
        image::load_from_memory(png).expect("png").to_rgb8()
    }

    #[test]
    fn the_carpet_shows_each_voxels_own_changes_as_grey_levels() {
        // Two voxels over four volumes: one rises, one falls; z-scored they mirror each other.
        let columns = vec![
            vec![1.0, 40.0],
            vec![2.0, 30.0],
            vec![3.0, 20.0],
            vec![4.0, 10.0],
        ];
        let png = carpet(&columns, &[5, 6, 7, 8], &[("a".into(), 1), ("b".into(), 1)]).unwrap();
        let img = decoded(&png);
        assert_eq!(img.dimensions(), CARPET_SIZE);
        let greys: std::collections::HashSet<u8> = img
            .pixels()
            .filter(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2])
            .map(|p| p.0[0])
            .collect();
        // z = ±1.34 and ±0.45 give four distinct greys besides the white and the black text.
        for z in [-1.3416f32, -0.4472, 0.4472, 1.3416] {
            let g = ((z / CARPET_RANGE + 1.0) * 127.5).round() as u8;
            assert!(
                greys.iter().any(|&v| v.abs_diff(g) <= 1),
                "grey {g} missing"
            );
        }
        // Both group bands are drawn.
        for c in &BANDS[..2] {
            assert!(img.pixels().any(|p| p.0 == [c.0, c.1, c.2]));
        }
    }

    #[test]
    fn tsnr_slices_put_the_brightest_voxel_white() {
        let dims = [4, 4, 2];
        let mut map = vec![0.0f32; 32];
        map[5] = 100.0;
        map[20] = 50.0;
        let img = decoded(&tsnr_slices(&map, dims).unwrap());
        // Slice z = 0 at (12, 96), 47.5 px per voxel, anterior up: voxel (1, 1) is the second
        // cell across and the third down; voxel (0, 0) the first across, the last down.
        assert_eq!(img.get_pixel(12 + 47 + 23, 96 + 95 + 23).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(12 + 23, 96 + 142 + 23).0, [0, 0, 0]);
        assert_eq!(heat(0.5), RGBColor(255, 127, 0));
    }
}
