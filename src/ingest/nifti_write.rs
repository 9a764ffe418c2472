//! Writing NIfTI-1 files: single-file `.nii` / `.nii.gz`, 3-D or 4-D, little-endian, with the
//! sform and qform both set from an axis-aligned or general affine.
//!
//! For our own outputs (simulated runs, masks, derived volumes) and test data. The `nifti`
//! crate's writer needs an ndarray and always writes slope 1 / intercept 0; this writes from a
//! flat x-fastest slice, keeps the scaling we ask for, and can produce the bytes in memory.

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::header::{HEADER_BYTES, NII_VOX_OFFSET};
use super::volume::Datatype;

/// What to write: the grid, how values are stored, and where the grid sits.
#[derive(Debug, Clone)]
pub struct NiftiSpec {
    /// x, y, z and optionally t (volumes).
    pub dims: Vec<usize>,
    pub voxel_size: [f32; 3],
    /// Seconds; written to `pixdim[4]` with units "sec".
    pub tr_s: Option<f32>,
    /// Voxel → scanner mm; `None` = voxel size only, origin at the grid centre.
    pub affine: Option<[[f64; 4]; 4]>,
    /// Stored type: `U8`, `I16`, `I32`, `F32` or `F64`.
    pub datatype: Datatype,
    /// `(slope, inter)`: stored = round((value - inter) / slope) for integer types.
    pub scaling: Option<(f32, f32)>,
    pub description: String,
}

impl NiftiSpec {
    pub fn new(dims: &[usize], voxel_size: [f32; 3], datatype: Datatype) -> NiftiSpec {
        NiftiSpec {
            dims: dims.to_vec(),
            voxel_size,
            tr_s: None,
            affine: None,
            datatype,
            scaling: None,
            description: String::new(),
        }
    }

