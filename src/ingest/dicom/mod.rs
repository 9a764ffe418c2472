//! DICOM from the scanner: one file → a whole volume (Siemens mosaic, Siemens XA enhanced) or
//! one slice of a volume (GE, Philips classic, Siemens XA interoperability), with the same
//! `Volume` geometry the NIfTI path gives.
//!
//! `read_file` opens and verifies a file (parsed, PixelData present and complete) and hands it to
//! the reader of its layout: `mosaic` (with the `csa` header), `enhanced`, `classic`. All three
//! end in `stack`, which fixes the axis convention. `assemble` groups single slices into volumes
//! as they arrive; `series` scans an export folder (for `inspect`, `convert`, replays and
//! `ingest.series`). Nothing here watches folders or orders volumes: that is the ingest service.

mod assemble;
mod attrs;
mod classic;
pub mod convert;
pub mod csa;
mod enhanced;
mod lengths;
mod mosaic;
mod pixels;
pub mod series;
mod stack;

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use serde::Serialize;

pub use assemble::{AssembleSettings, Assembled, SliceAssembler};
pub use classic::Slice;
pub use series::{
    choose, read_series, scan_folder, summarize, ScannedSeries, SeriesChoice, SeriesSummary,
    SeriesVolume,
};
pub use stack::{PlaneGrid, Stacked};

use attrs::{integer, text, words};

/// Why a DICOM file gave no volume or slice.
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Cut short, or still being written: it may become valid.
    #[error("{path}: incomplete DICOM: {detail}")]
    Incomplete { path: PathBuf, detail: String },
    #[error("{path}: not a DICOM file: {detail}")]
    NotDicom { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error(
        "{path}: transfer syntax {uid} ({name}) cannot be decoded here; expected implicit or \
         explicit VR little endian, explicit big endian, deflate, RLE or JPEG (baseline, \
         extended, lossless). Ask the scanner for uncompressed export"
    )]
    UnsupportedTransferSyntax {
        path: PathBuf,
        uid: String,
        name: &'static str,
    },
    #[error(
        "{path}: {voxels} voxels per volume, over the limit of {limit} (raise ingest.max_voxels \
         if this is real)"
    )]
    TooLarge {
        path: PathBuf,
        voxels: usize,
        limit: usize,
    },
}

impl DicomError {
    /// True when the file may still be in the middle of being written.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DicomError::Io { .. } | DicomError::Incomplete { .. })
    }
}

/// How a series stores its volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Siemens classic: one 2-D file per volume, slices tiled.
    Mosaic,
    /// Enhanced MR: one multi-frame file per volume.
    Enhanced,
    /// One file per slice.
    SingleSlice,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Mosaic => "Siemens mosaic",
            Layout::Enhanced => "enhanced multi-frame",
            Layout::SingleSlice => "single-slice",
        }
    }
}

/// What identifies a file's series, and what `ingest.series` is matched against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SeriesKey {
    pub number: Option<i64>,
    pub uid: String,
}

/// Header facts of one file, read before (or without) its pixels.
#[derive(Debug, Clone, Serialize)]
pub struct FileHeader {
    pub key: SeriesKey,
    pub description: String,
    pub manufacturer: String,
    pub image_type: Vec<String>,
    pub layout: Layout,
    pub instance: Option<i64>,
    pub images_in_acquisition: Option<usize>,
    pub temporal_position: Option<i64>,
    pub acquisition: Option<i64>,
    /// ImagePositionPatient (single-slice files: tells repeated slice stacks apart).
    pub position: Option<[f64; 3]>,
    /// Whether the header says this series is a time series (fMRI-like).
    pub looks_like_fmri: bool,
}

impl FileHeader {
    /// The 1-based volume this file is (or belongs to), from the header alone.
    pub fn volume_index(&self, slices_per_volume: Option<usize>) -> Option<u32> {
        match self.layout {
            Layout::Mosaic | Layout::Enhanced => self
                .instance
                .or(self.acquisition)
                .and_then(|i| u32::try_from(i).ok()),
            Layout::SingleSlice => classic::slice_volume_index(
                self.instance?,
                slices_per_volume.or(self.images_in_acquisition),
                self.temporal_position,
                self.acquisition,
            ),
        }
    }
}

/// The content of one file.
#[derive(Debug, Clone)]
pub enum Content {
    /// A whole volume with its acquisition index (1-based, from the header).
    Volume {
        index: u32,
        volume: Stacked,
    },
    Slice(Slice),
}

#[derive(Debug, Clone)]
pub struct DicomFile {
    pub header: FileHeader,
    pub content: Content,
}

