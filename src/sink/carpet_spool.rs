//! The carpet plot's rows (one per volume), kept on disk rather than in memory until the run
//! ends and `carpet.nii.gz` is written: a day of volumes would otherwise grow the daemon by
//! about 8 KB a volume. The spool is a hidden raw little-endian f32 file beside the logs,
//! removed once read back. A row of another width than the first is left out (masks never
//! change mid-run). Not the carpet's file format: that is the recorder's NIfTI.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use super::SinkError;

pub struct CarpetSpool {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    width: Option<usize>,
    rows: usize,
    /// A write failed: the carpet is given up for this run (reported once).
    broken: bool,
}

impl CarpetSpool {
    pub fn new(path: PathBuf) -> CarpetSpool {
        CarpetSpool {
            path,
            file: None,
            width: None,
            rows: 0,
            broken: false,
        }
    }

    pub fn push(&mut self, row: &[f32]) -> Result<(), SinkError> {
        if self.broken || self.width.is_some_and(|w| w != row.len()) {
            return Ok(());
        }
        let written = self.write(row);
        if let Err(e) = written {
            self.broken = true;
            self.file = None;
            let _ = std::fs::remove_file(&self.path);
            return Err(SinkError::Other(format!(
                "{}: cannot keep the carpet plot's rows: {e}; this run's carpet.nii.gz is not \
                 written",
                self.path.display()
            )));
        }
        self.width = Some(row.len());
        self.rows += 1;
        Ok(())
    }

    fn write(&mut self, row: &[f32]) -> std::io::Result<()> {
        if self.file.is_none() {
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&self.path)?;
            self.file = Some(BufWriter::new(file));
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        file.write_all(&bytes)
    }

    /// The rows so far (voxels × rows, row after row) and their count; the spool is emptied.
    pub fn take(&mut self) -> Result<(Vec<f32>, usize), SinkError> {
        let rows = std::mem::take(&mut self.rows);
        let Some(mut file) = self.file.take() else {
            return Ok((Vec::new(), 0));
        };
        let io = |e: std::io::Error| SinkError::io(&self.path, e);
        file.flush().map_err(io)?;
        // Read back through the open handle: it works even if the folder was removed.
        let mut file = file.into_inner().map_err(|e| io(e.into_error()))?;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(io)?;
        let _ = std::fs::remove_file(&self.path);
        let values = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((values, rows))
    }
}

impl Drop for CarpetSpool {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_back_in_order_and_other_widths_are_left_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(".carpet.f32");
        let mut spool = CarpetSpool::new(path.clone());
        spool.push(&[1.0, 2.0]).expect("row");
        spool.push(&[9.0]).expect("another width, left out");
        spool.push(&[3.0, -4.5]).expect("row");
        assert!(path.exists());
        let (values, rows) = spool.take().expect("take");
        assert_eq!(values, [1.0, 2.0, 3.0, -4.5]);
        assert_eq!(rows, 2);
        assert!(!path.exists(), "the spool is removed once read");
    }
}
