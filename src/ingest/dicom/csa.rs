//! The Siemens CSA private header ((0029,1010) image, (0029,1020) series): the one place a
//! Siemens mosaic says how many slices it tiles, which way they run (`SliceNormalVector`) and
//! when each was acquired (`MosaicRefAcqTimes`). No crate reads it, so this is hand-written from
//! the format nibabel documents (`siemens_csa.rst`), bounded the same way: at most
//! `MAX_ITEMS` tags and items per tag, every length checked against the buffer, never a panic
//! on hostile bytes. Both layouts: CSA2 (starts `SV10`) and the older CSA1.
//!
//! It only parses the header's bytes; finding them in a DICOM file and using them for geometry
//! belong to the DICOM readers.

use std::collections::BTreeMap;

/// nibabel's bound on tags and on items per tag (`MAX_CSA_ITEMS`).
pub const MAX_ITEMS: usize = 1000;

/// The fixed size of a tag's description: name[64], vm, vr[4], syngodt, n_items, xx.
const TAG_BYTES: usize = 64 + 4 + 4 + 4 + 4 + 4;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CsaError {
    #[error("CSA header cut short: {what} at byte {at} needs {need} bytes, the header has {len}")]
    Short {
        what: String,
        at: usize,
        need: usize,
        len: usize,
    },
    #[error("CSA header: {count} {what}, expected 1 to {MAX_ITEMS}")]
    TooMany { what: String, count: i64 },
}

