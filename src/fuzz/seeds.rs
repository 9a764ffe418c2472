//! The fuzzer's seeds (real files from the repository: `tests/fixtures/`, the session example)
//! and, per format, where its fields and magic tokens are, so the mutator can aim at them.
//!
//! Paths are relative to a root the caller gives (the crate's folder), so the library never
//! assumes where it runs.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::FuzzError;

/// DICOM seeds above this size are left out: every input copies and parses its seed, and a
/// million inputs must finish in minutes.
pub const MAX_DICOM_SEED_BYTES: u64 = 600 * 1024;

/// Files at most this large are all taken (the transfer-syntax samples, each different); of
/// larger ones, at most `LARGE_DICOM_PER_FOLDER` per folder (a real series repeats one layout).
const SMALL_DICOM_BYTES: u64 = 16 * 1024;
const LARGE_DICOM_PER_FOLDER: usize = 2;

/// NIfTI-1 header fields: sizeof_hdr 0, dim[0..8] 40-54, datatype 70, bitpix 72,
/// pixdim[0..5] 76-92 (qfac, voxel sizes, TR), vox_offset 108, scl_slope 112, scl_inter 116,
/// xyzt_units 123, qform_code 252, sform_code 254, quatern_b/c/d 256-264, srow_x 280, magic 344.
const NIFTI_FIELDS: &[usize] = &[
    0, 40, 42, 44, 46, 48, 50, 52, 54, 70, 72, 76, 80, 84, 88, 92, 108, 112, 116, 123, 252, 254,
    256, 260, 264, 280, 344,
];

pub fn nifti_anchors(_seed: &[u8]) -> Vec<usize> {
    NIFTI_FIELDS.to_vec()
}

pub const NIFTI_TOKENS: &[&[u8]] = &[
    b"n+1\0",
    b"ni1\0",
    b"n+2\0",
    b"\x5c\x01\x00\x00",
    b"\x00\x00\x01\x5c",
    b"\x1c\x02\x00\x00",
];

/// gzip: magic, method, flags, mtime, xfl, OS, the first deflate byte, then the trailer's
/// CRC-32 and ISIZE (counted from the end).
pub fn gzip_anchors(seed: &[u8]) -> Vec<usize> {
    let mut at = vec![0, 1, 2, 3, 4, 8, 9, 10];
    at.extend(
        [8usize, 4]
            .iter()
            .filter_map(|&back| seed.len().checked_sub(back)),
    );
    at
}

pub const GZIP_TOKENS: &[&[u8]] = &[
    b"\x1f\x8b\x08\x00",
    b"\x1f\x8b",
    b"\x1f\x8b\x08\x1f",
    b"\x03\x00",
    b"\x00\x00\x00\x00\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
];

/// DICOM elements a reader sizes or branches on: transfer syntax, image type, rows, columns,
/// samples, frames, bits, pixel representation, spacing and geometry, instance number, the CSA
/// headers, the per-frame groups, items and delimiters, and the pixel data.
const DICOM_TAGS: &[(u16, u16)] = &[
    (0x0002, 0x0000),
    (0x0002, 0x0010),
    (0x0008, 0x0008),
    (0x0020, 0x0013),
    (0x0020, 0x0032),
    (0x0020, 0x0037),
    (0x0028, 0x0002),
    (0x0028, 0x0008),
    (0x0028, 0x0010),
    (0x0028, 0x0011),
    (0x0028, 0x0030),
    (0x0028, 0x0100),
    (0x0028, 0x0101),
    (0x0028, 0x0102),
    (0x0028, 0x0103),
    (0x0029, 0x1010),
    (0x0029, 0x1020),
    (0x5200, 0x9230),
    (0x7fe0, 0x0010),
    (0xfffe, 0xe000),
    (0xfffe, 0xe00d),
    (0xfffe, 0xe0dd),
];

/// Most anchors kept per seed (a long sequence repeats the same tags).
const MAX_ANCHORS: usize = 4096;

