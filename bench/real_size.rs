//! The live chain at real size on one device (run: `cargo bench --bench real_size -- --device
//! cpu|cuda|wgpu`; default cpu): a simulated subject on NSD's 81x104x83 grid at 1.8 mm, each
//! volume moved, written as `.nii` and then, as the daemon does, read and verified, realigned,
//! resliced, masked (15 000 detail and 3 000 semantic voxels) and z-scored; a trial sample from
//! the window's volumes; the NSD-size projector (ViT-L/14 targets: 257 x 1024 detail tokens,
//! 768-d semantic); the real-size generator (ViT-L/14 conditioning, 256 x 256), 4 steps.
//! Random weights (they do not change the time). Prints per-stage medians and, per trial, the
//! latency from the trial's last volume file closed to the image: p50 and p95 over the trials.
//! Stages run one after the other on this thread, as the live chain does for one trial.

use std::time::Instant;

use brainmclip::geometry::apply_motion;
use brainmclip::ingest::nifti_write::{write_nifti, NiftiSpec};
use brainmclip::ingest::{read_volume_file, Datatype};
use brainmclip::model::device::{live_device, select, DeviceChoice, LiveBackend};
use brainmclip::model::generator::schedule::{sample, SamplerSettings};
use brainmclip::model::generator::{Condition, GeneratorConfig};
use brainmclip::model::projector::ProjectorConfig;
use brainmclip::preprocess::realign::Realigner;
use brainmclip::preprocess::zscore::{RollingZ, ZMode};
use brainmclip::sim::subject::{Grid, Subject, SubjectParams};
use burn::prelude::*;

const TRIALS: usize = 3;
/// Volumes per trial window (a 3 s window at NSD's 1.6 s TR is 2; we average 3).
const WINDOW: usize = 3;

