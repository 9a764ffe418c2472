//! Trial assembly: which z-scored volumes belong to which stimulus. A trial's response is the
//! mean of its volumes acquired within a window after onset (by default 4.5-7.5 s, around the
//! peak of the response to a 3 s image); missing volumes are left out and counted, never
//! replaced. The same assembler serves the live path and calibration, so training data is
//! built exactly as live data is.
//!
//! Trials come from a BIDS `_events.tsv` (replay, calibration) or, live, from markers the
//! stimulus computer sends (`add_trial`). Volume times are `index × TR` from the first volume
//! of the run file, as BIDS onsets are.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::tsv::{cell, Table};

#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    #[error("{path}: {message}")]
    Events { path: PathBuf, message: String },
}

/// One stimulus presentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub id: u64,
    pub onset_s: f64,
    pub duration_s: f64,
    pub trial_type: String,
    /// The stimulus file (BIDS `stim_file`), when known.
    pub stimulus: Option<String>,
}

/// Reads a BIDS events file (`onset`, `duration` required; `trial_type`, `stim_file` optional).
pub fn read_events(path: &Path) -> Result<Vec<Trial>, TrialError> {
    let err = |message: String| TrialError::Events {
        path: path.to_owned(),
        message,
    };
    let table = Table::read(path).map_err(err)?;
    let expected = "BIDS events columns onset and duration (seconds)";
    let onset = table.column("onset", expected).map_err(err)?;
    let duration = table.column("duration", expected).map_err(err)?;
    let (kind, stim) = (
        table.optional_column("trial_type"),
        table.optional_column("stim_file"),
    );
    let mut trials = Vec::new();
    for (n, (line, cells)) in table.rows().enumerate() {
        let number = |c: usize, what: &str| -> Result<f64, TrialError> {
            let text = cell(cells, c, line).map_err(err)?;
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    err(format!(
                        "line {line}: {what} {text:?} is not a non-negative number of seconds"
                    ))
                })
        };
        let text = |c: Option<usize>| {
            c.and_then(|c| cells.get(c))
                .filter(|s| !s.is_empty() && *s != "n/a")
                .cloned()
        };
        trials.push(Trial {
            id: n as u64,
            onset_s: number(onset, "onset")?,
            duration_s: number(duration, "duration")?,
            trial_type: text(kind).unwrap_or_default(),
            stimulus: text(stim),
        });
    }
    Ok(trials)
}

/// A trial's response, ready for the decoder (or for calibration).
#[derive(Debug, Clone)]
pub struct Sample {
    pub trial: Trial,
    /// Mean z-score per detail voxel / per semantic voxel over the volumes used.
    pub detail: Vec<f32>,
    pub semantic: Vec<f32>,
    /// The scanner's acquisition indices of the volumes averaged (the numbering every record
    /// uses; the assembler's time axis counts from the run's first volume, see `first_index`).
    pub volumes: Vec<u32>,
    /// Volumes in the window that never came.
    pub missing: u32,
}

struct Open {
    trial: Trial,
    detail: Vec<f64>,
    semantic: Vec<f64>,
    volumes: Vec<u32>,
    missing: u32,
}

/// A trial onset sent live by the stimulus computer (through the feedback server): it becomes
/// a trial like one read from the events file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    #[serde(rename = "type")]
    pub kind: String,
    pub onset_s: f64,
    #[serde(default = "default_duration")]
    pub duration_s: f64,
    #[serde(default)]
    pub trial_type: String,
    #[serde(default)]
    pub stimulus: Option<String>,
}

fn default_duration() -> f64 {
    3.0
}

/// Why `stimulus` is not a name inside the stimuli folder (an absolute path, a drive or a `..`
/// step would let whoever sends it make the daemon open any file), or None when it is.
pub fn unsafe_stimulus_name(stimulus: &str) -> Option<String> {
    use std::path::Component;
    let path = std::path::Path::new(stimulus);
    let outside = path.components().any(|c| {
        matches!(
            c,
            Component::RootDir | Component::Prefix(_) | Component::ParentDir
        )
    });
    (outside || stimulus.contains('\\') || stimulus.is_empty()).then(|| {
        format!(
            "stimulus {stimulus:?}: expected a relative name inside decode.stimuli, without `..`"
        )
    })
}

