//! The recorded run a replay plays back: a 4-D NIfTI (read volume by volume) or a folder of
//! 3-D volumes (in index order), each volume turned into the bytes of a 3-D `.nii` file that
//! keeps the source's datatype, byte order and scaling.

use std::path::{Path, PathBuf};

use crate::config::DEFAULT_PATTERN;
use crate::ingest::header::{Header, NII_VOX_OFFSET};
use crate::ingest::naming::{IndexPattern, NameClass};
use crate::ingest::nifti_read::{read_raw_volume, RunReader};
use crate::ingest::ReadError;

enum Kind {
    Run(Box<RunReader>),
    Files { files: Vec<PathBuf>, next: usize },
}

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

    /// The next volume as the bytes of an uncompressed single-volume `.nii`.
    pub fn next_file(&mut self) -> Option<Result<Vec<u8>, ReadError>> {
        match &mut self.kind {
            Kind::Run(reader) => {
                let header = reader.header().clone();
                reader
                    .next_raw()
                    .map(|raw| raw.map(|raw| single_volume_nii(&header, raw)))
            }
            Kind::Files { files, next } => {
                let path = files.get(*next)?.clone();
                *next += 1;
                Some(read_one(&path, self.max_voxels).map(|(h, raw)| single_volume_nii(&h, &raw)))
            }
        }
    }
}

/// The header and stored voxel bytes of a 3-D file.
fn read_one(path: &Path, max_voxels: usize) -> Result<(Header, Vec<u8>), ReadError> {
    let raw = read_raw_volume(path, max_voxels)?;
    Ok((raw.header.clone(), raw.voxels().to_vec()))
}
