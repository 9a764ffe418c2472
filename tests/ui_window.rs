//! The window driven by a scripted message stream, rendered headless (egui_kittest on wgpu;
//! `.ci/run` installs Debian's mesa-vulkan-drivers so every machine renders alike). Snapshots
//! live in tests/snapshots/; refresh them with `UPDATE_SNAPSHOTS=true cargo test --test ui_window`.

use std::sync::Arc;

use brainmclip::event::SessionCommand;
use brainmclip::preprocess::monitor::{Monitor, MonitorSettings};
use brainmclip::preprocess::slices::{roi_labels, OrthoSlices};
use brainmclip::startup::{StartupUpdate, StepState};
use brainmclip::ui::app::ViewerApp;
use brainmclip::ui::message::{
    ReconstructionView, Retrieved, Rgb, SessionInfo, TrialView, ViewerMessage, VolumeView,
};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

const DIMS: [usize; 3] = [32, 32, 16];

/// A blob-shaped 32x32x16 "brain" with a gradient, the same every time.
fn volume(shift: f32) -> Vec<f32> {
    let [nx, ny, nz] = DIMS;
    let mut v = Vec::with_capacity(nx * ny * nz);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let (dx, dy, dz) = (x as f32 - 16.0, y as f32 - 16.0, (z as f32 - 8.0) * 2.0);
                let r = (dx * dx + dy * dy + dz * dz).sqrt();
                v.push(if r < 14.0 {
                    500.0 + 10.0 * x as f32 + shift
                } else {
                    0.0
                });
            }
        }
    }
    v
}

/// A 32x32 picture: a coloured disc on a tinted background.
fn picture(seed: u8) -> Rgb {
    let mut px = Vec::with_capacity(32 * 32 * 3);
    for y in 0..32i32 {
        for x in 0..32i32 {
            let inside = (x - 16 + seed as i32 % 5).pow(2) + (y - 14).pow(2) < 80;
            let c = if inside {
                [200, 40u8.wrapping_add(seed.wrapping_mul(30)), 60]
            } else {
                [30, 60, 90u8.wrapping_add(seed.wrapping_mul(20))]
            };
            px.extend(c);
        }
    }
    Rgb::new(32, 32, px).unwrap()
}

fn roi() -> Arc<OrthoSlices<u8>> {
    let [nx, ny, _] = DIMS;
    let idx = |x: usize, y: usize, z: usize| x + nx * (y + ny * z);
    let detail: Vec<usize> = (4..12)
        .flat_map(|z| (6..14).flat_map(move |y| (8..24).map(move |x| idx(x, y, z))))
        .collect();
    let semantic: Vec<usize> = (4..12)
        .flat_map(|z| (6..10).flat_map(move |y| (8..14).map(move |x| idx(x, y, z))))
        .collect();
    let labels = roi_labels(DIMS, &detail, &semantic);
    Arc::new(OrthoSlices::cut(&labels, DIMS, [12, 9, 8]).unwrap())
}

