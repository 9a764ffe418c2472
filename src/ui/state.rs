//! What the window shows, built from the message stream alone: the series for the plots, the
//! gallery of trials, the counters of the status bar. Pure data, no drawing: tests apply a
//! scripted stream and read the result.

use std::collections::BTreeMap;

use crate::startup::StartupUpdate;

use super::message::{
    ReconstructionView, Retrieved, Rgb, SessionInfo, TrialView, ViewerMessage, VolumeView,
};

/// One row of the gallery.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GalleryEntry {
    pub trial: u64,
    pub stimulus_name: Option<String>,
    pub stimulus: Option<Rgb>,
    pub reconstruction: Option<Rgb>,
    pub top: Vec<Retrieved>,
    pub feedback: Option<f64>,
    pub decode_ms: Option<f64>,
    pub generate_ms: Option<f64>,
    pub seen_to_drawn_ms: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct ViewerState {
    pub session: Option<SessionInfo>,
    /// Every volume's numbers for the plots (planes are kept for the newest volume only).
    pub volumes: Vec<VolumeView>,
    pub latest_volume: Option<VolumeView>,
    pub dummies: u32,
    pub missing: Vec<u32>,
    pub late: Vec<u32>,
    pub rejected: u32,
    pub gallery: BTreeMap<u64, GalleryEntry>,
    /// The newest drawn trial (shown large).
    pub current: Option<u64>,
    pub skipped_by_generator: usize,
    pub pipeline_queue: usize,
    pub generator_waiting: bool,
    pub problems: Vec<String>,
    pub ended: Option<String>,
    /// Messages applied, for the status bar.
    pub messages: u64,
    /// Each start-up step's latest state, in the order they began.
    pub startup: Vec<StartupUpdate>,
}

impl ViewerState {
    pub fn apply(&mut self, message: ViewerMessage) {
        self.messages += 1;
        match message {
            ViewerMessage::Startup(update) => {
                match self.startup.iter_mut().find(|s| s.step == update.step) {
                    Some(known) => *known = update,
                    None => self.startup.push(update),
                }
            }
            ViewerMessage::Session(info) => self.session = Some(info),
            ViewerMessage::Volume(v) => {
                self.volumes.push(VolumeView {
                    slices: None,
                    roi: None,
                    ..v.clone()
                });
                self.latest_volume = Some(v);
            }
            ViewerMessage::Dummy { .. } => self.dummies += 1,
            ViewerMessage::Missing { index } => self.missing.push(index),
            ViewerMessage::Late { index } => self.late.push(index),
            ViewerMessage::Rejected { index, reason } => {
                self.rejected += 1;
                let which = index.map_or("?".to_string(), |i| i.to_string());
                self.problems
                    .push(format!("volume {which} rejected: {reason}"));
            }
            ViewerMessage::Trial(t) => self.trial(t),
            ViewerMessage::Reconstruction(r) => self.reconstruction(r),
            ViewerMessage::Queues {
                pipeline,
                generator_waiting,
            } => {
                self.pipeline_queue = pipeline;
                self.generator_waiting = generator_waiting;
            }
            ViewerMessage::Problem(p) => self.problems.push(p),
            ViewerMessage::Ended(text) => self.ended = Some(text),
        }
    }

    fn trial(&mut self, t: TrialView) {
        let e = self.gallery.entry(t.trial).or_default();
        e.trial = t.trial;
        e.stimulus_name = t.stimulus_name;
        e.stimulus = t.stimulus;
        e.feedback = t.feedback;
        e.top = t.top;
        e.decode_ms = Some(t.decode_ms);
    }

    fn reconstruction(&mut self, r: ReconstructionView) {
        self.skipped_by_generator += r.skipped_before;
        let e = self.gallery.entry(r.trial).or_default();
        e.trial = r.trial;
        e.reconstruction = Some(r.image);
        e.generate_ms = Some(r.generate_ms);
        e.seen_to_drawn_ms = r.seen_to_drawn_ms;
        // Drawn trials arrive in order; never step back to an older one.
        if self.current.is_none_or(|c| r.trial >= c) {
            self.current = Some(r.trial);
        }
    }

