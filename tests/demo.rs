//! The golden end-to-end run: `demo --headless --speed max`, started outside the repository (it
//! finds the shipped models on its own), with the shipped models decodes every trial of the
//! held-out demo run, draws reconstructions, and scores above stated thresholds;
//! its per-trial outputs (decoded feedback-free records and the mean colour of each drawn image)
//! equal stored golden values within a tolerance. Refresh with
//! `UPDATE_GOLDEN=1 cargo test --test demo` after a change meant to alter them (say why).

use std::path::Path;
use std::process::Command;

#[test]
fn demo_headless_decodes_every_trial_above_thresholds_and_matches_golden() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    // A working directory with no `assets/` or `calibration/` in it.
    let first_stderr = demo_in(dir.path(), &[]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("session/summary.json")).unwrap())
            .unwrap();
    // Every trial of the run is decoded (70 images in a 200-volume run).
    assert_eq!(summary["trials_decoded"], 70, "{summary}");
    let drawn = summary["reconstructions"].as_u64().unwrap();
    let skipped = summary["skipped_by_generator"].as_u64().unwrap();
    assert_eq!(
        drawn + skipped,
        70,
        "every trial is drawn or counted as skipped"
    );
    let identification = summary["semantic_identification"]["mean"].as_f64().unwrap();
    let pixcorr = summary["pixcorr"]["mean"].as_f64().unwrap();
    // Single trials of the held-out run (the calibration report averages 3 repeats): 0.91
    // identification and 0.68 PixCorr were measured when the golden values were made.
    assert!(
        identification > 0.8,
        "semantic 2-way identification {identification}"
    );
    assert!(pixcorr > 0.5, "PixCorr {pixcorr}");
    // Clean pictures, not grain: 0.008 measured (the stimuli 0.003; evenly spaced sampler
    // steps left 0.021).
    let grain = summary["grain"].as_f64().unwrap();
    assert!(grain < 0.012, "grain {grain}");

    // Per-trial golden values: the mean colour of each reconstruction (deterministic given the
    // decoded features and the sampling seed; which trials are drawn at max speed depends on
    // timing, so only trials drawn in both runs are compared).
    let mut colours = serde_json::Map::new();
    for entry in std::fs::read_dir(out.join("session/reconstructions")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let img = image::open(&path).unwrap().to_rgb8();
        let n = (img.width() * img.height()) as f64;
        let mean: Vec<f64> = (0..3)
            .map(|c| img.pixels().map(|p| p.0[c] as f64).sum::<f64>() / n)
            .collect();
        colours.insert(name, serde_json::json!(mean));
    }
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/demo.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let golden = serde_json::json!({"identification": identification, "pixcorr": pixcorr, "colours": colours});
        std::fs::write(&golden_path, serde_json::to_string_pretty(&golden).unwrap()).unwrap();
    }
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&golden_path).unwrap()).unwrap();
    let mut compared = 0;
    for (name, want) in golden["colours"].as_object().unwrap() {
        let Some(got) = colours.get(name) else {
            continue;
        };
        for c in 0..3 {
            let (g, w) = (got[c].as_f64().unwrap(), want[c].as_f64().unwrap());
            assert!(
                (g - w).abs() < 2.0,
                "{name} channel {c}: mean {g} vs golden {w}"
            );
        }
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} trials drawn in both runs");
    // Identification is computed from decoding alone (every trial), so it is deterministic.
    let want = golden["identification"].as_f64().unwrap();
    assert!(
        (identification - want).abs() < 0.01,
        "identification {identification} vs golden {want}"
    );

    check_report(&out.join("session"), drawn as usize);
    check_second_start(dir.path(), &first_stderr);
}

/// The start-up's console lines for `step`, from a run's stderr.
fn startup_line<'a>(stderr: &'a str, step: &str) -> &'a str {
    stderr
        .lines()
        .find(|l| l.starts_with(&format!("start-up: {step}")) && l.contains(": done in "))
        .unwrap_or_else(|| panic!("no finished start-up step {step:?} in:\n{stderr}"))
}

