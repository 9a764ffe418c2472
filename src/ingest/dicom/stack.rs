//! 2-D images at known positions → one `Volume`'s voxels and RAS affine, in dcm2niix's axis
//! convention, so a series converted by dcm2niix for calibration and the same series read live
//! here sit on the same voxel grid.
//!
//! The convention (checked against dcm2niix on every real export in the tests): x = column
//! (fastest), y = row counted from the last row up (dcm2niix flips rows), z = slices ascending
//! along IOP_row × IOP_col. Mosaic tiles, enhanced frames and single-slice files all end here,
//! so the three layouts cannot disagree on geometry.

use std::path::Path;

use super::pixels::StoredPixels;
use super::DicomError;
use crate::ingest::{Datatype, Geometry};

/// One 2-D image in the scanner's (LPS) world.
#[derive(Debug, Clone)]
pub struct Plane {
    /// LPS position of the centre of the first stored voxel (row 0, column 0), mm.
    pub position: [f64; 3],
    pub pixels: Pixels,
    /// Acquisition time in seconds on any clock shared by the volume's planes.
    pub time_s: Option<f64>,
}

impl Plane {
    /// The plane's own values (single-slice files), `None` when they are in a file's pixels.
    pub fn values(&self) -> Option<&[f32]> {
        match &self.pixels {
            Pixels::Values(values) => Some(values),
            Pixels::Stored { .. } => None,
        }
    }
}

/// Where a plane's values are.
#[derive(Debug, Clone)]
pub enum Pixels {
    /// Rescaled, row-major (`rows × cols`).
    Values(Vec<f32>),
    /// In the file's stored pixels: row r starts at value `first + r * row_stride`; rescaled
    /// while copied into the volume (one pass, no intermediate copy).
    Stored {
        first: usize,
        row_stride: usize,
        slope: f32,
        intercept: f32,
    },
}

/// The in-plane grid shared by every plane of a volume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaneGrid {
    pub rows: usize,
    pub cols: usize,
    /// ImageOrientationPatient[0..3]: the direction of increasing column index.
    pub row_dir: [f64; 3],
    /// ImageOrientationPatient[3..6]: the direction of increasing row index.
    pub col_dir: [f64; 3],
    /// PixelSpacing[0]: between rows, mm.
    pub row_spacing: f64,
    /// PixelSpacing[1]: between columns, mm.
    pub col_spacing: f64,
}

impl PlaneGrid {
    /// The grid from IOP and PixelSpacing, refusing a non-orthonormal orientation.
    pub fn new(
        rows: usize,
        cols: usize,
        iop: [f64; 6],
        spacing: [f64; 2],
        path: &Path,
    ) -> Result<PlaneGrid, DicomError> {
        let row_dir = [iop[0], iop[1], iop[2]];
        let col_dir = [iop[3], iop[4], iop[5]];
        let unit = |v: [f64; 3]| (dot(v, v).sqrt() - 1.0).abs() < 1e-3;
        if !unit(row_dir) || !unit(col_dir) || dot(row_dir, col_dir).abs() > 1e-3 {
            return Err(DicomError::Invalid {
                path: path.to_owned(),
                detail: format!(
                    "ImageOrientationPatient {iop:?} is not two orthogonal unit vectors"
                ),
            });
        }
        if !(spacing[0] > 0.0 && spacing[1] > 0.0) {
            return Err(DicomError::Invalid {
                path: path.to_owned(),
                detail: format!("PixelSpacing {spacing:?} must be positive"),
            });
        }
        Ok(PlaneGrid {
            rows,
            cols,
            row_dir: normalise(row_dir),
            col_dir: normalise(col_dir),
            row_spacing: spacing[0],
            col_spacing: spacing[1],
        })
    }

    /// IOP_row × IOP_col: the direction the volume's slices ascend in.
    pub fn normal(&self) -> [f64; 3] {
        normalise(cross(self.row_dir, self.col_dir))
    }