/// After each of `DICOM_TAGS` (either byte order): the VR or implicit length at +4, a short
/// length at +6, a value or long length at +8, a long value at +12.
pub fn dicom_anchors(seed: &[u8]) -> Vec<usize> {
    let mut patterns: Vec<[u8; 4]> = Vec::with_capacity(DICOM_TAGS.len() * 2);
    for &(group, element) in DICOM_TAGS {
        let (g, e) = (group.to_le_bytes(), element.to_le_bytes());
        patterns.push([g[0], g[1], e[0], e[1]]);
        let (g, e) = (group.to_be_bytes(), element.to_be_bytes());
        patterns.push([g[0], g[1], e[0], e[1]]);
    }
    patterns.sort_unstable();
    let mut at = Vec::new();
    for (i, window) in seed.windows(4).enumerate() {
        if patterns
            .binary_search(&[window[0], window[1], window[2], window[3]])
            .is_ok()
        {
            at.extend([i + 4, i + 6, i + 8, i + 12]);
            if at.len() >= MAX_ANCHORS {
                break;
            }
        }
    }
    at
}

pub const DICOM_TOKENS: &[&[u8]] = &[
    b"DICM",
    b"1.2.840.10008.1.2\0",
    b"1.2.840.10008.1.2.1\0",
    b"1.2.840.10008.1.2.2\0",
    b"1.2.840.10008.1.2.1.99",
    b"1.2.840.10008.1.2.5\0",
    b"1.2.840.10008.1.2.4.50",
    b"1.2.840.10008.1.2.4.70",
    b"1.2.840.10008.1.2.4.90",
    b"ORIGINAL\\PRIMARY\\M\\MOSAIC",
    b"SV10",
    b"OB",
    b"OW",
    b"UN",
    b"SQ",
    b"\xfe\xff\x00\xe0\xff\xff\xff\xff",
    b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",
    b"\xe0\x7f\x10\x00",
];

/// CSA: the header words (SV10, unused, tag count, check) and, around every 77 or 205 (the
/// delimiters CSA writes beside tag and item lengths), the words before and at it.
pub fn csa_anchors(seed: &[u8]) -> Vec<usize> {
    let mut at = vec![0, 4, 8, 12];
    for (i, word) in seed.windows(4).enumerate() {
        if word == [77, 0, 0, 0] || word == [205, 0, 0, 0] {
            at.extend([i.saturating_sub(8), i.saturating_sub(4), i]);
            if at.len() >= MAX_ANCHORS {
                break;
            }
        }
    }
    at
}

pub const CSA_TOKENS: &[&[u8]] = &[
    b"SV10",
    b"\x04\x03\x02\x01",
    b"M\x00\x00\x00",
    b"\xcd\x00\x00\x00",
    b"NumberOfImagesInMosaic\0",
    b"SliceNormalVector\0",
    b"MosaicRefAcqTimes\0",
    b"ICE_Dims\0",
    b"DS\0\0",
    b"IS\0\0",
    b"LO\0\0",
];

pub const TOML_TOKENS: &[&[u8]] = &[
    b"\"",
    b"'",
    b"\"\"\"",
    b"'''",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"{",
    b"}",
    b"=",
    b",",
    b".",
    b"#",
    b"\n",
    b"\\",
    b"\\u0000",
    b"\\uD800",
    b"[session]",
    b"[ingest]",
    b"[feedback]",
    b"[[ingest]]",
    b"a.b.c = 1",
];

pub const JSON_TOKENS: &[&[u8]] = &[
    b"\"type\"",
    b"\"marker\"",
    b"\"hello\"",
    b"\"onset_s\"",
    b"\"duration_s\"",
    b"\"trial_type\"",
    b"\"stimulus\"",
    b"\"token\"",
    b"null",
    b"[]",
    b"{}",
    b":",
    b",",
    b"\"",
    b"\\u0000",
    b"\\ud800",
    b"1e999",
    b"-0",
    b"\r",
    b"\n",
];

/// Marker and hello lines from the feedback server's tests and module documentation.
pub const FEEDBACK_LINES: &[&[u8]] = &[
    b"{\"type\":\"marker\",\"onset_s\":12.5,\"stimulus\":\"a.png\"}",
    b"{\"type\":\"marker\",\"onset_s\":12.0,\"duration_s\":3.0,\"trial_type\":\"live\",\"stimulus\":\"a.png\"}",
    b"{\"type\":\"marker\",\"onset_s\":1}",
    b"{\"type\":\"marker\",\"onset_s\":3}\n{\"type\":\"marker\",\"onset_s\":1,\"stimulus\":\"set/a.png\"}",
    b"{\"type\":\"marker\",\"onset_s\":1,\"stimulus\":\"/etc/passwd\"}",
    b"{\"type\":\"marker\",\"onset_s\":1,\"stimulus\":\"../../secret.png\"}",
    b"hello\n{\"type\":\"marker\",\"onset_s\":-1}",
    b"{\"type\":\"hello\",\"token\":\"0123456789abcdef\"}",
];