    pub fn affine_or_default(&self) -> [[f64; 4]; 4] {
        self.affine.unwrap_or_else(|| {
            let v = self.voxel_size.map(|x| x as f64);
            let c = |i: usize| -(self.dims.get(i).copied().unwrap_or(1) as f64 - 1.0) / 2.0 * v[i];
            [
                [v[0], 0.0, 0.0, c(0)],
                [0.0, v[1], 0.0, c(1)],
                [0.0, 0.0, v[2], c(2)],
                [0.0, 0.0, 0.0, 1.0],
            ]
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: cannot write: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Spec(String),
}

fn put<const N: usize>(h: &mut [u8; HEADER_BYTES], at: usize, bytes: [u8; N]) {
    h[at..at + N].copy_from_slice(&bytes);
}

/// A quaternion (b, c, d) and qfac for the rotation part of `affine` (nifti1_io's method).
fn quaternion(affine: &[[f64; 4]; 4]) -> ([f64; 3], f64) {
    let mut r = [[0.0; 3]; 3];
    for j in 0..3 {
        let norm = (0..3)
            .map(|i| affine[i][j] * affine[i][j])
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        for i in 0..3 {
            r[i][j] = affine[i][j] / norm;
        }
    }
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 { -1.0 } else { 1.0 };
    if qfac < 0.0 {
        for row in &mut r {
            row[2] = -row[2];
        }
    }
    let a = 1.0 + r[0][0] + r[1][1] + r[2][2];
    let (a, b, c, d) = if a > 0.5 {
        let a = 0.5 * a.sqrt();
        (
            a,
            0.25 * (r[2][1] - r[1][2]) / a,
            0.25 * (r[0][2] - r[2][0]) / a,
            0.25 * (r[1][0] - r[0][1]) / a,
        )
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            let b = 0.5 * xd.sqrt();
            (
                0.25 * (r[2][1] - r[1][2]) / b,
                b,
                0.25 * (r[0][1] + r[1][0]) / b,
                0.25 * (r[0][2] + r[2][0]) / b,
            )
        } else if yd > 1.0 {
            let c = 0.5 * yd.sqrt();
            (
                0.25 * (r[0][2] - r[2][0]) / c,
                0.25 * (r[0][1] + r[1][0]) / c,
                c,
                0.25 * (r[1][2] + r[2][1]) / c,
            )
        } else {
            let d = 0.5 * zd.sqrt();
            (
                0.25 * (r[1][0] - r[0][1]) / d,
                0.25 * (r[0][2] + r[2][0]) / d,
                0.25 * (r[1][2] + r[2][1]) / d,
                d,
            )
        }
    };
    let sign = if a < 0.0 { -1.0 } else { 1.0 };
    ([b * sign, c * sign, d * sign], qfac)
}

/// The 348 header bytes for `spec` (single-file, little-endian).
pub fn header_bytes(spec: &NiftiSpec) -> Result<[u8; HEADER_BYTES], WriteError> {
    if !(3..=4).contains(&spec.dims.len())
        || spec.dims.iter().any(|&d| d == 0 || d > i16::MAX as usize)
    {
        return Err(WriteError::Spec(format!(
            "dims {:?}: expected 3 or 4 sizes in 1..=32767",
            spec.dims
        )));
    }
    let mut h = [0u8; HEADER_BYTES];
    put(&mut h, 0, 348i32.to_le_bytes());
    put(&mut h, 38, [b'r']); // "regular", as most writers set it
    put(&mut h, 40, (spec.dims.len() as i16).to_le_bytes());
    for i in 0..7 {
        let d = spec.dims.get(i).copied().unwrap_or(1) as i16;
        put(&mut h, 42 + 2 * i, d.to_le_bytes());
    }
    put(&mut h, 70, spec.datatype.code().to_le_bytes());
    put(
        &mut h,
        72,
        ((spec.datatype.size_bytes() * 8) as i16).to_le_bytes(),
    );
    let affine = spec.affine_or_default();
    let ([qb, qc, qd], qfac) = quaternion(&affine);
    let pixdim = [
        qfac as f32,
        spec.voxel_size[0],
        spec.voxel_size[1],
        spec.voxel_size[2],
        spec.tr_s.unwrap_or(0.0),
        1.0,
        1.0,
        1.0,
    ];
    for (i, p) in pixdim.iter().enumerate() {
        put(&mut h, 76 + 4 * i, p.to_le_bytes());
    }
    put(&mut h, 108, (NII_VOX_OFFSET as f32).to_le_bytes());
    let (slope, inter) = spec.scaling.unwrap_or((1.0, 0.0));
    put(&mut h, 112, slope.to_le_bytes());
    put(&mut h, 116, inter.to_le_bytes());
    put(&mut h, 123, [2u8 | 8u8]); // mm, seconds
    let descrip = spec.description.as_bytes();
    let n = descrip.len().min(79);
    h[148..148 + n].copy_from_slice(&descrip[..n]);
    put(&mut h, 252, 1i16.to_le_bytes()); // qform: scanner
    put(&mut h, 254, 1i16.to_le_bytes()); // sform: scanner
    for (i, q) in [qb, qc, qd, affine[0][3], affine[1][3], affine[2][3]]
        .iter()
        .enumerate()
    {
        put(&mut h, 256 + 4 * i, (*q as f32).to_le_bytes());
    }
    for (row, values) in affine.iter().take(3).enumerate() {
        for (col, value) in values.iter().enumerate() {
            put(
                &mut h,
                280 + 16 * row + 4 * col,
                (*value as f32).to_le_bytes(),
            );
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    Ok(h)
}

/// Stores `values` (x fastest, volumes last) in the spec's datatype, as little-endian bytes.
pub fn encode_values(spec: &NiftiSpec, values: &[f32]) -> Result<Vec<u8>, WriteError> {
    let expected: usize = spec.dims.iter().product();
    if values.len() != expected {
        return Err(WriteError::Spec(format!(
            "{} values for dims {:?} ({expected} voxels)",
            values.len(),
            spec.dims
        )));
    }
    let mut out = Vec::with_capacity(values.len() * spec.datatype.size_bytes());
    encode_into(spec, values, &mut out)?;
    Ok(out)
}

/// Appends `values` stored as the spec says (datatype, scaling) to `out`.
fn encode_into(spec: &NiftiSpec, values: &[f32], out: &mut Vec<u8>) -> Result<(), WriteError> {
    let (slope, inter) = spec.scaling.unwrap_or((1.0, 0.0));
    let stored = |v: f32| ((v as f64 - inter as f64) / slope as f64).round();
    match spec.datatype {
        Datatype::U8 => out.extend(values.iter().map(|&v| stored(v).clamp(0.0, 255.0) as u8)),
        Datatype::I16 => {
            for &v in values {
                out.extend_from_slice(&(stored(v).clamp(-32768.0, 32767.0) as i16).to_le_bytes());
            }
        }
        Datatype::I32 => {
            for &v in values {
                let s = stored(v).clamp(i32::MIN as f64, i32::MAX as f64) as i32;
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
        Datatype::F32 => {
            for &v in values {
                let s = ((v as f64 - inter as f64) / slope as f64) as f32;
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
        Datatype::F64 => {
            for &v in values {
                out.extend_from_slice(&((v as f64 - inter as f64) / slope as f64).to_le_bytes());
            }
        }
        other => {
            return Err(WriteError::Spec(format!(
                "writing {other} is not supported; use uint8, int16, int32, float32 or float64"
            )))
        }
    }
    Ok(())
}

/// Writes a 4-D run volume by volume (gzip when the name ends in `.gz`), through a temporary
/// file renamed into place by `finish`, so nobody sees a partial run.
pub struct RunWriter {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    out: Sink,
    spec: NiftiSpec,
    voxels_per_volume: usize,
    volumes: usize,
    written: usize,
    buffer: Vec<u8>,
}

impl RunWriter {
    /// `spec.dims` must be 4-D (x, y, z, volumes).
    pub fn create(path: &Path, spec: &NiftiSpec) -> Result<RunWriter, WriteError> {
        if spec.dims.len() != 4 {
            return Err(WriteError::Spec(format!(
                "a run needs 4 dims, got {:?}",
                spec.dims
            )));
        }
        let header = header_bytes(spec)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("run");
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let io = |source| WriteError::Io {
            path: path.to_owned(),
            source,
        };
        let file =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).map_err(io)?);
        let mut out = if name.to_ascii_lowercase().ends_with(".gz") {
            Sink::Gzip(Box::new(GzEncoder::new(file, Compression::fast())))
        } else {
            Sink::Plain(file)
        };
        out.write_all(&header)
            .and_then(|_| out.write_all(&[0u8; 4]))
            .map_err(io)?;
        Ok(RunWriter {
            path: path.to_owned(),
            tmp,
            out,
            voxels_per_volume: spec.dims[..3].iter().product(),
            volumes: spec.dims[3],
            spec: spec.clone(),
            written: 0,
            buffer: Vec::new(),
        })
    }

    pub fn write_volume(&mut self, values: &[f32]) -> Result<(), WriteError> {
        if values.len() != self.voxels_per_volume || self.written >= self.volumes {
            return Err(WriteError::Spec(format!(
                "{}: volume {} of {} with {} values, expected {}",
                self.path.display(),
                self.written + 1,
                self.volumes,
                values.len(),
                self.voxels_per_volume
            )));
        }
        self.buffer.clear();
        encode_into(&self.spec, values, &mut self.buffer)?;
        self.out
            .write_all(&self.buffer)
            .map_err(|source| WriteError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.written += 1;
        Ok(())
    }

    /// Flushes, checks every volume was written, and renames the file into place.
    pub fn finish(self) -> Result<(), WriteError> {
        if self.written != self.volumes {
            return Err(WriteError::Spec(format!(
                "{}: {} volumes written, the header says {}",
                self.path.display(),
                self.written,
                self.volumes
            )));
        }
        let io = |source| WriteError::Io {
            path: self.path.clone(),
            source,
        };
        match self.out {
            Sink::Plain(mut f) => f.flush().map_err(io)?,
            Sink::Gzip(gz) => gz.finish().and_then(|mut f| f.flush()).map_err(io)?,
        }
        std::fs::rename(&self.tmp, &self.path).map_err(io)
    }
}

enum Sink {
    Plain(std::io::BufWriter<std::fs::File>),
    Gzip(Box<GzEncoder<std::io::BufWriter<std::fs::File>>>),
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(f) => f.write_all(bytes),
            Sink::Gzip(g) => g.write_all(bytes),
        }
    }
}

/// The complete bytes of a `.nii` file (gzip-compressed when `gzip`).
pub fn nifti_bytes(spec: &NiftiSpec, values: &[f32], gzip: bool) -> Result<Vec<u8>, WriteError> {
    let header = header_bytes(spec)?;
    let data = encode_values(spec, values)?;
    let mut file = Vec::with_capacity(NII_VOX_OFFSET + data.len());
    file.extend_from_slice(&header);
    file.extend_from_slice(&[0u8; 4]);
    file.extend_from_slice(&data);
    if !gzip {
        return Ok(file);
    }
    let mut encoder = GzEncoder::new(Vec::with_capacity(file.len() / 2), Compression::default());
    encoder
        .write_all(&file)
        .and_then(|_| encoder.finish())
        .map_err(|e| WriteError::Spec(e.to_string()))
}

/// Writes a `.nii` or `.nii.gz` (by the name) through a temporary file and a rename, so a
/// reader never sees it half-written.
pub fn write_nifti(path: &Path, spec: &NiftiSpec, values: &[f32]) -> Result<(), WriteError> {
    let gzip = path.to_string_lossy().to_ascii_lowercase().ends_with(".gz");
    let bytes = nifti_bytes(spec, values, gzip)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let io = |source| WriteError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::write(&tmp, &bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::nifti_read::{read_volume_file, RunReader};

    #[test]
    fn round_trip_through_our_reader_with_a_rotated_affine() {
        let dir = tempfile::tempdir().unwrap();
        let (c, s) = (0.3f64.cos(), 0.3f64.sin());
        let affine = [
            [2.0 * c, -3.0 * s, 0.0, 10.0],
            [2.0 * s, 3.0 * c, 0.0, -5.0],
            [0.0, 0.0, -4.0, 7.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let mut spec = NiftiSpec::new(&[4, 3, 2], [2.0, 3.0, 4.0], Datatype::I16);
        spec.affine = Some(affine);
        spec.scaling = Some((0.5, 10.0));
        let values: Vec<f32> = (0..24).map(|i| 10.0 + i as f32 * 0.5).collect();
        let path = dir.path().join("x_0001.nii.gz");
        write_nifti(&path, &spec, &values).unwrap();
        let d = read_volume_file(&path, 1000).unwrap();
        assert_eq!(d.data, values);
        assert_eq!(d.header.dims, vec![4, 3, 2]);
        // The reader takes the sform; the qform must describe the same grid.
        let mut q = d.header.clone();
        q.fields.sform_code = 0;
        for (a, b) in [d.header.affine(), q.affine()].iter().zip([affine, affine]) {
            for r in 0..4 {
                for col in 0..4 {
                    assert!((a[r][col] - b[r][col]).abs() < 1e-5, "{a:?} vs {b:?}");
                }
            }
        }
        let mut spec4 = NiftiSpec::new(&[2, 2, 1, 3], [1.0; 3], Datatype::F32);
        spec4.tr_s = Some(0.8);
        let run: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let path4 = dir.path().join("run.nii");
        write_nifti(&path4, &spec4, &run).unwrap();
        let mut reader = RunReader::open(&path4, 100).unwrap();
        assert_eq!(reader.header().tr_s(), Some(0.800000011920929));
        assert_eq!(
            reader.next_volume().unwrap().unwrap().0,
            vec![0.0, 1.0, 2.0, 3.0]
        );
        assert!(encode_values(&spec4, &run[..3]).is_err());
    }
}
