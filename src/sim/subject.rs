//! The simulated subject: a brain on a volume grid, its tissue intensities as an EPI sees them,
//! a label image of visual areas, and each responsive voxel's model parameters.
//!
//! Anatomy is deliberately simple (an ellipsoidal brain with a grey-matter shell, white matter,
//! ventricles), but the visual system follows what is known: early areas V1-hV4 at the occipital
//! pole, retinotopic (contralateral hemifield, lower field dorsal, eccentricity increasing away
//! from the pole), with population receptive fields that grow with eccentricity and along the
//! hierarchy (Dumoulin & Wandell 2008; Kay et al. 2013); category-selective patches like NSD's
//! floc ROIs in ventral and lateral occipito-temporal cortex. It holds no time: `bold.rs` does.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use super::neural::{HighLevelTuning, Prf};

/// Labels of the ROI image (0 = not brain grey matter of interest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Area {
    V1 = 1,
    V2 = 2,
    V3 = 3,
    HV4 = 4,
    Faces = 5,
    Bodies = 6,
    Places = 7,
    Words = 8,
    OtherGrey = 9,
}

impl Area {
    pub const ALL: [Area; 9] = [
        Area::V1,
        Area::V2,
        Area::V3,
        Area::HV4,
        Area::Faces,
        Area::Bodies,
        Area::Places,
        Area::Words,
        Area::OtherGrey,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Area::V1 => "V1",
            Area::V2 => "V2",
            Area::V3 => "V3",
            Area::HV4 => "hV4",
            Area::Faces => "floc-faces",
            Area::Bodies => "floc-bodies",
            Area::Places => "floc-places",
            Area::Words => "floc-words",
            Area::OtherGrey => "other-grey",
        }
    }

    /// "low" (prf-visualrois), "high" (floc), or "none" (does not respond to images).
    pub fn group(self) -> &'static str {
        match self {
            Area::V1 | Area::V2 | Area::V3 | Area::HV4 => "low",
            Area::Faces | Area::Bodies | Area::Places | Area::Words => "high",
            Area::OtherGrey => "none",
        }
    }

    pub fn is_low(self) -> bool {
        self.group() == "low"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tissue {
    Air,
    Csf,
    Grey,
    White,
}

/// The volume grid of the functional images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Grid {
    pub dims: [usize; 3],
    pub voxel_mm: f32,
}

impl Grid {
    /// 64 x 64 x 36 at 3 mm, a common 3 T EPI protocol.
    pub const MM3: Grid = Grid {
        dims: [64, 64, 36],
        voxel_mm: 3.0,
    };
    /// NSD's 1.8 mm functional grid.
    pub const NSD: Grid = Grid {
        dims: [81, 104, 83],
        voxel_mm: 1.8,
    };

    pub fn n_voxels(&self) -> usize {
        self.dims.iter().product()
    }

    /// RAS affine with the grid centred on the origin.
    pub fn affine(&self) -> [[f64; 4]; 4] {
        let v = self.voxel_mm as f64;
        let c = |i: usize| -(self.dims[i] as f64 - 1.0) / 2.0 * v;
        [
            [v, 0.0, 0.0, c(0)],
            [0.0, v, 0.0, c(1)],
            [0.0, 0.0, v, c(2)],
            [0.0, 0.0, 0.0, 1.0],
        ]
    }

    /// Millimetres from the grid centre of voxel (i, j, k).
    pub fn mm(&self, i: usize, j: usize, k: usize) -> [f32; 3] {
        let c = |n: usize, d: usize| (n as f32 - (self.dims[d] as f32 - 1.0) / 2.0) * self.voxel_mm;
        [c(i, 0), c(j, 1), c(k, 2)]
    }
}

/// One voxel that responds to images.
#[derive(Debug, Clone, Serialize)]
pub struct VoxelModel {
    /// Flat index in the volume (x fastest).
    pub index: usize,
    pub area: Area,
    /// Low-level areas: the population receptive field.
    pub prf: Option<Prf>,
    /// High-level areas: tuning to semantic attributes.
    pub tuning: Option<HighLevelTuning>,
    /// Mean evoked percent signal change over the stimulus set.
    pub psc: f32,
    /// HRF onset shift (s) and time-scale factor (1 = canonical).
    pub hrf_lag_s: f32,
    pub hrf_width: f32,
}