/// Parses `bytes` (a whole file). Truncated or unparsable files are `Incomplete`: the writer
/// may not be done.
fn parse(bytes: &[u8], path: &Path, header_only: bool) -> Result<DefaultDicomObject, DicomError> {
    if bytes.len() < 132 {
        return Err(DicomError::Incomplete {
            path: path.to_owned(),
            detail: format!("{} bytes, shorter than the 132-byte preamble", bytes.len()),
        });
    }
    if &bytes[128..132] != b"DICM" {
        return Err(if bytes[..132].iter().all(|&b| b == 0) {
            DicomError::Incomplete {
                path: path.to_owned(),
                detail: "the first 132 bytes are zero (pre-allocated, not yet written)".into(),
            }
        } else {
            DicomError::NotDicom {
                path: path.to_owned(),
                detail: "no 'DICM' marker at byte 128 (expected a DICOM Part 10 file)".into(),
            }
        });
    }
    // Declared lengths checked first: the parser allocates them before reading.
    lengths::check(&bytes[132..]).map_err(|problem| DicomError::Incomplete {
        path: path.to_owned(),
        detail: problem.0,
    })?;
    let mut options = OpenFileOptions::new().read_preamble(dicom_object::file::ReadPreamble::Never);
    if header_only {
        options = options.read_until(tags::PIXEL_DATA);
    }
    options
        .from_reader(&bytes[128..])
        .map_err(|e| DicomError::Incomplete {
            path: path.to_owned(),
            detail: format!("cannot parse: {e}"),
        })
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, DicomError> {
    std::fs::read(path).map_err(|source| DicomError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The header facts of a file, without decoding pixels.
pub fn read_header(path: &Path) -> Result<FileHeader, DicomError> {
    let bytes = read_bytes(path)?;
    let obj = parse(&bytes, path, true)?;
    Ok(file_header(&obj))
}

/// Reads, verifies and decodes one file.
pub fn read_file(path: &Path, max_voxels: usize) -> Result<DicomFile, DicomError> {
    let bytes = read_bytes(path)?;
    read_bytes_of(&bytes, path, max_voxels)
}

/// As `read_file`, for bytes already in memory (`path` names them in messages).
pub fn read_bytes_of(
    bytes: &[u8],
    path: &Path,
    max_voxels: usize,
) -> Result<DicomFile, DicomError> {
    // The header alone, and the pixels straight from the bytes when they are native little
    // endian and complete: one copy from the file into the volume.
    let header_obj = parse(bytes, path, true)?;
    let fast = pixels::PixelFormat::of(&header_obj, path)
        .ok()
        .and_then(|format| Some((format, pixels::native_tail(bytes, &header_obj, &format)?)));
    let (obj, format, stored) = match fast {
        Some((format, raw)) => {
            check_size(&format, path, max_voxels)?;
            let stored = pixels::StoredPixels::LittleEndian {
                bytes: raw,
                datatype: format.datatype,
            };
            (header_obj, format, stored)
        }
        None => {
            let obj = parse(bytes, path, false)?;
            // A file cut at an element boundary parses, and then lacks what follows the cut.
            if obj.get(tags::PIXEL_DATA).is_none() {
                return Err(DicomError::Incomplete {
                    path: path.to_owned(),
                    detail: "no PixelData (7FE0,0010): the file ends before the pixels".into(),
                });
            }
            let format = pixels::PixelFormat::of(&obj, path)?;
            check_size(&format, path, max_voxels)?;
            let values = pixels::stored_values(&obj, &format, path)?;
            (obj, format, pixels::StoredPixels::Values(values))
        }
    };
    let header = file_header(&obj);
    let content = match header.layout {
        Layout::Mosaic => mosaic::read(&obj, &format, &stored, path)?,
        Layout::Enhanced => enhanced::read(&obj, &format, &stored, path)?,
        Layout::SingleSlice => Content::Slice(classic::read(&obj, &format, &stored, path)?),
    };
    Ok(DicomFile { header, content })
}

fn check_size(
    format: &pixels::PixelFormat,
    path: &Path,
    max_voxels: usize,
) -> Result<(), DicomError> {
    let voxels = format.frame_len() * format.frames;
    if voxels > max_voxels {
        return Err(DicomError::TooLarge {
            path: path.to_owned(),
            voxels,
            limit: max_voxels,
        });
    }
    Ok(())
}

/// The stored pixel values of any DICOM image, every frame, without geometry or rescale
/// (rows, columns, frames, values): for checking decoders.
pub fn read_pixels(path: &Path) -> Result<(usize, usize, usize, Vec<f32>), DicomError> {
    let bytes = read_bytes(path)?;
    let obj = parse(&bytes, path, false)?;
    let format = pixels::PixelFormat::of(&obj, path)?;
    let values = pixels::stored_values(&obj, &format, path)?;
    Ok((format.rows, format.cols, format.frames, values))
}

const ENHANCED_MR: &str = "1.2.840.10008.5.1.4.1.1.4.1";

fn file_header(obj: &DefaultDicomObject) -> FileHeader {
    let image_type = words(obj, tags::IMAGE_TYPE);
    let sop_class = text(obj, tags::SOP_CLASS_UID).unwrap_or_default();
    let multi_frame = sop_class == ENHANCED_MR
        || obj
            .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .is_some();
    let layout = if multi_frame {
        Layout::Enhanced
    } else if image_type.iter().any(|w| w == "MOSAIC") || mosaic::has_mosaic_csa(obj) {
        Layout::Mosaic
    } else {
        Layout::SingleSlice
    };
    let temporal_positions = integer(obj, tags::NUMBER_OF_TEMPORAL_POSITIONS).unwrap_or(0);
    let fmri_word = image_type.iter().any(|w| w == "FMRI" || w == "EPI");
    let looks_like_fmri = match layout {
        Layout::Mosaic => true,
        Layout::Enhanced => fmri_word || temporal_positions > 1,
        Layout::SingleSlice => temporal_positions > 1 || fmri_word,
    };
    FileHeader {
        key: SeriesKey {
            number: integer(obj, tags::SERIES_NUMBER),
            uid: text(obj, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        },
        description: text(obj, tags::SERIES_DESCRIPTION).unwrap_or_default(),
        manufacturer: text(obj, tags::MANUFACTURER).unwrap_or_default(),
        image_type,
        layout,
        instance: integer(obj, tags::INSTANCE_NUMBER),
        images_in_acquisition: integer(obj, tags::IMAGES_IN_ACQUISITION)
            .filter(|n| *n > 0)
            .map(|n| n as usize),
        temporal_position: integer(obj, tags::TEMPORAL_POSITION_IDENTIFIER),
        acquisition: integer(obj, tags::ACQUISITION_NUMBER),
        position: attrs::fixed::<3>(obj, tags::IMAGE_POSITION_PATIENT),
        looks_like_fmri,
    }
}

/// Whether a file name may be DICOM: `.dcm`, `.ima`, `.dicom`, no extension, or a numeric one
/// (GE's `i123.MRDC.4`). Temporary names are excluded by the caller.
pub fn is_dicom_name(name: &str) -> bool {
    let Some((_, ext)) = name.rsplit_once('.') else {
        return true;
    };
    let ext = ext.to_ascii_lowercase();
    matches!(ext.as_str(), "dcm" | "ima" | "dicom") || ext.chars().all(|c| c.is_ascii_digit())
}

/// The index a whole-volume file carries: InstanceNumber, else AcquisitionNumber.
fn volume_index(obj: &DefaultDicomObject, path: &Path) -> Result<u32, DicomError> {
    integer(obj, tags::INSTANCE_NUMBER)
        .or_else(|| integer(obj, tags::ACQUISITION_NUMBER))
        .filter(|&i| i >= 0 && i <= i64::from(u32::MAX))
        .map(|i| i as u32)
        .ok_or_else(|| DicomError::Invalid {
            path: path.to_owned(),
            detail: "neither InstanceNumber nor AcquisitionNumber gives the volume's index".into(),
        })
}

/// The in-plane grid (rows x cols) and the first voxel's position from the top-level
/// ImageOrientationPatient, PixelSpacing and ImagePositionPatient (mosaic and single slices).
fn top_level_plane(
    obj: &DefaultDicomObject,
    rows: usize,
    cols: usize,
    path: &Path,
) -> Result<(PlaneGrid, [f64; 3]), DicomError> {
    let missing = |name: &str| DicomError::Invalid {
        path: path.to_owned(),
        detail: format!("{name} is missing"),
    };
    let iop = attrs::fixed::<6>(obj, tags::IMAGE_ORIENTATION_PATIENT)
        .ok_or_else(|| missing("ImageOrientationPatient"))?;
    let spacing =
        attrs::fixed::<2>(obj, tags::PIXEL_SPACING).ok_or_else(|| missing("PixelSpacing"))?;
    let position = attrs::fixed::<3>(obj, tags::IMAGE_POSITION_PATIENT)
        .ok_or_else(|| missing("ImagePositionPatient"))?;
    Ok((PlaneGrid::new(rows, cols, iop, spacing, path)?, position))
}

/// TR in seconds from RepetitionTime (ms) at the top level.
fn top_level_tr_s(obj: &DefaultDicomObject) -> Option<f64> {
    attrs::number(obj, tags::REPETITION_TIME)
        .filter(|ms| *ms > 0.0)
        .map(|ms| ms / 1000.0)
}
