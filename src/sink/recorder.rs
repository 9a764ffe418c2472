//! The recorder: the session's files in `output.dir`. `events.jsonl` has one JSON line per
//! event (every volume, gap, sample, decoded trial, image, command, error, with ns times);
//! `qa.tsv` one row per preprocessed volume (motion, FD, global signal, mean z-scores);
//! `reconstructions/trial-NNNN.png` each drawn image. Both logs are written as
//! `<name>.partial`, a whole line at a time and flushed (a crash loses nothing written), and
//! synced and renamed to their final names when the run ends: a file under its final name is
//! always complete. An earlier session's files are never overwritten (`events-2.jsonl`, ...).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Sink, SinkError};
use crate::decode::Reconstruction;
use crate::event::SessionEvent;
use crate::preprocess::stage::VolumeReport;

const QA_HEADER: &str = "index\ttrans_x_mm\ttrans_y_mm\ttrans_z_mm\trot_x_deg\trot_y_deg\trot_z_deg\tfd_mm\tglobal_signal\tmean_z_detail\tmean_z_semantic";

/// Where a recorder file is written until the run ends.
pub fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// `dir/stem.ext`, or `stem-2.ext`, ...: the first name used by neither a finished nor an
/// unfinished earlier session.
fn free_name(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    let mut n = 1u32;
    loop {
        let name = if n == 1 {
            format!("{stem}.{ext}")
        } else {
            format!("{stem}-{n}.{ext}")
        };
        let path = dir.join(name);
        if !path.exists() && !partial(&path).exists() {
            return path;
        }
        n += 1;
    }
}

struct Open {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl Open {
    fn create(path: PathBuf) -> Result<Open, SinkError> {
        let file = File::create(partial(&path)).map_err(|e| SinkError::io(partial(&path), e))?;
        Ok(Open {
            writer: BufWriter::new(file),
            path,
        })
    }

    /// One whole line, flushed.
    fn line(&mut self, text: &str) -> Result<(), SinkError> {
        let written = self
            .writer
            .write_all(text.as_bytes())
            .and_then(|()| self.writer.write_all(b"\n"))
            .and_then(|()| self.writer.flush());
        written.map_err(|e| SinkError::io(partial(&self.path), e))
    }

    /// Synced to disk, then renamed to its final name.
    fn close(self) -> Result<PathBuf, SinkError> {
        let staged = partial(&self.path);
        let file = self
            .writer
            .into_inner()
            .map_err(|e| SinkError::io(&staged, e.into_error()))?;
        file.sync_all().map_err(|e| SinkError::io(&staged, e))?;
        std::fs::rename(&staged, &self.path).map_err(|e| SinkError::io(&self.path, e))?;
        Ok(self.path)
    }
}

pub struct Recorder {
    log: Option<Open>,
    qa: Option<Open>,
    images: PathBuf,
    log_path: PathBuf,
    qa_path: PathBuf,
}

impl Recorder {
    /// Creates `dir` and the session's files in it.
    pub fn create(dir: &Path) -> Result<Recorder, SinkError> {
        std::fs::create_dir_all(dir).map_err(|e| SinkError::io(dir, e))?;
        let log_path = free_name(dir, "events", "jsonl");
        let qa_path = free_name(dir, "qa", "tsv");
        let log = Open::create(log_path.clone())?;
        let mut qa = Open::create(qa_path.clone())?;
        qa.line(QA_HEADER)?;
        Ok(Recorder {
            log: Some(log),
            qa: Some(qa),
            images: dir.join("reconstructions"),
            log_path,
            qa_path,
        })
    }

    /// The final names of the event log and the QA table.
    pub fn paths(&self) -> (PathBuf, PathBuf) {
        (self.log_path.clone(), self.qa_path.clone())
    }

    /// `reconstructions/trial-NNNN.png`, written under a temporary name and renamed.
    fn save_image(&self, r: &Reconstruction) -> Result<PathBuf, SinkError> {
        std::fs::create_dir_all(&self.images).map_err(|e| SinkError::io(&self.images, e))?;
        let path = self.images.join(format!("trial-{:04}.png", r.trial));
        let image = image::RgbImage::from_raw(r.size as u32, r.size as u32, r.rgb.clone())
            .ok_or_else(|| {
                SinkError::Other(format!(
                    "{}: reconstruction of {} bytes is not {s}x{s} RGB",
                    path.display(),
                    r.rgb.len(),
                    s = r.size
                ))
            })?;
        let tmp = self.images.join(format!(".trial-{:04}.png.tmp", r.trial));
        image
            .save_with_format(&tmp, image::ImageFormat::Png)
            .map_err(|e| SinkError::Other(format!("{}: cannot write: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(|e| SinkError::io(&path, e))?;
        Ok(path)
    }
}

fn qa_row(v: &VolumeReport) -> String {
    let fmt = |v: Option<f32>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    let motion: Vec<String> = (0..6).map(|i| fmt(v.motion.map(|m| m[i]))).collect();
    format!(
        "{}\t{}\t{}\t{:.3}\t{}\t{}",
        v.index,
        motion.join("\t"),
        fmt(v.fd),
        v.global_signal,
        fmt(v.mean_z_detail),
        fmt(v.mean_z_semantic)
    )
}

impl Sink for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    fn event(&mut self, event: &SessionEvent) -> Result<(), SinkError> {
        let mut record = event.record();
        let mut image_error = None;
        match event {
            SessionEvent::Volume(v) => {
                if let Some(qa) = self.qa.as_mut() {
                    qa.line(&qa_row(v))?;
                }
            }
            SessionEvent::Generated(r) => match self.save_image(r) {
                Ok(path) => record["file"] = path.display().to_string().into(),
                // The record is logged all the same; the error is reported after it.
                Err(e) => image_error = Some(e),
            },
            _ => {}
        }
        if let Some(log) = self.log.as_mut() {
            log.line(&record.to_string())?;
        }
        image_error.map_or(Ok(()), Err)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        let log = self.log.take().map(Open::close);
        let qa = self.qa.take().map(Open::close);
        log.transpose()?;
        qa.transpose()?;
        Ok(())
    }
}