pub struct Subject {
    pub grid: Grid,
    pub tissue: Vec<Tissue>,
    /// EPI baseline intensity per voxel (arbitrary units, grey matter about 1000).
    pub baseline: Vec<f32>,
    /// ROI label per voxel (`Area as u8`, 0 elsewhere).
    pub labels: Vec<u8>,
    pub voxels: Vec<VoxelModel>,
}

/// Parameters of the subject that the session file sets.
#[derive(Debug, Clone)]
pub struct SubjectParams {
    pub grid: Grid,
    /// Mean evoked % signal change in V1, V2, V3, hV4 and in the high-level areas.
    pub psc: [f32; 5],
    pub hrf_lag_sd_s: f32,
    pub hrf_width_sd: f32,
}

/// EPI intensities (T2*-weighted: CSF brightest, then grey, then white matter).
const INTENSITY_CSF: f32 = 1350.0;
const INTENSITY_GREY: f32 = 1000.0;
const INTENSITY_WHITE: f32 = 760.0;
const INTENSITY_AIR: f32 = 12.0;

impl Subject {
    pub fn generate(params: &SubjectParams, seed: u64) -> Subject {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_b2a1_0000_0001);
        let grid = params.grid;
        let [nx, ny, nz] = grid.dims;
        // Brain semi-axes in mm, shrunk to fit the field of view.
        let fov = |d: usize| grid.dims[d] as f32 * grid.voxel_mm;
        let semi = [
            68f32.min(0.44 * fov(0)),
            84f32.min(0.44 * fov(1)),
            54f32.min(0.44 * fov(2)),
        ];
        let n = grid.n_voxels();
        let mut tissue = vec![Tissue::Air; n];
        let mut baseline = vec![0.0f32; n];
        let mut labels = vec![0u8; n];
        let mut candidates = Vec::new();
        for k in 0..nz {
            for j in 0..ny {
                for i in 0..nx {
                    let idx = i + nx * (j + ny * k);
                    let p = grid.mm(i, j, k);
                    let q = [p[0] / semi[0], p[1] / semi[1], p[2] / semi[2]];
                    let t = tissue_at(p, semi);
                    tissue[idx] = t;
                    // Partial volume: the voxel's intensity is the mean over 3 x 3 x 3 points
                    // inside it, not the tissue at its centre.
                    let mut sum = 0.0f32;
                    for dz in [-1.0f32, 0.0, 1.0] {
                        for dy in [-1.0f32, 0.0, 1.0] {
                            for dx in [-1.0f32, 0.0, 1.0] {
                                let s = grid.voxel_mm / 3.0;
                                let ps = [p[0] + dx * s, p[1] + dy * s, p[2] + dz * s];
                                sum += intensity(tissue_at(ps, semi));
                            }
                        }
                    }
                    // Receive-coil sensitivity: brighter near the back and the top.
                    let bias = 1.0 - 0.10 * q[1] + 0.06 * q[2] - 0.05 * q[0] * q[0];
                    baseline[idx] = bias * sum / 27.0;
                    if t == Tissue::Grey {
                        labels[idx] = Area::OtherGrey as u8;
                        candidates.push((idx, q));
                    }
                }
            }
        }

        // The EPI point-spread function blurs a little beyond the voxel.
        let baseline = blur_121(&baseline, grid.dims);
        let normal = Normal::new(0.0f32, 1.0).unwrap_or_else(|_| unreachable!());
        let mut voxels = Vec::new();
        for (idx, q) in candidates {
            let Some(area) = visual_area(q) else { continue };
            labels[idx] = area as u8;
            let (prf, tuning) = if area.is_low() {
                (Some(Prf::retinotopic(area, q, &mut rng)), None)
            } else {
                (None, Some(HighLevelTuning::for_area(area, &mut rng)))
            };
            let psc_mean = match area {
                Area::V1 => params.psc[0],
                Area::V2 => params.psc[1],
                Area::V3 => params.psc[2],
                Area::HV4 => params.psc[3],
                _ => params.psc[4],
            };
            voxels.push(VoxelModel {
                index: idx,
                area,
                prf,
                tuning,
                // Voxel-to-voxel spread of response amplitude (vessels, partial volume).
                psc: psc_mean * rng.random_range(0.6..1.4),
                hrf_lag_s: params.hrf_lag_sd_s * normal.sample(&mut rng),
                hrf_width: 1.0 + params.hrf_width_sd * normal.sample(&mut rng),
            });
        }
        Subject {
            grid,
            tissue,
            baseline,
            labels,
            voxels,
        }
    }

    pub fn count(&self, area: Area) -> usize {
        self.labels.iter().filter(|&&l| l == area as u8).count()
    }

    /// Mean baseline over grey matter.
    pub fn grey_mean(&self) -> f32 {
        let (sum, n) = self
            .tissue
            .iter()
            .zip(&self.baseline)
            .filter(|(t, _)| **t == Tissue::Grey)
            .fold((0.0f64, 0usize), |(s, n), (_, b)| (s + *b as f64, n + 1));
        (sum / n.max(1) as f64) as f32
    }
}

