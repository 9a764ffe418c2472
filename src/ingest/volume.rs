//! What a scanner volume is once it has been read: its geometry and its voxels as `f32`.
//!
//! This file holds plain data types only. Reading files is `nifti_read.rs`; deciding when a file
//! may be read is `completeness.rs`.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// The NIfTI-1 datatypes that convert to `f32` (complex, RGB and 128-bit floats do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Datatype {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl Datatype {
    /// The datatype for a NIfTI-1 `datatype` code, or `None` when it has no `f32` conversion.
    pub fn from_code(code: i16) -> Option<Datatype> {
        Some(match code {
            2 => Datatype::U8,
            4 => Datatype::I16,
            8 => Datatype::I32,
            16 => Datatype::F32,
            64 => Datatype::F64,
            256 => Datatype::I8,
            512 => Datatype::U16,
            768 => Datatype::U32,
            1024 => Datatype::I64,
            1280 => Datatype::U64,
            _ => return None,
        })
    }

    pub fn code(self) -> i16 {
        match self {
            Datatype::U8 => 2,
            Datatype::I16 => 4,
            Datatype::I32 => 8,
            Datatype::F32 => 16,
            Datatype::F64 => 64,
            Datatype::I8 => 256,
            Datatype::U16 => 512,
            Datatype::U32 => 768,
            Datatype::I64 => 1024,
            Datatype::U64 => 1280,
        }
    }

    pub fn size_bytes(self) -> usize {
        match self {
            Datatype::U8 | Datatype::I8 => 1,
            Datatype::I16 | Datatype::U16 => 2,
            Datatype::I32 | Datatype::U32 | Datatype::F32 => 4,
            Datatype::I64 | Datatype::U64 | Datatype::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Datatype::U8 => "uint8",
            Datatype::I8 => "int8",
            Datatype::I16 => "int16",
            Datatype::U16 => "uint16",
            Datatype::I32 => "int32",
            Datatype::U32 => "uint32",
            Datatype::I64 => "int64",
            Datatype::U64 => "uint64",
            Datatype::F32 => "float32",
            Datatype::F64 => "float64",
        }
    }
}

/// The name NIfTI-1 gives a datatype code, for error messages about codes we do not convert.
pub fn datatype_code_name(code: i16) -> &'static str {
    match code {
        0 => "unknown",
        1 => "binary",
        32 => "complex64",
        128 => "rgb24",
        1536 => "float128",
        1792 => "complex128",
        2048 => "complex256",
        2304 => "rgba32",
        _ => Datatype::from_code(code).map_or("not a NIfTI-1 datatype", Datatype::name),
    }
}

impl fmt::Display for Datatype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the voxels of a volume sit in the scanner's world, and how they were stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Geometry {
    /// Voxels along x, y, z (x varies fastest in `Volume::data`).
    pub dims: [usize; 3],
    /// Voxel size in mm (NIfTI `pixdim[1..=3]`).
    pub voxel_size: [f32; 3],
    /// Voxel index → scanner mm (sform if set, else qform, else voxel size only).
    pub affine: [[f64; 4]; 4],
    pub datatype: Datatype,
    /// Repetition time from `pixdim[4]`, in seconds, when the header gives one.
    pub tr_s: Option<f64>,
}

impl Geometry {
    pub fn n_voxels(&self) -> usize {
        self.dims.iter().product()
    }

    /// Why `other` does not describe the same voxel grid as `self`, or `None` when it does.
    /// Voxel sizes and the affine are compared with an absolute tolerance in mm; the datatype
    /// and TR may differ (a scanner may change scaling between volumes).
    pub fn mismatch(&self, other: &Geometry, tolerance_mm: f64) -> Option<String> {
        if self.dims != other.dims {
            return Some(format!("dims {:?} vs {:?}", self.dims, other.dims));
        }
        for axis in 0..3 {
            let (a, b) = (self.voxel_size[axis] as f64, other.voxel_size[axis] as f64);
            if (a - b).abs() > tolerance_mm {
                return Some(format!(
                    "voxel size {:?} vs {:?} mm",
                    self.voxel_size, other.voxel_size
                ));
            }
        }
        for row in 0..3 {
            for col in 0..4 {
                let (a, b) = (self.affine[row][col], other.affine[row][col]);
                if (a - b).abs() > tolerance_mm {
                    return Some(format!(
                        "affine[{row}][{col}] {a:.4} vs {b:.4} (tolerance {tolerance_mm} mm)"
                    ));
                }
            }
        }
        None
    }

    /// Axis codes in the nibabel convention: the world direction each voxel axis increases
    /// towards, e.g. "RAS" or "LPI".
    pub fn orientation(&self) -> String {
        const LETTERS: [[char; 2]; 3] = [['L', 'R'], ['P', 'A'], ['I', 'S']];
        (0..3)
            .map(|col| {
                let (row, value) = (0..3).map(|row| (row, self.affine[row][col])).fold(
                    (0, 0.0f64),
                    |best, cur| {
                        if cur.1.abs() > best.1.abs() {
                            cur
                        } else {
                            best
                        }
                    },
                );
                LETTERS[row][usize::from(value > 0.0)]
            })
            .collect()
    }
}

/// One acquired volume, read and converted.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Acquisition index, from the file name (or the position in a 4-D run).
    pub index: u32,
    pub path: PathBuf,
    pub geometry: Geometry,
    /// Voxel values with `scl_slope`/`scl_inter` applied, in the file's order (x fastest).
    pub data: Vec<f32>,
    /// How many voxels are NaN or infinite (kept as they are in `data`).
    pub non_finite: usize,
    /// When the file was first noticed (event or poll), ns since the Unix epoch (`clock`).
    pub seen_ns: u64,
    /// When the decode finished.
    pub read_ns: u64,
    /// Per slice (z order), seconds from the first acquired slice, where the file says
    /// (DICOM: MosaicRefAcqTimes, per-frame acquisition times, GE's RTIA timer).
    pub slice_times_s: Option<Vec<f64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(affine: [[f64; 4]; 4]) -> Geometry {
        Geometry {
            dims: [4, 4, 4],
            voxel_size: [2.0, 2.0, 2.0],
            affine,
            datatype: Datatype::I16,
            tr_s: None,
        }
    }

    #[test]
    fn orientation_follows_the_affine_columns() {
        let ras = [
            [2.0, 0.0, 0.0, 0.0],
            [0.0, 2.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(geometry(ras).orientation(), "RAS");
        let lpi_swapped = [
            [0.0, -2.0, 0.0, 0.0],
            [-2.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, -2.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(geometry(lpi_swapped).orientation(), "PLI");
    }

    #[test]
    fn mismatch_names_what_differs() {
        let a = geometry([
            [2.0, 0.0, 0.0, 0.0],
            [0.0, 2.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 0.0],
            [0.0; 4],
        ]);
        let mut b = a.clone();
        assert_eq!(a.mismatch(&b, 1e-3), None);
        b.affine[1][3] = 0.5;
        assert!(a.mismatch(&b, 1e-3).unwrap().contains("affine[1][3]"));
        assert_eq!(a.mismatch(&b, 1.0), None);
        b.dims = [4, 4, 5];
        assert!(a.mismatch(&b, 1.0).unwrap().contains("dims"));
        assert_eq!(datatype_code_name(32), "complex64");
        assert_eq!(Datatype::from_code(512), Some(Datatype::U16));
    }
}
