//! Where a session's events go. Every sink implements one small trait (`Sink`) and runs on its
//! own thread behind its own bounded queue (`Fanout`), so a slow, stalled or panicking sink
//! never holds up the session or the other sinks: it is reported (as an error event the other
//! sinks record) and, if it panicked, receives nothing more.
//!
//! The sinks: `recorder` (events.jsonl, qa.tsv, reconstruction PNGs), `feedback` (the TCP
//! server for the stimulus computer), `viewer` (the window's message stream), `console` (the
//! log lines). Adding one is a file here and a line in `crate::session`.

pub mod carpet_spool;
pub mod console;
pub mod feedback;
pub mod line_file;
pub mod recorder;
pub mod viewer;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};

use crate::event::SessionEvent;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
    /// Several reports from one event (each reported on its own).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Several(Vec<SinkError>),
}

impl SinkError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> SinkError {
        SinkError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A consumer of the session's events, called on its own thread, in the stream's order.
pub trait Sink: Send {
    /// A short name for reports ("recorder", "viewer").
    fn name(&self) -> &str;
    /// One event. An error is reported once per distinct message and the sink keeps getting
    /// events.
    fn event(&mut self, event: &SessionEvent) -> Result<(), SinkError>;
    /// After the last event (e.g. sync and rename files into place).
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// How many events a sink may fall behind before it misses some (counted and reported).
pub const QUEUE: usize = 4096;

/// A problem a sink had, for the session to report.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkProblem {
    pub sink: String,
    pub message: String,
}

struct Running {
    name: String,
    queue: Option<Sender<Arc<SessionEvent>>>,
    thread: Option<JoinHandle<()>>,
    /// Events it missed because its queue was full.
    dropped: u64,
}

/// The sinks of a session, each on its own thread. `send` never blocks.
pub struct Fanout {
    sinks: Vec<Running>,
    problems_tx: Sender<SinkProblem>,
    problems: Receiver<SinkProblem>,
}

impl Fanout {
    pub fn start(sinks: Vec<Box<dyn Sink>>, capacity: usize) -> Fanout {
        let (problems_tx, problems) = unbounded();
        let mut fanout = Fanout {
            sinks: Vec::new(),
            problems_tx,
            problems,
        };
        for sink in sinks {
            fanout.add(sink, capacity);
        }
        fanout
    }

    fn add(&mut self, sink: Box<dyn Sink>, capacity: usize) {
        let name = sink.name().to_string();
        let (queue, inbox) = bounded(capacity.max(1));
        let problems = self.problems_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || serve(sink, inbox, problems));
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                let _ = self.problems_tx.send(SinkProblem {
                    sink: name.clone(),
                    message: format!("cannot start its thread: {e}"),
                });
                None
            }
        };
        self.sinks.push(Running {
            name,
            queue: thread.as_ref().map(|_| queue),
            thread,
            dropped: 0,
        });
    }

    /// Problems the sinks have reported (panics, errors, full queues).
    pub fn problems(&self) -> &Receiver<SinkProblem> {
        &self.problems
    }

    /// Hands the event to every sink still running; a sink whose queue is full misses it
    /// (reported the first time, counted always).
    pub fn send(&mut self, event: Arc<SessionEvent>) {
        for s in &mut self.sinks {
            let Some(queue) = &s.queue else { continue };
            match queue.try_send(event.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    if s.dropped == 0 {
                        let _ = self.problems_tx.send(SinkProblem {
                            sink: s.name.clone(),
                            message: format!(
                                "not keeping up: its queue of {} events is full, so it misses \
                                 events until it catches up",
                                queue.capacity().unwrap_or(0)
                            ),
                        });
                    }
                    s.dropped += 1;
                }
                // It stopped (it panicked; already reported).
                Err(TrySendError::Disconnected(_)) => s.queue = None,
            }
        }
    }

    /// Ends every sink's queue and waits up to `grace` for them to finish; returns the problems
    /// not yet taken from `problems`, what each sink missed, and the sinks still running at the
    /// deadline (left to finish on their own).
    pub fn finish(mut self, grace: Duration) -> Vec<SinkProblem> {
        for s in &mut self.sinks {
            s.queue = None;
        }
        let deadline = Instant::now() + grace;
        let mut late = Vec::new();
        for s in &mut self.sinks {
            let Some(thread) = s.thread.take() else {
                continue;
            };
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                late.push(SinkProblem {
                    sink: s.name.clone(),
                    message: format!(
                        "still busy {:.1} s after the run ended; left to finish on its own",
                        grace.as_secs_f64()
                    ),
                });
            }
            if s.dropped > 0 {
                late.push(SinkProblem {
                    sink: s.name.clone(),
                    message: format!("missed {} events while it was behind", s.dropped),
                });
            }
        }
        let mut all: Vec<SinkProblem> = self.problems.try_iter().collect();
        all.extend(late);
        all
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// A sink's thread: every event in order; errors reported once per distinct message; a panic
/// reported and the sink dropped.
fn serve(
    mut sink: Box<dyn Sink>,
    inbox: Receiver<Arc<SessionEvent>>,
    problems: Sender<SinkProblem>,
) {
    let name = sink.name().to_string();
    let mut reported = std::collections::HashSet::new();
    let mut report = |message: String| {
        if reported.insert(message.clone()) {
            let _ = problems.send(SinkProblem {
                sink: name.clone(),
                message,
            });
        }
    };
    for event in inbox.iter() {
        match catch_unwind(AssertUnwindSafe(|| sink.event(&event))) {
            Ok(Ok(())) => {}
            Ok(Err(SinkError::Several(all))) => all.iter().for_each(|e| report(e.to_string())),
            Ok(Err(e)) => report(e.to_string()),
            Err(payload) => {
                report(format!(
                    "panicked ({}); it gets no more events",
                    panic_text(payload.as_ref())
                ));
                return;
            }
        }
    }
    match catch_unwind(AssertUnwindSafe(|| sink.finish())) {
        Ok(Ok(())) => {}
        Ok(Err(SinkError::Several(all))) => all.iter().for_each(|e| report(e.to_string())),
        Ok(Err(e)) => report(e.to_string()),
        Err(payload) => report(format!(
            "panicked while finishing ({})",
            panic_text(payload.as_ref())
        )),
    }
}