/// The tissue at a point `p` (mm from the grid centre) of a brain with these semi-axes.
fn tissue_at(p: [f32; 3], semi: [f32; 3]) -> Tissue {
    let q = [p[0] / semi[0], p[1] / semi[1], p[2] / semi[2]];
    // A gently folded surface so grey matter is not a perfect shell.
    let fold = 0.025 * (q[1] * 11.0).sin() * (q[2] * 9.0 + q[0] * 5.0).cos();
    let rho = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2]).sqrt() + fold;
    let in_ventricle = ((p[0].abs() - 9.0) / 6.0).powi(2)
        + ((p[1] - 4.0) / 22.0).powi(2)
        + ((p[2] - 6.0) / 8.0).powi(2)
        < 1.0;
    if rho > 1.06 {
        Tissue::Air
    } else if rho > 1.0 || in_ventricle {
        Tissue::Csf
    } else if rho > 0.84 {
        Tissue::Grey
    } else {
        Tissue::White
    }
}

fn intensity(t: Tissue) -> f32 {
    match t {
        Tissue::Air => INTENSITY_AIR,
        Tissue::Csf => INTENSITY_CSF,
        Tissue::Grey => INTENSITY_GREY,
        Tissue::White => INTENSITY_WHITE,
    }
}

/// Separable [1/4, 1/2, 1/4] smoothing along each axis (edges repeat).
fn blur_121(image: &[f32], dims: [usize; 3]) -> Vec<f32> {
    let mut current = image.to_vec();
    let strides = [1, dims[0], dims[0] * dims[1]];
    for axis in 0..3 {
        let mut next = vec![0.0f32; current.len()];
        for (idx, out) in next.iter_mut().enumerate() {
            let coord = idx / strides[axis] % dims[axis];
            let before = if coord > 0 { idx - strides[axis] } else { idx };
            let after = if coord + 1 < dims[axis] {
                idx + strides[axis]
            } else {
                idx
            };
            *out = 0.25 * current[before] + 0.5 * current[idx] + 0.25 * current[after];
        }
        current = next;
    }
    current
}

/// Which visual area a grey-matter voxel at normalised position `q` belongs to. `q[1] = -1` is
/// the occipital pole; `t` is the distance forward from it.
fn visual_area(q: [f32; 3]) -> Option<Area> {
    let t = q[1] + 1.0;
    if t < 0.12 {
        return Some(Area::V1);
    }
    if t < 0.2 {
        return Some(Area::V2);
    }
    if t < 0.28 {
        return Some(Area::V3);
    }
    if t < 0.36 {
        // hV4 is ventral; the dorsal counterpart is left as V3 (V3A/B-like).
        return Some(if q[2] < 0.05 { Area::HV4 } else { Area::V3 });
    }
    // Category patches, nearest centre within its radius (normalised units).
    let patches: [(Area, [f32; 3], f32); 7] = [
        (Area::Faces, [0.55, -0.42, -0.45], 0.22),
        (Area::Places, [0.25, -0.38, -0.58], 0.2),
        (Area::Bodies, [0.82, -0.48, 0.0], 0.22),
        (Area::Words, [-0.45, -0.3, -0.55], 0.18),
        (Area::Faces, [-0.55, -0.42, -0.45], 0.22),
        (Area::Places, [-0.25, -0.38, -0.58], 0.2),
        (Area::Bodies, [-0.82, -0.48, 0.0], 0.22),
    ];
    patches
        .iter()
        .filter_map(|(area, c, r)| {
            let d = ((q[0] - c[0]).powi(2) + (q[1] - c[1]).powi(2) + (q[2] - c[2]).powi(2)).sqrt();
            (d < *r).then_some((d, *area))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, area)| area)
}
