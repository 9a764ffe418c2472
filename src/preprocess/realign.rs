//! Rigid-body realignment: the six parameters that bring a volume back onto a reference, by
//! Gauss-Newton least squares, first on 2x-downsampled images and then at full resolution, with
//! trilinear resampling (the transforms, resampling and framewise displacement are in
//! `crate::geometry`).
//!
//! The Jacobian is built once from the reference's gradients (as SPM's realignment does), so each
//! volume costs only a few resamplings. Parameters follow `crate::geometry`'s convention (the simulator's too): for a head
//! that moved by (R, t), the estimate is (R, t) relative to the reference, so simulated ground
//! truth can be compared directly.

use crate::geometry::{resample_rigid, rotation, trilinear, MotionParams};

/// A reference prepared for realignment at one resolution.
struct Level {
    dims: [usize; 3],
    voxel_mm: [f32; 3],
    reference: Vec<f32>,
    /// Voxels used: inside the head (reference above a threshold), their mm positions from the
    /// grid centre, and d(reference)/d(params) at each.
    points: Vec<[f32; 3]>,
    indices: Vec<usize>,
    jacobian: Vec<[f32; 6]>,
    /// (JᵀJ)⁻¹, precomputed.
    normal_inverse: [[f64; 6]; 6],
}

/// A reference volume ready to realign others to it.
pub struct Realigner {
    levels: Vec<Level>,
    pub iterations_coarse: usize,
    pub iterations_fine: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RealignError {
    #[error("the reference has too few voxels above its background ({0}) to realign")]
    EmptyReference(usize),
    #[error("volume has {got} voxels, the reference {expected}")]
    SizeMismatch { got: usize, expected: usize },
}

fn downsample(image: &[f32], dims: [usize; 3]) -> (Vec<f32>, [usize; 3]) {
    let out_dims = dims.map(|d| d.div_ceil(2));
    let mut out = vec![0.0f32; out_dims.iter().product()];
    for k in 0..out_dims[2] {
        for j in 0..out_dims[1] {
            for i in 0..out_dims[0] {
                let (mut s, mut n) = (0.0f32, 0.0f32);
                for dk in 0..2 {
                    for dj in 0..2 {
                        for di in 0..2 {
                            let (x, y, z) = (2 * i + di, 2 * j + dj, 2 * k + dk);
                            if x < dims[0] && y < dims[1] && z < dims[2] {
                                s += image[x + dims[0] * (y + dims[1] * z)];
                                n += 1.0;
                            }
                        }
                    }
                }
                out[i + out_dims[0] * (j + out_dims[1] * k)] = s / n;
            }
        }
    }
    (out, out_dims)
}

fn invert6(m: &[[f64; 6]; 6]) -> Option<[[f64; 6]; 6]> {
    let mut a = *m;
    let mut inv = [[0.0f64; 6]; 6];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..6 {
        let pivot = (col..6).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let p = a[col][col];
        for c in 0..6 {
            a[col][c] /= p;
            inv[col][c] /= p;
        }
        for r in 0..6 {
            if r != col {
                let f = a[r][col];
                for c in 0..6 {
                    a[r][c] -= f * a[col][c];
                    inv[r][c] -= f * inv[col][c];
                }
            }
        }
    }
    Some(inv)
}

impl Level {
    fn new(
        reference: Vec<f32>,
        dims: [usize; 3],
        voxel_mm: [f32; 3],
    ) -> Result<Level, RealignError> {
        // Head voxels: above 1/8 of the 99th-percentile intensity (air is far below that).
        let mut sorted: Vec<f32> = reference
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        sorted.sort_by(f32::total_cmp);
        let high = sorted.get(sorted.len() * 99 / 100).copied().unwrap_or(0.0);
        let threshold = high / 8.0;
        let centre = dims.map(|d| (d as f32 - 1.0) / 2.0);
        let at = |i: isize, j: isize, k: isize| {
            let c = |v: isize, d: usize| v.clamp(0, dims[d] as isize - 1) as usize;
            reference[c(i, 0) + dims[0] * (c(j, 1) + dims[1] * c(k, 2))]
        };
        let (mut points, mut indices, mut jacobian) = (Vec::new(), Vec::new(), Vec::new());
        let mut normal = [[0.0f64; 6]; 6];
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let idx = i + dims[0] * (j + dims[1] * k);
                    if reference[idx] <= threshold {
                        continue;
                    }
                    let (ii, jj, kk) = (i as isize, j as isize, k as isize);
                    // Intensity change per mm along each axis (central differences).
                    let g = [
                        (at(ii + 1, jj, kk) - at(ii - 1, jj, kk)) / (2.0 * voxel_mm[0]),
                        (at(ii, jj + 1, kk) - at(ii, jj - 1, kk)) / (2.0 * voxel_mm[1]),
                        (at(ii, jj, kk + 1) - at(ii, jj, kk - 1)) / (2.0 * voxel_mm[2]),
                    ];
                    let x = [
                        (i as f32 - centre[0]) * voxel_mm[0],
                        (j as f32 - centre[1]) * voxel_mm[1],
                        (k as f32 - centre[2]) * voxel_mm[2],
                    ];
                    // d(R x)/d(angle) at zero rotation, per degree.
                    let deg = std::f32::consts::PI / 180.0;
                    let drx = [0.0, -x[2], x[1]].map(|v| v * deg);
                    let dry = [x[2], 0.0, -x[0]].map(|v| v * deg);
                    let drz = [-x[1], x[0], 0.0].map(|v| v * deg);
                    let dot = |d: [f32; 3]| g[0] * d[0] + g[1] * d[1] + g[2] * d[2];
                    let row = [g[0], g[1], g[2], dot(drx), dot(dry), dot(drz)];
                    for a in 0..6 {
                        for b in 0..6 {
                            normal[a][b] += row[a] as f64 * row[b] as f64;
                        }
                    }
                    points.push(x);
                    indices.push(idx);
                    jacobian.push(row);
                }
            }
        }
        if points.len() < 64 {
            return Err(RealignError::EmptyReference(points.len()));
        }
        let normal_inverse = invert6(&normal).ok_or(RealignError::EmptyReference(points.len()))?;
        Ok(Level {
            dims,
            voxel_mm,
            reference,
            points,
            indices,
            jacobian,
            normal_inverse,
        })
    }

    /// Gauss-Newton steps from `params` for `volume` (at this level's resolution).
    fn refine(&self, volume: &[f32], mut params: MotionParams, iterations: usize) -> MotionParams {
        let centre = self.dims.map(|d| (d as f32 - 1.0) / 2.0);
        for _ in 0..iterations {
            let r = rotation(&params);
            let mut rhs = [0.0f64; 6];
            for ((x, &idx), row) in self.points.iter().zip(&self.indices).zip(&self.jacobian) {
                // Where the reference point x is in the moved volume: R x + t, in voxels.
                let q: [f32; 3] = std::array::from_fn(|d| {
                    ((r[d][0] * x[0] + r[d][1] * x[1] + r[d][2] * x[2]) + params[d])
                        / self.voxel_mm[d]
                        + centre[d]
                });
                let residual = (trilinear(volume, self.dims, q) - self.reference[idx]) as f64;
                for a in 0..6 {
                    rhs[a] += row[a] as f64 * residual;
                }
            }
            let step: [f32; 6] = std::array::from_fn(|a| {
                -(0..6)
                    .map(|b| self.normal_inverse[a][b] * rhs[b])
                    .sum::<f64>() as f32
            });
            for d in 0..6 {
                params[d] += step[d];
            }
            let size = step[..3].iter().map(|v| v.abs()).sum::<f32>()
                + step[3..].iter().map(|v| v.abs()).sum::<f32>();
            if size < 1e-4 {
                break;
            }
        }
        params
    }
}

