//! The neural model: what each voxel's neural population does with an image.
//!
//! Low-level voxels (V1-hV4): a population receptive field over local contrast energy, signed
//! colour-opponent contrast (red-green, blue-yellow) and luminance, each voxel with its own
//! preferences (signs and weights), softly rectified and then compressed (the CSS model, Kay et
//! al. 2013). Signed channels are what make layout and colour recoverable from a population.
//! High-level voxels (floc-like areas): a rectified linear function of the image's semantic
//! attributes (shape categories, colours, object count, sizes, layout, background), mixing an
//! area-typical preference with random mixed selectivity. Responses are scaled so each voxel's
//! mean over the stimulus set is 1; trial-to-trial variability is added per presentation in
//! `bold.rs`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use super::stimuli::{render, Stimulus, BACKGROUNDS, COLOURS, SHAPES, SIZES};
use super::subject::{Area, Subject};

/// Resolution at which image features are computed for the pRF model.
pub const FEATURE_RES: usize = 32;

/// Feature maps, `FEATURE_RES`² each, row-major: contrast energy (>= 0), signed red-green and
/// blue-yellow opponency, and luminance relative to mid-grey.
pub struct ImageFeatures {
    pub contrast: Vec<f32>,
    pub red_green: Vec<f32>,
    pub blue_yellow: Vec<f32>,
    pub luminance: Vec<f32>,
}

pub fn image_features(pixels: &[[f32; 3]], size: usize) -> ImageFeatures {
    let r = FEATURE_RES;
    let step = (size / r).max(1);
    let mut small = vec![[0.0f32; 3]; r * r];
    for y in 0..r {
        for x in 0..r {
            let mut acc = [0.0f32; 3];
            let mut n = 0.0f32;
            for yy in y * step..((y + 1) * step).min(size) {
                for xx in x * step..((x + 1) * step).min(size) {
                    let p = pixels[yy * size + xx];
                    for c in 0..3 {
                        acc[c] += p[c];
                    }
                    n += 1.0;
                }
            }
            small[y * r + x] = acc.map(|v| v / n.max(1.0));
        }
    }
    let lum: Vec<f32> = small
        .iter()
        .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
        .collect();
    let at = |x: isize, y: isize| {
        lum[(y.clamp(0, r as isize - 1) as usize) * r + x.clamp(0, r as isize - 1) as usize]
    };
    let mut gradient = vec![0.0f32; r * r];
    for y in 0..r as isize {
        for x in 0..r as isize {
            let gx = at(x + 1, y) - at(x - 1, y);
            let gy = at(x, y + 1) - at(x, y - 1);
            gradient[y as usize * r + x as usize] = (gx * gx + gy * gy).sqrt();
        }
    }
    // Contrast energy pooled over a 3 x 3 neighbourhood (complex-cell-like).
    let mut contrast = vec![0.0f32; r * r];
    for y in 0..r {
        for x in 0..r {
            let mut s = 0.0;
            let mut n = 0.0;
            for yy in y.saturating_sub(1)..(y + 2).min(r) {
                for xx in x.saturating_sub(1)..(x + 2).min(r) {
                    s += gradient[yy * r + xx];
                    n += 1.0;
                }
            }
            contrast[y * r + x] = s / n;
        }
    }
    let red_green = small.iter().map(|p| p[0] - p[1]).collect();
    let blue_yellow = small.iter().map(|p| p[2] - 0.5 * (p[0] + p[1])).collect();
    let luminance = lum.iter().map(|l| l - 0.5).collect();
    ImageFeatures {
        contrast,
        red_green,
        blue_yellow,
        luminance,
    }
}

/// A population receptive field on the image plane.
#[derive(Debug, Clone, Serialize)]
pub struct Prf {
    /// Centre, image coordinates 0..1 (x right, y down).
    pub cx: f32,
    pub cy: f32,
    /// Gaussian SD as a fraction of the image width.
    pub sigma: f32,
    pub w_contrast: f32,
    /// Signed: which pole of each opponent channel, and of luminance, the voxel prefers.
    pub w_red_green: f32,
    pub w_blue_yellow: f32,
    pub w_luminance: f32,
    /// Compressive spatial summation exponent.
    pub exponent: f32,
}

