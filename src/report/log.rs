//! A session's `events.jsonl` read back into what the report shows: the start and end records,
//! each volume's motion, signal and timing, each `monitor` record, the trials and their images.
//! A line that is not JSON (a crash mid-line) is counted and skipped; unknown events are
//! ignored, so a newer log still reads.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ReportError;

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRow {
    pub index: u32,
    pub motion: Option<[f64; 6]>,
    pub fd_mm: Option<f64>,
    pub global_signal: Option<f64>,
    /// File seen → read, read → preprocessed, ms.
    pub read_ms: Option<f64>,
    pub preprocess_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Usable {
    pub threshold_mm: f64,
    pub volumes: u64,
    pub minutes: f64,
    pub percent: f64,
    pub projected_total_minutes: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorRow {
    pub index: u32,
    pub dvars: Option<f64>,
    pub std_dvars: Option<f64>,
    pub fd_over_limit: bool,
    pub dvars_spike: bool,
    pub tsnr: Vec<(String, f64)>,
    pub usable: Vec<Usable>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrialRow {
    pub trial: u64,
    pub stimulus: Option<String>,
    pub feedback: Option<f64>,
    pub identification: Option<f64>,
    pub decode_ms: Option<f64>,
    pub generate_ms: Option<f64>,
    /// The reconstruction's PNG, as the recorder wrote it.
    pub image: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct RunLog {
    pub path: PathBuf,
    pub started: Option<Value>,
    pub ended: Option<Value>,
    pub quality_maps: Option<Value>,
    pub volumes: Vec<VolumeRow>,
    pub monitors: Vec<MonitorRow>,
    pub dummies: usize,
    pub trials: Vec<TrialRow>,
    pub errors: Vec<String>,
    pub unreadable_lines: usize,
}

fn ms(from: &Value, to: &Value) -> Option<f64> {
    let (a, b) = (from.as_u64()?, to.as_u64()?);
    Some(b.saturating_sub(a) as f64 / 1e6)
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

impl RunLog {
    pub fn read(path: &Path) -> Result<RunLog, ReportError> {
        let body = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut log = RunLog {
            path: path.to_owned(),
            ..RunLog::default()
        };
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(record) => log.add(record),
                Err(_) => log.unreadable_lines += 1,
            }
        }
        if log.started.is_none() {
            return Err(ReportError::Log {
                path: path.to_owned(),
                message: "no `started` record: expected a brainmclip session log".into(),
            });
        }
        Ok(log)
    }

    fn trial(&mut self, trial: u64) -> &mut TrialRow {
        match self.trials.iter().position(|t| t.trial == trial) {
            Some(k) => &mut self.trials[k],
            None => {
                self.trials.push(TrialRow {
                    trial,
                    ..TrialRow::default()
                });
                let last = self.trials.len() - 1;
                &mut self.trials[last]
            }
        }
    }

    fn add(&mut self, r: Value) {
        match r["event"].as_str().unwrap_or("") {
            "started" => self.started = Some(r),
            "run_ended" => self.ended = Some(r),
            "quality_maps" => self.quality_maps = Some(r),
            "dummy" => self.dummies += 1,
            "error" => self.errors.push(format!(
                "{}: {}",
                r["stage"].as_str().unwrap_or("?"),
                r["message"].as_str().unwrap_or("?")
            )),
            "volume" => {
                let motion = r["motion"].as_array().and_then(|m| {
                    let v: Vec<f64> = m.iter().filter_map(Value::as_f64).collect();
                    <[f64; 6]>::try_from(v).ok()
                });
                self.volumes.push(VolumeRow {
                    index: r["index"].as_u64().unwrap_or(0) as u32,
                    motion,
                    fd_mm: r["fd"].as_f64(),
                    global_signal: r["global_signal"].as_f64(),
                    read_ms: ms(&r["seen_ns"], &r["read_ns"]),
                    preprocess_ms: ms(&r["read_ns"], &r["preprocessed_ns"]),
                });
            }
            "monitor" => {
                let usable = r["thresholds"]
                    .as_array()
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .map(|t| Usable {
                        threshold_mm: t["threshold_mm"].as_f64().unwrap_or(f64::NAN),
                        volumes: t["volumes"].as_u64().unwrap_or(0),
                        minutes: t["minutes"].as_f64().unwrap_or(0.0),
                        percent: t["percent"].as_f64().unwrap_or(0.0),
                        projected_total_minutes: t["projected_total_minutes"].as_f64(),
                    })
                    .collect();
                let tsnr = r["tsnr"]
                    .as_array()
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .filter_map(|t| Some((text(&t["group"])?, t["median"].as_f64()?)))
                    .collect();
                self.monitors.push(MonitorRow {
                    index: r["index"].as_u64().unwrap_or(0) as u32,
                    dvars: r["dvars"].as_f64(),
                    std_dvars: r["std_dvars"].as_f64(),
                    fd_over_limit: r["fd_over_limit"] == true,
                    dvars_spike: r["dvars_spike"] == true,
                    tsnr,
                    usable,
                });
            }
            "decoded" => {
                let Some(n) = r["trial"].as_u64() else { return };
                let t = self.trial(n);
                t.stimulus = text(&r["stimulus"]).or(t.stimulus.take());
                t.feedback = r["feedback"].as_f64();
                t.identification = r["identification"].as_f64();
                t.decode_ms = ms(&r["sample_ns"], &r["decoded_ns"]);
            }
            "generated" => {
                let Some(n) = r["trial"].as_u64() else { return };
                let t = self.trial(n);
                t.stimulus = text(&r["stimulus"]).or(t.stimulus.take());
                t.generate_ms = ms(&r["decoded_ns"], &r["generated_ns"]);
                t.image = text(&r["file"]).map(PathBuf::from);
            }
            _ => {}
        }
    }

    /// The ingest counts of the `run_ended` record (delivered, missing, ...), when it came.
    pub fn count(&self, name: &str) -> Option<u64> {
        self.ended.as_ref()?["counts"][name].as_u64()
    }

    /// A number from the `started` record's `monitor` table.
    pub fn monitor_setting(&self, name: &str) -> Option<&Value> {
        Some(&self.started.as_ref()?["monitor"][name])
    }
}
