//! The live session as a library type, driven with test sinks: a scripted replay (with a
//! dropped volume) through the shipped demo models yields the event sequence the design
//! promises, in order, with monotone telemetry; the recorder's files hold exactly what a sink
//! saw; a sink that panics or stalls is reported and stops neither the run nor the other sinks.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brainmclip::demo::{DEMO_SEED, DEMO_TEST_RUNS, DEMO_TRAIN_RUNS};
use brainmclip::event::SessionEvent;
use brainmclip::ingest::replay::{run_replay, FaultKind, ReplayOptions};
use brainmclip::ingest::IngestEvent;
use brainmclip::session::{ReplaySource, Session, SessionSpec};
use brainmclip::sim::design::RunKind;
use brainmclip::sim::{run_kinds, simulate_runs, SimConfig};
use brainmclip::sink::{Sink, SinkError};

/// Keeps every event it is given.
struct Keep(Arc<Mutex<Vec<Arc<SessionEvent>>>>);

impl Sink for Keep {
    fn name(&self) -> &str {
        "keep"
    }
    fn event(&mut self, event: &SessionEvent) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(Arc::new(event.clone()));
        Ok(())
    }
}

fn kept() -> (Keep, Arc<Mutex<Vec<Arc<SessionEvent>>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    (Keep(events.clone()), events)
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn a_scripted_replay_yields_volumes_gaps_samples_decoded_and_drawn_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The demo subject (so the shipped calibration fits its masks), a short held-out run.
    let sim = SimConfig {
        train_runs: DEMO_TRAIN_RUNS,
        test_runs: DEMO_TEST_RUNS,
        volumes_per_run: 40,
        ..SimConfig::default()
    };
    let run = run_kinds(&sim, DEMO_SEED)
        .into_iter()
        .find(|(_, k)| *k == RunKind::Test)
        .unwrap()
        .0;
    let bids = d.join("bids");
    let bold = simulate_runs(&sim, &bids, DEMO_SEED, Some(&[run]))
        .unwrap()
        .runs[0]
        .clone();
    let speed = 20.0;
    let mut config = common::simulated_session(&bids, &bold, &sim, d);
    config.session.clock_speed = speed;
    let dc = &mut config.decode;
    dc.calibration = Some(repo("calibration/demo"));
    dc.generator = Some(repo("assets/demo-generator"));
    dc.steps = 1;
    std::fs::create_dir_all(&config.ingest.dir).unwrap();
    // The scanner: volume 12 is never written.
    let mut replay = ReplayOptions::new(&bold, &config.ingest.dir);
    replay.speed = speed;
    replay.tr_s = Some(sim.tr);
    replay.faults_at = BTreeMap::from([(12, FaultKind::Drop)]);
    let (keep, events) = kept();
    let mut spec = SessionSpec::new(config);
    spec.sinks.push(Box::new(keep));
    let session = Session::start(spec).unwrap();
    let scanner = std::thread::spawn(move || run_replay(&replay));
    let outcome = session.wait().unwrap();
    scanner.join().unwrap().unwrap();
    let events = events.lock().unwrap().clone();

    assert!(matches!(*events[0], SessionEvent::Started(_)));
    assert!(matches!(**events.last().unwrap(), SessionEvent::Ended(_)));
    // Every scanner index 1..=40 accounted for exactly once: dummy, volume or missing.
    let mut accounted = Vec::new();
    let (mut volume_order, mut missing) = (Vec::new(), Vec::new());
    let mut preprocessed: HashMap<u32, u64> = HashMap::new();
    let mut last_preprocessed = 0;
    let (mut sampled, mut decoded) = (HashMap::new(), HashMap::new());
    let mut generated = HashSet::new();
    let mut ended_at = 0;
    for e in &events {
        match &**e {
            SessionEvent::Dummy { index } => accounted.push(*index),
            SessionEvent::Volume(v) => {
                accounted.push(v.index);
                volume_order.push(v.index);
                assert!(v.seen_ns <= v.read_ns && v.read_ns <= v.preprocessed_ns);
                assert!(v.preprocessed_ns >= last_preprocessed, "volume {}", v.index);
                last_preprocessed = v.preprocessed_ns;
                preprocessed.insert(v.index, v.preprocessed_ns);
            }
            SessionEvent::Gap(IngestEvent::Missing { index, .. }) => {
                accounted.push(*index);
                missing.push(*index);
            }
            SessionEvent::Sample(s) => {
                // Named by the scanner's index, after the volumes it averages.
                for i in &s.volumes {
                    let at = preprocessed.get(i).unwrap_or_else(|| {
                        panic!("trial {} names volume {i} before it came", s.trial)
                    });
                    assert!(s.sample_ns >= *at);
                }
                sampled.insert(s.trial, s.sample_ns);
            }
            SessionEvent::Decoded(t) => {
                let at = sampled.get(&t.trial).expect("decoded before its sample");
                assert!(t.decoded_ns >= *at);
                decoded.insert(t.trial, t.decoded_ns);
            }
            SessionEvent::Generated(r) => {
                let at = decoded.get(&r.trial).expect("drawn before it was decoded");
                assert!(r.generated_ns >= *at);
                generated.insert(r.trial);
            }
            SessionEvent::Ended(s) => ended_at = s.at_ns,
            SessionEvent::Error { stage, message, .. } => panic!("{stage}: {message}"),
            _ => {}
        }
    }
    accounted.sort();
    assert_eq!(accounted, (1..=40).collect::<Vec<u32>>());
    assert_eq!(missing, vec![12]);
    assert!(volume_order.windows(2).all(|w| w[0] < w[1]));
    assert!(ended_at >= last_preprocessed);
    let s = &outcome.summary;
    assert_eq!(s.counts.missing, 1);
    assert!(s.samples >= 5, "{} samples in 40 volumes", s.samples);
    assert_eq!((sampled.len(), decoded.len()), (s.samples, s.samples));
    assert_eq!(generated.len() + s.skipped_by_generator, decoded.len());
    assert!(!generated.is_empty());
}

