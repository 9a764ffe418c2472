//! Where the object is in an image, read from the pixels alone: the layout measure of
//! `eval --images`, which scores reconstructions of single-object simulator images against the
//! simulator's ground truth (object centre and size from `stimuli/stimuli.tsv`).
//!
//! The simulator's backgrounds are one colour scaled by a brightness factor (plain, gradient,
//! stripes) and an object never shares its background's colour. So the background of an image is
//! a segment of the ray through its border's colour, and a pixel's distance from that segment
//! says how much it is object. The object's centre is the weighted centroid of those distances,
//! its size the square root of their total (an equivalent radius). It needs no training and
//! knows no model; on the true images it recovers position and size (see the tests), which is
//! the ceiling any reconstruction is compared with.

use std::collections::HashMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::calibrate::{file_err, CalibrateError};
use crate::metrics::Estimate;
use crate::sim::stimuli::SIZES;
use crate::tsv::Table;

/// One object's place: centre in image units (0..1, x right, y down) and radius.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ObjectLayout {
    pub x: f64,
    pub y: f64,
    /// Radius as a fraction of the image side (the simulator's size; an equivalent radius
    /// when measured from pixels).
    pub radius: f64,
}

/// Layouts of the single-object stimuli in the simulator's `stimuli/stimuli.tsv`; empty when
/// the folder has no such table (real image sets).
pub fn single_object_layouts(
    stimuli_dir: &Path,
) -> Result<HashMap<String, ObjectLayout>, CalibrateError> {
    let path = stimuli_dir.join("stimuli.tsv");
    if !path.exists() {
        return Ok(HashMap::new());
    }
    let table = Table::read(&path).map_err(|m| file_err(&path, m))?;
    let expected = "simulator stimulus table (stim_id, n_objects, objects)";
    let column = |name| table.column(name, expected).map_err(|m| file_err(&path, m));
    let (id, n, objects) = (column("stim_id")?, column("n_objects")?, column("objects")?);
    let pattern =
        regex::Regex::new(r"^(\w+) .*\(([-\d.]+),([-\d.]+)\)").map_err(|e| file_err(&path, e))?;
    let mut out = HashMap::new();
    for (line, cells) in table.rows() {
        let (Some(i), Some(k), Some(o)) = (cells.get(id), cells.get(n), cells.get(objects)) else {
            continue;
        };
        if k != "1" {
            continue;
        }
        let parsed = pattern.captures(o).and_then(|c| {
            let radius = SIZES
                .iter()
                .find(|s| s.0 == &c[1])
                .map(|s| f64::from(s.1))?;
            Some(ObjectLayout {
                x: c[2].parse().ok()?,
                y: c[3].parse().ok()?,
                radius,
            })
        });
        let layout = parsed.ok_or_else(|| {
            file_err(
                &path,
                format!("line {line}: cannot read the object {o:?} (expected \"<size> <colour> <shape> (x,y) <angle>deg\")"),
            )
        })?;
        out.insert(i.clone(), layout);
    }
    Ok(out)
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    values[i]
}