impl Prf {
    /// The pRF of a voxel at normalised brain position `q` in `area`: contralateral hemifield,
    /// lower visual field in dorsal cortex, eccentricity growing away from the posterior axis.
    pub fn retinotopic(area: Area, q: [f32; 3], rng: &mut ChaCha8Rng) -> Prf {
        let hemifield = if q[0] < 0.0 { 1.0 } else { -1.0 }; // left hemisphere sees the right field
        let ecc = ((q[0] * q[0] + q[2] * q[2]).sqrt() / 0.75).min(1.2) * rng.random_range(0.9..1.1);
        let polar = q[2].atan2(q[0].abs()); // -pi/2 (ventral) .. pi/2 (dorsal)
        let horizontal = hemifield * ecc * polar.cos();
        let up = -ecc * polar.sin();
        let (base, slope, w, exponent) = match area {
            Area::V1 => (0.02, 0.06, [1.0, 0.6, 0.5, 0.6], 0.5),
            Area::V2 => (0.03, 0.08, [1.0, 0.6, 0.5, 0.5], 0.45),
            Area::V3 => (0.045, 0.11, [0.9, 0.6, 0.5, 0.5], 0.4),
            _ => (0.07, 0.15, [0.6, 1.0, 0.8, 0.4], 0.3),
        };
        let jitter = |rng: &mut ChaCha8Rng| rng.random_range(0.75..1.25);
        let signed = |rng: &mut ChaCha8Rng| {
            let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            sign * rng.random_range(0.75..1.25)
        };
        Prf {
            cx: (0.5 + 0.5 * horizontal).clamp(0.0, 1.0),
            cy: (0.5 - 0.5 * up).clamp(0.0, 1.0),
            sigma: (base + slope * ecc) * jitter(rng),
            w_contrast: w[0] * jitter(rng),
            w_red_green: w[1] * signed(rng),
            w_blue_yellow: w[2] * signed(rng),
            w_luminance: w[3] * signed(rng),
            exponent,
        }
    }

    /// softplus(0.15 + Gaussian-weighted mean of the weighted features) ^ exponent.
    pub fn drive(&self, f: &ImageFeatures) -> f32 {
        let r = FEATURE_RES as f32;
        let (cx, cy, s) = (self.cx * r, self.cy * r, (self.sigma * r).max(0.5));
        let reach = (3.0 * s).ceil() as isize;
        let (x0, y0) = (cx.floor() as isize, cy.floor() as isize);
        let (mut sum, mut weight) = (0.0f32, 0.0f32);
        for y in (y0 - reach).max(0)..(y0 + reach + 1).min(FEATURE_RES as isize) {
            for x in (x0 - reach).max(0)..(x0 + reach + 1).min(FEATURE_RES as isize) {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                let g = (-(dx * dx + dy * dy) / (2.0 * s * s)).exp();
                let i = y as usize * FEATURE_RES + x as usize;
                sum += g
                    * (self.w_contrast * f.contrast[i]
                        + self.w_red_green * f.red_green[i]
                        + self.w_blue_yellow * f.blue_yellow[i]
                        + self.w_luminance * f.luminance[i]);
                weight += g;
            }
        }
        if weight <= 0.0 {
            return 0.0;
        }
        // Soft rectification (a population never fires below zero), then compression.
        let linear = 0.15 + sum / weight;
        let rectified = (8.0 * linear).exp().ln_1p() / 8.0;
        rectified.powf(self.exponent)
    }
}

/// Attributes a high-level voxel can be tuned to, one value each.
pub const N_ATTRIBUTES: usize = 30;

/// Shapes present (8), colours present (8), object count one-hot (3), background kind (3),
/// sizes present (3), layout (centroid x, centroid y, spread), area covered, a constant.
pub fn attributes(s: &Stimulus) -> [f32; N_ATTRIBUTES] {
    let mut a = [0.0f32; N_ATTRIBUTES];
    for o in &s.objects {
        a[o.shape] = 1.0;
        a[SHAPES.len() + o.colour] = 1.0;
        a[22 + o.size] = 1.0;
    }
    let n = s.objects.len().clamp(1, 3);
    a[16 + n - 1] = 1.0;
    a[19 + s.background.kind] = 1.0;
    let (mx, my) = s
        .objects
        .iter()
        .fold((0.0, 0.0), |(x, y), o| (x + o.x, y + o.y));
    let (mx, my) = (mx / n as f32, my / n as f32);
    a[25] = (mx - 0.5) * 2.0;
    a[26] = (my - 0.5) * 2.0;
    a[27] = s
        .objects
        .iter()
        .map(|o| ((o.x - mx).powi(2) + (o.y - my).powi(2)).sqrt())
        .sum::<f32>()
        / n as f32
        * 4.0;
    a[28] = s
        .objects
        .iter()
        .map(|o| SIZES[o.size].1.powi(2) * std::f32::consts::PI)
        .sum::<f32>()
        * 4.0;
    a[29] = 1.0;
    debug_assert_eq!(
        SHAPES.len() + COLOURS.len() + 3 + BACKGROUNDS.len() + SIZES.len() + 5,
        N_ATTRIBUTES
    );
    a
}

