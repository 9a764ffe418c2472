//! PixelData → stored values as `f32`, frame after frame, with the completeness checks a file
//! being written needs: the element is there (dicom-rs opens a file cut just before it without
//! complaint) and holds rows × columns × frames values. Rescale is the caller's: it may differ
//! per frame.
//!
//! Native transfer syntaxes (implicit/explicit little endian, explicit big endian, deflated) are
//! read straight from the parsed element; encapsulated ones go through dicom-pixeldata's pure-Rust
//! codecs (RLE, JPEG baseline/extended/lossless). Others are refused naming the syntax.

use std::path::Path;

use dicom_core::value::{PrimitiveValue, Value};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::attrs::integer;
use super::DicomError;
use crate::ingest::Datatype;

/// How the stored values are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    pub rows: usize,
    pub cols: usize,
    pub frames: usize,
    pub datatype: Datatype,
}

impl PixelFormat {
    /// Reads Rows, Columns, NumberOfFrames, BitsAllocated, PixelRepresentation and
    /// SamplesPerPixel, refusing what an fMRI volume cannot be.
    pub fn of(obj: &DefaultDicomObject, path: &Path) -> Result<PixelFormat, DicomError> {
        let invalid = |detail: String| DicomError::Invalid {
            path: path.to_owned(),
            detail,
        };
        let need = |tag, name: &str| {
            integer(obj, tag)
                .filter(|v| *v > 0)
                .ok_or_else(|| invalid(format!("{name} is missing or not a positive integer")))
        };
        let rows = need(tags::ROWS, "Rows (0028,0010)")? as usize;
        let cols = need(tags::COLUMNS, "Columns (0028,0011)")? as usize;
        let frames = integer(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize;
        let samples = integer(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
        if samples != 1 {
            return Err(invalid(format!(
                "SamplesPerPixel {samples}; expected 1 (a monochrome MR image)"
            )));
        }
        let bits = need(tags::BITS_ALLOCATED, "BitsAllocated (0028,0100)")?;
        let signed = integer(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) == 1;
        let datatype = match (bits, signed) {
            (8, false) => Datatype::U8,
            (8, true) => Datatype::I8,
            (16, false) => Datatype::U16,
            (16, true) => Datatype::I16,
            (32, false) => Datatype::U32,
            (32, true) => Datatype::I32,
            _ => {
                return Err(invalid(format!(
                    "BitsAllocated {bits}; expected 8, 16 or 32"
                )))
            }
        };
        Ok(PixelFormat {
            rows,
            cols,
            frames,
            datatype,
        })
    }

    pub fn frame_len(&self) -> usize {
        self.rows * self.cols
    }
}

/// A file's stored pixel values, before rescale: borrowed straight from the file's bytes when
/// they are native little endian at the end of the file (the common case, no copy), else decoded.
#[derive(Debug)]
pub enum StoredPixels<'a> {
    LittleEndian { bytes: &'a [u8], datatype: Datatype },
    Values(Vec<f32>),
}

impl StoredPixels<'_> {
    /// No stored pixels (every plane carries its own values).
    pub fn none() -> StoredPixels<'static> {
        StoredPixels::Values(Vec::new())
    }

    /// How many values.
    pub fn len(&self) -> usize {
        match self {
            StoredPixels::LittleEndian { bytes, datatype } => bytes.len() / datatype.size_bytes(),
            StoredPixels::Values(v) => v.len(),
        }
    }

    /// Writes values `start..start + dst.len()`, rescaled, into `dst` (the caller checks the
    /// range).
    pub fn fill_scaled(&self, start: usize, slope: f32, intercept: f32, dst: &mut [f32]) {
        let len = dst.len();
        let scale = |v: f32| v * slope + intercept;
        match self {
            StoredPixels::Values(values) => {
                for (d, &v) in dst.iter_mut().zip(&values[start..start + len]) {
                    *d = scale(v);
                }
            }
            StoredPixels::LittleEndian { bytes, datatype } => {
                let size = datatype.size_bytes();
                let raw = &bytes[start * size..(start + len) * size];
                match datatype {
                    Datatype::U16 => {
                        for (d, c) in dst.iter_mut().zip(raw.chunks_exact(2)) {
                            *d = scale(f32::from(u16::from_le_bytes([c[0], c[1]])));
                        }
                    }
                    Datatype::I16 => {
                        for (d, c) in dst.iter_mut().zip(raw.chunks_exact(2)) {
                            *d = scale(f32::from(i16::from_le_bytes([c[0], c[1]])));
                        }
                    }
                    _ => {
                        for (d, v) in dst.iter_mut().zip(from_le_bytes(raw, *datatype, len)) {
                            *d = scale(v);
                        }
                    }
                }
            }
        }
    }
}