/// The object in an RGB image (`size` x `size`, interleaved, 0..1); None when nothing stands out
/// from the background.
pub fn locate_object(rgb: &[f32], size: usize) -> Option<ObjectLayout> {
    if size < 8 || rgb.len() != size * size * 3 {
        return None;
    }
    let pixel = |i: usize| [0, 1, 2].map(|c| f64::from(rgb[i * 3 + c]));
    let ring = (size / 32).max(1);
    let border: Vec<[f64; 3]> = (0..size * size)
        .filter(|i| {
            let (x, y) = (i % size, i / size);
            x < ring || y < ring || x >= size - ring || y >= size - ring
        })
        .map(pixel)
        .collect();
    // The background's colour direction: the per-channel median of the border.
    let median =
        [0, 1, 2].map(|c| percentile(&mut border.iter().map(|p| p[c]).collect::<Vec<_>>(), 0.5));
    let length = median.iter().map(|v| v * v).sum::<f64>().sqrt();
    // A dark background has no reliable direction: treat it as one colour.
    let direction = (length > 0.15).then(|| median.map(|v| v / length));
    let mut along: Vec<f64> = match direction {
        Some(d) => border.iter().map(|p| dot(p, &d)).collect(),
        None => vec![0.0],
    };
    let (low, high) = (percentile(&mut along, 0.1), percentile(&mut along, 0.9));
    let distance = |p: [f64; 3]| -> f64 {
        let nearest = match direction {
            Some(d) => {
                let k = dot(&p, &d).clamp(low * 0.9, high * 1.1);
                d.map(|v| v * k)
            }
            None => median,
        };
        (0..3)
            .map(|c| (p[c] - nearest[c]).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    // Distances the background itself reaches (anti-aliased stripes, noise) are not object.
    let mut border_distance: Vec<f64> = border.iter().map(|&p| distance(p)).collect();
    let floor = percentile(&mut border_distance, 0.9).max(0.08);
    let ramp = 0.15;
    let (mut total, mut sx, mut sy) = (0.0, 0.0, 0.0);
    for i in 0..size * size {
        let w = ((distance(pixel(i)) - floor) / ramp).clamp(0.0, 1.0);
        let (x, y) = ((i % size) as f64 + 0.5, (i / size) as f64 + 0.5);
        total += w;
        sx += w * x;
        sy += w * y;
    }
    let area = total / (size * size) as f64;
    (area > 0.002).then(|| ObjectLayout {
        x: sx / total / size as f64,
        y: sy / total / size as f64,
        radius: (area / std::f64::consts::PI).sqrt(),
    })
}

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// How well layouts measured from images match the truth.
#[derive(Debug, Clone, Serialize)]
pub struct LayoutScore {
    pub images: usize,
    /// Images where no object stood out (scored at the centre with radius 0).
    pub not_found: usize,
    /// Pearson r of measured and true centre, mean of x and y, with a bootstrap interval.
    pub position_r: Estimate,
    /// Pearson r of measured and true radius.
    pub size_r: Estimate,
    /// Mean distance of measured from true centre, in image widths.
    pub position_error: Estimate,
}

/// Scores measured layouts (None: not found) against the truth, with 95 % intervals from
/// 1000 bootstrap draws of images.
pub fn score_layouts(measured: &[Option<ObjectLayout>], truth: &[ObjectLayout]) -> LayoutScore {
    let centre = ObjectLayout {
        x: 0.5,
        y: 0.5,
        radius: 0.0,
    };
    let m: Vec<ObjectLayout> = measured.iter().map(|o| o.unwrap_or(centre)).collect();
    let stats = |rows: &[usize]| -> [f64; 3] {
        let pick = |f: fn(&ObjectLayout) -> f64, set: &[ObjectLayout]| -> Vec<f64> {
            rows.iter().map(|&i| f(&set[i])).collect()
        };
        let r = |f: fn(&ObjectLayout) -> f64| correlation(&pick(f, &m), &pick(f, truth));
        let error = rows
            .iter()
            .map(|&i| ((m[i].x - truth[i].x).powi(2) + (m[i].y - truth[i].y).powi(2)).sqrt())
            .sum::<f64>()
            / rows.len().max(1) as f64;
        [(r(|o| o.x) + r(|o| o.y)) / 2.0, r(|o| o.radius), error]
    };
    let n = m.len().min(truth.len());
    let all: Vec<usize> = (0..n).collect();
    let full = stats(&all);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let draws: Vec<[f64; 3]> = (0..1000)
        .map(|_| {
            stats(
                &(0..n)
                    .map(|_| rng.random_range(0..n.max(1)))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let estimate = |k: usize| {
        let mut v: Vec<f64> = draws
            .iter()
            .map(|d| d[k])
            .filter(|x| x.is_finite())
            .collect();
        if n < 3 || v.is_empty() {
            return Estimate {
                mean: f64::NAN,
                low: f64::NAN,
                high: f64::NAN,
            };
        }
        Estimate {
            mean: full[k],
            low: percentile(&mut v, 0.025),
            high: percentile(&mut v, 0.975),
        }
    };
    LayoutScore {
        images: n,
        not_found: measured.iter().filter(|o| o.is_none()).count(),
        position_r: estimate(0),
        size_r: estimate(1),
        position_error: estimate(2),
    }
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().max(1) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma).powi(2);
        bb += (y - mb).powi(2);
    }
    ab / (aa * bb).sqrt().max(1e-30)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::stimuli::{render, stimulus_set};

    fn single_objects(n: usize) -> Vec<crate::sim::stimuli::Stimulus> {
        stimulus_set(77, 6 * n, "t")
            .into_iter()
            .filter(|s| s.objects.len() == 1)
            .take(n)
            .collect()
    }

    fn truth_of(s: &crate::sim::stimuli::Stimulus) -> ObjectLayout {
        let o = &s.objects[0];
        ObjectLayout {
            x: f64::from(o.x),
            y: f64::from(o.y),
            radius: f64::from(SIZES[o.size].1),
        }
    }

    #[test]
    fn finds_the_objects_of_true_simulator_images() {
        // Every background kind and colour occurs among 120 single-object images.
        let stimuli = single_objects(120);
        assert_eq!(stimuli.len(), 120);
        let measured: Vec<Option<ObjectLayout>> = stimuli
            .iter()
            .map(|s| {
                let rgb: Vec<f32> = render(s, 64).into_iter().flatten().collect();
                locate_object(&rgb, 64)
            })
            .collect();
        let truth: Vec<ObjectLayout> = stimuli.iter().map(truth_of).collect();
        let score = score_layouts(&measured, &truth);
        assert!(score.not_found <= 2, "{score:?}");
        assert!(score.position_r.mean > 0.98, "{score:?}");
        assert!(score.position_error.mean < 0.02, "{score:?}");
        // Shapes of one size differ in area (a ring, a cross), so size is read less exactly.
        assert!(score.size_r.mean > 0.75, "{score:?}");
        assert!(score.position_r.low <= score.position_r.mean);
        assert!(score.position_r.high >= score.position_r.mean);
    }

    #[test]
    fn shuffled_layouts_score_near_zero_and_a_blank_image_has_no_object() {
        let stimuli = single_objects(60);
        let truth: Vec<ObjectLayout> = stimuli.iter().map(truth_of).collect();
        let measured: Vec<Option<ObjectLayout>> = truth.iter().rev().map(|t| Some(*t)).collect();
        let score = score_layouts(&measured, &truth);
        assert!(score.position_r.mean.abs() < 0.3, "{score:?}");
        assert!(score.position_error.mean > 0.2, "{score:?}");
        let grey = vec![0.4f32; 64 * 64 * 3];
        assert_eq!(locate_object(&grey, 64), None);
    }

    #[test]
    fn reads_sizes_and_positions_from_the_stimulus_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("stimuli.tsv"),
            "stim_id\tn_objects\tobjects\n\
             a\t1\tlarge red ring (0.300,0.700) 12deg\n\
             b\t2\tsmall red ring (0.3,0.7) 1deg; small blue star (0.6,0.2) 3deg\n",
        )
        .expect("write");
        let layouts = single_object_layouts(dir.path()).expect("read");
        assert_eq!(layouts.len(), 1);
        assert_eq!(
            layouts["a"],
            ObjectLayout {
                x: 0.3,
                y: 0.7,
                radius: 0.25
            }
        );
        std::fs::write(
            dir.path().join("stimuli.tsv"),
            "stim_id\tn_objects\tobjects\nc\t1\thuge red ring (0.3,0.7) 1deg\n",
        )
        .expect("write");
        let err = single_object_layouts(dir.path()).expect_err("an unknown size");
        assert!(err.to_string().contains("stimuli.tsv"), "{err}");
    }
}
