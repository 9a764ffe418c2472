//! Whether each live volume is the source volume written for its index: its figures (global
//! signal, motion estimate, dims, non-finite voxels) against the offline figures of that source
//! volume, and how many source volumes that comparison can tell apart.

use super::super::feed::VolumeSeen;
use super::super::{Schedule, Signature};
use super::EXAMPLES;

/// A live volume is its source volume when its global signal is within this fraction of the
/// offline figure and each motion parameter within `MOTION_TOLERANCE` (mm, degrees). The live
/// run's later cycles start each realignment from another volume's estimate than the offline
/// pass did, so they agree to the realignment's convergence (steps under 1e-4), not bit for bit;
/// neighbouring volumes of the simulated run differ by far more (the report counts how many
/// source volumes the check tells apart).
pub const GLOBAL_TOLERANCE: f64 = 1e-3;
pub const MOTION_TOLERANCE: f64 = 0.01;
/// The largest disagreement between live volumes and their source volumes' offline figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deviation {
    pub volumes: usize,
    /// Relative to the offline global signal.
    pub global: f64,
    /// mm or degrees.
    pub motion: f64,
}

impl Deviation {
    fn add(&mut self, global: f64, motion: f64) {
        self.volumes += 1;
        self.global = worst(self.global, global);
        self.motion = worst(self.motion, motion);
    }
}

/// The larger of two deviations, NaN winning (a NaN must not pass for agreement).
fn worst(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

#[derive(Default)]
pub struct ContentCheck {
    pub checked: usize,
    pub misread: usize,
    pub examples: Vec<String>,
    pub first: Deviation,
    pub later: Deviation,
}

/// (relative global-signal difference, largest motion-parameter difference) of a live volume
/// against a source volume's figures.
pub fn deviation(expected: &Signature, global_signal: f32, motion: Option<[f32; 6]>) -> (f64, f64) {
    let reference = f64::from(expected.global_signal);
    let global = (f64::from(global_signal) - reference).abs() / reference.abs().max(1e-12);
    let motion = match (motion, expected.motion) {
        (Some(a), Some(b)) => a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from((x - y).abs()))
            .fold(0.0, worst),
        (None, None) => 0.0,
        _ => f64::INFINITY,
    };
    (global, motion)
}

pub fn within_tolerance(expected: &Signature, seen: &Signature) -> bool {
    let (global, motion) = deviation(expected, seen.global_signal, seen.motion);
    global <= GLOBAL_TOLERANCE && motion <= MOTION_TOLERANCE && expected.dims == seen.dims
}

pub fn check_content(
    schedule: &Schedule,
    expected: &[Option<Signature>],
    volumes: &[VolumeSeen],
) -> ContentCheck {
    let mut check = ContentCheck::default();
    for v in volumes {
        let source = schedule.source_position(v.position);
        let mut problems = Vec::new();
        if !v.named_right {
            problems.push("read from another file than its own".to_string());
        }
        match expected.get(source).and_then(Option::as_ref) {
            None => problems.push(format!("source volume {source} has no offline figures")),
            Some(e) => {
                let (global, motion) = deviation(e, v.global_signal, v.motion);
                if v.position < schedule.run_length {
                    check.first.add(global, motion);
                } else {
                    check.later.add(global, motion);
                }
                if v.dims != e.dims {
                    problems.push(format!("dims {:?}, its source {:?}", v.dims, e.dims));
                }
                if v.non_finite != e.non_finite {
                    problems.push(format!(
                        "{} non-finite voxels, its source {}",
                        v.non_finite, e.non_finite
                    ));
                }
                if global.is_nan() || global > GLOBAL_TOLERANCE {
                    problems.push(format!(
                        "global signal {} vs {} of source volume {source}",
                        v.global_signal, e.global_signal
                    ));
                }
                if motion.is_nan() || motion > MOTION_TOLERANCE {
                    problems.push(format!(
                        "motion {:?} vs {:?} of source volume {source}",
                        v.motion, e.motion
                    ));
                }
            }
        }
        check.checked += 1;
        if !problems.is_empty() {
            check.misread += 1;
            if check.examples.len() < EXAMPLES {
                check.examples.push(format!(
                    "index {}: {}",
                    schedule.first_index as usize + v.position,
                    problems.join("; ")
                ));
            }
        }
    }
    check
}

/// How many source volumes no other source volume could pass for: (apart, of).
pub fn distinguishable(expected: &[Option<Signature>]) -> (usize, usize) {
    let known: Vec<&Signature> = expected.iter().flatten().collect();
    let mut apart = 0;
    for (i, a) in known.iter().enumerate() {
        let confusable = known
            .iter()
            .enumerate()
            .any(|(j, b)| j != i && within_tolerance(a, b));
        if !confusable {
            apart += 1;
        }
    }
    (apart, known.len())
}