/// Forty volumes, one missing and one late, six trials (five drawn), feedback values.
fn script() -> Vec<ViewerMessage> {
    let mut m = vec![ViewerMessage::Session(SessionInfo {
        title: "brainmclip demo: scripted stream".into(),
        volumes: Some(60),
        tr_s: 1.5,
        device: "CPU (2 threads)".into(),
        output_dir: std::env::temp_dir().join("brainmclip-ui-test"),
        feedback_label: Some("cosine with \"a large red circle\"".into()),
        monitor: Default::default(),
    })];
    // The console's figures from the real monitor: one FD over the 0.5 mm limit at volume 25
    // and a signal jump at volume 32 (a DVARS spike), so both plots mark a volume.
    let mut monitor = Monitor::new(MonitorSettings {
        fd_thresholds_mm: vec![0.2, 0.3, 0.5],
        target_minutes: 10.0,
        tr_s: 1.5,
        fd_limit_mm: 0.5,
        std_dvars_limit: 1.5,
        groups: vec![
            ("detail".into(), (0..8).collect()),
            ("semantic".into(), (4..8).collect()),
        ],
    });
    m.push(ViewerMessage::Dummy { index: 0 });
    let roi = roi();
    for i in 1..40u32 {
        if i == 17 {
            m.push(ViewerMessage::Missing { index: 17 });
            continue;
        }
        let t = i as f32;
        let fd = (i > 1).then_some(if i == 25 {
            0.8
        } else {
            0.05 + 0.03 * (t / 3.0).sin().abs()
        });
        let jump = if i == 32 { 40.0 } else { 0.0 };
        let voxels: Vec<f32> = (0..8)
            .map(|k| 600.0 + 10.0 * k as f32 + 3.0 * (t * 0.7 + k as f32).sin() + jump)
            .collect();
        let figures = monitor.push(fd, &voxels);
        m.push(ViewerMessage::Volume(VolumeView {
            index: i,
            motion: Some([
                0.02 * t,
                -0.01 * t,
                0.005 * t,
                0.01 * (t / 5.0).sin(),
                0.0,
                -0.004 * t,
            ]),
            fd_mm: fd,
            global_signal: 600.0 + 5.0 * (t / 4.0).sin(),
            mean_z_detail: Some(0.3 * (t / 6.0).sin()),
            mean_z_semantic: Some(0.2 * (t / 5.0).cos()),
            monitor: Some(figures),
            read_ms: 1.0 + 0.1 * (i % 3) as f64,
            preprocess_ms: 8.0 + (i % 4) as f64,
            slices: Some(Arc::new(
                OrthoSlices::cut(&volume(t), DIMS, [12, 9, 8]).unwrap(),
            )),
            roi: Some(roi.clone()),
        }));
    }
    m.push(ViewerMessage::Late { index: 17 });
    for trial in 1..=6u64 {
        let s = trial as u8;
        m.push(ViewerMessage::Trial(TrialView {
            trial,
            stimulus_name: Some(format!("stimuli/test{trial:05}.png")),
            stimulus: Some(picture(s)),
            feedback: Some(0.1 * trial as f64 - 0.2),
            top: (0..3)
                .map(|k| Retrieved {
                    name: format!("test{:05}.png", trial + k),
                    cosine: 0.9 - 0.1 * k as f32,
                    image: Some(picture(s + k as u8)),
                })
                .collect(),
            decode_ms: 0.4,
        }));
        if trial < 6 {
            m.push(ViewerMessage::Reconstruction(ReconstructionView {
                trial,
                image: picture(s + 1),
                generate_ms: 90.0 + trial as f64,
                seen_to_drawn_ms: Some(150.0 + 5.0 * trial as f64),
                skipped_before: usize::from(trial == 3),
            }));
        }
    }
    m.push(ViewerMessage::Queues {
        pipeline: 0,
        generator_waiting: true,
    });
    m
}

fn app_with(
    messages: Vec<ViewerMessage>,
) -> (
    ViewerApp,
    crossbeam_channel::Sender<ViewerMessage>,
    crossbeam_channel::Receiver<SessionCommand>,
) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (ctx, crx) = crossbeam_channel::unbounded();
    for m in messages {
        tx.send(m).unwrap();
    }
    (ViewerApp::new(rx, Some(ctx)), tx, crx)
}

fn harness(app: ViewerApp) -> Harness<'static, ViewerApp> {
    Harness::builder()
        .with_size(eframe::egui::vec2(1280.0, 800.0))
        .build_ui_state(
            |ui, app: &mut ViewerApp| {
                app.drain();
                app.draw(ui);
            },
            app,
        )
}

#[test]
fn the_scripted_session_renders_like_its_snapshot() {
    let (app, _tx, _commands) = app_with(script());
    let mut h = harness(app);
    h.run_steps(4);
    let state = h.state().shown();
    assert_eq!(state.volumes.len(), 38);
    assert_eq!(state.current, Some(5));
    let status = state.status_line();
    assert!(
        status.starts_with("volume 40 of 60 | missing 1 | late 1"),
        "{status}"
    );
    h.get_by_label("Pause display");
    h.get_by_label("Save snapshot");
    h.snapshot("window_scripted_session");
}

