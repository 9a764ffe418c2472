//! Typed lookups on a parsed DICOM data set: strings, numbers, sequences and private elements
//! found through their creator, each failing with the attribute's name.
//!
//! This is the only place that knows dicom-object's value API; the readers ask for "the slice
//! spacing" or "the n-th frame's position", never for VRs.

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::Tag;
use dicom_object::InMemDicomObject;

/// A data set (the file's top level or a sequence item).
pub type DataSet = InMemDicomObject;

/// A text value with padding removed, or `None` when absent or empty.
pub fn text(ds: &DataSet, tag: Tag) -> Option<String> {
    let value = ds.get(tag)?.to_str().ok()?;
    let trimmed = value.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// Every value of a multi-valued text attribute (e.g. ImageType), upper-cased.
pub fn words(ds: &DataSet, tag: Tag) -> Vec<String> {
    let Some(element) = ds.get(tag) else {
        return Vec::new();
    };
    match element.value() {
        Value::Primitive(PrimitiveValue::Strs(items)) => items
            .iter()
            .map(|s| s.trim().to_ascii_uppercase())
            .collect(),
        _ => element
            .to_str()
            .map(|s| {
                s.split('\\')
                    .map(|w| w.trim().to_ascii_uppercase())
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// All numbers of a numeric attribute (DS, IS, FD, US, ...); `None` when absent or unparsable.
pub fn numbers(ds: &DataSet, tag: Tag) -> Option<Vec<f64>> {
    let values = ds.get(tag)?.to_multi_float64().ok()?;
    (!values.is_empty() && values.iter().all(|v| v.is_finite())).then_some(values)
}

pub fn number(ds: &DataSet, tag: Tag) -> Option<f64> {
    numbers(ds, tag).and_then(|v| v.first().copied())
}

pub fn integer(ds: &DataSet, tag: Tag) -> Option<i64> {
    let value = number(ds, tag)?;
    (value.fract() == 0.0 && value.abs() < 9.0e15).then_some(value as i64)
}

/// Exactly `N` numbers, or `None`.
pub fn fixed<const N: usize>(ds: &DataSet, tag: Tag) -> Option<[f64; N]> {
    numbers(ds, tag)?.try_into().ok()
}

/// The items of a sequence attribute (empty when absent).
pub fn items(ds: &DataSet, tag: Tag) -> &[DataSet] {
    ds.get(tag).and_then(|e| e.items()).unwrap_or(&[])
}

/// The first item of a sequence attribute.
pub fn first_item(ds: &DataSet, tag: Tag) -> Option<&DataSet> {
    items(ds, tag).first()
}

/// The element `element` of the private block that `creator` reserved in `group`.
/// Implicit-VR files give private values as raw bytes (UN); the caller decodes them.
fn private<'a>(
    ds: &'a DataSet,
    group: u16,
    creator: &str,
    element: u8,
) -> Option<&'a dicom_object::mem::InMemElement> {
    // Creators are (gggg,0010)..(gggg,00FF); match them trimmed, as scanners pad differently.
    for block in 0x10u16..=0xFF {
        let Some(found) = ds.get(Tag(group, block)) else {
            continue;
        };
        let matches = found
            .to_str()
            .map(|s| s.trim_matches(|c: char| c == '\0' || c.is_whitespace()) == creator)
            .unwrap_or(false);
        if matches {
            return ds.get(Tag(group, (block << 8) | u16::from(element)));
        }
    }
    None
}

/// A private element's bytes (CSA headers).
pub fn private_bytes(ds: &DataSet, group: u16, creator: &str, element: u8) -> Option<Vec<u8>> {
    Some(
        private(ds, group, creator, element)?
            .to_bytes()
            .ok()?
            .into_owned(),
    )
}

/// A private element read as numbers: typed when the VR is known, else decoded from UN bytes
/// as `un_format` says (text for DS/IS, little-endian u16 for US, f64 for FD).
pub fn private_numbers(
    ds: &DataSet,
    group: u16,
    creator: &str,
    element: u8,
    un_format: UnFormat,
) -> Option<Vec<f64>> {
    let found = private(ds, group, creator, element)?;
    match found.value() {
        Value::Primitive(PrimitiveValue::U8(bytes)) => decode_un(bytes, un_format),
        _ => found.to_multi_float64().ok(),
    }
}

#[derive(Debug, Clone, Copy)]
pub enum UnFormat {
    Text,
    U16,
    F64,
}

fn decode_un(bytes: &[u8], format: UnFormat) -> Option<Vec<f64>> {
    match format {
        UnFormat::Text => std::str::from_utf8(bytes)
            .ok()?
            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .split('\\')
            .map(|s| s.trim().parse().ok())
            .collect(),
        UnFormat::U16 => Some(
            bytes
                .chunks_exact(2)
                .map(|c| f64::from(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        ),
        UnFormat::F64 => Some(
            bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b)
                })
                .collect(),
        ),
    }
}

/// Seconds since midnight of a DICOM TM ("HHMMSS.ffffff") or of the time part of a DT
/// ("YYYYMMDDHHMMSS.ffffff"); days are added from the date part so runs over midnight order.
pub fn seconds_of_day(value: &str) -> Option<f64> {
    let value = value.trim();
    let (date_days, time) = if value.len() >= 14 && !value[..8].contains('.') {
        let (date, time) = value.split_at(8);
        let days = date.parse::<u64>().ok()? % 100; // the day of month is enough to order
        (days as f64, time)
    } else {
        (0.0, value)
    };
    let (whole, fraction) = time.split_once('.').unwrap_or((time, ""));
    if whole.len() < 2 || !whole.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let part = |range: std::ops::Range<usize>| -> f64 {
        whole
            .get(range)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let fraction: f64 = if fraction.is_empty() {
        0.0
    } else {
        format!("0.{fraction}").parse().ok()?
    };
    Some(date_days * 86_400.0 + part(0..2) * 3600.0 + part(2..4) * 60.0 + part(4..6) + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_parse_tm_and_dt() {
        assert_eq!(
            seconds_of_day("192629"),
            Some(19.0 * 3600.0 + 26.0 * 60.0 + 29.0)
        );
        let dt = seconds_of_day("20220711120905.225000").unwrap();
        let tm = seconds_of_day("120905.225").unwrap();
        assert!((dt - 11.0 * 86_400.0 - tm).abs() < 1e-9);
        assert_eq!(seconds_of_day("x"), None);
    }

    #[test]
    fn unknown_vr_bytes_decode_as_asked() {
        assert_eq!(decode_un(&[36, 0], UnFormat::U16), Some(vec![36.0]));
        assert_eq!(decode_un(b"1.5\\2 ", UnFormat::Text), Some(vec![1.5, 2.0]));
        assert_eq!(
            decode_un(&2.5f64.to_le_bytes(), UnFormat::F64),
            Some(vec![2.5])
        );
    }
}
