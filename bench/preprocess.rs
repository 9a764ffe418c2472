//! Preprocessing benchmark (run: `cargo bench --bench preprocess`): rigid realignment of one
//! 64x64x36 volume to a reference (budget 20 ms), and of an NSD-sized 81x104x83 one, on
//! simulated anatomy moved by a known amount with noise; plus reslicing, masking and the
//! rolling z-score update per volume. Medians over repeated runs.

use std::time::Instant;

use brainmclip::geometry::apply_motion;
use brainmclip::preprocess::realign::Realigner;
use brainmclip::preprocess::zscore::{RollingZ, ZMode};
use brainmclip::sim::subject::{Grid, Subject, SubjectParams};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        println!("(smoke run skipped; use `cargo bench --bench preprocess` for figures)");
        return;
    }
    for (label, grid) in [
        ("64x64x36 @ 3 mm", Grid::MM3),
        ("81x104x83 @ 1.8 mm", Grid::NSD),
    ] {
        let subject = Subject::generate(
            &SubjectParams {
                grid,
                psc: [0.0; 5],
                hrf_lag_sd_s: 0.0,
                hrf_width_sd: 0.0,
            },
            3,
        );
        let dims = grid.dims;
        let mm = [grid.voxel_mm; 3];
        let realigner = Realigner::new(&subject.baseline, dims, mm).unwrap();
        let truth = [0.4, -0.3, 0.2, 0.5, -0.4, 0.3];
        let mut moved = Vec::new();
        apply_motion(&subject.baseline, dims, grid.voxel_mm, &truth, &mut moved);
        let mut state = 7u64;
        for v in moved.iter_mut() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *v += ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 30.0;
        }
        let mask: Vec<usize> = (0..moved.len()).step_by(5).collect();
        let mut z = RollingZ::new(mask.len(), ZMode::Window(30), true);
        let (mut t_realign, mut t_reslice, mut t_z) = (Vec::new(), Vec::new(), Vec::new());
        let mut estimate = [0.0f32; 6];
        let (mut resliced, mut masked, mut scores) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..25 {
            let t = Instant::now();
            estimate = realigner.estimate(&moved, [0.0; 6]).unwrap();
            t_realign.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            realigner.reslice(&moved, &estimate, &mut resliced);
            t_reslice.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            masked.clear();
            masked.extend(mask.iter().map(|&i| resliced[i]));
            z.push(&masked, &mut scores);
            t_z.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let error = estimate
            .iter()
            .zip(truth)
            .map(|(e, t)| (e - t).abs())
            .fold(0.0f32, f32::max);
        let realign = median(t_realign);
        let budget = if grid == Grid::MM3 {
            format!(
                " (budget 20 ms: {})",
                if realign <= 20.0 { "met" } else { "MISSED" }
            )
        } else {
            String::new()
        };
        println!("{label}: realign median {realign:.2} ms{budget}, max parameter error {error:.3}");
        println!(
            "{label}: reslice {:.2} ms, mask + rolling z of {} voxels {:.3} ms",
            median(t_reslice),
            mask.len(),
            median(t_z)
        );
    }
}