/// One tag: its name, value representation and items (the values, as text).
#[derive(Debug, Clone, PartialEq)]
pub struct CsaTag {
    pub vm: i32,
    pub vr: String,
    pub syngodt: i32,
    pub items: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CsaHeader {
    /// 1 (CSA1) or 2 (CSA2, `SV10`).
    pub version: u8,
    pub tags: BTreeMap<String, CsaTag>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CsaError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(CsaError::Short {
                what: what.into(),
                at: self.at,
                need: n,
                len: self.bytes.len(),
            });
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn i32(&mut self, what: &str) -> Result<i32, CsaError> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Text up to the first NUL, trimmed (names and values are NUL-terminated, space-padded).
fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

fn count(value: i32, what: &str) -> Result<usize, CsaError> {
    usize::try_from(value)
        .ok()
        .filter(|&n| n <= MAX_ITEMS)
        .ok_or(CsaError::TooMany {
            what: what.into(),
            count: value.into(),
        })
}

/// Value representations whose items are numbers: an empty item ends their values.
fn numeric(vr: &str) -> bool {
    matches!(vr, "DS" | "FD" | "FL" | "IS" | "SL" | "SS" | "UL" | "US")
}

impl CsaHeader {
    pub fn parse(bytes: &[u8]) -> Result<CsaHeader, CsaError> {
        let mut r = Reader { bytes, at: 0 };
        let version = if bytes.starts_with(b"SV10") {
            r.take(8, "the SV10 signature")?;
            2
        } else {
            1
        };
        let n_tags = r.i32("the tag count")?;
        r.i32("the check word")?;
        let n_tags = count(n_tags, "tags")?;
        if n_tags == 0 {
            return Err(CsaError::TooMany {
                what: "tags".into(),
                count: 0,
            });
        }
        let mut tags = BTreeMap::new();
        // CSA1 item lengths are offset by the item count of the second tag (nibabel's reading).
        let mut csa1_offset = 0i64;
        for tag_no in 0..n_tags {
            let what = format!("tag {tag_no}");
            let fixed = r.take(TAG_BYTES, &what)?;
            let name = text(&fixed[..64]);
            let field = |at: usize| {
                i32::from_le_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]])
            };
            let vm = field(64);
            let vr = text(&fixed[68..72]);
            let syngodt = field(72);
            let n_items = count(field(76), &format!("items in {name}"))?;
            if tag_no <= 1 {
                csa1_offset = n_items as i64;
            }
            let n_values = if vm == 0 { n_items } else { vm.max(0) as usize };
            let mut values = n_values;
            let mut items = Vec::new();
            for item_no in 0..n_items {
                let x: [i32; 4] = [r.i32(&what)?, r.i32(&what)?, r.i32(&what)?, r.i32(&what)?];
                let len = if version == 2 {
                    x[1] as i64
                } else {
                    x[0] as i64 - csa1_offset
                };
                let remaining = (bytes.len() - r.at) as i64;
                if len < 0 || len > remaining {
                    if version == 1 {
                        // CSA1 ends a tag's items at the first impossible length.
                        break;
                    }
                    return Err(CsaError::Short {
                        what: format!("item {item_no} of {name}"),
                        at: r.at,
                        need: len.max(0) as usize,
                        len: bytes.len(),
                    });
                }
                let len = len as usize;
                let value = r.take(len, &what)?;
                // Each item is padded to a 4-byte boundary.
                let pad = (4 - len % 4) % 4;
                r.at = (r.at + pad).min(bytes.len());
                if item_no >= values {
                    continue;
                }
                if numeric(&vr) && len == 0 {
                    values = item_no;
                    continue;
                }
                items.push(text(value));
            }
            tags.insert(
                name,
                CsaTag {
                    vm,
                    vr,
                    syngodt,
                    items,
                },
            );
        }
        Ok(CsaHeader { version, tags })
    }

    pub fn items(&self, name: &str) -> Option<&[String]> {
        self.tags.get(name).map(|t| t.items.as_slice())
    }

    /// The first item as text, when there is one.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.items(name)?.first().map(String::as_str)
    }

    /// Every item as a number; `None` when absent, empty, or not all numbers.
    pub fn numbers(&self, name: &str) -> Option<Vec<f64>> {
        let items = self.items(name)?;
        let values: Option<Vec<f64>> = items.iter().map(|v| v.parse().ok()).collect();
        values.filter(|v| !v.is_empty())
    }

    /// `NumberOfImagesInMosaic`: the slices a mosaic tiles (absent or 0: not a mosaic).
    pub fn images_in_mosaic(&self) -> Option<usize> {
        let n = *self.numbers("NumberOfImagesInMosaic")?.first()?;
        (n >= 1.0 && n.fract() == 0.0).then_some(n as usize)
    }

    /// `SliceNormalVector`: the direction the mosaic's slices are stacked along (unit length).
    pub fn slice_normal(&self) -> Option<[f64; 3]> {
        match self.numbers("SliceNormalVector")?.as_slice() {
            &[x, y, z] => Some([x, y, z]),
            _ => None,
        }
    }

    /// `MosaicRefAcqTimes`: each slice's acquisition time within the TR, ms.
    pub fn slice_times_ms(&self) -> Option<Vec<f64>> {
        self.numbers("MosaicRefAcqTimes")
    }

    /// `ICE_Dims`, split at `_`.
    pub fn ice_dims(&self) -> Option<Vec<String>> {
        Some(
            self.text("ICE_Dims")?
                .split('_')
                .map(str::to_string)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CSA2 header with the given tags (name, vr, items).
    fn csa2(tags: &[(&str, &str, &[&str])]) -> Vec<u8> {
        let mut b = b"SV10\x04\x03\x02\x01".to_vec();
        b.extend((tags.len() as i32).to_le_bytes());
        b.extend(77i32.to_le_bytes());
        for (name, vr, items) in tags {
            let mut n = [0u8; 64];
            n[..name.len()].copy_from_slice(name.as_bytes());
            b.extend(n);
            b.extend((items.len() as i32).to_le_bytes()); // vm
            let mut v = [0u8; 4];
            v[..vr.len()].copy_from_slice(vr.as_bytes());
            b.extend(v);
            b.extend(3i32.to_le_bytes()); // syngodt
            b.extend((items.len() as i32).to_le_bytes());
            b.extend(77i32.to_le_bytes());
            for item in *items {
                let len = item.len() as i32 + 1; // NUL-terminated
                for x in [len, len, 77, len] {
                    b.extend(x.to_le_bytes());
                }
                b.extend(item.as_bytes());
                b.push(0);
                b.extend(std::iter::repeat_n(0, (4 - len as usize % 4) % 4));
            }
        }
        b
    }

    #[test]
    fn reads_a_built_header_and_its_mosaic_fields() {
        let bytes = csa2(&[
            ("NumberOfImagesInMosaic", "US", &["36"]),
            ("SliceNormalVector", "FD", &["0.0", "0.1736", "0.9848"]),
            ("MosaicRefAcqTimes", "FD", &["0", "1000.5", "500"]),
            ("ICE_Dims", "LO", &["X_1_1_1_1_1_1_36"]),
        ]);
        let h = CsaHeader::parse(&bytes).unwrap();
        assert_eq!(h.version, 2);
        assert_eq!(h.images_in_mosaic(), Some(36));
        assert_eq!(h.slice_normal(), Some([0.0, 0.1736, 0.9848]));
        assert_eq!(h.slice_times_ms(), Some(vec![0.0, 1000.5, 500.0]));
        assert_eq!(h.ice_dims().unwrap().len(), 8);
        assert_eq!(h.tags["SliceNormalVector"].syngodt, 3);
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let bytes = csa2(&[
            ("NumberOfImagesInMosaic", "US", &["36"]),
            ("SliceNormalVector", "FD", &["0", "0", "1"]),
        ]);
        // The last item, "1" and its NUL, is followed by two bytes of padding: only those may go.
        let whole = CsaHeader::parse(&bytes).unwrap();
        for cut in 0..bytes.len() {
            match CsaHeader::parse(&bytes[..cut]) {
                Ok(h) => assert!(cut >= bytes.len() - 2 && h == whole, "cut at {cut}"),
                Err(_) => assert!(cut < bytes.len() - 2, "cut at {cut}"),
            }
        }
        // Garbage of every kind parses or errs, without a panic.
        let mut state = 12345u32;
        for _ in 0..2000 {
            let mut junk = bytes.clone();
            for _ in 0..4 {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let at = (state as usize) % junk.len();
                junk[at] = (state >> 16) as u8;
            }
            let _ = CsaHeader::parse(&junk);
        }
    }

    #[test]
    fn too_many_tags_or_items_are_refused() {
        let mut bytes = csa2(&[("A", "IS", &["1"])]);
        bytes[8..12].copy_from_slice(&1001i32.to_le_bytes());
        assert!(matches!(
            CsaHeader::parse(&bytes),
            Err(CsaError::TooMany { count: 1001, .. })
        ));
    }
}
