//! A walk over a DICOM file's element headers, before the real parser sees it: every declared
//! length must fit in the bytes that remain, and sequences may nest only so deep. The parser
//! (`dicom-parser`) reserves and zero-fills a value's declared length before reading it, so a
//! file of a few KB declaring a 4 GB element (a corrupt or half-written export) would take
//! seconds and gigabytes, and nested sequences without end could exhaust the stack; the
//! fuzzer found the first. This reads no values except the transfer syntax UID.
//!
//! Not a parser: it checks lengths and nesting only, and trusts the real parser for the rest.

/// Deeper nesting than any scanner writes (enhanced MR files reach about 5).
const MAX_DEPTH: usize = 32;
const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);

const IMPLICIT_LITTLE: &str = "1.2.840.10008.1.2";
const EXPLICIT_BIG: &str = "1.2.840.10008.1.2.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// Why a file's lengths do not hold.
#[derive(Debug, PartialEq, Eq)]
pub struct LengthProblem(pub String);

#[derive(Clone, Copy)]
struct Encoding {
    explicit: bool,
    big_endian: bool,
}

struct Walker<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Walker<'_> {
    fn u16(&self, at: usize, big: bool) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: usize, big: bool) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn short(&self, what: &str) -> LengthProblem {
        LengthProblem(format!(
            "{what} at byte {} runs past the end ({} bytes)",
            self.pos + 132,
            self.bytes.len() + 132
        ))
    }

    /// One element header: its tag, its value's length and whether it is a sequence.
    fn header(&mut self, e: Encoding) -> Result<((u16, u16), u32, bool), LengthProblem> {
        let at = self.pos;
        let group = self
            .u16(at, e.big_endian)
            .ok_or_else(|| self.short("a tag"))?;
        let element = self
            .u16(at + 2, e.big_endian)
            .ok_or_else(|| self.short("a tag"))?;
        let tag = (group, element);
        // Items and delimiters have no VR, in every encoding.
        if group == 0xFFFE || !e.explicit {
            let len = self
                .u32(at + 4, e.big_endian)
                .ok_or_else(|| self.short("a length"))?;
            self.pos = at + 8;
            return Ok((tag, len, len == UNDEFINED));
        }
        let vr = self
            .bytes
            .get(at + 4..at + 6)
            .ok_or_else(|| self.short("a VR"))?;
        // A VR outside the 2-byte-length list is read with a 4-byte length, as the parser
        // reads an unknown VR (as UN).
        let short = matches!(
            vr,
            b"AE"
                | b"AS"
                | b"AT"
                | b"CS"
                | b"DA"
                | b"DS"
                | b"DT"
                | b"FL"
                | b"FD"
                | b"IS"
                | b"LO"
                | b"LT"
                | b"PN"
                | b"SH"
                | b"SL"
                | b"SS"
                | b"ST"
                | b"TM"
                | b"UI"
                | b"UL"
                | b"US"
        );
        let long = !short;
        let sequence = vr == b"SQ";
        if long {
            let len = self
                .u32(at + 8, e.big_endian)
                .ok_or_else(|| self.short("a length"))?;
            self.pos = at + 12;
            Ok((tag, len, sequence || len == UNDEFINED))
        } else {
            let len = self
                .u16(at + 6, e.big_endian)
                .ok_or_else(|| self.short("a length"))?;
            self.pos = at + 8;
            Ok((tag, u32::from(len), false))
        }
    }

    /// Skips `len` bytes after checking they are there.
    fn skip(&mut self, tag: (u16, u16), len: u32) -> Result<(), LengthProblem> {
        let remaining = self.bytes.len() - self.pos;
        if len as usize > remaining {
            return Err(LengthProblem(format!(
                "element ({:04X},{:04X}) at byte {} declares {len} bytes where {remaining} \
                 remain",
                tag.0,
                tag.1,
                self.pos + 132
            )));
        }
        self.pos += len as usize;
        Ok(())
    }

    /// Elements until `end` (a byte position), or until `stop` is read when `end` is `None`.
    fn data_set(
        &mut self,
        e: Encoding,
        end: Option<usize>,
        stop: Option<(u16, u16)>,
        depth: usize,
    ) -> Result<(), LengthProblem> {
        if depth > MAX_DEPTH {
            return Err(LengthProblem(format!(
                "sequences nested deeper than {MAX_DEPTH} at byte {}",
                self.pos + 132
            )));
        }
        loop {
            match end {
                Some(end) if self.pos >= end => return Ok(()),
                None if self.pos >= self.bytes.len() => {
                    return Err(self.short("an item without its end"))
                }
                _ => {}
            }
            let (tag, len, sequence) = self.header(e)?;
            if Some(tag) == stop {
                return Ok(());
            }
            if sequence && len == UNDEFINED {
                self.items(e, tag == PIXEL_DATA, depth + 1)?;
            } else if sequence {
                let start = self.pos;
                self.skip(tag, len)?;
                self.pos = start;
                self.items_until(e, start + len as usize, depth + 1)?;
                self.pos = start + len as usize;
            } else {
                self.skip(tag, len)?;
            }
        }
    }

    /// Items of an undefined-length element, until its sequence delimiter.
    fn items(&mut self, e: Encoding, fragments: bool, depth: usize) -> Result<(), LengthProblem> {
        loop {
            let (tag, len, _) = self.header(Encoding {
                explicit: false,
                ..e
            })?;
            match tag {
                SEQUENCE_END => return Ok(()),
                ITEM if fragments => self.skip(tag, len)?,
                ITEM => self.item(e, len, depth)?,
                _ => {
                    return Err(LengthProblem(format!(
                        "({:04X},{:04X}) where a sequence item was expected, at byte {}",
                        tag.0,
                        tag.1,
                        self.pos + 132
                    )))
                }
            }
        }
    }

    /// Items of a defined-length sequence ending at `end`.
    fn items_until(&mut self, e: Encoding, end: usize, depth: usize) -> Result<(), LengthProblem> {
        while self.pos < end {
            let (tag, len, _) = self.header(Encoding {
                explicit: false,
                ..e
            })?;
            if tag != ITEM {
                // Not items (a malformed sequence): its length was checked, that is enough.
                self.pos = end;
                return Ok(());
            }
            self.item(e, len, depth)?;
        }
        Ok(())
    }

    fn item(&mut self, e: Encoding, len: u32, depth: usize) -> Result<(), LengthProblem> {
        if len == UNDEFINED {
            return self.data_set(e, None, Some(ITEM_END), depth);
        }
        let start = self.pos;
        self.skip(ITEM, len)?;
        let end = self.pos;
        self.pos = start;
        self.data_set(e, Some(end), None, depth)?;
        self.pos = end;
        Ok(())
    }
}

