//! The series in an export folder: which files belong together, which one `ingest.series`
//! picks, and every volume of a series read in acquisition order (for `inspect`, `convert` and
//! replays).
//!
//! Grouping is by SeriesNumber + SeriesInstanceUID from the header; order is by the volume index
//! the header gives, never by file name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Serialize;

use super::assemble::{AssembleSettings, Assembled, SliceAssembler};
use super::{read_file, read_header, Content, DicomError, FileHeader, Layout, SeriesKey, Stacked};
use crate::ingest::naming::is_temporary;

/// Which series a run takes (`ingest.series`).
#[derive(Debug, Clone)]
pub enum SeriesChoice {
    /// The first series that looks like fMRI.
    Auto,
    Number(i64),
    /// A regex on SeriesDescription.
    Description(Regex),
}

impl SeriesChoice {
    /// `"auto"`, a series number, or a regex on the description.
    pub fn parse(text: &str) -> Result<SeriesChoice, regex::Error> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("auto") || text.is_empty() {
            Ok(SeriesChoice::Auto)
        } else if let Ok(number) = text.parse() {
            Ok(SeriesChoice::Number(number))
        } else {
            Regex::new(text).map(SeriesChoice::Description)
        }
    }

    /// Whether a file of this series is taken (for `Auto`, whether it looks like fMRI).
    pub fn accepts(&self, header: &FileHeader) -> bool {
        match self {
            SeriesChoice::Auto => header.looks_like_fmri,
            SeriesChoice::Number(n) => header.key.number == Some(*n),
            SeriesChoice::Description(re) => re.is_match(&header.description),
        }
    }
}

/// One series found in a folder.
#[derive(Debug, Clone)]
pub struct ScannedSeries {
    pub header: FileHeader,
    /// Its files with their headers, in volume order then instance order.
    pub files: Vec<(PathBuf, FileHeader)>,
}

impl ScannedSeries {
    /// Time series: the header says so, or a single-slice stack is acquired more than once.
    pub fn looks_like_fmri(&self) -> bool {
        if self.header.looks_like_fmri {
            return true;
        }
        let mut positions: Vec<[i64; 3]> = self
            .files
            .iter()
            .filter_map(|(_, h)| h.position)
            .map(|p| p.map(|c| (c * 100.0).round() as i64))
            .collect();
        let n = positions.len();
        positions.sort_unstable();
        positions.dedup();
        self.header.layout == Layout::SingleSlice && positions.len() < n
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|(p, _)| p.clone()).collect()
    }
}