/// The demo's start-up as the window shows it before the first volume: two steps done (one
/// reused from its cache), the gallery being embedded, the scanner awaited; then the first
/// volume replaces the panel.
#[test]
fn the_start_up_panel_shows_each_step_until_the_first_volume() {
    let update = |step: &str, state: StepState| {
        ViewerMessage::Startup(StartupUpdate {
            step: step.into(),
            state,
        })
    };
    let running = |done, total| StepState::Running { done, total };
    let done = |seconds, detail: &str| StepState::Done {
        seconds,
        detail: Some(detail.into()),
    };
    let steps = vec![
        update("finding the shipped models", running(0, None)),
        update("finding the shipped models", done(0.02, "calibration/demo")),
        update("simulating test run 1", running(0, None)),
        update(
            "simulating test run 1",
            done(0.31, "reused from demo-out/sim"),
        ),
        update("loading the decoder", done(1.24, "CPU (2 threads)")),
        update("embedding the gallery (2637 images)", running(0, None)),
        update(
            "embedding the gallery (2637 images)",
            running(1024, Some(2637)),
        ),
    ];
    let (app, tx, _commands) = app_with(steps);
    let mut h = harness(app);
    h.run_steps(2);
    let rows = &h.state().shown().startup;
    assert_eq!(rows.len(), 4, "one row per step, updated in place");
    assert_eq!(rows[3].state, running(1024, Some(2637)));
    h.get_by_label("Starting up");
    h.get_by_label("1024 of 2637");
    h.get_by_label("0.3 s: reused from demo-out/sim");
    h.snapshot("window_startup");

    let first = script()
        .into_iter()
        .find(|m| matches!(m, ViewerMessage::Volume(_)))
        .unwrap();
    tx.send(first).unwrap();
    h.run_steps(2);
    assert!(
        h.query_by_label("Starting up").is_none(),
        "the panel stays after the first volume"
    );
}

#[test]
fn pause_freezes_the_display_while_the_stream_goes_on() {
    let (app, tx, _commands) = app_with(script());
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label("Pause display").click();
    h.run_steps(2);
    assert!(h.state().paused());
    tx.send(ViewerMessage::Reconstruction(ReconstructionView {
        trial: 6,
        image: picture(9),
        generate_ms: 95.0,
        seen_to_drawn_ms: Some(170.0),
        skipped_before: 0,
    }))
    .unwrap();
    h.run_steps(2);
    assert_eq!(
        h.state().shown().current,
        Some(5),
        "paused display moved on"
    );
    assert_eq!(
        h.state().live().current,
        Some(6),
        "the live state must keep filling"
    );
    h.get_by_label("Resume display").click();
    h.run_steps(2);
    assert_eq!(h.state().shown().current, Some(6));
}

#[test]
fn a_typed_target_is_sent_to_the_run_and_displayed_trials_are_reported() {
    let (app, _tx, commands) = app_with(script());
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label("Feedback target:").click();
    h.run_steps(1);
    h.get_by_label("Feedback target:")
        .type_text("a small blue square");
    h.run_steps(1);
    h.get_by_label("Set target").click();
    h.run_steps(2);
    let received: Vec<SessionCommand> = commands.try_iter().collect();
    assert!(
        received.contains(&SessionCommand::SetTargetText("a small blue square".into())),
        "{received:?}"
    );
    assert!(
        received
            .iter()
            .any(|c| matches!(c, SessionCommand::Displayed { trial: 5, displayed_ns } if *displayed_ns > 0)),
        "{received:?}"
    );
}

#[test]
fn save_snapshot_writes_the_current_stimulus_and_reconstruction() {
    let out = tempfile::tempdir().unwrap();
    let mut messages = script();
    if let ViewerMessage::Session(s) = &mut messages[0] {
        s.output_dir = out.path().to_owned();
    }
    let (app, _tx, _commands) = app_with(messages);
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label("Save snapshot").click();
    h.run_steps(2);
    let path = out.path().join("snapshots/snapshot-001-trial-5.png");
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (512, 256));
    // Left half: the stimulus of trial 5 (picture(5)); right: its reconstruction (picture(6)).
    let expect = |p: &Rgb, x: u32, y: u32| {
        let i = ((y / 8) * 32 + x / 8) as usize * 3;
        [p.pixels[i], p.pixels[i + 1], p.pixels[i + 2]]
    };
    assert_eq!(img.get_pixel(4, 4).0, expect(&picture(5), 4, 4));
    assert_eq!(
        img.get_pixel(256 + 128, 112).0,
        expect(&picture(6), 128, 112)
    );
}
