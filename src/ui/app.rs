//! The window: an eframe app that drains the viewer message stream each frame into a
//! `ViewerState` and draws it: the status bar and controls on top, the gallery of trials on
//! the left, the current reconstruction and the volume's orthogonal slices in the middle, the
//! plots on the right. It sends `SessionCommand`s back and never touches the session itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use eframe::egui::{self, Color32, ColorImage, RichText, TextureHandle, TextureOptions};

use super::message::{Rgb, ViewerMessage};
use super::state::ViewerState;
use crate::event::SessionCommand;

const THUMB: f32 = 56.0;
const LARGE: f32 = 256.0;
const SLICE: f32 = 150.0;

pub struct ViewerApp {
    messages: Receiver<ViewerMessage>,
    commands: Option<Sender<SessionCommand>>,
    live: ViewerState,
    /// What is shown while the display is paused (the live state keeps filling).
    frozen: Option<ViewerState>,
    textures: HashMap<String, TextureHandle>,
    /// Volume index whose slices are in the slice textures.
    slices_of: Option<u32>,
    pub target_text: String,
    pub notice: Option<String>,
    snapshots: u32,
    /// The newest trial reported as displayed.
    displayed: Option<u64>,
}

impl ViewerApp {
    pub fn new(
        messages: Receiver<ViewerMessage>,
        commands: Option<Sender<SessionCommand>>,
    ) -> Self {
        ViewerApp {
            messages,
            commands,
            live: ViewerState::default(),
            frozen: None,
            textures: HashMap::new(),
            slices_of: None,
            target_text: String::new(),
            notice: None,
            snapshots: 0,
            displayed: None,
        }
    }

