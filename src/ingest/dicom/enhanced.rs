//! Enhanced MR (Siemens XA "enhanced" export): one multi-frame file per volume, geometry per
//! frame in PerFrameFunctionalGroupsSequence, falling back to the shared groups.
//!
//! Each frame's position, orientation, pixel spacing, rescale and acquisition time are read
//! here, frame by frame, and the item count is checked against NumberOfFrames: dicom-rs's own
//! per-frame rescale lookup skips frames that lack it and then reuses frame 0's value.

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

use super::attrs::{first_item, fixed, items, number, seconds_of_day, text, DataSet};
use super::pixels::{PixelFormat, StoredPixels};
use super::stack::{stack, Pixels, Plane, PlaneGrid};
use super::{top_level_tr_s, volume_index, Content, DicomError};

/// An attribute of frame `frame`'s functional group `group`, else of the shared group, else
/// (for attributes that may also be top-level) of the data set itself.
fn lookup<T>(
    obj: &DefaultDicomObject,
    frame: &DataSet,
    group: dicom_core::Tag,
    read: impl Fn(&DataSet) -> Option<T>,
) -> Option<T> {
    let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    first_item(frame, group)
        .and_then(&read)
        .or_else(|| shared.and_then(|s| first_item(s, group)).and_then(&read))
        .or_else(|| read(obj))
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
    let frames = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    if frames.len() != format.frames {
        return Err(invalid(format!(
            "PerFrameFunctionalGroupsSequence has {} items for NumberOfFrames {}; expected one \
             per frame",
            frames.len(),
            format.frames
        )));
    }
    let frame_len = format.frame_len();
    let mut grid: Option<PlaneGrid> = None;
    let mut thickness = None;
    let mut planes = Vec::with_capacity(frames.len());
    for (f, frame) in frames.iter().enumerate() {
        let missing = |what: &str| invalid(format!("frame {}: {what} is missing", f + 1));
        let position = lookup(obj, frame, tags::PLANE_POSITION_SEQUENCE, |d| {
            fixed::<3>(d, tags::IMAGE_POSITION_PATIENT)
        })
        .ok_or_else(|| missing("ImagePositionPatient"))?;
        let iop = lookup(obj, frame, tags::PLANE_ORIENTATION_SEQUENCE, |d| {
            fixed::<6>(d, tags::IMAGE_ORIENTATION_PATIENT)
        })
        .ok_or_else(|| missing("ImageOrientationPatient"))?;
        let spacing = lookup(obj, frame, tags::PIXEL_MEASURES_SEQUENCE, |d| {
            fixed::<2>(d, tags::PIXEL_SPACING)
        })
        .ok_or_else(|| missing("PixelSpacing"))?;
        let frame_grid = PlaneGrid::new(format.rows, format.cols, iop, spacing, path)?;
        match &grid {
            None => grid = Some(frame_grid),
            Some(g) if g.same_as(&frame_grid) => {}
            Some(_) => {
                return Err(invalid(format!(
                    "frame {} has another orientation or pixel spacing than frame 1; expected \
                     one slice stack per file",
                    f + 1
                )))
            }
        }
        if thickness.is_none() {
            thickness = lookup(obj, frame, tags::PIXEL_MEASURES_SEQUENCE, |d| {
                number(d, tags::SPACING_BETWEEN_SLICES).or_else(|| number(d, tags::SLICE_THICKNESS))
            });
        }
        let slope = lookup(obj, frame, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, |d| {
            number(d, tags::RESCALE_SLOPE)
        })
        .unwrap_or(1.0) as f32;
        let intercept = lookup(obj, frame, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, |d| {
            number(d, tags::RESCALE_INTERCEPT)
        })
        .unwrap_or(0.0) as f32;
        let time_s = first_item(frame, tags::FRAME_CONTENT_SEQUENCE)
            .and_then(|c| text(c, tags::FRAME_ACQUISITION_DATE_TIME))
            .and_then(|t| seconds_of_day(&t));
        planes.push(Plane {
            position,
            pixels: Pixels::Stored {
                first: f * frame_len,
                row_stride: format.cols,
                slope,
                intercept,
            },
            time_s,
        });
    }
    let grid = grid.ok_or_else(|| invalid("no frames".into()))?;
    let shared = first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let tr_s = shared
        .and_then(|s| first_item(s, tags::MR_TIMING_AND_RELATED_PARAMETERS_SEQUENCE))
        .or_else(|| {
            frames
                .first()
                .and_then(|f| first_item(f, tags::MR_TIMING_AND_RELATED_PARAMETERS_SEQUENCE))
        })
        .and_then(|t| number(t, tags::REPETITION_TIME))
        .filter(|ms| *ms > 0.0)
        .map(|ms| ms / 1000.0)
        .or_else(|| top_level_tr_s(obj));
    let volume = stack(
        &grid,
        planes,
        thickness.unwrap_or(1.0),
        format.datatype,
        tr_s,
        stored,
        path,
    )?;
    Ok(Content::Volume {
        index: volume_index(obj, path)?,
        volume,
    })
}
