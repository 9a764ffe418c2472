//! The live window (eframe + egui_plot). It consumes one typed message stream
//! (`message::ViewerMessage`), keeps what it needs in `state::ViewerState`, and draws it in
//! `app::ViewerApp`; the only thing it sends back is the session's `SessionCommand`. It does
//! not run or know the session: the viewer sink (`sink::viewer`) translates session events into
//! messages, and tests drive it with a scripted stream. Before the first volume it shows the
//! start-up's steps (`startup`).

pub mod app;
pub mod message;
mod plots;
mod slices;
mod startup;
pub mod state;

use crossbeam_channel::{Receiver, Sender};

use crate::event::SessionCommand;
use message::ViewerMessage;

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("cannot open the window: {0} (use --headless where there is no display)")]
    Window(String),
}

/// True when a window can be opened here (an X11 or Wayland display is set).
pub fn display_available() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Opens the window on this (the main) thread and returns when it is closed.
pub fn run_window(
    title: &str,
    messages: Receiver<ViewerMessage>,
    commands: Option<Sender<SessionCommand>>,
) -> Result<(), UiError> {
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_inner_size([1280.0, 800.0])
            .with_title(title),
        ..Default::default()
    };
    eframe::run_native(
        title,
        options,
        Box::new(move |_cc| Ok(Box::new(app::ViewerApp::new(messages, commands)))),
    )
    .map_err(|e| UiError::Window(e.to_string()))
}
