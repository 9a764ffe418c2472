//! Siemens mosaic: one 2-D file per volume, the slices tiled row-major on a
//! `ceil(sqrt(n))` grid (trailing tiles blank).
//!
//! The slice count comes from the CSA image header's NumberOfImagesInMosaic, else the public
//! private (0019,xx0A), else the number of MosaicRefAcqTimes (de-identified files); a guess from
//! AcquisitionMatrix is only an upper bound, so it is refused. ImagePositionPatient is the corner
//! of the whole mosaic and is moved to the first tile's corner; tile m lies at
//! `T + m·Δs·SliceNormalVector` with the CSA normal (head-to-foot mosaics store slices reversed,
//! and only that vector says so).

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

use super::attrs::{number, private_bytes, private_numbers, UnFormat};
use super::csa::CsaHeader;
use super::pixels::{PixelFormat, StoredPixels};
use super::stack::{dot, stack, Pixels, Plane};
use super::{top_level_plane, top_level_tr_s, volume_index, Content, DicomError};

const CSA_CREATOR: &str = "SIEMENS CSA HEADER";
const MR_HEADER_CREATOR: &str = "SIEMENS MR HEADER";

fn csa_image_header(obj: &DefaultDicomObject) -> Option<CsaHeader> {
    let bytes = private_bytes(obj, 0x0029, CSA_CREATOR, 0x10)?;
    CsaHeader::parse(&bytes).ok()
}

/// nibabel's test: a CSA image header with a non-zero NumberOfImagesInMosaic and an
/// AcquisitionMatrixText.
pub fn has_mosaic_csa(obj: &DefaultDicomObject) -> bool {
    csa_image_header(obj).is_some_and(|csa| {
        csa.images_in_mosaic().is_some_and(|n| n > 0) && csa.text("AcquisitionMatrixText").is_some()
    })
}

pub fn read(
    obj: &DefaultDicomObject,
    format: &PixelFormat,
    stored: &StoredPixels,
    path: &Path,
) -> Result<Content, DicomError> {
    let invalid = |detail: String| DicomError::Invalid {
        path: path.to_owned(),
        detail,
    };
    let csa = csa_image_header(obj);
    let ref_times_ms = csa
        .as_ref()
        .and_then(CsaHeader::slice_times_ms)
        .or_else(|| private_numbers(obj, 0x0019, MR_HEADER_CREATOR, 0x29, UnFormat::F64));
    let n_slices = csa
        .as_ref()
        .and_then(CsaHeader::images_in_mosaic)
        .or_else(|| {
            private_numbers(obj, 0x0019, MR_HEADER_CREATOR, 0x0A, UnFormat::U16)
                .and_then(|v| v.first().copied())
                .filter(|n| *n >= 1.0)
                .map(|n| n as usize)
        })
        .or_else(|| ref_times_ms.as_ref().map(Vec::len))
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            invalid(
                "a mosaic without NumberOfImagesInMosaic (CSA or 0019,xx0A) or MosaicRefAcqTimes: \
                 the slice count is unknown"
                    .into(),
            )
        })?;
    if format.frames != 1 {
        return Err(invalid(format!(
            "a mosaic with {} frames; expected 1",
            format.frames
        )));
    }
    let grid_side = (n_slices as f64).sqrt().ceil() as usize;
    if !format.rows.is_multiple_of(grid_side) || !format.cols.is_multiple_of(grid_side) {
        return Err(invalid(format!(
            "{} x {} pixels do not divide into a {grid_side} x {grid_side} grid for {n_slices} slices",
            format.rows, format.cols
        )));
    }
    let (tile_rows, tile_cols) = (format.rows / grid_side, format.cols / grid_side);
    let (grid, ipp) = top_level_plane(obj, tile_rows, tile_cols, path)?;
    let normal = match csa.as_ref().and_then(CsaHeader::slice_normal) {
        Some(snv) => {
            let along = dot(snv, grid.normal());
            if along.abs() < 0.99 {
                return Err(invalid(format!(
                    "CSA SliceNormalVector {snv:?} is not parallel to the image plane's normal"
                )));
            }
            // The sign is the CSA's (that is the whole point); the direction is the plane's.
            grid.normal().map(|c| c * along.signum())
        }
        None => grid.normal(),
    };
    let slice_spacing = number(obj, tags::SPACING_BETWEEN_SLICES)
        .or_else(|| number(obj, tags::SLICE_THICKNESS))
        .filter(|s| *s > 0.0)
        .ok_or_else(|| invalid("neither SpacingBetweenSlices nor SliceThickness is set".into()))?;
    // IPP is the corner of the whole mosaic: move it to the corner of one tile.
    let shift_cols = (format.cols - tile_cols) as f64 / 2.0 * grid.col_spacing;
    let shift_rows = (format.rows - tile_rows) as f64 / 2.0 * grid.row_spacing;
    let corner =
        [0, 1, 2].map(|i| ipp[i] + grid.row_dir[i] * shift_cols + grid.col_dir[i] * shift_rows);
    let slope = number(obj, tags::RESCALE_SLOPE).unwrap_or(1.0) as f32;
    let intercept = number(obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0) as f32;
    let times = ref_times_ms.filter(|t| t.len() >= n_slices);
    let planes = (0..n_slices)
        .map(|m| {
            let (grid_row, grid_col) = (m / grid_side, m % grid_side);
            Plane {
                position: [0, 1, 2].map(|i| corner[i] + m as f64 * slice_spacing * normal[i]),
                pixels: Pixels::Stored {
                    first: grid_row * tile_rows * format.cols + grid_col * tile_cols,
                    row_stride: format.cols,
                    slope,
                    intercept,
                },
                time_s: times.as_ref().map(|t| t[m] / 1000.0),
            }
        })
        .collect();
    let datatype = format.datatype;
    let volume = stack(
        &grid,
        planes,
        slice_spacing,
        datatype,
        top_level_tr_s(obj),
        stored,
        path,
    )?;
    Ok(Content::Volume {
        index: volume_index(obj, path)?,
        volume,
    })
}
