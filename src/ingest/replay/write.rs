//! How the emulated scanner puts bytes on disk: atomically (temp name + rename, as a careful
//! exporter does) or in chunks with pauses (as a network copy does), plus the raw operations
//! the faults need (pre-allocation, filling in place).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WriteMode {
    Atomic,
    Chunked { chunk_bytes: usize, pause: Duration },
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("volume");
    path.with_file_name(format!(".{name}.tmp"))
}

fn write_chunks(
    file: &mut File,
    bytes: &[u8],
    chunk_bytes: usize,
    pause: Duration,
) -> io::Result<()> {
    let mut chunks = bytes.chunks(chunk_bytes.max(1)).peekable();
    while let Some(chunk) = chunks.next() {
        file.write_all(chunk)?;
        if chunks.peek().is_some() && !pause.is_zero() {
            file.flush()?;
            std::thread::sleep(pause);
        }
    }
    Ok(())
}

/// Writes `bytes` as the whole content of `path`; the file is closed when this returns.
pub fn write_file(path: &Path, bytes: &[u8], mode: WriteMode) -> io::Result<()> {
    match mode {
        WriteMode::Atomic => {
            let tmp = temp_name(path);
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, path)
        }
        WriteMode::Chunked { chunk_bytes, pause } => {
            let mut file = File::create(path)?;
            write_chunks(&mut file, bytes, chunk_bytes, pause)
        }
    }
}

/// Creates `path` at `len` bytes of zeros, as a writer that reserves space first does.
pub fn preallocate(path: &Path, len: u64) -> io::Result<()> {
    let file = File::create(path)?;
    file.set_len(len)
}

/// Writes `bytes` over the start of an existing file without truncating or renaming it.
pub fn fill_in_place(path: &Path, bytes: &[u8], mode: WriteMode) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    match mode {
        WriteMode::Atomic => file.write_all(bytes),
        WriteMode::Chunked { chunk_bytes, pause } => {
            write_chunks(&mut file, bytes, chunk_bytes, pause)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_leaves_exactly_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let a = dir.path().join("a.nii");
        write_file(&a, &bytes, WriteMode::Atomic).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), bytes);
        assert!(!temp_name(&a).exists());
        let b = dir.path().join("b.nii");
        let chunked = WriteMode::Chunked {
            chunk_bytes: 999,
            pause: Duration::from_micros(10),
        };
        write_file(&b, &bytes, chunked).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), bytes);
        let c = dir.path().join("c.nii");
        preallocate(&c, bytes.len() as u64).unwrap();
        assert_eq!(std::fs::read(&c).unwrap(), vec![0u8; bytes.len()]);
        fill_in_place(&c, &bytes, chunked).unwrap();
        assert_eq!(std::fs::read(&c).unwrap(), bytes);
    }
}
