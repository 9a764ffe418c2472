//! The start-up panel: what the run is doing before its first volume (finding and loading the
//! models, simulating, embedding the gallery, waiting for the scanner), one row per step with
//! its progress or its time. It draws the state's `startup` rows and nothing else.

use eframe::egui::{self, Color32, RichText};

use crate::startup::{StartupUpdate, StepState};

const DONE: Color32 = Color32::from_rgb(140, 210, 140);
const FAILED: Color32 = Color32::from_rgb(255, 90, 70);
const RUNNING: Color32 = Color32::from_rgb(240, 200, 90);

pub fn draw(ui: &mut egui::Ui, steps: &[StartupUpdate]) {
    ui.add_space(12.0);
    ui.heading("Starting up");
    ui.label("Each step before the first volume, as it happens.");
    ui.add_space(8.0);
    egui::Grid::new("startup-steps")
        .num_columns(3)
        .spacing([16.0, 10.0])
        .show(ui, |ui| {
            for step in steps {
                row(ui, step);
                ui.end_row();
            }
        });
}

fn row(ui: &mut egui::Ui, step: &StartupUpdate) {
    let (mark, colour) = match step.state {
        StepState::Running { .. } => ("working", RUNNING),
        StepState::Done { .. } => ("done", DONE),
        StepState::Failed { .. } => ("failed", FAILED),
    };
    ui.label(RichText::new(mark).color(colour).strong());
    ui.label(&step.step);
    match &step.state {
        StepState::Running {
            done,
            total: Some(total),
        } if *total > 0 => {
            let fraction = (*done as f32 / *total as f32).clamp(0.0, 1.0);
            ui.add(
                egui::ProgressBar::new(fraction)
                    .desired_width(200.0)
                    .text(format!("{done} of {total}")),
            );
        }
        StepState::Running { .. } => {
            ui.label("...");
        }
        StepState::Done { seconds, detail } => {
            let time = format!("{seconds:.1} s");
            ui.label(match detail {
                Some(d) => format!("{time}: {d}"),
                None => time,
            });
        }
        StepState::Failed { seconds } => {
            ui.label(
                RichText::new(format!("after {seconds:.1} s (the error is shown above)"))
                    .color(FAILED),
            );
        }
    }
}