/// Every DICOM series in `dir` (not recursive), by series number. Files that are not DICOM
/// are skipped; a DICOM file that cannot be parsed is an error naming it.
pub fn scan_folder(dir: &Path) -> Result<Vec<ScannedSeries>, DicomError> {
    let io = |source| DicomError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !is_temporary(n) && super::is_dicom_name(n))
        })
        .collect();
    paths.sort();
    let mut groups: BTreeMap<SeriesKey, Vec<(PathBuf, FileHeader)>> = BTreeMap::new();
    for path in paths {
        match read_header(&path) {
            Ok(header) => groups
                .entry(header.key.clone())
                .or_default()
                .push((path, header)),
            Err(DicomError::NotDicom { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(groups
        .into_values()
        .map(|mut files| {
            files.sort_by_key(|(p, h)| (h.volume_index(None), h.instance, p.clone()));
            ScannedSeries {
                header: files[0].1.clone(),
                files,
            }
        })
        .collect())
}

/// The series `choice` picks among `series` (for `Auto`, the first that looks like fMRI).
pub fn choose<'a>(series: &'a [ScannedSeries], choice: &SeriesChoice) -> Option<&'a ScannedSeries> {
    match choice {
        SeriesChoice::Auto => series.iter().find(|s| s.looks_like_fmri()),
        other => series.iter().find(|s| other.accepts(&s.header)),
    }
}

/// One volume of a series, read.
#[derive(Debug, Clone)]
pub struct SeriesVolume {
    pub index: u32,
    pub volume: Stacked,
    pub files: Vec<PathBuf>,
}

/// Reads every volume of a series, in index order. An incomplete last volume of single slices
/// is an error naming how many slices it had.
pub fn read_series(
    files: &[PathBuf],
    slices_per_volume: usize,
    max_voxels: usize,
) -> Result<Vec<SeriesVolume>, DicomError> {
    let mut volumes: BTreeMap<u32, SeriesVolume> = BTreeMap::new();
    let mut assembler = SliceAssembler::new(AssembleSettings { slices_per_volume });
    let mut slice_files: BTreeMap<u32, Vec<PathBuf>> = BTreeMap::new();
    let mut assembled = Vec::new();
    for path in files {
        let file = read_file(path, max_voxels)?;
        match file.content {
            Content::Volume { index, volume } => {
                if let Some(first) = volumes.get(&index) {
                    return Err(DicomError::Invalid {
                        path: path.clone(),
                        detail: format!(
                            "a second file for volume {index} (the first is {})",
                            first.files[0].display()
                        ),
                    });
                }
                volumes.insert(
                    index,
                    SeriesVolume {
                        index,
                        volume,
                        files: vec![path.clone()],
                    },
                );
            }
            Content::Slice(slice) => {
                let per = (slices_per_volume > 0).then_some(slices_per_volume);
                if let Some(index) = slice.volume_index(per) {
                    slice_files.entry(index).or_default().push(path.clone());
                }
                assembled.extend(assembler.add(path, slice, 0));
            }
        }
    }
    assembled.extend(assembler.finish());
    for item in assembled {
        match item {
            Assembled::Volume {
                index,
                volume,
                path,
            } => {
                let files = slice_files.remove(&index).unwrap_or_else(|| vec![path]);
                volumes.insert(
                    index,
                    SeriesVolume {
                        index,
                        volume: *volume,
                        files,
                    },
                );
            }
            Assembled::Failed { path, reason, .. } => {
                return Err(DicomError::Invalid {
                    path,
                    detail: reason,
                })
            }
            Assembled::Partial {
                index,
                have,
                expected,
                path,
            } => {
                return Err(DicomError::Invalid {
                    path,
                    detail: Assembled::partial_reason(index, have, expected),
                })
            }
        }
    }
    Ok(volumes.into_values().collect())
}

/// What `inspect` prints for a series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesSummary {
    pub number: Option<i64>,
    pub description: String,
    pub uid: String,
    pub manufacturer: String,
    pub layout: Layout,
    pub image_type: Vec<String>,
    pub files: usize,
    pub volumes: usize,
    pub dims: [usize; 3],
    pub voxel_size_mm: [f32; 3],
    pub tr_s: Option<f64>,
    pub slice_times_s: Option<Vec<f64>>,
    /// Axis codes of the volume's voxel axes (nibabel's convention, e.g. "LAS").
    pub orientation: String,
    pub looks_like_fmri: bool,
    /// Why the series could not be read as volumes, if it could not.
    pub problem: Option<String>,
}

/// Reads a series' volumes and sums them up (a series that cannot be read still gets a line).
pub fn summarize(series: &ScannedSeries, max_voxels: usize) -> SeriesSummary {
    let h = &series.header;
    let mut summary = SeriesSummary {
        number: h.key.number,
        description: h.description.clone(),
        uid: h.key.uid.clone(),
        manufacturer: h.manufacturer.clone(),
        layout: h.layout,
        image_type: h.image_type.clone(),
        files: series.files.len(),
        volumes: 0,
        dims: [0; 3],
        voxel_size_mm: [0.0; 3],
        tr_s: None,
        slice_times_s: None,
        orientation: String::new(),
        looks_like_fmri: series.looks_like_fmri(),
        problem: None,
    };
    match read_series(&series.paths(), 0, max_voxels) {
        Ok(volumes) => {
            summary.volumes = volumes.len();
            if let Some(first) = volumes.first() {
                let g = &first.volume.geometry;
                summary.dims = g.dims;
                summary.voxel_size_mm = g.voxel_size;
                summary.tr_s = g.tr_s;
                summary.orientation = g.orientation();
                summary.slice_times_s = volumes.iter().find_map(|v| v.volume.slice_times_s.clone());
            }
        }
        Err(e) => summary.problem = Some(e.to_string()),
    }
    summary
}