    /// Applies every waiting message; returns how many.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Ok(m) = self.messages.try_recv() {
            self.live.apply(m);
            n += 1;
        }
        n
    }

    /// The state on screen.
    pub fn shown(&self) -> &ViewerState {
        self.frozen.as_ref().unwrap_or(&self.live)
    }

    pub fn live(&self) -> &ViewerState {
        &self.live
    }

    pub fn paused(&self) -> bool {
        self.frozen.is_some()
    }

    /// Freezes (or resumes) what is shown; the session is told, for its log.
    pub fn set_paused(&mut self, paused: bool) {
        self.frozen = paused.then(|| self.live.clone());
        if let Some(tx) = &self.commands {
            let _ = tx.send(SessionCommand::DisplayPaused(paused));
        }
    }

    fn texture(
        &mut self,
        ctx: &egui::Context,
        key: &str,
        image: impl FnOnce() -> ColorImage,
        smooth: bool,
    ) -> TextureHandle {
        if let Some(t) = self.textures.get(key) {
            return t.clone();
        }
        let options = if smooth {
            TextureOptions::LINEAR
        } else {
            TextureOptions::NEAREST
        };
        let handle = ctx.load_texture(key, image(), options);
        self.textures.insert(key.to_string(), handle.clone());
        handle
    }

    fn rgb_texture(&mut self, ctx: &egui::Context, key: &str, rgb: &Rgb) -> TextureHandle {
        self.texture(
            ctx,
            key,
            || ColorImage::from_rgb([rgb.width, rgb.height], &rgb.pixels),
            true,
        )
    }

    /// Draws the whole window into `ui` (eframe calls this each frame; tests call it directly).
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        let state = self.shown().clone();
        egui::Panel::top("status").show(ui, |ui| self.top_bar(ui, &state));
        egui::Panel::left("gallery")
            .default_size(330.0)
            .show(ui, |ui| self.gallery(ui, &state));
        egui::Panel::right("plots")
            .default_size(430.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| super::plots::draw(ui, &state));
            });
        egui::CentralPanel::default().show(ui, |ui| {
            // Until the first volume, the start-up's steps are what there is to see.
            if state.volumes.is_empty() && !state.startup.is_empty() {
                super::startup::draw(ui, &state.startup);
            } else {
                self.centre(ui, &state);
            }
        });
    }

    fn top_bar(&mut self, ui: &mut egui::Ui, state: &ViewerState) {
        let title = state
            .session
            .as_ref()
            .map_or("brainmclip", |s| s.title.as_str());
        ui.horizontal(|ui| {
            ui.heading(title);
            if let Some(end) = &state.ended {
                ui.label(RichText::new(format!("run ended: {end}")).color(Color32::LIGHT_GREEN));
            }
        });
        ui.label(state.status_line());
        if let Some((line, flagged)) = state.monitor_line() {
            let colour = if flagged {
                Color32::from_rgb(255, 90, 70)
            } else {
                Color32::from_rgb(140, 210, 140)
            };
            ui.label(RichText::new(line).color(colour));
        }
        ui.horizontal(|ui| {
            let pause = if self.paused() {
                "Resume display"
            } else {
                "Pause display"
            };
            if ui.button(pause).clicked() {
                let paused = self.paused();
                self.set_paused(!paused);
            }
            let label = ui.label("Feedback target:");
            let edit = ui
                .add(
                    egui::TextEdit::singleline(&mut self.target_text)
                        .desired_width(260.0)
                        .hint_text("describe the target image"),
                )
                .labelled_by(label.id);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if (ui.button("Set target").clicked() || enter) && !self.target_text.trim().is_empty() {
                self.set_target();
            }
            if ui.button("Save snapshot").clicked() {
                self.save_snapshot(ui.ctx());
            }
            if let Some(n) = &self.notice {
                ui.label(n.as_str());
            }
        });
        if let Some(p) = state.problems.last() {
            ui.label(RichText::new(p).color(Color32::from_rgb(255, 120, 90)));
        }
    }

    fn set_target(&mut self) {
        let text = self.target_text.trim().to_string();
        self.notice = Some(match &self.commands {
            Some(tx) if tx.send(SessionCommand::SetTargetText(text.clone())).is_ok() => {
                format!("target set: \"{text}\"")
            }
            _ => "this run takes no commands".to_string(),
        });
    }

    /// `snapshots/` in the session folder, once the session is known.
    fn snapshot_dir(&self) -> Option<PathBuf> {
        self.shown()
            .session
            .as_ref()
            .map(|s| s.output_dir.join("snapshots"))
    }

    /// Saves the current reconstruction (and asks for a window screenshot, saved when it
    /// arrives) under the session folder's `snapshots/`.
    fn save_snapshot(&mut self, ctx: &egui::Context) {
        let Some(dir) = self.snapshot_dir() else {
            self.notice = Some("no session folder to save into".into());
            return;
        };
        self.snapshots += 1;
        self.notice = Some(match save_snapshot(self.shown(), &dir, self.snapshots) {
            Ok(path) => format!("saved {}", path.display()),
            Err(e) => e,
        });
        ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(egui::UserData::default()));
    }

    /// Writes window screenshots that have arrived.
    pub fn handle_screenshots(&mut self, ctx: &egui::Context) {
        let shots: Vec<std::sync::Arc<ColorImage>> = ctx.input(|i| {
            i.events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::Screenshot { image, .. } => Some(image.clone()),
                    _ => None,
                })
                .collect()
        });
        let Some(dir) = self.snapshot_dir() else {
            return;
        };
        for image in shots {
            let path = dir.join(format!("window-{:03}.png", self.snapshots));
            let rgba: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
            let saved = std::fs::create_dir_all(&dir).is_ok()
                && image::RgbaImage::from_raw(image.size[0] as u32, image.size[1] as u32, rgba)
                    .is_some_and(|img| img.save(&path).is_ok());
            if saved {
                self.notice = Some(format!("saved {}", path.display()));
            }
        }
    }

    fn gallery(&mut self, ui: &mut egui::Ui, state: &ViewerState) {
        ui.label(RichText::new("Trials: stimulus | reconstruction | top-3 retrieved").strong());
        let ctx = ui.ctx().clone();
        egui::ScrollArea::vertical()
            .stick_to_bottom(true)
            .show(ui, |ui| {
                for (trial, e) in &state.gallery {
                    ui.horizontal(|ui| {
                        ui.vertical(|ui| {
                            ui.label(format!("#{trial}"));
                            if let Some(f) = e.feedback {
                                ui.label(format!("{f:+.2}"));
                            }
                        });
                        for (key, image) in [("stim", &e.stimulus), ("recon", &e.reconstruction)] {
                            match image {
                                Some(rgb) => {
                                    let t = self.rgb_texture(&ctx, &format!("{key}-{trial}"), rgb);
                                    ui.add(
                                        egui::Image::new(&t)
                                            .fit_to_exact_size(egui::vec2(THUMB, THUMB)),
                                    );
                                }
                                None => {
                                    ui.add_sized([THUMB, THUMB], egui::Label::new("..."));
                                }
                            }
                        }
                        for (i, r) in e.top.iter().take(3).enumerate() {
                            if let Some(rgb) = &r.image {
                                let t = self.rgb_texture(&ctx, &format!("top-{trial}-{i}"), rgb);
                                ui.add(
                                    egui::Image::new(&t)
                                        .fit_to_exact_size(egui::vec2(THUMB * 0.6, THUMB * 0.6)),
                                )
                                .on_hover_text(format!("{} ({:.2})", r.name, r.cosine));
                            }
                        }
                    });
                }
            });
    }

    fn centre(&mut self, ui: &mut egui::Ui, state: &ViewerState) {
        let ctx = ui.ctx().clone();
        ui.horizontal(|ui| match state.current_entry() {
            Some(e) => {
                for (key, caption, image) in [
                    ("stim", "shown", &e.stimulus),
                    ("recon", "reconstructed", &e.reconstruction),
                ] {
                    ui.vertical(|ui| {
                        ui.label(format!("trial {} {caption}", e.trial));
                        if let Some(rgb) = image {
                            let t = self.rgb_texture(&ctx, &format!("{key}-{}", e.trial), rgb);
                            ui.add(
                                egui::Image::new(&t).fit_to_exact_size(egui::vec2(LARGE, LARGE)),
                            );
                        } else {
                            ui.add_sized([LARGE, LARGE], egui::Label::new("(not known)"));
                        }
                    });
                }
            }
            None => {
                ui.add_sized(
                    [2.0 * LARGE, LARGE],
                    egui::Label::new("waiting for the first reconstruction..."),
                );
            }
        });
        if let Some(trial) = state
            .current
            .filter(|t| self.displayed != Some(*t) && !self.paused())
        {
            self.displayed = Some(trial);
            if let Some(tx) = &self.commands {
                let _ = tx.send(SessionCommand::Displayed {
                    trial,
                    displayed_ns: crate::clock::now_ns(),
                });
            }
        }
        if let Some(e) = state.current_entry() {
            let latency = e.seen_to_drawn_ms.map_or(String::new(), |ms| {
                format!(" | volume seen -> drawn {ms:.0} ms")
            });
            let stim = e.stimulus_name.as_deref().unwrap_or("unknown stimulus");
            ui.label(format!("{stim}{latency}"));
        }
        ui.separator();
        self.volume_slices(ui, state);
    }

    fn volume_slices(&mut self, ui: &mut egui::Ui, state: &ViewerState) {
        let Some(v) = &state.latest_volume else {
            ui.label("no volume yet");
            return;
        };
        ui.label(format!(
            "volume {}: axial | coronal | sagittal (orange: all visual areas, cyan: high-level areas)",
            v.index
        ));
        let Some(slices) = &v.slices else { return };
        let ctx = ui.ctx().clone();
        let fresh = self.slices_of != Some(v.index);
        let planes = [
            ("axial", &slices.axial),
            ("coronal", &slices.coronal),
            ("sagittal", &slices.sagittal),
        ];
        ui.horizontal(|ui| {
            for (name, plane) in planes {
                let roi = v.roi.as_ref().map(|r| match name {
                    "axial" => &r.axial,
                    "coronal" => &r.coronal,
                    _ => &r.sagittal,
                });
                let image = super::slices::plane_image(plane, roi);
                let key = format!("slice-{name}");
                if fresh {
                    if let Some(t) = self.textures.get_mut(&key) {
                        t.set(image.clone(), TextureOptions::NEAREST);
                    }
                }
                let t = self.texture(&ctx, &key, || image, false);
                let aspect = plane.height as f32 / plane.width.max(1) as f32;
                ui.add(egui::Image::new(&t).fit_to_exact_size(egui::vec2(SLICE, SLICE * aspect)));
            }
        });
        self.slices_of = Some(v.index);
    }
}