    pub fn current_entry(&self) -> Option<&GalleryEntry> {
        self.current.and_then(|t| self.gallery.get(&t))
    }

    /// The newest volume index seen (volumes, dummies, missing or late).
    pub fn last_index(&self) -> Option<u32> {
        self.volumes.last().map(|v| v.index)
    }

    /// Feedback values in trial order, for the plot.
    pub fn feedback_series(&self) -> Vec<[f64; 2]> {
        self.gallery
            .values()
            .filter_map(|e| e.feedback.map(|f| [e.trial as f64, f]))
            .collect()
    }

    /// The console's line for the newest volume, and whether that volume is flagged: usable
    /// minutes and percent under each FD threshold with the projected scan time to the
    /// target, FD, standardised DVARS and tSNR per mask.
    pub fn monitor_line(&self) -> Option<(String, bool)> {
        let v = self.volumes.last()?;
        let f = v.monitor.as_ref()?;
        let target = self.session.as_ref().map(|s| s.monitor.target_minutes);
        let mut parts: Vec<String> = f
            .thresholds
            .iter()
            .map(|t| {
                let projected = match (t.projected_total_minutes, target) {
                    (Some(p), Some(target)) => format!(", {target:.0} min by {p:.1} min"),
                    _ => String::new(),
                };
                format!(
                    "FD ≤ {} mm: {:.1} min usable ({:.0} %){projected}",
                    t.threshold_mm, t.minutes, t.percent
                )
            })
            .collect();
        let num = |x: Option<f32>, digits: usize| {
            x.map_or("n/a".to_string(), |x| format!("{x:.digits$}"))
        };
        parts.push(format!("FD {} mm", num(f.fd_mm, 2)));
        parts.push(format!("std DVARS {}", num(f.std_dvars, 2)));
        for t in &f.tsnr {
            parts.push(format!("tSNR {} {:.0}", t.group, t.median));
        }
        Some((parts.join(" | "), f.fd_over_limit || f.dvars_spike))
    }