/// Collects volumes into trials as they arrive.
pub struct TrialAssembler {
    tr_s: f64,
    window: (f64, f64),
    pending: BTreeMap<u64, Trial>,
    open: BTreeMap<u64, Open>,
    next_id: u64,
    /// Continuous mode: the recent volumes (index, detail, semantic) and missing indices.
    continuous: Option<Continuous>,
    /// The scanner's index of the run's first volume: added to the time axis's positions when
    /// a sample names its volumes.
    first_index: u32,
}

/// A received volume in continuous mode: acquisition index, detail and semantic z-scores.
type Recent = (u32, Vec<f32>, Vec<f32>);

struct Continuous {
    recent: std::collections::VecDeque<Recent>,
    missing: std::collections::BTreeSet<u32>,
}

impl TrialAssembler {
    /// `window` is (start, end) in seconds after onset; a volume at time t belongs to a trial
    /// when onset + start <= t <= onset + end.
    pub fn new(tr_s: f64, window: (f64, f64), trials: Vec<Trial>) -> TrialAssembler {
        let next_id = trials.iter().map(|t| t.id + 1).max().unwrap_or(0);
        TrialAssembler {
            tr_s,
            window,
            pending: trials.into_iter().map(|t| (t.id, t)).collect(),
            open: BTreeMap::new(),
            next_id,
            continuous: None,
            first_index: 0,
        }
    }

    /// Samples name their volumes by the scanner's index, `first` being the run's first.
    pub fn with_first_index(mut self, first: u32) -> TrialAssembler {
        self.first_index = first;
        self
    }

    /// Continuous mode: one sample per volume, the mean of the volumes acquired in the last
    /// `end - start` seconds, labelled as the response to what was shown `end` to `start`
    /// seconds earlier (trial type "continuous", id = the volume's acquisition index).
    pub fn continuous(tr_s: f64, window: (f64, f64)) -> TrialAssembler {
        let mut a = TrialAssembler::new(tr_s, window, Vec::new());
        a.continuous = Some(Continuous {
            recent: Default::default(),
            missing: Default::default(),
        });
        a
    }

    fn continuous_sample(&mut self, index: u32, detail: Option<(&[f32], &[f32])>) -> Vec<Sample> {
        let (tr, (start, end)) = (self.tr_s, self.window);
        let Some(c) = self.continuous.as_mut() else {
            return Vec::new();
        };
        let span = end - start;
        match detail {
            Some((d, s)) => c.recent.push_back((index, d.to_vec(), s.to_vec())),
            None => {
                c.missing.insert(index);
            }
        }
        // Volumes acquired within the last `span` seconds, this one included.
        let t_first = index as f64 * tr - span - 1e-9;
        while c
            .recent
            .front()
            .is_some_and(|(k, _, _)| (*k as f64) * tr < t_first)
        {
            c.recent.pop_front();
        }
        c.missing.retain(|k| (*k as f64) * tr >= t_first);
        if detail.is_none() || c.recent.is_empty() {
            return Vec::new();
        }
        let n = c.recent.len() as f64;
        let mean = |pick: fn(&Recent) -> &Vec<f32>| -> Vec<f32> {
            let len = pick(&c.recent[0]).len();
            (0..len)
                .map(|v| (c.recent.iter().map(|r| pick(r)[v] as f64).sum::<f64>() / n) as f32)
                .collect()
        };
        let t_now = index as f64 * tr;
        vec![Sample {
            trial: Trial {
                id: index as u64,
                onset_s: (t_now - end).max(0.0),
                duration_s: span,
                trial_type: "continuous".into(),
                stimulus: None,
            },
            detail: mean(|r| &r.1),
            semantic: mean(|r| &r.2),
            volumes: c.recent.iter().map(|r| r.0 + self.first_index).collect(),
            missing: c.missing.len() as u32,
        }]
    }

    /// Sets the TR when it is only known from the first volume's header.
    pub fn set_tr(&mut self, tr_s: f64) {
        if tr_s > 0.0 {
            self.tr_s = tr_s;
        }
    }