fn percentile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().all(|a| a != "--bench") {
        println!("(smoke run skipped; use `cargo bench --bench real_size` for figures)");
        return;
    }
    let choice = match args.iter().position(|a| a == "--device") {
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some("cuda") => DeviceChoice::Cuda,
            Some("wgpu") => DeviceChoice::Wgpu,
            Some("auto") => DeviceChoice::Auto,
            _ => DeviceChoice::Cpu,
        },
        None => DeviceChoice::Cpu,
    };
    let compute = match select(choice) {
        Ok(d) => d,
        Err(e) => {
            println!("{e}");
            return;
        }
    };
    let device = live_device(compute);
    println!("real-size live chain on {compute}");

    let grid = Grid::NSD;
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
    let n: usize = dims.iter().product();
    let realigner = Realigner::new(&subject.baseline, dims, [grid.voxel_mm; 3]).unwrap();
    let detail: Vec<usize> = (0..n).step_by(n / 15_000).take(15_000).collect();
    let semantic: Vec<usize> = (0..n).step_by(n / 3_000).take(3_000).collect();
    let mut z_detail = RollingZ::new(detail.len(), ZMode::Window(30), true);
    let mut z_semantic = RollingZ::new(semantic.len(), ZMode::Window(30), true);

    let projector_config = ProjectorConfig {
        detail_voxels: 15_000,
        semantic_voxels: 3_000,
        embed_dim: 1024,
        blocks: 2,
        dropout: 0.0,
        detail_tokens: 257,
        detail_width: 1024,
        token_rank: 16,
        semantic_dim: 768,
    };
    let projector = brainmclip::model::seeded_init(&device, 1, || {
        projector_config.init::<LiveBackend>(&device)
    });
    let generator_config = GeneratorConfig::real_size();
    let generator = brainmclip::model::seeded_init(&device, 1, || {
        generator_config.init::<LiveBackend>(&device)
    });
    let settings = SamplerSettings {
        steps: 4,
        guidance: 1.0,
        seed: 1,
        ..Default::default()
    };

    let dir = tempfile::tempdir().unwrap();
    let spec = NiftiSpec::new(&dims, [grid.voxel_mm; 3], Datatype::I16);
    let (mut t_read, mut t_realign, mut t_reslice, mut t_mask_z) = (vec![], vec![], vec![], vec![]);
    let (mut t_project, mut t_generate, mut latency) = (vec![], vec![], vec![]);
    let (mut moved, mut resliced, mut scores_d, mut scores_s) = (vec![], vec![], vec![], vec![]);
    let mut window_d: Vec<Vec<f32>> = Vec::new();
    let mut window_s: Vec<Vec<f32>> = Vec::new();
    // A warm-up trial first (kernel compilation and autotuning on a GPU), not counted.
    for trial in 0..=TRIALS {
        let mut closed = Instant::now();
        for k in 0..WINDOW {
            let shift = 0.05 * (trial * WINDOW + k) as f32;
            apply_motion(
                &subject.baseline,
                dims,
                grid.voxel_mm,
                &[shift, -shift, 0.0, 0.1, 0.0, -0.1],
                &mut moved,
            );
            let path = dir.path().join(format!("vol_{trial}_{k}.nii"));
            write_nifti(&path, &spec, &moved).unwrap();
            closed = Instant::now();
            let volume = read_volume_file(&path, 1 << 26).unwrap();
            let read = closed.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            let estimate = realigner.estimate(&volume.data, [0.0; 6]).unwrap();
            let realign = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            realigner.reslice(&volume.data, &estimate, &mut resliced);
            let reslice = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            let masked_d: Vec<f32> = detail.iter().map(|&i| resliced[i]).collect();
            let masked_s: Vec<f32> = semantic.iter().map(|&i| resliced[i]).collect();
            z_detail.push(&masked_d, &mut scores_d);
            z_semantic.push(&masked_s, &mut scores_s);
            window_d.push(scores_d.clone());
            window_s.push(scores_s.clone());
            let mask_z = t.elapsed().as_secs_f64() * 1e3;
            if trial > 0 {
                t_read.push(read);
                t_realign.push(realign);
                t_reslice.push(reslice);
                t_mask_z.push(mask_z);
            }
        }
        // The trial sample: the window's mean response.
        let mean = |w: &[Vec<f32>]| -> Vec<f32> {
            let mut m = vec![0.0; w[0].len()];
            for v in w {
                for (a, b) in m.iter_mut().zip(v) {
                    *a += b / w.len() as f32;
                }
            }
            m
        };
        let (sample_d, sample_s) = (mean(&window_d), mean(&window_s));
        window_d.clear();
        window_s.clear();
        let t = Instant::now();
        let out = projector.forward(
            Tensor::from_data(TensorData::new(sample_d, [1, 15_000]), &device),
            Tensor::from_data(TensorData::new(sample_s, [1, 3_000]), &device),
        );
        let tokens = out.detail_tokens.reshape([1, 257, 1024]);
        let semantic_out = out.semantic;
        let _ = semantic_out.clone().into_data();
        let project = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let cond = Condition {
            tokens,
            semantic: semantic_out,
        };
        let image = sample(&generator, &cond, 256, settings, &device);
        let _ = image.into_data();
        let generate = t.elapsed().as_secs_f64() * 1e3;
        let total = closed.elapsed().as_secs_f64() * 1e3;
        if trial > 0 {
            t_project.push(project);
            t_generate.push(generate);
            latency.push(total);
            println!("  trial {trial}: last volume closed → image {total:.0} ms");
        } else {
            println!("  warm-up trial: {total:.0} ms (not counted)");
        }
    }
    let med = |v: &Vec<f64>| percentile(v.clone(), 0.5);
    println!(
        "per volume (median): read + verify {:.1} ms, realign {:.1} ms, reslice {:.1} ms, mask + z {:.2} ms",
        med(&t_read),
        med(&t_realign),
        med(&t_reslice),
        med(&t_mask_z)
    );
    println!(
        "per trial (median): NSD-size projector {:.1} ms, real-size generator 4 steps {:.0} ms",
        med(&t_project),
        med(&t_generate)
    );
    println!(
        "volume closed → image over {TRIALS} trials: p50 {:.0} ms, p95 {:.0} ms",
        percentile(latency.clone(), 0.5),
        percentile(latency, 0.95)
    );
}