    /// Whether `other` has the same grid (orientation to 1e-4, spacing to 1e-4 mm).
    pub fn same_as(&self, other: &PlaneGrid) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-4;
        self.rows == other.rows
            && self.cols == other.cols
            && (0..3).all(|i| close(self.row_dir[i], other.row_dir[i]))
            && (0..3).all(|i| close(self.col_dir[i], other.col_dir[i]))
            && close(self.row_spacing, other.row_spacing)
            && close(self.col_spacing, other.col_spacing)
    }
}

/// A volume built from planes.
#[derive(Debug, Clone)]
pub struct Stacked {
    pub geometry: Geometry,
    pub data: Vec<f32>,
    pub non_finite: usize,
    /// Per slice, in the volume's z order, seconds from the first acquired slice.
    pub slice_times_s: Option<Vec<f64>>,
}

/// Sorts `planes` along the normal and lays them out in the convention above.
/// `single_thickness` is the slice spacing used when there is one plane.
/// `stored` holds the file's pixels for planes given as `Pixels::Stored`.
pub fn stack(
    grid: &PlaneGrid,
    mut planes: Vec<Plane>,
    single_thickness: f64,
    datatype: Datatype,
    tr_s: Option<f64>,
    stored: &StoredPixels,
    path: &Path,
) -> Result<Stacked, DicomError> {
    let invalid = |detail: String| DicomError::Invalid {
        path: path.to_owned(),
        detail,
    };
    if planes.is_empty() {
        return Err(invalid("no slices".into()));
    }
    let normal = grid.normal();
    planes.sort_by(|a, b| dot(a.position, normal).total_cmp(&dot(b.position, normal)));
    let n = planes.len();
    let first = planes[0].position;
    let slice_vector = if n > 1 {
        let last = planes[n - 1].position;
        let step = (dot(last, normal) - dot(first, normal)) / (n - 1) as f64;
        for pair in planes.windows(2) {
            let gap = dot(pair[1].position, normal) - dot(pair[0].position, normal);
            if gap < 1e-3 {
                return Err(invalid(format!(
                    "two slices at the same position ({:.3} mm along the slice normal); \
                     expected one slice per position in a volume",
                    dot(pair[0].position, normal)
                )));
            }
            if (gap - step).abs() > 0.1 * step {
                return Err(invalid(format!(
                    "uneven slice gaps ({gap:.3} mm where the mean is {step:.3} mm); \
                     expected equally spaced slices (a slice missing?)"
                )));
            }
        }
        [0, 1, 2].map(|i| (last[i] - first[i]) / (n - 1) as f64)
    } else {
        normal.map(|c| c * single_thickness)
    };
    let (rows, cols) = (grid.rows, grid.cols);
    // Voxel (0,0,0) is the last stored row of the first plane.
    let origin =
        [0, 1, 2].map(|i| first[i] + (rows - 1) as f64 * grid.row_spacing * grid.col_dir[i]);
    let mut affine = [[0.0; 4]; 4];
    for i in 0..3 {
        // LPS → RAS: negate x and y.
        let sign = if i < 2 { -1.0 } else { 1.0 };
        affine[i][0] = sign * grid.row_dir[i] * grid.col_spacing;
        affine[i][1] = -sign * grid.col_dir[i] * grid.row_spacing;
        affine[i][2] = sign * slice_vector[i];
        affine[i][3] = sign * origin[i];
    }
    affine[3][3] = 1.0;
    let plane_len = rows * cols;
    let mut data = vec![0.0f32; plane_len * n];
    // Integer values rescaled by finite factors cannot be NaN or infinite: count only otherwise.
    let mut may_be_non_finite = false;
    for (plane, out) in planes.iter().zip(data.chunks_exact_mut(plane_len)) {
        // Stored row r goes to volume row rows - 1 - r (dcm2niix's flip).
        let rows_out = out.chunks_exact_mut(cols).rev();
        match &plane.pixels {
            Pixels::Values(values) => {
                if values.len() != plane_len {
                    return Err(invalid(format!(
                        "a slice holds {} values, expected {rows} x {cols}",
                        values.len()
                    )));
                }
                may_be_non_finite = true;
                for (dst, src) in rows_out.zip(values.chunks_exact(cols)) {
                    dst.copy_from_slice(src);
                }
            }
            &Pixels::Stored {
                first,
                row_stride,
                slope,
                intercept,
            } => {
                let end = first + (rows - 1) * row_stride + cols;
                if end > stored.len() {
                    return Err(invalid(format!(
                        "a slice reaches value {end} of the {} stored",
                        stored.len()
                    )));
                }
                may_be_non_finite |= !(slope.is_finite() && intercept.is_finite());
                for (r, dst) in rows_out.enumerate() {
                    stored.fill_scaled(first + r * row_stride, slope, intercept, dst);
                }
            }
        }
    }
    let non_finite = if may_be_non_finite || matches!(datatype, Datatype::F32 | Datatype::F64) {
        data.iter().filter(|v| !v.is_finite()).count()
    } else {
        0
    };
    let slice_times_s = planes
        .iter()
        .map(|p| p.time_s)
        .collect::<Option<Vec<f64>>>()
        .map(|times| {
            let start = times.iter().copied().fold(f64::INFINITY, f64::min);
            // Microseconds: scanners store times as decimal text, so keep no float noise.
            times
                .iter()
                .map(|t| ((t - start) * 1e6).round() / 1e6)
                .collect()
        });
    let slice_mm = dot(slice_vector, slice_vector).sqrt();
    Ok(Stacked {
        geometry: Geometry {
            dims: [cols, rows, n],
            voxel_size: [
                grid.col_spacing as f32,
                grid.row_spacing as f32,
                slice_mm as f32,
            ],
            affine,
            datatype,
            tr_s,
        },
        data,
        non_finite,
        slice_times_s,
    })
}

pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn normalise(v: [f64; 3]) -> [f64; 3] {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.map(|c| c / norm)
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axial_grid() -> PlaneGrid {
        PlaneGrid::new(
            2,
            3,
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            [2.0, 1.0],
            Path::new("t"),
        )
        .unwrap()
    }

    #[test]
    fn planes_sort_along_the_normal_and_rows_flip() {
        let plane = |z: f64, base: f32| Plane {
            position: [10.0, 20.0, z],
            pixels: Pixels::Values((0..6).map(|v| base + v as f32).collect()),
            time_s: Some(z / 10.0),
        };
        // Given top slice first: stacking must put the lower one at z = 0.
        let s = stack(
            &axial_grid(),
            vec![plane(5.0, 100.0), plane(2.0, 0.0)],
            1.0,
            Datatype::I16,
            None,
            &StoredPixels::none(),
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(s.geometry.dims, [3, 2, 2]);
        // Row 1 (the last stored) comes first.
        assert_eq!(&s.data[..6], &[3.0, 4.0, 5.0, 0.0, 1.0, 2.0]);
        assert_eq!(s.data[6], 103.0);
        // x: LPS +x is RAS -x; y: rows flipped, so +row_spacing along +y LPS = -y RAS flipped.
        assert_eq!(s.geometry.affine[0], [-1.0, 0.0, 0.0, -10.0]);
        assert_eq!(s.geometry.affine[1], [0.0, 2.0, 0.0, -22.0]);
        assert_eq!(s.geometry.affine[2], [0.0, 0.0, 3.0, 2.0]);
        assert_eq!(s.slice_times_s, Some(vec![0.0, 0.3]));
    }

    #[test]
    fn repeated_positions_and_gaps_are_refused() {
        let plane = |z: f64| Plane {
            position: [0.0, 0.0, z],
            pixels: Pixels::Values(vec![0.0; 6]),
            time_s: None,
        };
        let err = |zs: &[f64]| {
            stack(
                &axial_grid(),
                zs.iter().map(|&z| plane(z)).collect(),
                1.0,
                Datatype::U16,
                None,
                &StoredPixels::none(),
                Path::new("t"),
            )
            .unwrap_err()
            .to_string()
        };
        assert!(err(&[0.0, 0.0]).contains("same position"));
        assert!(err(&[0.0, 3.0, 9.0, 12.0]).contains("uneven"));
        assert!(PlaneGrid::new(
            1,
            1,
            [1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
            [1.0, 1.0],
            Path::new("t")
        )
        .is_err());
    }
}