/// `demo --headless --speed max --out demo` in `dir` (plus `extra`); its stderr, once it
/// succeeded.
fn demo_in(dir: &Path, extra: &[&str]) -> String {
    let run = Command::new(env!("CARGO_BIN_EXE_brainmclip"))
        .current_dir(dir)
        .env_remove("BRAINMCLIP_ASSETS")
        .args(["demo", "--headless", "--speed", "max", "--out", "demo"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    stderr
}

/// The first minute: the first start simulated and embedded (and kept both); a second start
/// reuses both; a start whose encoder changed (a copy of the shipped models, one byte added to
/// the encoder's config) reuses the simulation but embeds the gallery again. (A changed gallery
/// image is tested on the cache itself, tests/gallery_cache.rs.)
fn check_second_start(dir: &Path, first: &str) {
    let simulated = startup_line(first, "simulating test run 1");
    assert!(simulated.contains("kept for the next start"), "{simulated}");
    let gallery = "embedding the gallery (";
    assert!(
        startup_line(first, gallery).contains("(embedded, cached for the next start)"),
        "{first}"
    );
    for step in [
        "finding the shipped models",
        "loading the decoder",
        "waiting for the first volume",
    ] {
        startup_line(first, step);
    }

    let second = demo_in(dir, &[]);
    assert!(
        startup_line(&second, "simulating test run 1").contains("(reused from "),
        "{second}"
    );
    assert!(
        startup_line(&second, gallery).contains("(from its cache)"),
        "{second}"
    );

    let copy = dir.join("models");
    for folder in [
        "assets/demo-encoder",
        "assets/demo-generator",
        "calibration/demo",
    ] {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
        let to = copy.join(folder);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    let config = copy.join("assets/demo-encoder/config.json");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push('\n');
    std::fs::write(&config, text).unwrap();
    let third = demo_in(dir, &["--assets", copy.to_str().unwrap()]);
    assert!(
        startup_line(&third, "simulating test run 1").contains("(reused from "),
        "{third}"
    );
    assert!(
        startup_line(&third, gallery).contains("(embedded, cached for the next start)"),
        "the changed encoder's gallery was not embedded again:\n{third}"
    );
}

const SECTIONS: [&str; 9] = [
    "summary",
    "motion",
    "fd",
    "dvars",
    "global-signal",
    "carpet",
    "tsnr",
    "latency",
    "decoding",
];

/// The demo's report: every section, nothing from a network, one stimulus | reconstruction
/// pair per drawn trial, the demo's scores; `brainmclip report` rebuilds it byte for byte; and
/// a real browser shows the carpet plot (Debian's chromium, which `.ci/run` installs).
fn check_report(session: &Path, drawn: usize) {
    let path = session.join("report.html");
    let html = std::fs::read_to_string(&path).expect("the demo writes report.html");
    for id in SECTIONS {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "no {id} section"
        );
    }
    assert!(
        !html.contains("http:") && !html.contains("https:"),
        "a URL in the report"
    );
    let images = html.matches("<img ").count();
    let inline = html.matches("src=\"data:image/png;base64,").count();
    assert_eq!(images, inline, "every image inline");
    // 10 figures, then a stimulus and a reconstruction per drawn trial (at most 48 trials).
    let pairs = drawn.min(48);
    assert_eq!(html.matches("alt=\"stimulus\"").count(), pairs);
    assert_eq!(html.matches("alt=\"reconstruction\"").count(), pairs);
    assert_eq!(images, 10 + 2 * pairs);
    assert!(html.contains("demo: semantic_identification"));
    assert!(html.contains("<td>trials decoded</td><td>70</td>"));

    let again = Command::new(env!("CARGO_BIN_EXE_brainmclip"))
        .args(["report", session.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let rebuilt = std::fs::read_to_string(&path).unwrap();
    let first_difference = rebuilt.bytes().zip(html.bytes()).position(|(a, b)| a != b);
    assert!(
        rebuilt == html,
        "the report is not reproducible: {} vs {} bytes, first difference at {first_difference:?}: {:?}",
        rebuilt.len(),
        html.len(),
        first_difference.map(|k| &rebuilt[k.saturating_sub(80)..(k + 40).min(rebuilt.len())])
    );

    // The whole page in a browser: the carpet's two ROI bands are on screen, and beside them,
    // in the rows they span, the grey voxel cells.
    let shot = session.join("report-page.png");
    let browser = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,7000",
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}", path.display()),
        ])
        .output()
        .expect("Debian's chromium must be installed for this test (apt install chromium)");
    assert!(
        browser.status.success(),
        "{}",
        String::from_utf8_lossy(&browser.stderr)
    );
    let img = image::open(&shot).unwrap().to_rgb8();
    let band_rows = |colour: [u8; 3]| -> Vec<u32> {
        (0..img.height())
            .filter(|&y| (0..img.width()).any(|x| img.get_pixel(x, y).0 == colour))
            .collect()
    };
    let (low, high) = (band_rows([230, 140, 40]), band_rows([60, 190, 220]));
    assert!(
        low.len() > 100 && high.len() > 30,
        "ROI bands of {} and {} rows: the carpet is not on the page",
        low.len(),
        high.len()
    );
    let mid_grey = (low[0]..=high[high.len() - 1])
        .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .map(|(x, y)| img.get_pixel(x, y).0)
        .filter(|p| p[0] == p[1] && p[1] == p[2] && (40..216).contains(&p[0]))
        .count();
    // The carpet's cells fill about 800 x 330 px of those rows; text edges give a few hundred.
    assert!(
        mid_grey > 150_000,
        "{mid_grey} grey pixels beside the bands"
    );
}
