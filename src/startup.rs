//! Start-up progress: the steps a run takes before its first volume (finding the models,
//! simulating the demo's run, loading the models, embedding the gallery), reported to whoever
//! listens as each begins, advances and ends: the window's start-up panel (`ui::startup`) and
//! the console (`Startup::console`). It does no step itself; the code doing a step holds a
//! `Step` and says how far it got. Without a listener every call is a no-op.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where a step is.
#[derive(Debug, Clone, PartialEq)]
pub enum StepState {
    /// Begun; `done` of `total` units when the step can count (images embedded, say).
    Running { done: u64, total: Option<u64> },
    /// Finished after `seconds`; `detail` says how (e.g. "reused from its cache").
    Done {
        seconds: f64,
        detail: Option<String>,
    },
    /// Ended without finishing (the error itself is reported where it happened).
    Failed { seconds: f64 },
}

/// One change of one step, identified by its label.
#[derive(Debug, Clone, PartialEq)]
pub struct StartupUpdate {
    pub step: String,
    pub state: StepState,
}

type Listener = Arc<dyn Fn(&StartupUpdate) + Send + Sync>;

/// The reporter handed down to what starts a run. Cheap to clone.
#[derive(Clone, Default)]
pub struct Startup {
    listeners: Vec<Listener>,
}

impl std::fmt::Debug for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Startup({} listeners)", self.listeners.len())
    }
}

impl Startup {
    /// Reports to nobody.
    pub fn silent() -> Startup {
        Startup::default()
    }

    /// Adds a listener (called on the thread doing the step; it must be quick).
    pub fn with(mut self, listener: impl Fn(&StartupUpdate) + Send + Sync + 'static) -> Startup {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Adds the console's listener: a line on stderr when a step begins, at each quarter of a
    /// counted step, and when it ends, with its time.
    pub fn console(self) -> Startup {
        let quarters = Mutex::new(std::collections::HashMap::<String, u64>::new());
        self.with(move |u| {
            if let Some(line) = console_line(u, &quarters) {
                eprintln!("{line}");
            }
        })
    }

    /// Begins a step.
    pub fn step(&self, label: impl Into<String>) -> Step {
        let step = Step {
            label: label.into(),
            started: Instant::now(),
            startup: self.clone(),
            ended: false,
        };
        step.send(StepState::Running {
            done: 0,
            total: None,
        });
        step
    }

    fn send(&self, update: &StartupUpdate) {
        for listener in &self.listeners {
            listener(update);
        }
    }
}

/// A step under way. Dropped without `done`, it reports itself failed.
pub struct Step {
    label: String,
    started: Instant,
    startup: Startup,
    ended: bool,
}

impl Step {
    /// `done` of `total` units so far.
    pub fn progress(&self, done: u64, total: u64) {
        self.send(StepState::Running {
            done,
            total: Some(total),
        });
    }

    /// The step finished.
    pub fn done(mut self, detail: Option<String>) {
        self.ended = true;
        let seconds = self.started.elapsed().as_secs_f64();
        self.send(StepState::Done { seconds, detail });
    }

    fn send(&self, state: StepState) {
        self.startup.send(&StartupUpdate {
            step: self.label.clone(),
            state,
        });
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.ended {
            let seconds = self.started.elapsed().as_secs_f64();
            self.send(StepState::Failed { seconds });
        }
    }
}

/// The console's line for an update, if it gets one (`quarters` remembers how far each
/// counted step was last printed).
fn console_line(
    u: &StartupUpdate,
    quarters: &Mutex<std::collections::HashMap<String, u64>>,
) -> Option<String> {
    let step = &u.step;
    match &u.state {
        StepState::Running { total: None, .. } => Some(format!("start-up: {step}...")),
        StepState::Running {
            done,
            total: Some(total),
        } => {
            let quarter = if *total == 0 { 4 } else { done * 4 / total };
            let mut printed = quarters.lock().unwrap_or_else(|p| p.into_inner());
            let last = printed.entry(step.clone()).or_insert(0);
            (quarter > *last && quarter < 4).then(|| {
                *last = quarter;
                format!("start-up: {step}: {done} of {total}")
            })
        }
        StepState::Done { seconds, detail } => Some(match detail {
            Some(d) => format!("start-up: {step}: done in {seconds:.1} s ({d})"),
            None => format!("start-up: {step}: done in {seconds:.1} s"),
        }),
        StepState::Failed { seconds } => {
            Some(format!("start-up: {step}: failed after {seconds:.1} s"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> (Startup, Arc<Mutex<Vec<StartupUpdate>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let startup = Startup::silent().with(move |u| sink.lock().unwrap().push(u.clone()));
        (startup, seen)
    }

    #[test]
    fn a_step_reports_begin_progress_and_end_in_order() {
        let (startup, seen) = recorded();
        let step = startup.step("embedding the gallery");
        step.progress(32, 64);
        step.done(Some("reused".into()));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|u| u.step == "embedding the gallery"));
        assert_eq!(
            seen[0].state,
            StepState::Running {
                done: 0,
                total: None
            }
        );
        assert_eq!(
            seen[1].state,
            StepState::Running {
                done: 32,
                total: Some(64)
            }
        );
        assert!(matches!(&seen[2].state, StepState::Done { detail: Some(d), .. } if d == "reused"));
    }

    #[test]
    fn a_step_dropped_unfinished_reports_failure() {
        let (startup, seen) = recorded();
        drop(startup.step("loading the decoder"));
        let seen = seen.lock().unwrap();
        assert!(matches!(seen[1].state, StepState::Failed { .. }));
    }

    #[test]
    fn the_console_prints_each_quarter_once() {
        let quarters = Mutex::new(Default::default());
        let lines: Vec<String> = [0u64, 10, 26, 30, 55, 80, 99, 100]
            .iter()
            .filter_map(|&done| {
                console_line(
                    &StartupUpdate {
                        step: "x".into(),
                        state: StepState::Running {
                            done,
                            total: Some(100),
                        },
                    },
                    &quarters,
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                "start-up: x: 26 of 100",
                "start-up: x: 55 of 100",
                "start-up: x: 80 of 100"
            ]
        );
    }
}
