//! The recorded run a replay plays back: a 4-D NIfTI (read volume by volume), a folder of
//! 3-D volumes (in index order), each volume turned into the bytes of a 3-D `.nii` file that
//! keeps the source's datatype, byte order and scaling; or a DICOM series folder, each volume
//! being its original files (one per volume, or one per slice), byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::DEFAULT_PATTERN;
use crate::ingest::dicom::{choose, scan_folder, Content, DicomError, ScannedSeries, SeriesChoice};
use crate::ingest::header::{Header, NII_VOX_OFFSET};
use crate::ingest::naming::{IndexPattern, NameClass};
use crate::ingest::nifti_read::{read_raw_volume, RunReader};
use crate::ingest::ReadError;

enum Kind {
    Run(Box<RunReader>),
    Files {
        files: Vec<PathBuf>,
        next: usize,
    },
    /// Per volume (index order): the header's index and the files.
    Dicom {
        volumes: Vec<(u32, Vec<PathBuf>)>,
        next: usize,
    },
}

/// One file of a volume: its name in the export folder (`None`: the replay's NIfTI name).
pub type OutFile = (Option<String>, Vec<u8>);

pub struct Source {
    kind: Kind,
    n_volumes: usize,
    tr_s: Option<f64>,
    max_voxels: usize,
}

/// The bytes of a single-volume `.nii` holding `raw` voxels described by `header`.
pub fn single_volume_nii(header: &Header, raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NII_VOX_OFFSET + raw.len());
    out.extend_from_slice(&header.single_volume_nii_header());
    out.extend_from_slice(&[0u8; 4]); // no extensions
    out.extend_from_slice(raw);
    out
}

impl Source {
    /// A DICOM series folder (the series `series` picks), else NIfTI as below.
    pub fn open_with_series(
        path: &Path,
        max_voxels: usize,
        series: &SeriesChoice,
    ) -> Result<Source, ReadError> {
        if path.is_dir() {
            let found = scan_folder(path)?;
            if !found.is_empty() {
                return Self::open_dicom(path, &found, series);
            }
        }
        Self::open(path, max_voxels)
    }

    fn open_dicom(
        path: &Path,
        found: &[ScannedSeries],
        series: &SeriesChoice,
    ) -> Result<Source, ReadError> {
        let chosen = choose(found, series).ok_or_else(|| DicomError::Invalid {
            path: path.to_owned(),
            detail: format!(
                "none of its {} DICOM series is the one asked for ({series:?})",
                found.len()
            ),
        })?;
        let mut volumes: BTreeMap<u32, Vec<PathBuf>> = BTreeMap::new();
        for (file, header) in &chosen.files {
            let index = header
                .volume_index(None)
                .ok_or_else(|| DicomError::Invalid {
                    path: file.clone(),
                    detail: "the header gives no volume index".into(),
                })?;
            volumes.entry(index).or_default().push(file.clone());
        }
        let first = chosen.files[0].0.clone();
        let tr_s = match crate::ingest::dicom::read_file(&first, usize::MAX)?.content {
            Content::Volume { volume, .. } => volume.geometry.tr_s,
            Content::Slice(slice) => slice.tr_s,
        };
        Ok(Source {
            n_volumes: volumes.len(),
            tr_s,
            kind: Kind::Dicom {
                volumes: volumes.into_iter().collect(),
                next: 0,
            },
            max_voxels: usize::MAX,
        })
    }

    /// The index the header gives the volume at `position` (DICOM), else `first + position`.
    pub fn index_at(&self, position: usize, first: u32) -> u32 {
        match &self.kind {
            Kind::Dicom { volumes, .. } => volumes
                .get(position)
                .map_or(first + position as u32, |(index, _)| *index),
            _ => first + position as u32,
        }
    }

    /// The file names of the volume at `position` (DICOM); `None` for NIfTI sources.
    pub fn names_at(&self, position: usize) -> Option<Vec<String>> {
        match &self.kind {
            Kind::Dicom { volumes, .. } => volumes.get(position).map(|(_, files)| {
                files
                    .iter()
                    .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect()
            }),
            _ => None,
        }
    }

    pub fn is_dicom(&self) -> bool {
        matches!(self.kind, Kind::Dicom { .. })
    }

    pub fn open(path: &Path, max_voxels: usize) -> Result<Source, ReadError> {
        if path.is_dir() {
            let pattern = IndexPattern::new(DEFAULT_PATTERN).map_err(|e| ReadError::NotNifti {
                path: path.to_owned(),
                detail: e.to_string(),
            })?;
            let entries = std::fs::read_dir(path).map_err(|source| ReadError::Io {
                path: path.to_owned(),
                source,
            })?;
            let mut files = Vec::new();
            for entry in entries {
                let file = entry
                    .map_err(|source| ReadError::Io {
                        path: path.to_owned(),
                        source,
                    })?
                    .path();
                if let NameClass::Volume(index) = pattern.classify(&file) {
                    files.push((index, file));
                }
            }
            files.sort();
            if files.is_empty() {
                return Err(ReadError::NotNifti {
                    path: path.to_owned(),
                    detail: "the folder holds no NIfTI volumes with an index in their names".into(),
                });
            }
            let first = read_one(&files[0].1, max_voxels)?.0;
            Ok(Source {
                n_volumes: files.len(),
                tr_s: first.tr_s(),
                kind: Kind::Files {
                    files: files.into_iter().map(|(_, f)| f).collect(),
                    next: 0,
                },
                max_voxels,
            })
        } else {
            let reader = RunReader::open(path, max_voxels)?;
            Ok(Source {
                n_volumes: reader.n_volumes(),
                tr_s: reader.header().tr_s(),
                kind: Kind::Run(Box::new(reader)),
                max_voxels,
            })
        }
    }

    pub fn n_volumes(&self) -> usize {
        self.n_volumes
    }

    /// The TR the source's header gives.
    pub fn tr_s(&self) -> Option<f64> {
        self.tr_s
    }

    /// The next volume's files: the bytes of an uncompressed single-volume `.nii`, or the
    /// DICOM files as they are.
    pub fn next_files(&mut self) -> Option<Result<Vec<OutFile>, ReadError>> {
        let nifti = |bytes: Vec<u8>| vec![(None, bytes)];
        match &mut self.kind {
            Kind::Run(reader) => {
                let header = reader.header().clone();
                reader
                    .next_raw()
                    .map(|raw| raw.map(|raw| nifti(single_volume_nii(&header, raw))))
            }
            Kind::Files { files, next } => {
                let path = files.get(*next)?.clone();
                *next += 1;
                Some(
                    read_one(&path, self.max_voxels)
                        .map(|(h, raw)| nifti(single_volume_nii(&h, &raw))),
                )
            }
            Kind::Dicom { volumes, next } => {
                let (_, files) = volumes.get(*next)?.clone();
                *next += 1;
                Some(
                    files
                        .iter()
                        .map(|file| {
                            let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
                            std::fs::read(file)
                                .map(|bytes| (name, bytes))
                                .map_err(|source| ReadError::Io {
                                    path: file.clone(),
                                    source,
                                })
                        })
                        .collect(),
                )
            }
        }
    }
}

/// The header and stored voxel bytes of a 3-D file.
fn read_one(path: &Path, max_voxels: usize) -> Result<(Header, Vec<u8>), ReadError> {
    let raw = read_raw_volume(path, max_voxels)?;
    Ok((raw.header.clone(), raw.voxels().to_vec()))
}