impl Realigner {
    pub fn new(
        reference: &[f32],
        dims: [usize; 3],
        voxel_mm: [f32; 3],
    ) -> Result<Realigner, RealignError> {
        let (coarse, coarse_dims) = downsample(reference, dims);
        let coarse_mm = voxel_mm.map(|v| v * 2.0);
        Ok(Realigner {
            levels: vec![
                Level::new(coarse, coarse_dims, coarse_mm)?,
                Level::new(reference.to_vec(), dims, voxel_mm)?,
            ],
            iterations_coarse: 15,
            iterations_fine: 6,
        })
    }

    /// The motion of `volume` relative to the reference, starting from `start` (e.g. the
    /// previous volume's estimate).
    pub fn estimate(
        &self,
        volume: &[f32],
        start: MotionParams,
    ) -> Result<MotionParams, RealignError> {
        let fine = &self.levels[1];
        if volume.len() != fine.reference.len() {
            return Err(RealignError::SizeMismatch {
                got: volume.len(),
                expected: fine.reference.len(),
            });
        }
        let (coarse_volume, _) = downsample(volume, fine.dims);
        let params = self.levels[0].refine(&coarse_volume, start, self.iterations_coarse);
        Ok(fine.refine(volume, params, self.iterations_fine))
    }

    /// `volume` resampled onto the reference grid: out(x) = volume(R x + t).
    pub fn reslice(&self, volume: &[f32], params: &MotionParams, out: &mut Vec<f32>) {
        let level = &self.levels[1];
        let shift = [params[0], params[1], params[2]];
        resample_rigid(
            volume,
            level.dims,
            level.voxel_mm,
            &rotation(params),
            shift,
            out,
        );
    }
}
