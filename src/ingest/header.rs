//! The NIfTI-1 header: parsing (through the `nifti` crate), validation before any allocation,
//! the voxel-to-world affine, and the byte patches that turn one volume of a 4-D run into a
//! 3-D file.
//!
//! The raw 348 header bytes are kept beside the parsed fields so that the replay writer can
//! reproduce a scanner's file exactly (same datatype, byte order and scaling).

use std::path::Path;

use nifti::NiftiHeader;

use super::error::ReadError;
use super::volume::{datatype_code_name, Datatype, Geometry};

pub const HEADER_BYTES: usize = 348;
/// `vox_offset` of a single-file `.nii` written without extensions.
pub const NII_VOX_OFFSET: usize = 352;

/// A parsed and validated header.
#[derive(Debug, Clone)]
pub struct Header {
    pub raw: [u8; HEADER_BYTES],
    pub fields: NiftiHeader,
    /// `dim[1..=dim[0]]`.
    pub dims: Vec<usize>,
    pub datatype: Datatype,
    pub big_endian: bool,
    /// `(scl_slope, scl_inter)` when the header asks for scaling.
    pub scaling: Option<(f32, f32)>,
    /// Where the voxels start (in the `.nii`, or in the `.img` of a pair).
    pub vox_offset: usize,
}

impl Header {
    /// Parses and validates a header from its first bytes. `max_voxels` bounds the volume before
    /// anything is allocated for it.
    pub fn parse(bytes: &[u8], path: &Path, max_voxels: usize) -> Result<Header, ReadError> {
        if bytes.len() < HEADER_BYTES {
            return Err(ReadError::Incomplete {
                path: path.to_owned(),
                detail: format!(
                    "{} bytes, a NIfTI-1 header needs {HEADER_BYTES}",
                    bytes.len()
                ),
            });
        }
        let mut raw = [0u8; HEADER_BYTES];
        raw.copy_from_slice(&bytes[..HEADER_BYTES]);
        let sizeof_le = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let sizeof_be = i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        if sizeof_le != 348 && sizeof_be != 348 {
            let detail = if sizeof_le == 540 || sizeof_be == 540 {
                "this is NIfTI-2 (sizeof_hdr 540); only NIfTI-1 is read".to_string()
            } else {
                format!("sizeof_hdr is {sizeof_le}, expected 348")
            };
            return Err(ReadError::NotNifti {
                path: path.to_owned(),
                detail,
            });
        }
        let fields = NiftiHeader::from_reader(&raw[..]).map_err(|e| ReadError::NotNifti {
            path: path.to_owned(),
            detail: format!(
                "{e} (magic {:?}, expected \"n+1\" or \"ni1\")",
                &raw[344..348]
            ),
        })?;
        let big_endian = sizeof_be == 348 && sizeof_le != 348;

        let rank = fields.dim[0] as usize;
        if !(1..=7).contains(&rank) {
            return Err(ReadError::BadHeader {
                path: path.to_owned(),
                detail: format!("dim[0] = {rank}, expected 1 to 7"),
            });
        }
        let raw_dims = &fields.dim[1..=rank];
        // Dims are signed 16-bit on disk; the crate reads them unsigned, so negatives show as > 32767.
        if let Some(bad) = raw_dims.iter().position(|&d| d == 0 || d > i16::MAX as u16) {
            return Err(ReadError::BadHeader {
                path: path.to_owned(),
                detail: format!(
                    "dim[{}] = {}, expected a positive size",
                    bad + 1,
                    raw_dims[bad] as i16
                ),
            });
        }
        // The limit is per volume (a 4-D run is only ever held one volume at a time).
        let voxels: u128 = raw_dims.iter().take(3).map(|&d| d as u128).product();
        let volumes: u128 = raw_dims.iter().skip(3).map(|&d| d as u128).product();
        if voxels > max_voxels as u128 || volumes > u32::MAX as u128 {
            return Err(ReadError::TooLarge {
                path: path.to_owned(),
                dims: raw_dims.to_vec(),
                voxels,
                limit: max_voxels,
            });
        }
        let datatype =
            Datatype::from_code(fields.datatype).ok_or_else(|| ReadError::UnsupportedDatatype {
                path: path.to_owned(),
                code: fields.datatype,
                name: datatype_code_name(fields.datatype),
            })?;
        let vox_offset = fields.vox_offset;
        if !(0.0..1e9).contains(&vox_offset) {
            return Err(ReadError::BadHeader {
                path: path.to_owned(),
                detail: format!("vox_offset = {vox_offset}, expected a byte offset"),
            });
        }
        let slope = fields.scl_slope;
        let inter = fields.scl_inter;
        // NIfTI-1: a slope of 0 (or not finite) means "no scaling".
        let scaling = if slope != 0.0 && slope.is_finite() {
            let inter = if inter.is_finite() { inter } else { 0.0 };
            if slope == 1.0 && inter == 0.0 {
                None
            } else {
                Some((slope, inter))
            }
        } else {
            None
        };
        Ok(Header {
            raw,
            dims: raw_dims.iter().map(|&d| d as usize).collect(),
            datatype,
            big_endian,
            scaling,
            // A single-file header cannot hold voxels inside itself (nibabel clamps the same way).
            vox_offset: if &fields.magic == b"n+1\0" {
                (vox_offset as usize).max(NII_VOX_OFFSET)
            } else {
                vox_offset as usize
            },
            fields,
        })
    }

