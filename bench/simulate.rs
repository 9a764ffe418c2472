//! Simulator benchmark (run: `cargo bench --bench simulate`): one 200-volume run at 64x64x36
//! (budget: 10 s on a 2-core machine), everything included (stimuli, subject, responses, BOLD,
//! motion resampling, gzip, BIDS files), and the same on NSD's 1.8 mm grid for reference.

use std::time::Instant;

use brainmclip::sim::{simulate, GridChoice, SimConfig};

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        println!("(smoke run skipped; use `cargo bench --bench simulate` for figures)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let one_run = SimConfig {
        train_runs: 1,
        test_runs: 0,
        ..SimConfig::default()
    };
    for (label, config) in [
        ("64x64x36 @ 3 mm, 200 volumes", one_run.clone()),
        (
            "81x104x83 @ 1.8 mm, 200 volumes",
            SimConfig {
                grid: GridChoice::Nsd,
                ..one_run.clone()
            },
        ),
    ] {
        let mut times = Vec::new();
        for rep in 0..3 {
            let out = dir
                .path()
                .join(format!("{label}-{rep}").replace([' ', '@'], "_"));
            let t = Instant::now();
            simulate(&config, &out, rep).unwrap();
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let verdict = if label.starts_with("64") {
            if times[1] <= 10.0 {
                " (budget 10 s: met)"
            } else {
                " (budget 10 s: MISSED)"
            }
        } else {
            ""
        };
        println!(
            "simulate one run, {label}: median {:.2} s, min {:.2} s, max {:.2} s{verdict}",
            times[1], times[0], times[2]
        );
    }
}
