//! SSIM and PixCorr against scikit-image / numpy on the images of
//! `tests/fixtures/metrics/make_ssim_reference.py` (values in `reference.json`).

use brainmclip::metrics::{pixcorr, ssim};

#[test]
fn ssim_and_pixcorr_match_scikit_image() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics/reference.json"
    ))
    .unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (w, h) = (40usize, 32usize);
    let mut a = Vec::new();
    let mut b = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f64, y as f64);
            a.push((0.5 + 0.4 * (xf / 5.0).sin() * (yf / 7.0).cos()) as f32);
            let dot = if (x + 2 * y) % 3 == 0 { 0.05 } else { 0.0 };
            b.push((0.5 + 0.35 * (xf / 5.0 + 0.3).sin() * (yf / 6.0).cos() + dot) as f32);
        }
    }
    let want_ssim = reference["ssim"].as_f64().unwrap();
    let want_pc = reference["pixcorr"].as_f64().unwrap();
    let got_ssim = ssim(&a, &b, w, h);
    let got_pc = pixcorr(&a, &b);
    assert!(
        (got_ssim - want_ssim).abs() < 1e-6,
        "SSIM {got_ssim} vs scikit-image {want_ssim}"
    );
    assert!(
        (got_pc - want_pc).abs() < 1e-6,
        "PixCorr {got_pc} vs numpy {want_pc}"
    );
}