    /// A live marker: a trial that starts at `onset_s` (seconds from the run's first volume).
    pub fn add_trial(
        &mut self,
        onset_s: f64,
        duration_s: f64,
        trial_type: String,
        stimulus: Option<String>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(
            id,
            Trial {
                id,
                onset_s,
                duration_s,
                trial_type,
                stimulus,
            },
        );
        id
    }

    /// Opens trials whose window has begun by volume `index`.
    fn open_due(&mut self, index: u32, n_detail: usize, n_semantic: usize) {
        let t = index as f64 * self.tr_s;
        let due: Vec<u64> = self
            .pending
            .values()
            .filter(|tr| t + 1e-9 >= tr.onset_s + self.window.0)
            .map(|tr| tr.id)
            .collect();
        for id in due {
            if let Some(trial) = self.pending.remove(&id) {
                self.open.insert(
                    id,
                    Open {
                        trial,
                        detail: vec![0.0; n_detail],
                        semantic: vec![0.0; n_semantic],
                        volumes: Vec::new(),
                        missing: 0,
                    },
                );
            }
        }
    }

    /// Closes trials whose window ended before volume `index`.
    fn close_done(&mut self, index: u32) -> Vec<Sample> {
        let t = index as f64 * self.tr_s;
        let done: Vec<u64> = self
            .open
            .values()
            .filter(|o| t > o.trial.onset_s + self.window.1 + 1e-9)
            .map(|o| o.trial.id)
            .collect();
        done.into_iter()
            .filter_map(|id| self.open.remove(&id))
            .map(finish)
            .collect()
    }

    /// A z-scored volume (acquisition index from the run's first volume). Returns the trials
    /// it completes.
    pub fn push_volume(&mut self, index: u32, detail: &[f32], semantic: &[f32]) -> Vec<Sample> {
        self.record(
            index,
            Some((detail, semantic)),
            (detail.len(), semantic.len()),
        )
    }

    /// A volume that will never come (missing or rejected): counted against its trials.
    pub fn missing_volume(
        &mut self,
        index: u32,
        n_detail: usize,
        n_semantic: usize,
    ) -> Vec<Sample> {
        self.record(index, None, (n_detail, n_semantic))
    }

    /// Adds a received volume to (or counts a missing one against) every trial whose window
    /// holds it, after opening and closing trials as time `index` requires.
    fn record(
        &mut self,
        index: u32,
        volume: Option<(&[f32], &[f32])>,
        sizes: (usize, usize),
    ) -> Vec<Sample> {
        if self.continuous.is_some() {
            return self.continuous_sample(index, volume);
        }
        self.open_due(index, sizes.0, sizes.1);
        let done = self.close_done(index);
        let (t, window) = (index as f64 * self.tr_s, self.window);
        for o in self
            .open
            .values_mut()
            .filter(|o| in_window(&o.trial, t, window))
        {
            match volume {
                Some((detail, semantic)) => {
                    o.detail
                        .iter_mut()
                        .zip(detail)
                        .for_each(|(s, v)| *s += *v as f64);
                    o.semantic
                        .iter_mut()
                        .zip(semantic)
                        .for_each(|(s, v)| *s += *v as f64);
                    o.volumes.push(index + self.first_index);
                }
                None => o.missing += 1,
            }
        }
        // A trial whose window ends before the next volume's acquisition is complete now:
        // waiting for that volume would add a whole TR to the feedback latency.
        let mut done = done;
        done.extend(self.close_done(index + 1));
        done
    }

    /// Ends the run: closes every open trial with what it has (trials never opened are dropped:
    /// their window was not reached).
    pub fn finish(&mut self) -> Vec<Sample> {
        std::mem::take(&mut self.open)
            .into_values()
            .map(finish)
            .collect()
    }
}

/// Whether a volume acquired at `t` seconds belongs to `trial`: onset + start <= t <= onset + end.
fn in_window(trial: &Trial, t: f64, (start, end): (f64, f64)) -> bool {
    t + 1e-9 >= trial.onset_s + start && t <= trial.onset_s + end + 1e-9
}