/// `snapshots/snapshot-NNN-trial-T.png`: the current reconstruction beside its stimulus (when
/// known), each scaled to 256 px.
pub fn save_snapshot(state: &ViewerState, dir: &Path, n: u32) -> Result<PathBuf, String> {
    let e = state
        .current_entry()
        .ok_or_else(|| "no reconstruction to save yet".to_string())?;
    let recon = e
        .reconstruction
        .as_ref()
        .ok_or("no reconstruction to save yet")?;
    let to_image = |rgb: &Rgb| {
        image::RgbImage::from_raw(rgb.width as u32, rgb.height as u32, rgb.pixels.to_vec())
            .map(|i| image::imageops::resize(&i, 256, 256, image::imageops::FilterType::Nearest))
    };
    let parts: Vec<image::RgbImage> = [e.stimulus.as_ref(), Some(recon)]
        .into_iter()
        .flatten()
        .filter_map(to_image)
        .collect();
    let mut sheet = image::RgbImage::new(256 * parts.len() as u32, 256);
    for (i, p) in parts.iter().enumerate() {
        image::imageops::replace(&mut sheet, p, 256 * i as i64, 0);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    let path = dir.join(format!("snapshot-{n:03}-trial-{}.png", e.trial));
    sheet
        .save(&path)
        .map_err(|err| format!("{}: cannot write: {err}", path.display()))?;
    Ok(path)
}

impl eframe::App for ViewerApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.drain();
        let ctx = ui.ctx().clone();
        self.handle_screenshots(&ctx);
        self.draw(ui);
        // The stream arrives at scanner pace: ten frames a second keeps up without spinning.
        ctx.request_repaint_after(Duration::from_millis(100));
    }
}
