//! Rigid-body geometry of a head in a voxel grid: the six motion parameters, the transform they
//! describe, framewise displacement, and trilinear resampling of a volume through a rigid
//! transform. The simulator moves heads with it and realignment moves them back, so both agree
//! on one convention by construction. It estimates nothing (`preprocess::realign`) and draws no
//! random motion (`sim::motion`).
//!
//! Convention: parameters `[tx, ty, tz]` in mm and `[rx, ry, rz]` in degrees about the grid
//! centre, `R = Rz · Ry · Rx`. A head point at `x` (mm from the grid centre) moves to `R x + t`;
//! the acquired image at `p` is the head image at `Rᵀ (p - t)`.

/// `[tx, ty, tz, rx, ry, rz]`: mm and degrees.
pub type MotionParams = [f32; 6];

pub fn rotation(p: &MotionParams) -> [[f32; 3]; 3] {
    let (a, b, c) = (p[3].to_radians(), p[4].to_radians(), p[5].to_radians());
    let rx = [
        [1.0, 0.0, 0.0],
        [0.0, a.cos(), -a.sin()],
        [0.0, a.sin(), a.cos()],
    ];
    let ry = [
        [b.cos(), 0.0, b.sin()],
        [0.0, 1.0, 0.0],
        [-b.sin(), 0.0, b.cos()],
    ];
    let rz = [
        [c.cos(), -c.sin(), 0.0],
        [c.sin(), c.cos(), 0.0],
        [0.0, 0.0, 1.0],
    ];
    mul(&rz, &mul(&ry, &rx))
}

fn mul(a: &[[f32; 3]; 3], b: &[[f32; 3]; 3]) -> [[f32; 3]; 3] {
    let mut out = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// Power et al. (2012) framewise displacement between two parameter sets (50 mm head radius).
pub fn framewise_displacement(a: &MotionParams, b: &MotionParams) -> f32 {
    let trans: f32 = (0..3).map(|i| (a[i] - b[i]).abs()).sum();
    let rot: f32 = (3..6)
        .map(|i| (a[i] - b[i]).to_radians().abs() * 50.0)
        .sum();
    trans + rot
}

/// The volume as acquired when the head has moved by `params`: `out(p) = image(Rᵀ(p - t))`,
/// trilinear, zero outside the grid. `dims` and `voxel_mm` describe both grids.
pub fn apply_motion(
    image: &[f32],
    dims: [usize; 3],
    voxel_mm: f32,
    params: &MotionParams,
    out: &mut Vec<f32>,
) {
    if params.iter().all(|&p| p == 0.0) {
        out.clear();
        out.extend_from_slice(image);
        return;
    }
    // out(p) = image(Rᵀ p - Rᵀ t)
    let r = rotation(params);
    let rt: [[f32; 3]; 3] = std::array::from_fn(|a| std::array::from_fn(|b| r[b][a]));
    let shift: [f32; 3] =
        std::array::from_fn(|d| -(0..3).map(|k| rt[d][k] * params[k]).sum::<f32>());
    resample_rigid(image, dims, [voxel_mm; 3], &rt, shift, out);
}

/// `out(x) = image(m x + shift)`, with x and the result in mm from the grid centre, trilinear,
/// zero outside the grid. Both directions of a rigid motion go through here: the simulator
/// moves a head (`m = Rᵀ`), realignment moves it back (`m = R`).
pub fn resample_rigid(
    image: &[f32],
    dims: [usize; 3],
    voxel_mm: [f32; 3],
    m: &[[f32; 3]; 3],
    shift: [f32; 3],
    out: &mut Vec<f32>,
) {
    out.clear();
    out.resize(image.len(), 0.0);
    let centre = dims.map(|d| (d as f32 - 1.0) / 2.0);
    let [nx, ny, nz] = dims;
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let x = [
                    (i as f32 - centre[0]) * voxel_mm[0],
                    (j as f32 - centre[1]) * voxel_mm[1],
                    (k as f32 - centre[2]) * voxel_mm[2],
                ];
                let q: [f32; 3] = std::array::from_fn(|d| {
                    (m[d][0] * x[0] + m[d][1] * x[1] + m[d][2] * x[2] + shift[d]) / voxel_mm[d]
                        + centre[d]
                });
                out[i + nx * (j + ny * k)] = trilinear(image, dims, q);
            }
        }
    }
}

/// Trilinear interpolation at voxel coordinates `q`; 0 outside.
pub fn trilinear(image: &[f32], dims: [usize; 3], q: [f32; 3]) -> f32 {
    let [nx, ny, nz] = dims;
    if q.iter()
        .zip(dims)
        .any(|(&c, n)| c < 0.0 || c > (n - 1) as f32)
    {
        return 0.0;
    }
    let base = q.map(|c| c.floor() as usize);
    let i0 = base[0].min(nx.saturating_sub(2));
    let j0 = base[1].min(ny.saturating_sub(2));
    let k0 = base[2].min(nz.saturating_sub(2));
    let (fx, fy, fz) = (q[0] - i0 as f32, q[1] - j0 as f32, q[2] - k0 as f32);
    let at = |i: usize, j: usize, k: usize| {
        image[(i0 + i).min(nx - 1) + nx * ((j0 + j).min(ny - 1) + ny * (k0 + k).min(nz - 1))]
    };
    let c00 = at(0, 0, 0) * (1.0 - fx) + at(1, 0, 0) * fx;
    let c10 = at(0, 1, 0) * (1.0 - fx) + at(1, 1, 0) * fx;
    let c01 = at(0, 0, 1) * (1.0 - fx) + at(1, 0, 1) * fx;
    let c11 = at(0, 1, 1) * (1.0 - fx) + at(1, 1, 1) * fx;
    let c0 = c00 * (1.0 - fy) + c10 * fy;
    let c1 = c01 * (1.0 - fy) + c11 * fy;
    c0 * (1.0 - fz) + c1 * fz
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pure_translation_by_one_voxel_shifts_the_image() {
        let dims = [6, 5, 4];
        let image: Vec<f32> = (0..120).map(|i| i as f32).collect();
        let mut out = Vec::new();
        apply_motion(&image, dims, 2.0, &[2.0, 0.0, 0.0, 0.0, 0.0, 0.0], &mut out);
        // out(i) = image(i - 1) inside, 0 at the first column.
        assert_eq!(out[0], 0.0);
        assert!((out[3] - image[2]).abs() < 1e-4);
        assert!((out[37] - image[36]).abs() < 1e-4); // (1, 1, 1) from (0, 1, 1)
    }

    #[test]
    fn rotation_is_orthonormal_and_fd_follows_power() {
        let r = rotation(&[0.0, 0.0, 0.0, 10.0, -5.0, 3.0]);
        for i in 0..3 {
            for j in 0..3 {
                let dot: f32 = (0..3).map(|k| r[k][i] * r[k][j]).sum();
                assert!((dot - if i == j { 1.0 } else { 0.0 }).abs() < 1e-5);
            }
        }
        let fd = framewise_displacement(&[0.1, -0.2, 0.0, 0.0, 0.0, 1.0], &[0.0; 6]);
        assert!((fd - (0.3 + 50.0 * 1f32.to_radians())).abs() < 1e-5);
    }
}