/// A high-level voxel's tuning: rectified (softplus) weighted sum of attributes.
#[derive(Debug, Clone, Serialize)]
pub struct HighLevelTuning {
    pub weights: Vec<f32>,
}

impl HighLevelTuning {
    /// An area-typical preference (e.g. round shapes for the face-like area, layouts and
    /// textured backgrounds for the place-like one) plus random mixed selectivity.
    pub fn for_area(area: Area, rng: &mut ChaCha8Rng) -> HighLevelTuning {
        let mut preference = [0.0f32; N_ATTRIBUTES];
        let shape = |name: &str| SHAPES.iter().position(|s| *s == name).unwrap_or(0);
        let colour =
            |name: &str| SHAPES.len() + COLOURS.iter().position(|c| c.0 == name).unwrap_or(0);
        let mut set = |i: usize, v: f32| preference[i] = v;
        match area {
            Area::Faces => {
                set(shape("circle"), 1.0);
                set(shape("ring"), 0.8);
                set(shape("crescent"), 0.6);
                set(16, 0.3);
                set(24, 0.3);
            }
            Area::Bodies => {
                set(shape("cross"), 1.0);
                set(shape("arrow"), 0.9);
                set(shape("triangle"), 0.4);
                set(17, 0.3);
            }
            Area::Places => {
                set(21, 1.0);
                set(20, 0.7);
                set(18, 0.5);
                set(27, 0.8);
                set(22, 0.3);
            }
            _ => {
                set(shape("star"), 0.8);
                set(shape("square"), 0.7);
                set(colour("black"), 0.6);
                set(colour("white"), 0.5);
                set(18, 0.3);
            }
        }
        let normal = Normal::new(0.0f32, 0.35).unwrap_or_else(|_| unreachable!());
        let gain = rng.random_range(0.5..1.5);
        let mut weights: Vec<f32> = preference
            .iter()
            .map(|p| gain * p + normal.sample(rng))
            .collect();
        weights[N_ATTRIBUTES - 1] = 0.5; // any image drives visual cortex somewhat
        HighLevelTuning { weights }
    }

    pub fn drive(&self, attributes: &[f32; N_ATTRIBUTES]) -> f32 {
        let x: f32 = self
            .weights
            .iter()
            .zip(attributes)
            .map(|(w, a)| w * a)
            .sum();
        // softplus: rectifying, smooth.
        if x > 20.0 {
            x
        } else {
            x.exp().ln_1p()
        }
    }
}

/// Each responsive voxel's response to each stimulus (`[voxel][stimulus]`), scaled so every
/// voxel's mean over the set is 1.
pub fn voxel_responses(
    subject: &Subject,
    stimuli: &[Stimulus],
    image_size: usize,
) -> Vec<Vec<f32>> {
    let features: Vec<ImageFeatures> = stimuli
        .iter()
        .map(|s| image_features(&render(s, image_size), image_size))
        .collect();
    let attrs: Vec<[f32; N_ATTRIBUTES]> = stimuli.iter().map(attributes).collect();
    subject
        .voxels
        .iter()
        .map(|v| {
            let raw: Vec<f32> = match (&v.prf, &v.tuning) {
                (Some(prf), _) => features.iter().map(|f| prf.drive(f)).collect(),
                (None, Some(t)) => attrs.iter().map(|a| t.drive(a)).collect(),
                (None, None) => vec![0.0; stimuli.len()],
            };
            let mean = raw.iter().sum::<f32>() / raw.len().max(1) as f32;
            if mean > 1e-6 {
                raw.iter().map(|r| r / mean).collect()
            } else {
                vec![0.0; raw.len()]
            }
        })
        .collect()
}
