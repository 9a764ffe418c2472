//! Classic single-slice files (GE, Philips classic, Siemens XA interoperability): one 2-D image
//! per file, with what is needed to put it in its volume.
//!
//! The volume comes from the header, never the file name: `(InstanceNumber - 1) div n + 1`
//! where n is the slice count (config, else ImagesInAcquisition), else
//! TemporalPositionIdentifier, else AcquisitionNumber. Slice timing is the GE RTIA timer
//! (0021,xx5E) when present, else the acquisition time.

use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

use super::attrs::{integer, number, private_numbers, seconds_of_day, text, UnFormat};
use super::pixels::{PixelFormat, StoredPixels};
use super::stack::{Pixels, Plane, PlaneGrid};
use super::{top_level_plane, top_level_tr_s, DicomError};
use crate::ingest::Datatype;

/// One slice, ready to be grouped into its volume.
#[derive(Debug, Clone)]
pub struct Slice {
    pub instance: i64,
    /// Slices per volume, when the header says (ImagesInAcquisition).
    pub images_in_acquisition: Option<usize>,
    pub temporal_position: Option<i64>,
    pub acquisition: Option<i64>,
    pub grid: PlaneGrid,
    pub plane: Plane,
    pub thickness: f64,
    pub datatype: Datatype,
    pub tr_s: Option<f64>,
}

impl Slice {
    /// The 1-based volume this slice belongs to, given the slice count per volume if known.
    pub fn volume_index(&self, slices_per_volume: Option<usize>) -> Option<u32> {
        slice_volume_index(
            self.instance,
            slices_per_volume.or(self.images_in_acquisition),
            self.temporal_position,
            self.acquisition,
        )
    }
}

/// `(instance - 1) div per_volume + 1`, else the temporal position, else the acquisition number.
pub fn slice_volume_index(
    instance: i64,
    per_volume: Option<usize>,
    temporal_position: Option<i64>,
    acquisition: Option<i64>,
) -> Option<u32> {
    let index = match (per_volume, temporal_position) {
        (Some(n), _) if n > 0 && instance >= 1 => (instance - 1) / n as i64 + 1,
        (_, Some(t)) => t,
        _ => acquisition?,
    };
    u32::try_from(index).ok()
}

pub fn read(
    obj: &DefaultDicomObject,
    format: &PixelFormat,
    stored: &StoredPixels,
    path: &Path,
) -> Result<Slice, DicomError> {
    let invalid = |detail: String| DicomError::Invalid {
        path: path.to_owned(),
        detail,
    };
    if format.frames != 1 {
        return Err(invalid(format!(
            "{} frames without per-frame geometry; expected one slice per file",
            format.frames
        )));
    }
    let instance = integer(obj, tags::INSTANCE_NUMBER).ok_or_else(|| {
        invalid("InstanceNumber is missing; expected it to order the slices".into())
    })?;
    let (grid, position) = top_level_plane(obj, format.rows, format.cols, path)?;
    let slope = number(obj, tags::RESCALE_SLOPE).unwrap_or(1.0) as f32;
    let intercept = number(obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0) as f32;
    let n = format.frame_len();
    if stored.len() < n {
        return Err(invalid(format!(
            "{} stored values, expected {} x {}",
            stored.len(),
            format.rows,
            format.cols
        )));
    }
    let mut values = vec![0.0; n];
    stored.fill_scaled(0, slope, intercept, &mut values);
    // GE's RTIA timer. It is exactly 0 for some slices of a run's first volume (seen on DV28):
    // that volume then has no slice timing; later volumes do.
    let time_s = match private_numbers(obj, 0x0021, "GEMS_RELA_01", 0x5E, UnFormat::Text) {
        Some(rtia) => rtia.first().copied().filter(|t| *t != 0.0),
        None => text(obj, tags::ACQUISITION_TIME).and_then(|t| seconds_of_day(&t)),
    };
    Ok(Slice {
        instance,
        images_in_acquisition: integer(obj, tags::IMAGES_IN_ACQUISITION)
            .filter(|n| *n > 0)
            .map(|n| n as usize),
        temporal_position: integer(obj, tags::TEMPORAL_POSITION_IDENTIFIER),
        acquisition: integer(obj, tags::ACQUISITION_NUMBER),
        grid,
        plane: Plane {
            position,
            pixels: Pixels::Values(values),
            time_s,
        },
        thickness: number(obj, tags::SPACING_BETWEEN_SLICES)
            .or_else(|| number(obj, tags::SLICE_THICKNESS))
            .unwrap_or(1.0),
        datatype: format.datatype,
        tr_s: top_level_tr_s(obj),
    })
}
