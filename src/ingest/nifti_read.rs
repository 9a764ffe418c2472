//! Reading NIfTI-1 files into `f32` voxels: one 3-D volume from a file the scanner exported
//! (`.nii`, `.nii.gz`, `.hdr/.img`, `.hdr.gz/.img.gz`), or a 4-D run volume by volume.
//!
//! Every read proves the file complete: an uncompressed file must hold at least the bytes its
//! header implies, and a gzip stream is decoded to its end with its CRC-32 and length trailer
//! verified. It does not decide *when* to read (that is `completeness.rs`).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::convert::convert_to_f32;
use super::error::ReadError;
use super::header::{Header, HEADER_BYTES};

/// How a NIfTI-1 dataset is stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Nii,
    NiiGz,
    /// A `.hdr` whose voxels are in the `.img` beside it.
    Pair,
    /// A `.hdr.gz` with its `.img.gz`.
    PairGz,
}

impl FileKind {
    /// The kind a file name announces; `.img` files are not datasets of their own.
    pub fn of(path: &Path) -> Option<FileKind> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".nii.gz") {
            Some(FileKind::NiiGz)
        } else if name.ends_with(".nii") {
            Some(FileKind::Nii)
        } else if name.ends_with(".hdr.gz") {
            Some(FileKind::PairGz)
        } else if name.ends_with(".hdr") {
            Some(FileKind::Pair)
        } else {
            None
        }
    }

    pub fn is_gzip(self) -> bool {
        matches!(self, FileKind::NiiGz | FileKind::PairGz)
    }
}

/// The `.img` (or `.img.gz`) that holds the voxels of a `.hdr` (or `.hdr.gz`); an upper-case
/// `.HDR` gives `.IMG`.
pub fn companion_image(header_path: &Path) -> PathBuf {
    let name = header_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let gz_len = if name.to_ascii_lowercase().ends_with(".gz") {
        3
    } else {
        0
    };
    let Some(stem_len) = name.len().checked_sub(4 + gz_len) else {
        return header_path.with_extension("img");
    };
    let upper = name[stem_len..].starts_with(".HDR");
    let img = if upper { ".IMG" } else { ".img" };
    header_path.with_file_name(format!(
        "{}{img}{}",
        &name[..stem_len],
        &name[name.len() - gz_len..]
    ))
}

fn io_err(path: &Path, source: io::Error) -> ReadError {
    ReadError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Inflates a whole gzip file held in memory, verifying its CRC-32 and length trailer.
/// `limit` caps the output so that a corrupt or hostile stream cannot exhaust memory.
pub fn inflate_verified(
    compressed: &[u8],
    path: &Path,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    if compressed.len() < 18 {
        return Err(ReadError::Incomplete {
            path: path.to_owned(),
            detail: format!("{} bytes, shorter than any gzip stream", compressed.len()),
        });
    }
    if compressed[..2] != [0x1f, 0x8b] {
        return Err(ReadError::Gzip {
            path: path.to_owned(),
            detail: "no gzip magic (1f 8b) at the start".into(),
        });
    }
    // The trailer's ISIZE is only a hint (it may be garbage while the file is being written).
    let n = compressed.len();
    let isize_hint = u32::from_le_bytes([
        compressed[n - 4],
        compressed[n - 3],
        compressed[n - 2],
        compressed[n - 1],
    ]);
    // Fast path: the trailer's size is right for any complete file, so one libdeflate call
    // inflates it, checking the CRC-32 and the length itself. Anything it refuses goes through
    // the streaming decoder below, which says precisely what is wrong.
    let hint = isize_hint as usize;
    if hint > 0 && hint <= limit {
        let mut out = vec![0u8; hint];
        if let Ok(written) = libdeflater::Decompressor::new().gzip_decompress(compressed, &mut out)
        {
            if written == hint {
                return Ok(out);
            }
        }
    }
    let mut out = Vec::with_capacity(hint.min(limit));
    let mut decoder = GzDecoder::new(compressed).take(limit as u64 + 1);
    match decoder.read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Err(ReadError::Gzip {
            path: path.to_owned(),
            detail: format!("inflates to more than {limit} bytes"),
        }),
        Ok(_) => Ok(out),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(ReadError::Incomplete {
            path: path.to_owned(),
            detail: "gzip stream ends before its CRC/length trailer".into(),
        }),
        Err(e) => Err(ReadError::Gzip {
            path: path.to_owned(),
            detail: e.to_string(),
        }),
    }
}

/// The most bytes a dataset of `max_voxels` 8-byte voxels with a generous header could need.
fn byte_limit(max_voxels: usize) -> usize {
    max_voxels.saturating_mul(8).saturating_add(1 << 20)
}

/// Reads a file whole, inflating and verifying it when it is gzip.
pub fn read_bytes(path: &Path, gzip: bool, max_voxels: usize) -> Result<Vec<u8>, ReadError> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    if gzip {
        inflate_verified(&bytes, path, byte_limit(max_voxels))
    } else {
        Ok(bytes)
    }
}

