//! Why a file could not be turned into a volume.
//!
//! Every message names the file and what was expected. `ReadError::is_retryable` separates the
//! errors a file still being written can cause (it may become valid later) from the ones a
//! complete file has (retrying cannot help).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: incomplete: {detail}")]
    Incomplete { path: PathBuf, detail: String },
    #[error("{path}: not a NIfTI-1 file: {detail}")]
    NotNifti { path: PathBuf, detail: String },
    #[error("{path}: corrupt or unfinished gzip stream: {detail}")]
    Gzip { path: PathBuf, detail: String },
    #[error("{path}: invalid header: {detail}")]
    BadHeader { path: PathBuf, detail: String },
    #[error(
        "{path}: header dims {dims:?} give {voxels} voxels per volume, over the limit of {limit} \
         (refused before allocating; raise ingest.max_voxels if this is real)"
    )]
    TooLarge {
        path: PathBuf,
        dims: Vec<u16>,
        voxels: u128,
        limit: usize,
    },
    #[error(
        "{path}: datatype {code} ({name}) has no f32 conversion; expected uint8, int8, int16, \
         uint16, int32, uint32, int64, uint64, float32 or float64"
    )]
    UnsupportedDatatype {
        path: PathBuf,
        code: i16,
        name: &'static str,
    },
    #[error("{path}: expected one 3-D volume per file, found {found}")]
    NotThreeD { path: PathBuf, found: String },
    #[error(transparent)]
    Dicom(#[from] super::dicom::DicomError),
}

impl ReadError {
    /// True when the file may still be in the middle of being written.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ReadError::Io { .. }
                | ReadError::Incomplete { .. }
                | ReadError::NotNifti { .. }
                | ReadError::Gzip { .. }
        ) || matches!(self, ReadError::Dicom(e) if e.is_retryable())
    }
}