/// Equal JSON, numbers within parsing's last bit (serde_json's default number parser may be
/// one unit in the last place off what was written).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        // Integers (indices, ns times) exactly; floats to the last bit or so.
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            _ => false,
        },
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Object(x), Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// A sink that panics on the third volume it sees.
struct Panicky(usize);

impl Sink for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn event(&mut self, event: &SessionEvent) -> Result<(), SinkError> {
        if let SessionEvent::Volume(_) = event {
            self.0 += 1;
            assert!(self.0 < 3, "a sink bug");
        }
        Ok(())
    }
}

/// A sink stuck on its first event for longer than the session waits for it.
struct Stalled;

impl Sink for Stalled {
    fn name(&self) -> &str {
        "stalled"
    }
    fn event(&mut self, _: &SessionEvent) -> Result<(), SinkError> {
        std::thread::sleep(Duration::from_secs(20));
        Ok(())
    }
}

#[test]
fn the_recorder_writes_what_a_sink_saw_and_bad_sinks_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (sim, bold, config) = common::short_simulated_session(d);
    let (keep, events) = kept();
    let mut spec = SessionSpec::new(config);
    spec.replay = Some(ReplaySource::new(bold, "max").unwrap());
    spec.sinks = vec![Box::new(Panicky(0)), Box::new(Stalled), Box::new(keep)];
    // Long enough for the panicking sink's thread to unwind (printing a backtrace can take
    // over half a second on a loaded 2-core machine), far shorter than the stalled one's 20 s.
    spec.sink_grace = Duration::from_secs(3);
    let started = std::time::Instant::now();
    let outcome = Session::start(spec).unwrap().wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the stalled sink held the run up"
    );

    // Both bad sinks are named in the outcome.
    let problems: Vec<String> = outcome
        .sink_problems
        .iter()
        .map(|p| format!("{}: {}", p.sink, p.message))
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("stalled: still busy")),
        "{problems:?}"
    );
    // The panic is reported: in the stream (and so the log) when the sink's thread got to it
    // before the run ended, in the outcome otherwise.
    let events = events.lock().unwrap().clone();
    let in_stream = events.iter().any(|e| {
        matches!(&**e, SessionEvent::Error { stage, message, .. }
            if stage == "sink panicky" && message.contains("panicked (a sink bug)"))
    });
    let in_outcome = problems
        .iter()
        .any(|p| p.starts_with("panicky: panicked (a sink bug)"));
    assert!(
        in_stream || in_outcome,
        "the panic was not reported: {problems:?}"
    );

    // The recorder's log is line for line what the other sink saw.
    let log = std::fs::read_to_string(&outcome.log).unwrap();
    let logged: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<serde_json::Value> = events.iter().map(|e| e.record()).collect();
    assert_eq!(logged.len(), seen.len());
    for (i, (l, s)) in logged.iter().zip(&seen).enumerate() {
        // The recorder adds where it wrote the maps; the rest is what the sink saw.
        let mut l = l.clone();
        if l["event"] == "quality_maps" {
            for key in ["tsnr_file", "carpet_file"] {
                let file = l[key].as_str().unwrap_or_else(|| panic!("no {key} in {l}"));
                assert!(Path::new(file).exists(), "{file}");
                l.as_object_mut().unwrap().remove(key);
            }
        }
        assert!(same(&l, s), "line {}: logged {l}, the sink saw {s}", i + 1);
    }
    assert_eq!(logged.last().unwrap()["event"], "run_ended");
    assert_eq!(
        logged.last().unwrap()["counts"]["delivered"],
        sim.volumes_per_run as u64
    );
    // The QA table has a row per preprocessed volume, in the stream's order.
    let qa = std::fs::read_to_string(&outcome.qa).unwrap();
    let rows: Vec<u64> = qa
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect();
    let volumes: Vec<u64> = events
        .iter()
        .filter_map(|e| match &**e {
            SessionEvent::Volume(v) => Some(v.index as u64),
            _ => None,
        })
        .collect();
    assert_eq!(rows, volumes);
    assert_eq!(volumes.len(), sim.volumes_per_run - sim.dummy_scans);
    assert!(!Path::new(&format!("{}.partial", outcome.log.display())).exists());
}