/// One 3-D volume decoded from a file.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub header: Header,
    pub data: Vec<f32>,
    pub non_finite: usize,
}

/// The voxels `header` implies within `bytes` (starting at `vox_offset`), or `Incomplete`.
fn voxel_bytes<'a>(
    bytes: &'a [u8],
    header: &Header,
    n_bytes: usize,
    path: &Path,
) -> Result<&'a [u8], ReadError> {
    let end = header.vox_offset + n_bytes;
    bytes
        .get(header.vox_offset..end)
        .ok_or_else(|| ReadError::Incomplete {
            path: path.to_owned(),
            detail: format!(
                "{} bytes, the header implies {end} (vox_offset {} + {} voxels x {} bytes)",
                bytes.len(),
                header.vox_offset,
                n_bytes / header.datatype.size_bytes(),
                header.datatype.size_bytes()
            ),
        })
}

/// A 3-D dataset's header and the verified bytes that hold its voxels.
#[derive(Debug, Clone)]
pub struct RawVolume {
    pub header: Header,
    bytes: Vec<u8>,
}

impl RawVolume {
    /// The stored voxel bytes (length checked when read).
    pub fn voxels(&self) -> &[u8] {
        let start = self.header.vox_offset;
        &self.bytes[start..start + self.header.bytes_per_volume()]
    }
}

/// Reads one 3-D volume's header and stored bytes from a `.nii`, `.nii.gz`, `.hdr` or `.hdr.gz`
/// file (the `.img` is found beside a `.hdr`), proving it complete. A file holding more than
/// one volume is refused: a scanner export gives one volume per file, and a 4-D run is read
/// with `RunReader`.
pub fn read_raw_volume(path: &Path, max_voxels: usize) -> Result<RawVolume, ReadError> {
    let kind = FileKind::of(path).ok_or_else(|| ReadError::NotNifti {
        path: path.to_owned(),
        detail: "expected a name ending in .nii, .nii.gz, .hdr or .hdr.gz".into(),
    })?;
    let three_d = |header: &Header| {
        if header.n_volumes() == 1 {
            Ok(())
        } else {
            Err(ReadError::NotThreeD {
                path: path.to_owned(),
                found: format!("dims {:?} ({} volumes)", header.dims, header.n_volumes()),
            })
        }
    };
    let (header, bytes, data_path) = match kind {
        FileKind::Nii => {
            // Header first: nothing is allocated for the voxels before the header is valid.
            // One open serves both reads.
            let mut file = File::open(path).map_err(|e| io_err(path, e))?;
            let mut head = Vec::new();
            (&mut file)
                .take(HEADER_BYTES as u64)
                .read_to_end(&mut head)
                .map_err(|e| io_err(path, e))?;
            let header = Header::parse(&head, path, max_voxels)?;
            three_d(&header)?;
            let needed = header.vox_offset + header.bytes_per_volume();
            let bytes = read_rest(file, head, needed, path, &header)?;
            (header, bytes, path.to_owned())
        }
        FileKind::NiiGz => {
            let bytes = read_bytes(path, true, max_voxels)?;
            let header = Header::parse(&bytes, path, max_voxels)?;
            three_d(&header)?;
            (header, bytes, path.to_owned())
        }
        FileKind::Pair | FileKind::PairGz => {
            let head = read_bytes(path, kind.is_gzip(), max_voxels)?;
            let header = Header::parse(&head, path, max_voxels)?;
            three_d(&header)?;
            let img = companion_image(path);
            let bytes = if kind.is_gzip() {
                read_bytes(&img, true, max_voxels)?
            } else {
                read_prefix(&img, header.vox_offset + header.bytes_per_volume(), &header)?
            };
            (header, bytes, img)
        }
    };
    voxel_bytes(&bytes, &header, header.bytes_per_volume(), &data_path)?;
    Ok(RawVolume { header, bytes })
}

/// `head` (the bytes already read from the start of `file`) followed by the rest of the first
/// `needed` bytes, or `Incomplete` when the file is shorter.
fn read_rest(
    file: File,
    mut head: Vec<u8>,
    needed: usize,
    path: &Path,
    header: &Header,
) -> Result<Vec<u8>, ReadError> {
    let len = file.metadata().map_err(|e| io_err(path, e))?.len();
    if len < needed as u64 {
        return Err(ReadError::Incomplete {
            path: path.to_owned(),
            detail: format!(
                "{len} bytes, the header implies {needed} (vox_offset {} + {} voxels x {} bytes)",
                header.vox_offset,
                header.voxels_per_volume(),
                header.datatype.size_bytes()
            ),
        });
    }
    head.reserve_exact(needed.saturating_sub(head.len()));
    file.take(needed.saturating_sub(head.len()) as u64)
        .read_to_end(&mut head)
        .map_err(|e| io_err(path, e))?;
    Ok(head)
}

