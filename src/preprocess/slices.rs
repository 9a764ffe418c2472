//! Three orthogonal slices of a volume for display (axial, coronal, sagittal through one
//! voxel), and the ROI labels on the same planes. This is what the window's volume view
//! shows; it copies a few thousand values per volume and does no resampling.

use std::sync::Arc;

/// One 2-D plane, row-major, `width` columns (the first in-plane axis) by `height` rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane<T> {
    pub width: usize,
    pub height: usize,
    pub values: Vec<T>,
}

/// Axial (x–y at z), coronal (x–z at y) and sagittal (y–z at x) planes through `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrthoSlices<T> {
    pub at: [usize; 3],
    pub axial: Plane<T>,
    pub coronal: Plane<T>,
    pub sagittal: Plane<T>,
}

impl<T: Copy> OrthoSlices<T> {
    /// Cuts a volume stored x fastest (NIfTI order) with dimensions `dims`.
    pub fn cut(volume: &[T], dims: [usize; 3], at: [usize; 3]) -> Option<OrthoSlices<T>> {
        let [nx, ny, nz] = dims;
        if volume.len() != nx * ny * nz || at.iter().zip(dims).any(|(&a, n)| a >= n) {
            return None;
        }
        let v = |x: usize, y: usize, z: usize| volume[x + nx * (y + ny * z)];
        let [ax, ay, az] = at;
        let plane = |width: usize, height: usize, f: &dyn Fn(usize, usize) -> T| Plane {
            width,
            height,
            values: (0..height)
                .flat_map(|r| (0..width).map(move |c| (r, c)))
                .map(|(r, c)| f(c, r))
                .collect(),
        };
        Some(OrthoSlices {
            at,
            axial: plane(nx, ny, &|x, y| v(x, y, az)),
            coronal: plane(nx, nz, &|x, z| v(x, ay, z)),
            sagittal: plane(ny, nz, &|y, z| v(ax, y, z)),
        })
    }
}

/// ROI label volume for display: 0 outside, 1 detail only (all visual areas), 2 semantic
/// (high-level areas, a subset of detail in BrainMCLIP's layout).
pub fn roi_labels(dims: [usize; 3], detail: &[usize], semantic: &[usize]) -> Vec<u8> {
    let mut labels = vec![0u8; dims.iter().product()];
    for &i in detail {
        if let Some(l) = labels.get_mut(i) {
            *l = 1;
        }
    }
    for &i in semantic {
        if let Some(l) = labels.get_mut(i) {
            *l = 2;
        }
    }
    labels
}

/// The voxel the planes go through: the centroid of the ROI voxels (the visual cortex is what
/// the user wants to see), or the volume's centre without masks.
pub fn slice_point(dims: [usize; 3], roi: &[usize]) -> [usize; 3] {
    if roi.is_empty() {
        return dims.map(|n| n / 2);
    }
    let mut sum = [0f64; 3];
    for &i in roi {
        let (x, y, z) = (
            i % dims[0],
            (i / dims[0]) % dims[1],
            i / (dims[0] * dims[1]),
        );
        sum[0] += x as f64;
        sum[1] += y as f64;
        sum[2] += z as f64;
    }
    let n = roi.len() as f64;
    [0, 1, 2].map(|a| ((sum[a] / n).round() as usize).min(dims[a].saturating_sub(1)))
}

/// What the pipeline attaches to each volume for the window: the (realigned) volume's planes.
pub type VolumeSlices = Arc<OrthoSlices<f32>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_hold_the_right_voxels() {
        let dims = [4, 3, 2];
        let volume: Vec<u32> = (0..24).collect();
        let s = OrthoSlices::cut(&volume, dims, [1, 2, 1]).unwrap();
        // axial z = 1: indices 12..24, row y, column x.
        assert_eq!(s.axial.values, (12..24).collect::<Vec<u32>>());
        // coronal y = 2: x + 4*(2 + 3*z).
        assert_eq!(s.coronal.values, vec![8, 9, 10, 11, 20, 21, 22, 23]);
        // sagittal x = 1: 1 + 4*(y + 3*z).
        assert_eq!(s.sagittal.values, vec![1, 5, 9, 13, 17, 21]);
        assert_eq!((s.sagittal.width, s.sagittal.height), (3, 2));
        assert!(OrthoSlices::cut(&volume, dims, [4, 0, 0]).is_none());
        assert!(OrthoSlices::cut(&volume[1..], dims, [0, 0, 0]).is_none());
    }

    #[test]
    fn labels_and_centroid() {
        let dims = [4, 4, 4];
        let labels = roi_labels(dims, &[0, 1, 2, 99], &[1]);
        assert_eq!(&labels[..3], &[1, 2, 1]);
        assert_eq!(labels.len(), 64);
        // voxels (1,1,1) and (3,3,3) → centroid (2,2,2)
        assert_eq!(slice_point(dims, &[21, 63]), [2, 2, 2]);
        assert_eq!(slice_point(dims, &[]), [2, 2, 2]);
    }
}