pub fn read(path: &Path) -> Result<Vec<u8>, FuzzError> {
    std::fs::read(path).map_err(|source| FuzzError::Read {
        path: path.to_owned(),
        source,
    })
}

pub fn gunzip(compressed: &[u8], path: &Path) -> Result<Vec<u8>, FuzzError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(compressed)
        .read_to_end(&mut out)
        .map_err(|source| FuzzError::Inflate {
            path: path.to_owned(),
            source,
        })?;
    Ok(out)
}

/// The entries of `dir`, sorted by name (so seeds, and hence inputs, are the same everywhere).
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, FuzzError> {
    let listing = std::fs::read_dir(dir).map_err(|source| FuzzError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|source| FuzzError::Read {
            path: dir.to_owned(),
            source,
        })?;
        paths.push(entry.path());
    }
    paths.sort();
    Ok(paths)
}

fn lower_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Files directly in `dir` whose lower-case name ends with one of `suffixes`, each read whole
/// (and inflated when `inflate` and the name ends in `.gz`).
pub fn files_ending(
    dir: &Path,
    suffixes: &[&str],
    inflate: bool,
) -> Result<Vec<Vec<u8>>, FuzzError> {
    let mut seeds = Vec::new();
    for path in sorted_entries(dir)? {
        let name = lower_name(&path);
        if path.is_dir() || !suffixes.iter().any(|s| name.ends_with(s)) {
            continue;
        }
        let bytes = read(&path)?;
        seeds.push(if inflate && name.ends_with(".gz") {
            gunzip(&bytes, &path)?
        } else {
            bytes
        });
    }
    Ok(seeds)
}

/// DICOM files (`.dcm`, `.dcm.gz` inflated) anywhere under `dir`, within the size limits above.
pub fn dicom_files(dir: &Path) -> Result<Vec<Vec<u8>>, FuzzError> {
    let mut seeds = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        let mut large_taken = 0;
        for path in sorted_entries(&folder)? {
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let name = lower_name(&path);
            let gzipped = name.ends_with(".dcm.gz");
            if !(name.ends_with(".dcm") || gzipped) {
                continue;
            }
            let on_disk = std::fs::metadata(&path)
                .map_err(|source| FuzzError::Read {
                    path: path.clone(),
                    source,
                })?
                .len();
            let large = on_disk > SMALL_DICOM_BYTES || gzipped;
            if on_disk > MAX_DICOM_SEED_BYTES || (large && large_taken >= LARGE_DICOM_PER_FOLDER) {
                continue;
            }
            let bytes = if gzipped {
                gunzip(&read(&path)?, &path)?
            } else {
                read(&path)?
            };
            if bytes.len() as u64 > MAX_DICOM_SEED_BYTES {
                continue;
            }
            large_taken += usize::from(large);
            seeds.push(bytes);
        }
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_anchors_follow_a_tag_in_either_byte_order() {
        // 0xaa filler: zeros would form the big-endian Rows pattern with the tag's own bytes.
        let mut bytes = vec![0xaau8; 32];
        bytes[4..8].copy_from_slice(&[0x28, 0x00, 0x10, 0x00]); // Rows, little endian
        bytes[20..24].copy_from_slice(&[0x7f, 0xe0, 0x00, 0x10]); // PixelData, big endian
        assert_eq!(dicom_anchors(&bytes), vec![8, 10, 12, 16, 24, 26, 28, 32]);
    }

    #[test]
    fn gzip_anchors_reach_the_trailer() {
        let at = gzip_anchors(&[0u8; 30]);
        assert!(at.contains(&22) && at.contains(&26));
        assert!(gzip_anchors(&[0u8; 3]).iter().all(|&a| a <= 10));
    }
}
