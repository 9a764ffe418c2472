//! `convert`: a DICOM series folder → one 4-D NIfTI and its BIDS sidecar (TR, SliceTiming,
//! manufacturer, series), holding exactly the volumes the live reader makes of those files,
//! so calibration runs recorded this way sit on the live run's voxel grid.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::series::{choose, read_series, scan_folder, SeriesChoice};
use super::DicomError;
use crate::ingest::nifti_write::{NiftiSpec, RunWriter, WriteError};
use crate::ingest::Datatype;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Dicom(#[from] DicomError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{dir}: {detail}")]
    NoSeries { dir: PathBuf, detail: String },
    #[error("{path}: cannot write: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub series: SeriesChoice,
    pub slices_per_volume: usize,
    pub max_voxels: usize,
}

/// What `convert` wrote.
#[derive(Debug, Clone)]
pub struct Converted {
    pub nifti: PathBuf,
    pub sidecar: PathBuf,
    pub series_number: Option<i64>,
    pub description: String,
    pub dims: [usize; 3],
    /// The header's volume index of each volume written, in order.
    pub indices: Vec<u32>,
    pub datatype: Datatype,
}

impl Converted {
    /// Indices absent between the first and the last volume.
    pub fn gaps(&self) -> Vec<u32> {
        let (Some(&first), Some(&last)) = (self.indices.first(), self.indices.last()) else {
            return Vec::new();
        };
        (first..=last)
            .filter(|i| !self.indices.contains(i))
            .collect()
    }
}

/// The BIDS sidecar path for a NIfTI path (`run.nii.gz` → `run.json`).
pub fn sidecar_path(nifti: &Path) -> PathBuf {
    let name = nifti.file_name().and_then(|n| n.to_str()).unwrap_or("run");
    let stem = name
        .strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))
        .unwrap_or(name);
    nifti.with_file_name(format!("{stem}.json"))
}

/// The narrowest NIfTI type that holds every value exactly.
fn storage_type(volumes: &[&[f32]]) -> Datatype {
    let mut integral = true;
    let (mut low, mut high) = (0.0f32, 0.0f32);
    for v in volumes.iter().flat_map(|v| v.iter()) {
        integral &= v.fract() == 0.0;
        low = low.min(*v);
        high = high.max(*v);
    }
    if !integral {
        Datatype::F32
    } else if low >= f32::from(i16::MIN) && high <= f32::from(i16::MAX) {
        Datatype::I16
    } else if low >= -2.147e9 && high <= 2.147e9 {
        Datatype::I32
    } else {
        Datatype::F32
    }
}

pub fn convert_series(
    src: &Path,
    out: &Path,
    o: &ConvertOptions,
) -> Result<Converted, ConvertError> {
    let found = scan_folder(src)?;
    let series = choose(&found, &o.series).ok_or_else(|| ConvertError::NoSeries {
        dir: src.to_owned(),
        detail: if found.is_empty() {
            "no DICOM files found (expected a scanner export folder)".into()
        } else {
            format!(
                "none of its {} series is the one asked for ({:?}); `brainmclip inspect` lists them",
                found.len(),
                o.series
            )
        },
    })?;
    let volumes = read_series(&series.paths(), o.slices_per_volume, o.max_voxels)?;
    let Some(first) = volumes.first() else {
        return Err(ConvertError::NoSeries {
            dir: src.to_owned(),
            detail: "the series holds no complete volume".into(),
        });
    };
    let geometry = first.volume.geometry.clone();
    for v in &volumes {
        if let Some(diff) = geometry.mismatch(&v.volume.geometry, 1e-3) {
            return Err(ConvertError::Dicom(DicomError::Invalid {
                path: v.files[0].clone(),
                detail: format!(
                    "volume {} is on another grid than volume {}: {diff}",
                    v.index, first.index
                ),
            }));
        }
    }
    let datatype = storage_type(
        &volumes
            .iter()
            .map(|v| v.volume.data.as_slice())
            .collect::<Vec<_>>(),
    );
    let [nx, ny, nz] = geometry.dims;
    let mut spec = NiftiSpec::new(&[nx, ny, nz, volumes.len()], geometry.voxel_size, datatype);
    spec.affine = Some(geometry.affine);
    spec.tr_s = geometry.tr_s.map(|t| t as f32);
    spec.description = format!("brainmclip convert: {}", series.header.description);
    spec.description.truncate(79);
    let mut writer = RunWriter::create(out, &spec)?;
    for v in &volumes {
        writer.write_volume(&v.volume.data)?;
    }
    writer.finish()?;
    let h = &series.header;
    let mut sidecar = json!({
        "Modality": "MR",
        "Manufacturer": h.manufacturer,
        "SeriesDescription": h.description,
        "SeriesNumber": h.key.number,
        "SeriesInstanceUID": h.key.uid,
        "ImageType": h.image_type,
        "DicomLayout": h.layout,
        "ConversionSoftware": "brainmclip",
        "ConversionSoftwareVersion": env!("CARGO_PKG_VERSION"),
        "VolumeIndices": volumes.iter().map(|v| v.index).collect::<Vec<_>>(),
    });
    if let Some(tr) = geometry.tr_s {
        sidecar["RepetitionTime"] = json!(tr);
    }
    if let Some(times) = volumes.iter().find_map(|v| v.volume.slice_times_s.as_ref()) {
        sidecar["SliceTiming"] = json!(times);
    }
    let sidecar_file = sidecar_path(out);
    let text = serde_json::to_string_pretty(&sidecar).unwrap_or_default();
    std::fs::write(&sidecar_file, text + "\n").map_err(|source| ConvertError::Io {
        path: sidecar_file.clone(),
        source,
    })?;
    Ok(Converted {
        nifti: out.to_owned(),
        sidecar: sidecar_file,
        series_number: h.key.number,
        description: h.description.clone(),
        dims: geometry.dims,
        indices: volumes.iter().map(|v| v.index).collect(),
        datatype,
    })
}