    /// The status bar's line.
    pub fn status_line(&self) -> String {
        let total = self
            .session
            .as_ref()
            .and_then(|s| s.volumes)
            .map_or("?".to_string(), |n| n.to_string());
        let n = self.last_index().map_or(0, |i| i + 1);
        let (tr, device) = self
            .session
            .as_ref()
            .map_or((0.0, "?"), |s| (s.tr_s, s.device.as_str()));
        format!(
            "volume {n} of {total} | missing {} | late {} | rejected {} | TR {tr:.2} s | {device} | queue {}{} | trials {} | skipped by generator {}",
            self.missing.len(),
            self.late.len(),
            self.rejected,
            self.pipeline_queue,
            if self.generator_waiting { " + 1 waiting to draw" } else { "" },
            self.gallery.len(),
            self.skipped_by_generator,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgb(v: u8) -> Rgb {
        Rgb::new(2, 2, vec![v; 12]).unwrap()
    }

    fn volume(index: u32) -> ViewerMessage {
        ViewerMessage::Volume(VolumeView {
            index,
            motion: Some([0.1, 0.0, 0.0, 0.0, 0.0, 0.0]),
            fd_mm: Some(0.05),
            global_signal: 100.0 + index as f32,
            mean_z_detail: Some(0.1),
            mean_z_semantic: Some(-0.1),
            monitor: None,
            read_ms: 1.0,
            preprocess_ms: 8.0,
            slices: None,
            roi: None,
        })
    }

    #[test]
    fn a_scripted_stream_fills_the_state() {
        let mut s = ViewerState::default();
        s.apply(ViewerMessage::Session(SessionInfo {
            title: "t".into(),
            volumes: Some(10),
            tr_s: 1.5,
            device: "CPU (2 threads)".into(),
            output_dir: "out".into(),
            feedback_label: None,
            monitor: Default::default(),
        }));
        s.apply(ViewerMessage::Dummy { index: 0 });
        for i in 1..4 {
            s.apply(volume(i));
        }
        s.apply(ViewerMessage::Missing { index: 4 });
        s.apply(ViewerMessage::Late { index: 4 });
        s.apply(ViewerMessage::Trial(TrialView {
            trial: 1,
            stimulus_name: Some("a.png".into()),
            stimulus: Some(rgb(1)),
            feedback: Some(0.4),
            top: Vec::new(),
            decode_ms: 0.3,
        }));
        s.apply(ViewerMessage::Reconstruction(ReconstructionView {
            trial: 1,
            image: rgb(2),
            generate_ms: 90.0,
            seen_to_drawn_ms: Some(150.0),
            skipped_before: 2,
        }));
        // An older trial drawn late does not replace the current one.
        s.apply(ViewerMessage::Reconstruction(ReconstructionView {
            trial: 0,
            image: rgb(3),
            generate_ms: 90.0,
            seen_to_drawn_ms: None,
            skipped_before: 0,
        }));
        assert_eq!(s.volumes.len(), 3);
        assert_eq!(s.dummies, 1);
        assert_eq!((s.missing.clone(), s.late.clone()), (vec![4], vec![4]));
        assert_eq!(s.current, Some(1));
        let e = s.current_entry().unwrap();
        assert_eq!(e.reconstruction, Some(rgb(2)));
        assert_eq!(e.stimulus_name.as_deref(), Some("a.png"));
        assert_eq!(s.feedback_series(), vec![[1.0, 0.4]]);
        assert_eq!(s.skipped_by_generator, 2);
        let line = s.status_line();
        assert!(
            line.starts_with("volume 4 of 10 | missing 1 | late 1"),
            "{line}"
        );
        assert!(line.contains("TR 1.50 s | CPU (2 threads)"), "{line}");
        assert_eq!(s.monitor_line(), None, "no monitor figures yet");
    }

    #[test]
    fn the_monitor_line_reports_the_newest_volume_and_is_flagged_over_a_limit() {
        use crate::preprocess::monitor::{Monitor, MonitorSettings};
        let mut monitor = Monitor::new(MonitorSettings {
            fd_thresholds_mm: vec![0.2],
            target_minutes: 1.0,
            tr_s: 3.0,
            fd_limit_mm: 0.5,
            std_dvars_limit: 1.5,
            groups: Vec::new(),
        });
        let mut s = ViewerState::default();
        s.apply(ViewerMessage::Session(SessionInfo {
            title: "t".into(),
            volumes: None,
            tr_s: 3.0,
            device: "CPU".into(),
            output_dir: "out".into(),
            feedback_label: None,
            monitor: crate::config::MonitorConfig {
                target_minutes: 1.0,
                ..Default::default()
            },
        }));
        for (i, fd) in [None, Some(0.1), Some(0.1), Some(0.9)]
            .into_iter()
            .enumerate()
        {
            let ViewerMessage::Volume(mut v) = volume(i as u32 + 1) else {
                unreachable!()
            };
            v.fd_mm = fd;
            v.monitor = Some(monitor.push(fd, &[1.0, 2.0 + i as f32]));
            s.apply(ViewerMessage::Volume(v));
            let (line, flagged) = s.monitor_line().unwrap();
            assert_eq!(flagged, fd == Some(0.9), "volume {}: {line}", i + 1);
        }
        // 3 of 4 volumes (9 s = 0.15 min) usable; 1 minute at 75 % is reached at
        // 0.2 + 0.85 / 0.75 minutes of scanning.
        let (line, _) = s.monitor_line().unwrap();
        assert!(
            line.starts_with("FD ≤ 0.2 mm: 0.1 min usable (75 %), 1 min by 1.3 min | FD 0.90 mm"),
            "{line}"
        );
        assert!(line.contains("tSNR all "), "{line}");
    }
}