    /// Voxels in one 3-D volume (dims beyond the third count volumes).
    pub fn voxels_per_volume(&self) -> usize {
        self.spatial_dims().iter().product()
    }

    pub fn bytes_per_volume(&self) -> usize {
        self.voxels_per_volume() * self.datatype.size_bytes()
    }

    /// x, y, z sizes (1 where the file has fewer dimensions).
    pub fn spatial_dims(&self) -> [usize; 3] {
        let d = |i: usize| self.dims.get(i).copied().unwrap_or(1);
        [d(0), d(1), d(2)]
    }

    /// Volumes in the file: the product of every dimension after the third.
    pub fn n_volumes(&self) -> usize {
        self.dims.iter().skip(3).product()
    }

    pub fn is_single_file(&self) -> bool {
        &self.fields.magic == b"n+1\0"
    }

    pub fn tr_s(&self) -> Option<f64> {
        let tr = self.fields.pixdim[4] as f64;
        if !(tr.is_finite() && tr > 0.0) {
            return None;
        }
        // xyzt_units bits 3..5 give the time unit: 8 s, 16 ms, 24 µs.
        Some(match self.fields.xyzt_units & 0x38 {
            16 => tr / 1e3,
            24 => tr / 1e6,
            _ => tr,
        })
    }

    pub fn geometry(&self) -> Geometry {
        let p = &self.fields.pixdim;
        Geometry {
            dims: self.spatial_dims(),
            voxel_size: [p[1].abs(), p[2].abs(), p[3].abs()],
            affine: self.affine(),
            datatype: self.datatype,
            tr_s: self.tr_s(),
        }
    }

    /// Voxel → world: the sform when its code is set, else the qform (quaternion), else the
    /// voxel sizes alone (NIfTI-1 "method 1"; nibabel would centre it, we follow the standard).
    pub fn affine(&self) -> [[f64; 4]; 4] {
        let h = &self.fields;
        let last = [0.0, 0.0, 0.0, 1.0];
        if h.sform_code > 0 {
            let row = |r: [f32; 4]| r.map(|v| v as f64);
            return [row(h.srow_x), row(h.srow_y), row(h.srow_z), last];
        }
        let p = h.pixdim.map(|v| v as f64);
        if h.qform_code > 0 {
            let (b, c, d) = (h.quatern_b as f64, h.quatern_c as f64, h.quatern_d as f64);
            let aa = 1.0 - (b * b + c * c + d * d);
            let (a, b, c, d) = if aa < 1e-7 {
                // Pure 180° rotation: renormalise (b, c, d), a = 0 (as nifti1_io does).
                let n = (b * b + c * c + d * d).sqrt();
                (0.0, b / n, c / n, d / n)
            } else {
                (aa.sqrt(), b, c, d)
            };
            let qfac = if p[0] < 0.0 { -1.0 } else { 1.0 };
            let r = [
                [
                    a * a + b * b - c * c - d * d,
                    2.0 * (b * c - a * d),
                    2.0 * (b * d + a * c),
                ],
                [
                    2.0 * (b * c + a * d),
                    a * a + c * c - b * b - d * d,
                    2.0 * (c * d - a * b),
                ],
                [
                    2.0 * (b * d - a * c),
                    2.0 * (c * d + a * b),
                    a * a + d * d - b * b - c * c,
                ],
            ];
            let scale = [p[1].abs(), p[2].abs(), p[3].abs() * qfac];
            let shift = [h.quatern_x as f64, h.quatern_y as f64, h.quatern_z as f64];
            let mut out = [[0.0; 4]; 4];
            for i in 0..3 {
                for j in 0..3 {
                    out[i][j] = r[i][j] * scale[j];
                }
                out[i][3] = shift[i];
            }
            out[3] = last;
            return out;
        }
        [
            [p[1].abs(), 0.0, 0.0, 0.0],
            [0.0, p[2].abs(), 0.0, 0.0],
            [0.0, 0.0, p[3].abs(), 0.0],
            last,
        ]
    }

    /// The header bytes of one volume of this file written as a single-file 3-D `.nii`:
    /// `dim[0] = 3`, `dim[4..]` = 1, `vox_offset` 352, magic `n+1`. Everything else, byte order,
    /// scaling and `pixdim[4]` (the TR) included, is the original's.
    pub fn single_volume_nii_header(&self) -> [u8; HEADER_BYTES] {
        let mut raw = self.raw;
        let put_i16 = |raw: &mut [u8; HEADER_BYTES], at: usize, v: i16| {
            let b = if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            raw[at..at + 2].copy_from_slice(&b);
        };
        let spatial = self.spatial_dims();
        put_i16(&mut raw, 40, 3);
        for (i, &d) in spatial.iter().enumerate() {
            put_i16(&mut raw, 42 + 2 * i, d as i16);
        }
        for i in 4..8 {
            put_i16(&mut raw, 40 + 2 * i, 1);
        }
        let offset = NII_VOX_OFFSET as f32;
        let b = if self.big_endian {
            offset.to_be_bytes()
        } else {
            offset.to_le_bytes()
        };
        raw[108..112].copy_from_slice(&b);
        raw[344..348].copy_from_slice(b"n+1\0");
        raw
    }
}