fn finish(o: Open) -> Sample {
    let n = o.volumes.len().max(1) as f64;
    Sample {
        detail: o.detail.iter().map(|s| (s / n) as f32).collect(),
        semantic: o.semantic.iter().map(|s| (s / n) as f32).collect(),
        volumes: o.volumes,
        missing: o.missing,
        trial: o.trial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(id: u64, onset: f64) -> Trial {
        Trial {
            id,
            onset_s: onset,
            duration_s: 3.0,
            trial_type: "train".into(),
            stimulus: Some(format!("s{id}.png")),
        }
    }

    #[test]
    fn each_trial_averages_exactly_its_window_and_counts_missing_volumes() {
        // TR 1.5 s; trials at 6 s and 10 s; window 4.5-7.5 s: volumes at 10.5-13.5 s (7, 8, 9)
        // and 14.5-17.5 s (10, 11).
        let mut a = TrialAssembler::new(1.5, (4.5, 7.5), vec![trial(0, 6.0), trial(1, 10.0)]);
        let mut samples = Vec::new();
        for index in 0..14u32 {
            if index == 8 {
                samples.extend(a.missing_volume(index, 1, 1));
            } else {
                let v = index as f32;
                samples.extend(a.push_volume(index, &[v], &[10.0 * v]));
            }
        }
        samples.extend(a.finish());
        assert_eq!(samples.len(), 2);
        let first = &samples[0];
        assert_eq!(first.trial.id, 0);
        assert_eq!(first.volumes, vec![7, 9]);
        assert_eq!(first.missing, 1);
        assert_eq!(first.detail, vec![8.0]);
        assert_eq!(first.semantic, vec![80.0]);
        let second = &samples[1];
        assert_eq!(second.volumes, vec![10, 11]);
        assert_eq!(second.missing, 0);
        assert_eq!(second.detail, vec![10.5]);
    }

    #[test]
    fn continuous_mode_gives_one_sample_per_volume_from_the_lagged_window() {
        // TR 1 s, window 4-7 s: each sample averages the last 3 s of volumes.
        let mut a = TrialAssembler::continuous(1.0, (4.0, 7.0));
        let mut out = Vec::new();
        for index in 0..10u32 {
            if index == 6 {
                out.extend(a.missing_volume(index, 1, 1));
            } else {
                out.extend(a.push_volume(index, &[index as f32], &[0.0]));
            }
        }
        assert_eq!(out.len(), 9, "one sample per received volume");
        let last = out.last().unwrap();
        assert_eq!(last.volumes, vec![7, 8, 9]);
        assert_eq!(last.detail, vec![8.0]);
        assert_eq!(last.trial.onset_s, 2.0);
        let at7 = out.iter().find(|s| s.trial.id == 7).unwrap();
        assert_eq!((at7.volumes.clone(), at7.missing), (vec![4, 5, 7], 1));
        assert_eq!(at7.detail, vec![(4.0 + 5.0 + 7.0) / 3.0]);
    }

    #[test]
    fn live_markers_and_events_files() {
        let mut a = TrialAssembler::new(2.0, (4.0, 6.0), Vec::new());
        let id = a.add_trial(2.0, 3.0, "live".into(), None);
        let mut out = Vec::new();
        for index in 0..6u32 {
            out.extend(a.push_volume(index, &[1.0], &[2.0]));
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].trial.id, id);
        assert_eq!(out[0].volumes, vec![3, 4]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run_events.tsv");
        std::fs::write(&path, "onset\tduration\ttrial_type\tstim_file\n6.000\t3.000\ttrain\tstimuli/a.png\n10\t3\ttest\tn/a\n").unwrap();
        let trials = read_events(&path).unwrap();
        assert_eq!(trials.len(), 2);
        assert_eq!(trials[0].stimulus.as_deref(), Some("stimuli/a.png"));
        assert_eq!(trials[1].stimulus, None);
        assert_eq!(trials[1].onset_s, 10.0);
        std::fs::write(&path, "onset\tduration\n-1\t3\n").unwrap();
        let e = read_events(&path).unwrap_err().to_string();
        assert!(
            e.contains("run_events.tsv") && e.contains("line 2") && e.contains("onset"),
            "{e}"
        );
        std::fs::write(&path, "start\tduration\n1\t3\n").unwrap();
        assert!(read_events(&path)
            .unwrap_err()
            .to_string()
            .contains("no `onset` column"));
    }
}
