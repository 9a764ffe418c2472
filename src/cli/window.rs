//! What `run` and `demo` share at the command line: running a session with or without the
//! window (eframe needs the main thread, so the session's caller moves to a worker), and ending
//! the run on Ctrl-C or SIGTERM.

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};

use brainmclip::event::SessionCommand;
use brainmclip::session::{Session, SessionOutcome, SessionSpec};
use brainmclip::sink::viewer::ViewerSink;
use brainmclip::startup::Startup;
use brainmclip::ui::message::ViewerMessage;

/// Starts the session from `spec` and waits for it, with the window on this thread when
/// `title` is given (the window stays open after the run until it is closed; closing it ends
/// the run, what was received still logged).
pub fn run_session(spec: SessionSpec, title: Option<String>) -> Result<SessionOutcome> {
    run_prepared(title, move |_| Ok((spec, ()))).map(|(outcome, ())| outcome)
}

/// As `run_session`, with the session built by `prepare` on the run's thread, so the window
/// opens at once and shows each start-up step (simulating, loading, embedding) as it happens;
/// headless, the steps go to the console. `prepare` returns the spec and whatever the caller
/// needs after the run. An error in it is shown in the window (kept open until closed) and
/// returned.
pub fn run_prepared<T, F>(title: Option<String>, prepare: F) -> Result<(SessionOutcome, T)>
where
    T: Send + 'static,
    F: FnOnce(&Startup) -> Result<(SessionSpec, T)> + Send + 'static,
{
    let Some(title) = title else {
        let startup = Startup::silent().console();
        let (mut spec, kept) = prepare(&startup)?;
        spec.startup = startup;
        return Ok((run(spec)?, kept));
    };
    // Bounded: a stalled window drops messages (counted) rather than hold up the run.
    let (messages, inbox) = crossbeam_channel::bounded(4096);
    let (commands, command_inbox): (Sender<SessionCommand>, Receiver<SessionCommand>) =
        crossbeam_channel::unbounded();
    let to_window = messages.clone();
    let startup = Startup::silent().console().with(move |update| {
        let _ = to_window.try_send(ViewerMessage::Startup(update.clone()));
    });
    let viewer_title = title.clone();
    let worker = std::thread::Builder::new()
        .name("run".into())
        .spawn(move || {
            let prepared = prepare(&startup).and_then(|(mut spec, kept)| {
                spec.sinks
                    .push(Box::new(ViewerSink::new(messages.clone(), &viewer_title)));
                spec.commands = Some(command_inbox);
                spec.startup = startup;
                Ok((run(spec)?, kept))
            });
            if let Err(e) = &prepared {
                let _ = messages.try_send(ViewerMessage::Problem(format!("{e:#}")));
                let _ = messages.try_send(ViewerMessage::Ended("did not start".into()));
            }
            prepared
        })
        .context("cannot start the run thread")?;
    let shown = brainmclip::ui::run_window(&title, inbox, Some(commands.clone()));
    // The window is closed: end the run if it is still going.
    let _ = commands.send(SessionCommand::Stop);
    let outcome = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the run thread panicked"))?;
    shown?;
    outcome
}

fn run(spec: SessionSpec) -> Result<SessionOutcome> {
    let session = Session::start(spec)?;
    stop_on_signal(session.commands());
    Ok(session.wait()?)
}

/// Ctrl-C or SIGTERM ends the run; everything received is still processed and logged.
fn stop_on_signal(commands: Sender<SessionCommand>) {
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(shutdown_signal());
            let _ = commands.send(SessionCommand::Stop);
        }
    });
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