/// The first `needed` bytes of an uncompressed file, or `Incomplete` when it is shorter.
fn read_prefix(path: &Path, needed: usize, header: &Header) -> Result<Vec<u8>, ReadError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    read_rest(file, Vec::new(), needed, path, header)
}

/// Reads one 3-D volume (see `read_raw_volume`) and converts it to `f32`.
pub fn read_volume_file(path: &Path, max_voxels: usize) -> Result<Decoded, ReadError> {
    let raw = read_raw_volume(path, max_voxels)?;
    let h = &raw.header;
    let mut data = Vec::with_capacity(h.voxels_per_volume());
    let non_finite = convert_to_f32(raw.voxels(), h.datatype, h.big_endian, h.scaling, &mut data);
    Ok(Decoded {
        header: raw.header,
        data,
        non_finite,
    })
}

/// A 4-D run read one volume at a time; memory holds one volume, never the run. The gzip trailer
/// of a compressed run is verified after the last volume.
pub struct RunReader {
    path: PathBuf,
    header: Header,
    source: Box<dyn Read + Send>,
    next: usize,
    raw: Vec<u8>,
}

fn open_stream(path: &Path, gzip: bool) -> Result<Box<dyn Read + Send>, ReadError> {
    let file = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| io_err(path, e))?);
    Ok(if gzip {
        Box::new(GzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

fn read_exact_or_incomplete(
    source: &mut dyn Read,
    buf: &mut [u8],
    path: &Path,
    what: &str,
) -> Result<(), ReadError> {
    source.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ReadError::Incomplete {
            path: path.to_owned(),
            detail: format!("the file ends inside {what}"),
        },
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => ReadError::Gzip {
            path: path.to_owned(),
            detail: e.to_string(),
        },
        _ => io_err(path, e),
    })
}

impl RunReader {
    pub fn open(path: &Path, max_voxels: usize) -> Result<RunReader, ReadError> {
        let kind = FileKind::of(path).ok_or_else(|| ReadError::NotNifti {
            path: path.to_owned(),
            detail: "expected a name ending in .nii, .nii.gz, .hdr or .hdr.gz".into(),
        })?;
        let mut head = open_stream(path, kind.is_gzip())?;
        let mut raw_header = [0u8; HEADER_BYTES];
        read_exact_or_incomplete(&mut *head, &mut raw_header, path, "the header")?;
        let header = Header::parse(&raw_header, path, max_voxels)?;
        let (data_path, mut source, skip) = match kind {
            FileKind::Nii | FileKind::NiiGz => (
                path.to_owned(),
                head,
                header.vox_offset.saturating_sub(HEADER_BYTES),
            ),
            FileKind::Pair | FileKind::PairGz => {
                let img = companion_image(path);
                let stream = open_stream(&img, kind.is_gzip())?;
                (img, stream, header.vox_offset)
            }
        };
        let skipped = io::copy(&mut (&mut source).take(skip as u64), &mut io::sink())
            .map_err(|e| io_err(&data_path, e))?;
        if skipped < skip as u64 {
            return Err(ReadError::Incomplete {
                path: data_path,
                detail: format!("the file ends before vox_offset {}", header.vox_offset),
            });
        }
        Ok(RunReader {
            path: data_path,
            header,
            source,
            next: 0,
            raw: Vec::new(),
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn n_volumes(&self) -> usize {
        self.header.n_volumes()
    }

    /// The stored bytes of the next volume, exactly as on disk (before conversion).
    pub fn next_raw(&mut self) -> Option<Result<&[u8], ReadError>> {
        if self.next >= self.n_volumes() {
            return None;
        }
        self.raw.resize(self.header.bytes_per_volume(), 0);
        let what = format!("volume {} of {}", self.next, self.n_volumes());
        if let Err(e) =
            read_exact_or_incomplete(&mut *self.source, &mut self.raw, &self.path, &what)
        {
            self.next = usize::MAX;
            return Some(Err(e));
        }
        self.next += 1;
        if self.next == self.n_volumes() {
            // Drain to the end so a gzip stream's CRC/length trailer is checked.
            if let Err(e) = io::copy(&mut self.source, &mut io::sink()) {
                return Some(Err(ReadError::Gzip {
                    path: self.path.clone(),
                    detail: e.to_string(),
                }));
            }
        }
        Some(Ok(&self.raw))
    }

    /// The next volume converted to `f32`, with its count of non-finite voxels.
    pub fn next_volume(&mut self) -> Option<Result<(Vec<f32>, usize), ReadError>> {
        let (datatype, big_endian, scaling) = (
            self.header.datatype,
            self.header.big_endian,
            self.header.scaling,
        );
        let n = self.header.voxels_per_volume();
        self.next_raw().map(|raw| {
            raw.map(|raw| {
                let mut data = Vec::with_capacity(n);
                let non_finite = convert_to_f32(raw, datatype, big_endian, scaling, &mut data);
                (data, non_finite)
            })
        })
    }
}