/// Checks the lengths of a Part 10 file's elements; `bytes` starts after "DICM".
pub fn check(bytes: &[u8]) -> Result<(), LengthProblem> {
    let mut w = Walker { bytes, pos: 0 };
    let meta = Encoding {
        explicit: true,
        big_endian: false,
    };
    let mut syntax = String::new();
    // The file meta group: explicit VR little endian, always.
    while w.u16(w.pos, false) == Some(0x0002) {
        let (tag, len, _) = w.header(meta)?;
        let start = w.pos;
        w.skip(tag, len)?;
        if tag == (0x0002, 0x0010) {
            syntax = String::from_utf8_lossy(&bytes[start..w.pos])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
    }
    let e = match syntax.as_str() {
        // Compressed as a whole: the lengths are those of the inflated data set.
        DEFLATED => return check_deflated(&bytes[w.pos..]),
        IMPLICIT_LITTLE => Encoding {
            explicit: false,
            big_endian: false,
        },
        EXPLICIT_BIG => Encoding {
            explicit: true,
            big_endian: true,
        },
        _ => Encoding {
            explicit: true,
            big_endian: false,
        },
    };
    w.data_set(e, Some(bytes.len()), None, 0)
}

/// The inflated data set of a deflated file, at most this large (an fMRI file is a few MB).
const MAX_INFLATED: u64 = 1 << 30;

fn check_deflated(compressed: &[u8]) -> Result<(), LengthProblem> {
    use std::io::Read;
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(compressed)
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| LengthProblem(format!("the deflated data set does not inflate: {e}")))?;
    if inflated.len() as u64 > MAX_INFLATED {
        return Err(LengthProblem(format!(
            "the deflated data set inflates past {} MiB",
            MAX_INFLATED >> 20
        )));
    }
    let mut w = Walker {
        bytes: &inflated,
        pos: 0,
    };
    let e = Encoding {
        explicit: true,
        big_endian: false,
    };
    w.data_set(e, Some(inflated.len()), None, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Explicit VR little endian element bytes.
    fn element(group: u16, el: u16, vr: &[u8; 2], value: &[u8], declared: Option<u32>) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(group.to_le_bytes());
        out.extend(el.to_le_bytes());
        out.extend(vr);
        let len = declared.unwrap_or(value.len() as u32);
        if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
            out.extend([0, 0]);
            out.extend(len.to_le_bytes());
        } else {
            out.extend((len as u16).to_le_bytes());
        }
        out.extend(value);
        out
    }

    fn file(body: &[u8]) -> Vec<u8> {
        let uid = b"1.2.840.10008.1.2.1\0";
        let mut out = element(0x0002, 0x0010, b"UI", uid, None);
        out.extend(body);
        out
    }

    #[test]
    fn a_sound_file_passes_and_a_huge_declared_length_is_refused() {
        let rows = element(0x0028, 0x0010, b"US", &64u16.to_le_bytes(), None);
        let pixels = element(0x7FE0, 0x0010, b"OW", &[0u8; 16], None);
        assert_eq!(check(&file(&[rows.clone(), pixels].concat())), Ok(()));
        let huge = element(0x7FE0, 0x0010, b"OW", &[0u8; 16], Some(400_000_000));
        let err = check(&file(&[rows, huge].concat())).expect_err("refused");
        assert!(err.0.contains("(7FE0,0010)") && err.0.contains("declares 400000000 bytes"));
    }

    #[test]
    fn sequences_are_walked_and_endless_nesting_is_refused() {
        // An undefined-length sequence with one undefined-length item holding one element.
        let inner = element(0x0020, 0x0032, b"DS", b"1\\2\\3 ", None);
        let mut seq = element(0x5200, 0x9230, b"SQ", &[], Some(UNDEFINED));
        seq.extend([0xFE, 0xFF, 0x00, 0xE0]);
        seq.extend(UNDEFINED.to_le_bytes());
        seq.extend(&inner);
        seq.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        seq.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert_eq!(check(&file(&seq)), Ok(()));
        // The inner element lies about its length: found inside the sequence.
        let lying = element(0x0020, 0x0032, b"UT", b"1", Some(1_000_000));
        let bad = [&seq[..20], &lying, &seq[20 + inner.len()..]].concat();
        assert!(check(&file(&bad)).is_err());
        // Sequences opening inside sequences forever.
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend(element(0x5200, 0x9230, b"SQ", &[], Some(UNDEFINED)));
            deep.extend([0xFE, 0xFF, 0x00, 0xE0]);
            deep.extend(UNDEFINED.to_le_bytes());
        }
        let err = check(&file(&deep)).expect_err("too deep");
        assert!(err.0.contains("nested deeper"), "{}", err.0);
    }
}
