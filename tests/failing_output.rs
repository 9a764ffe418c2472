//! A failing output disk during a live session: the recorder's writes fail (disk full, then the
//! output folder removed) while volumes arrive. Ingest, preprocessing and the other sinks get
//! every event; each failure is reported once with the file and the OS error, and once more
//! when writing resumes; at the end the log and the QA table hold every line, whole, in order.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use brainmclip::event::SessionEvent;
use brainmclip::session::{ReplaySource, Session, SessionSpec};
use brainmclip::sink::line_file::{WriteFault, WriteFaults};
use brainmclip::sink::{Sink, SinkError};

/// Keeps every event, and breaks the output disk at chosen volumes (as an operator's disk
/// fills and is cleared, or a folder is removed by hand).
struct Saboteur {
    seen: Arc<Mutex<Vec<SessionEvent>>>,
    faults: WriteFaults,
    output: PathBuf,
    volumes: usize,
}

impl Sink for Saboteur {
    fn name(&self) -> &str {
        "saboteur"
    }
    fn event(&mut self, event: &SessionEvent) -> Result<(), SinkError> {
        self.seen.lock().expect("lock").push(event.clone());
        if let SessionEvent::Volume(_) = event {
            self.volumes += 1;
            match self.volumes {
                5 => self.faults.set(WriteFault::DiskFull),
                12 => self.faults.set(WriteFault::None),
                18 => std::fs::remove_dir_all(&self.output).expect("remove the output folder"),
                _ => {}
            }
        }
        Ok(())
    }
}

#[test]
fn a_full_disk_and_a_removed_output_folder_lose_no_record_and_stop_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let (sim, bold, config) = common::short_simulated_session(d);
    let output = config.output.dir.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut spec = SessionSpec::new(config);
    // A volume every ~60 ms, so the recorder meets each fault while volumes still arrive.
    spec.replay = Some(ReplaySource::new(bold, &format!("{}", sim.tr / 0.06)).expect("speed"));
    spec.sinks.push(Box::new(Saboteur {
        seen: seen.clone(),
        faults: spec.write_faults.clone(),
        output,
        volumes: 0,
    }));
    let outcome = Session::start(spec).expect("start").wait().expect("run");
    let seen = seen.lock().expect("lock").clone();

    // Nothing upstream noticed: every volume was preprocessed and reached the other sink.
    let volumes: Vec<u64> = seen
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Volume(v) => Some(v.index as u64),
            _ => None,
        })
        .collect();
    assert_eq!(volumes.len(), sim.volumes_per_run - sim.dummy_scans);
    assert_eq!(outcome.summary.counts.delivered, sim.volumes_per_run as u32);

    // Each failure reported once, with the file and the OS error, and its end reported.
    let reports: Vec<String> = seen
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Error { stage, message, .. } if stage == "sink recorder" => {
                Some(message.clone())
            }
            _ => None,
        })
        .chain(outcome.sink_problems.iter().map(|p| p.message.clone()))
        .collect();
    for file in ["events.jsonl.partial", "qa.tsv.partial"] {
        let count = |needle: &str| {
            reports
                .iter()
                .filter(|r| r.contains(file) && r.contains(needle))
                .count()
        };
        assert_eq!(count("No space left on device"), 1, "{file}: {reports:#?}");
        assert_eq!(count("writing again"), 1, "{file}: {reports:#?}");
        assert_eq!(count("was removed; recreated"), 1, "{file}: {reports:#?}");
    }

    // The log holds every event the other sink saw, in order, each line whole; the QA table a
    // row per volume. Both under their final names: nothing waited at the end.
    let log = std::fs::read_to_string(&outcome.log).expect("the log under its final name");
    let logged: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a broken line {l:?}: {e}")))
        .collect();
    let kinds = |records: &[serde_json::Value]| -> Vec<String> {
        records.iter().map(|r| r["event"].to_string()).collect()
    };
    let seen_records: Vec<serde_json::Value> = seen.iter().map(|e| e.record()).collect();
    assert_eq!(kinds(&logged), kinds(&seen_records));
    let qa = std::fs::read_to_string(&outcome.qa).expect("the QA table");
    let rows: Vec<u64> = qa
        .lines()
        .skip(1)
        .map(|l| {
            l.split('\t')
                .next()
                .and_then(|i| i.parse().ok())
                .expect("index")
        })
        .collect();
    assert_eq!(rows, volumes);
}
