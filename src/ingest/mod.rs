//! Volumes in: from a scanner export directory to an in-order stream of typed events.
//!
//! The path of a file: `watch` notices it, `completeness` decides when it may be read,
//! `nifti_read` (with `header` and `convert`) decodes and verifies it, `service` checks its
//! geometry, and `sequencer` puts it in acquisition order with explicit missing, late, rejected
//! and duplicate records. `replay` is the other side: a scanner emulator that writes a recorded
//! run into a directory, with faults. `dicom` reads what Siemens scanners add to DICOM (so far
//! the CSA header). Nothing here preprocesses voxels.

mod completeness;
mod convert;
pub mod dicom;
mod error;
mod events;
mod header;
mod naming;
mod nifti_read;
pub mod nifti_write;
pub mod replay;
mod sequencer;
mod service;
mod volume;
mod watch;

pub use completeness::Look;
pub use convert::convert_to_f32;
pub use error::ReadError;
pub use events::{EndReason, IngestCounts, IngestEvent};
pub use header::{Header, HEADER_BYTES, NII_VOX_OFFSET};
pub use naming::{is_temporary, IndexPattern, NameClass};
pub use nifti_read::{
    companion_image, inflate_verified, read_bytes, read_raw_volume, read_volume_file, Decoded,
    FileKind, RawVolume, RunReader,
};
pub use service::{Ingest, StartError};
pub use volume::{Datatype, Geometry, Volume};