/// The pixel bytes when the file ends with a native little-endian PixelData element of exactly
/// the size the header implies (its tag, VR and length checked byte for byte), else `None`.
pub fn native_tail<'a>(
    bytes: &'a [u8],
    obj: &DefaultDicomObject,
    format: &PixelFormat,
) -> Option<&'a [u8]> {
    const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
    const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
    let (uid, _) = transfer_syntax(obj);
    let n = format.frame_len() * format.frames * format.datatype.size_bytes();
    let at = bytes.len().checked_sub(n)?;
    let length = u32::try_from(n).ok()?.to_le_bytes();
    let tag = [0xE0, 0x7F, 0x10, 0x00];
    let header_ok = match uid.as_str() {
        EXPLICIT_LE => {
            at >= 12
                && bytes[at - 12..at - 8] == tag
                && (bytes[at - 8..at - 6] == *b"OW" || bytes[at - 8..at - 6] == *b"OB")
                && bytes[at - 6..at - 4] == [0, 0]
                && bytes[at - 4..at] == length
        }
        IMPLICIT_LE => at >= 8 && bytes[at - 8..at - 4] == tag && bytes[at - 4..at] == length,
        _ => false,
    };
    header_ok.then(|| &bytes[at..])
}

/// The transfer syntax's UID and name, for messages.
pub fn transfer_syntax(obj: &DefaultDicomObject) -> (String, &'static str) {
    let uid = obj
        .meta()
        .transfer_syntax
        .trim_end_matches(['\0', ' '])
        .to_owned();
    let name = TransferSyntaxRegistry
        .get(&uid)
        .map_or("unknown transfer syntax", |ts| ts.name());
    (uid, name)
}

/// Every stored value of every frame, as `f32` (frame after frame, row-major within a frame).
pub fn stored_values(
    obj: &DefaultDicomObject,
    format: &PixelFormat,
    path: &Path,
) -> Result<Vec<f32>, DicomError> {
    let expected = format.frame_len() * format.frames;
    let element = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| DicomError::Incomplete {
            path: path.to_owned(),
            detail: "no PixelData (7FE0,0010): the file ends before the pixels".into(),
        })?;
    let (uid, name) = transfer_syntax(obj);
    let values = match element.value() {
        Value::PixelSequence(_) => {
            let codec_ok = TransferSyntaxRegistry
                .get(&uid)
                .is_some_and(|ts| ts.can_decode_all());
            if !codec_ok {
                return Err(DicomError::UnsupportedTransferSyntax {
                    path: path.to_owned(),
                    uid,
                    name,
                });
            }
            // The codecs are another crate's; a corrupt stream has made one panic (RLE, found
            // by the fuzzer), and a panic here would end the ingest thread.
            let decoded =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| obj.decode_pixel_data()))
                    .map_err(|_| DicomError::Invalid {
                        path: path.to_owned(),
                        detail: format!(
                            "cannot decode {name} pixel data: its decoder failed (panicked)"
                        ),
                    })?
                    .map_err(|e| DicomError::Invalid {
                        path: path.to_owned(),
                        detail: format!("cannot decode {name} pixel data: {e}"),
                    })?;
            from_le_bytes(decoded.data(), format.datatype, expected)
        }
        Value::Primitive(primitive) => from_primitive(primitive, format.datatype, expected),
        Value::Sequence(_) => {
            return Err(DicomError::Invalid {
                path: path.to_owned(),
                detail: "PixelData is a sequence".into(),
            })
        }
    };
    if values.len() < expected {
        return Err(DicomError::Incomplete {
            path: path.to_owned(),
            detail: format!(
                "PixelData holds {} values, expected {} ({} rows x {} columns x {} frames)",
                values.len(),
                expected,
                format.rows,
                format.cols,
                format.frames
            ),
        });
    }
    Ok(values)
}

/// Values of a native PixelData element (already in host order where the parser typed them).
fn from_primitive(value: &PrimitiveValue, datatype: Datatype, limit: usize) -> Vec<f32> {
    let take = |n: usize| n.min(limit);
    match value {
        PrimitiveValue::U16(v) => {
            let v = &v[..take(v.len())];
            if datatype == Datatype::I16 {
                v.iter().map(|&x| f32::from(x as i16)).collect()
            } else {
                v.iter().map(|&x| f32::from(x)).collect()
            }
        }
        PrimitiveValue::I16(v) => v[..take(v.len())].iter().map(|&x| f32::from(x)).collect(),
        PrimitiveValue::U32(v) => {
            let v = &v[..take(v.len())];
            if datatype == Datatype::I32 {
                v.iter().map(|&x| x as i32 as f32).collect()
            } else {
                v.iter().map(|&x| x as f32).collect()
            }
        }
        PrimitiveValue::I32(v) => v[..take(v.len())].iter().map(|&x| x as f32).collect(),
        PrimitiveValue::U8(bytes) => from_le_bytes(bytes, datatype, limit),
        _ => Vec::new(),
    }
}

fn from_le_bytes(bytes: &[u8], datatype: Datatype, limit: usize) -> Vec<f32> {
    let size = datatype.size_bytes();
    let bytes = &bytes[..(bytes.len() / size).min(limit) * size];
    match datatype {
        Datatype::U8 => bytes.iter().map(|&b| f32::from(b)).collect(),
        Datatype::I8 => bytes.iter().map(|&b| f32::from(b as i8)).collect(),
        Datatype::U16 => bytes
            .chunks_exact(2)
            .map(|c| f32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Datatype::I16 => bytes
            .chunks_exact(2)
            .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Datatype::U32 => bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
    }
}
