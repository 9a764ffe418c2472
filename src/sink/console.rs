//! The console log: one `tracing` line per volume and trial, a warning for each gap, an error for
//! each problem, for the person at the scanner console (stderr; `RUST_LOG` sets the level). It
//! writes no files (the recorder does).

use super::{Sink, SinkError};
use crate::event::SessionEvent;
use crate::ingest::IngestEvent;

#[derive(Default)]
pub struct Console;

fn fmt(v: Option<f32>) -> String {
    v.map_or("n/a".to_string(), |v| format!("{v:.4}"))
}

fn gap(e: &IngestEvent) {
    match e {
        IngestEvent::Late(v) => tracing::warn!(
            "volume {:>4}  late (after its Missing record): in the rolling statistics, in no sample",
            v.index
        ),
        IngestEvent::Missing { index, .. } => {
            tracing::warn!("volume {index:>4}  missing at its deadline")
        }
        IngestEvent::Rejected {
            index, path, reason, ..
        } => tracing::warn!(
            "volume {}  rejected: {reason} ({})",
            index.map_or("?".into(), |i| i.to_string()),
            path.display()
        ),
        IngestEvent::Duplicate { index, path, .. } => {
            tracing::warn!("volume {index:>4}  duplicate ignored: {}", path.display())
        }
        IngestEvent::Warning { message, .. } => tracing::warn!("{message}"),
        IngestEvent::Volume(v) => tracing::warn!(
            "volume {:>4}  not preprocessed (see the error above)",
            v.index
        ),
        IngestEvent::RunEnded { .. } => {}
    }
}

/// A flagged volume is a warning (the console's reason to look up); the rest is debug.
fn monitor_line(m: &crate::event::MonitorReport) {
    let f = &m.figures;
    let usable = f
        .thresholds
        .iter()
        .map(|t| {
            format!(
                "≤{} mm {:.1} min ({:.0} %)",
                t.threshold_mm, t.minutes, t.percent
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if f.fd_over_limit || f.dvars_spike {
        tracing::warn!(
            "volume {:>4}  flagged: FD {} mm, std DVARS {}; usable {usable}",
            m.index,
            fmt(f.fd_mm),
            fmt(f.std_dvars)
        );
    } else {
        tracing::debug!("volume {:>4}  usable {usable}", m.index);
    }
}

impl Sink for Console {
    fn name(&self) -> &str {
        "console"
    }

    fn event(&mut self, event: &SessionEvent) -> Result<(), SinkError> {
        match event {
            SessionEvent::Started(s) => tracing::info!(
                "watching {} (models on {}); writing {}{}",
                s.watching.display(),
                s.device,
                s.output_dir.display(),
                s.feedback_address
                    .as_ref()
                    .map_or(String::new(), |a| format!("; feedback server on {a}"))
            ),
            SessionEvent::Volume(v) => tracing::info!(
                "volume {:>4}  fd {} mm  {:.1} ms seen→preprocessed",
                v.index,
                fmt(v.fd),
                v.preprocessed_ns.saturating_sub(v.seen_ns) as f64 / 1e6
            ),
            SessionEvent::Monitor(m) => monitor_line(m),
            SessionEvent::QualityMaps(q) => {
                tracing::debug!("tSNR map and carpet of {} volumes ready", q.volumes)
            }
            SessionEvent::Dummy { index } => tracing::debug!("volume {index:>4}  dummy scan"),
            SessionEvent::Gap(e) => gap(e),
            SessionEvent::Sample(s) => tracing::info!(
                "trial {:>4}  sample from volumes {:?} ({} missing)",
                s.trial,
                s.volumes,
                s.missing
            ),
            SessionEvent::Decoded(d) => tracing::debug!(
                "trial {:>4}  decoded in {:.1} ms, feedback {}",
                d.trial,
                d.decoded_ns.saturating_sub(d.sample_ns) as f64 / 1e6,
                d.feedback.map_or("n/a".into(), |f| format!("{f:.3}"))
            ),
            SessionEvent::Generated(r) => tracing::debug!(
                "trial {:>4}  drawn in {:.0} ms",
                r.trial,
                r.generated_ns.saturating_sub(r.decoded_ns) as f64 / 1e6
            ),
            SessionEvent::TargetChanged { text, .. } => {
                tracing::info!("feedback target: {text:?}")
            }
            SessionEvent::Error { stage, message, .. } => tracing::error!("{stage}: {message}"),
            SessionEvent::Ended(s) => tracing::info!(
                "run ended: {} volumes delivered, {} trial samples, {} decoded, {} drawn",
                s.counts.delivered,
                s.samples,
                s.decoded,
                s.generated
            ),
            SessionEvent::Displayed { .. } | SessionEvent::DisplayPaused { .. } => {}
        }
        Ok(())
    }
}
