//! `brainmclip inspect FILE`: a NIfTI file's header in words and, for a 4-D run, its temporal
//! signal-to-noise ratio, computed volume by volume (the run is never held in memory whole).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::ingest::{FileKind, Geometry, Header, ReadError, RunReader};

#[derive(Debug, Clone)]
pub struct Tsnr {
    /// Voxels with a positive temporal mean and non-zero variance.
    pub voxels: usize,
    pub mean: f64,
    pub median: f64,
}

#[derive(Debug, Clone)]
pub struct Inspection {
    pub path: PathBuf,
    pub kind: FileKind,
    pub header: Header,
    pub geometry: Geometry,
    pub n_volumes: usize,
    pub tsnr: Option<Tsnr>,
}

/// Reads the header and, when the file holds more than one volume, the tSNR.
pub fn inspect(path: &Path, max_voxels: usize) -> Result<Inspection, ReadError> {
    let kind = FileKind::of(path).ok_or_else(|| ReadError::NotNifti {
        path: path.to_owned(),
        detail: "expected a name ending in .nii, .nii.gz, .hdr or .hdr.gz".into(),
    })?;
    let mut reader = RunReader::open(path, max_voxels)?;
    let header = reader.header().clone();
    let n_volumes = reader.n_volumes();
    let tsnr = if n_volumes > 1 {
        Some(tsnr(&mut reader)?)
    } else {
        None
    };
    Ok(Inspection {
        path: path.to_owned(),
        kind,
        geometry: header.geometry(),
        header,
        n_volumes,
        tsnr,
    })
}

/// Welford's running mean and variance per voxel over the volumes, in f64.
fn tsnr(reader: &mut RunReader) -> Result<Tsnr, ReadError> {
    let n_voxels = reader.header().voxels_per_volume();
    let mut mean = vec![0.0f64; n_voxels];
    let mut m2 = vec![0.0f64; n_voxels];
    let mut count = 0.0f64;
    while let Some(volume) = reader.next_volume() {
        let (data, _) = volume?;
        count += 1.0;
        for ((m, s), &x) in mean.iter_mut().zip(m2.iter_mut()).zip(&data) {
            let x = x as f64;
            let delta = x - *m;
            *m += delta / count;
            *s += delta * (x - *m);
        }
    }
    let mut values: Vec<f64> = mean
        .iter()
        .zip(&m2)
        .filter(|(m, s)| **m > 0.0 && **s > 0.0 && m.is_finite() && s.is_finite())
        .map(|(m, s)| m / (s / count).sqrt())
        .collect();
    values.sort_by(f64::total_cmp);
    let voxels = values.len();
    let mean_tsnr = if voxels > 0 {
        values.iter().sum::<f64>() / voxels as f64
    } else {
        0.0
    };
    let median = match voxels {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    };
    Ok(Tsnr {
        voxels,
        mean: mean_tsnr,
        median,
    })
}

fn xform_name(code: i16) -> &'static str {
    match code {
        0 => "unknown",
        1 => "scanner",
        2 => "aligned",
        3 => "talairach",
        4 => "mni",
        5 => "template",
        _ => "invalid",
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        let g = &self.geometry;
        writeln!(f, "file         {} ({:?})", self.path.display(), self.kind)?;
        writeln!(
            f,
            "dims         {:?} ({} volume{})",
            h.dims,
            self.n_volumes,
            if self.n_volumes == 1 { "" } else { "s" }
        )?;
        writeln!(
            f,
            "voxel size   {:.3} x {:.3} x {:.3} mm",
            g.voxel_size[0], g.voxel_size[1], g.voxel_size[2]
        )?;
        match g.tr_s {
            Some(tr) => writeln!(f, "TR           {tr:.3} s")?,
            None => writeln!(
                f,
                "TR           not set (pixdim[4] = {})",
                h.fields.pixdim[4]
            )?,
        }
        let order = if h.big_endian {
            "big-endian"
        } else {
            "little-endian"
        };
        writeln!(
            f,
            "datatype     {} ({order}, code {})",
            h.datatype,
            h.datatype.code()
        )?;
        match h.scaling {
            Some((slope, inter)) => writeln!(f, "scaling      value = {slope} x stored + {inter}")?,
            None => writeln!(f, "scaling      none")?,
        }
        writeln!(
            f,
            "sform        {} ({})",
            h.fields.sform_code,
            xform_name(h.fields.sform_code)
        )?;
        writeln!(
            f,
            "qform        {} ({})",
            h.fields.qform_code,
            xform_name(h.fields.qform_code)
        )?;
        writeln!(f, "orientation  {}", g.orientation())?;
        writeln!(f, "affine")?;
        for row in &g.affine {
            writeln!(
                f,
                "  {:>10.4} {:>10.4} {:>10.4} {:>10.4}",
                row[0], row[1], row[2], row[3]
            )?;
        }
        let descrip = String::from_utf8_lossy(&h.fields.descrip);
        let descrip = descrip.trim_end_matches('\0').trim();
        if !descrip.is_empty() {
            writeln!(f, "description  {descrip}")?;
        }
        if let Some(t) = &self.tsnr {
            writeln!(
                f,
                "tSNR         mean {:.2}, median {:.2} over {} voxels (positive mean, non-zero variance)",
                t.mean, t.median, t.voxels
            )?;
        }
        Ok(())
    }
}
