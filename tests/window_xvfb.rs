//! The real window: `tests/window/xvfb_demo.sh` runs `brainmclip demo --speed 10` under Xvfb
//! and takes two screenshots 4 s apart; this checks that they are not blank and that the
//! reconstruction area changed between them.
//!
//! Needs xvfb-run and ImageMagick's `import` (`.ci/run` installs them and sets
//! BRAINMCLIP_REQUIRE_XVFB=1, which turns their absence into a failure instead of a skip).

use std::path::Path;
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Standard deviation of the greyscale values in a region.
fn spread(img: &image::RgbImage, x0: u32, y0: u32, x1: u32, y1: u32) -> f64 {
    let values: Vec<f64> = (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .map(|(x, y)| {
            let p = img.get_pixel(x, y).0;
            (p[0] as f64 + p[1] as f64 + p[2] as f64) / 3.0
        })
        .collect();
    let n = values.len() as f64;
    let m = values.iter().sum::<f64>() / n;
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n).sqrt()
}

fn mean_abs_difference(a: &image::RgbImage, b: &image::RgbImage, region: [u32; 4]) -> f64 {
    let [x0, y0, x1, y1] = region;
    let mut total = 0.0;
    for y in y0..y1 {
        for x in x0..x1 {
            let (p, q) = (a.get_pixel(x, y).0, b.get_pixel(x, y).0);
            total += (0..3)
                .map(|c| (p[c] as f64 - q[c] as f64).abs())
                .sum::<f64>()
                / 3.0;
        }
    }
    total / ((x1 - x0) * (y1 - y0)) as f64
}

#[test]
fn the_demo_window_shows_changing_reconstructions_under_xvfb() {
    let required = std::env::var_os("BRAINMCLIP_REQUIRE_XVFB").is_some();
    if !(have("xvfb-run") && have("import")) {
        assert!(
            !required,
            "xvfb-run and ImageMagick's import are required here"
        );
        eprintln!("SKIPPED: xvfb-run or import not installed (set BRAINMCLIP_REQUIRE_XVFB=1 to fail instead)");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/window/xvfb_demo.sh");
    let status = Command::new(&script)
        .arg(env!("CARGO_BIN_EXE_brainmclip"))
        .arg(out.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    let log = std::fs::read_to_string(out.path().join("demo.log")).unwrap_or_default();
    assert!(status.success(), "the script failed; demo log:\n{log}");
    let open = |name: &str| image::open(out.path().join(name)).unwrap().to_rgb8();
    let (a, b) = (open("shot1.png"), open("shot2.png"));
    assert_eq!((a.width(), a.height()), (1280, 800));
    // Not blank: the whole screen has structure in both shots.
    for shot in [&a, &b] {
        assert!(
            spread(shot, 0, 0, 1280, 800) > 10.0,
            "a screenshot is blank"
        );
    }
    // The central panel (between the gallery on the left and the plots on the right, below
    // the status bar) holds the stimulus and the large reconstruction; it must have changed.
    let centre = [345, 110, 845, 380];
    assert!(
        spread(&b, centre[0], centre[1], centre[2], centre[3]) > 10.0,
        "the centre is empty"
    );
    let changed = mean_abs_difference(&a, &b, centre);
    assert!(
        changed > 2.0,
        "the reconstruction area did not change ({changed:.2})"
    );
    if let Ok(dir) = std::env::var("BRAINMCLIP_SCREENSHOT_TO") {
        std::fs::copy(
            out.path().join("shot2.png"),
            Path::new(&dir).join("window.png"),
        )
        .unwrap();
    }
}
