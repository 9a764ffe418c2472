//! The decoders' cost (run: `cargo bench --bench decoders`), random weights (the weights do not
//! change the time):
//! - the projector for one sample at NSD size (15 000 detail voxels, 3 000 semantic voxels,
//!   ViT-L/14 targets: 257 tokens x 1024, 768-d embedding) with its parameter counts, beside
//!   the demo subject's size;
//! - the generator: 4-step generation of one 64x64 image (demo config; budget 400 ms), and the
//!   real-size config (ViT-L/14 conditioning, 256x256), with the parameter counts of both.
//!
//! Built with `--features cuda` on a machine with a GPU, the same figures follow on the GPU,
//! with the largest difference between CPU and GPU outputs for identical weights and inputs.
//! `-- --gpu-only` skips the CPU figures there (the real-size model takes seconds per step on a CPU).

use std::time::Instant;

use brainmclip::model::generator::schedule::{sample, SamplerSettings};
use brainmclip::model::generator::unet::UNet;
use brainmclip::model::generator::{Condition, GeneratorConfig};
use brainmclip::model::projector::{Projector, ProjectorConfig};
use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::prelude::*;

fn median(mut f: impl FnMut() -> f64, repeats: usize) -> f64 {
    let _ = f();
    let mut t: Vec<f64> = (0..repeats).map(|_| f()).collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn nsd_projector() -> ProjectorConfig {
    ProjectorConfig {
        detail_voxels: 15_000,
        semantic_voxels: 3_000,
        embed_dim: 1024,
        blocks: 2,
        dropout: 0.0,
        detail_tokens: 257,
        detail_width: 1024,
        token_rank: 16,
        semantic_dim: 768,
    }
}

fn demo_projector() -> ProjectorConfig {
    ProjectorConfig {
        detail_voxels: 3724,
        semantic_voxels: 992,
        embed_dim: 256,
        detail_tokens: 65,
        detail_width: 128,
        semantic_dim: 128,
        ..nsd_projector()
    }
}

/// A deterministic, non-constant input row (so that CPU/GPU comparisons mean something).
fn ramp<B: Backend, const D: usize>(shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn projector_ms<B: Backend>(model: &Projector<B>, c: &ProjectorConfig, device: &B::Device) -> f64 {
    let d = ramp::<B, 2>([1, c.detail_voxels], device);
    let s = ramp::<B, 2>([1, c.semantic_voxels], device);
    median(
        || {
            let t = Instant::now();
            let out = model.forward(d.clone(), s.clone());
            let _ = out.detail_tokens.into_data();
            let _ = out.semantic.into_data();
            t.elapsed().as_secs_f64() * 1e3
        },
        5,
    )
}

fn condition<B: Backend>(tokens: usize, width: usize, dim: usize, d: &B::Device) -> Condition<B> {
    Condition {
        tokens: ramp::<B, 3>([1, tokens, width], d),
        semantic: ramp::<B, 2>([1, dim], d),
    }
}

fn generate<B: Backend>(
    model: &UNet<B>,
    cond: &Condition<B>,
    size: usize,
    guidance: f64,
    device: &B::Device,
) -> Vec<f32> {
    let settings = SamplerSettings {
        steps: 4,
        guidance,
        seed: 1,
        ..Default::default()
    };
    sample(model, cond, size, settings, device)
        .into_data()
        .to_vec()
        .unwrap_or_default()
}

fn generator_ms<B: Backend>(
    model: &UNet<B>,
    cond: &Condition<B>,
    size: usize,
    guidance: f64,
    repeats: usize,
    device: &B::Device,
) -> f64 {
    median(
        || {
            let t = Instant::now();
            let _ = generate(model, cond, size, guidance, device);
            t.elapsed().as_secs_f64() * 1e3
        },
        repeats,
    )
}

fn cpu_figures() {
    let device = FlexDevice;
    for (name, c) in [
        ("NSD size (ViT-L/14 targets)", nsd_projector()),
        ("demo subject", demo_projector()),
    ] {
        let model = brainmclip::model::seeded_init(&device, 1, || c.init::<Flex>(&device));
        let ms = projector_ms(&model, &c, &device);
        println!("CPU projector, {name}: one sample {ms:.1} ms");
        for (part, n) in model.parameter_counts() {
            println!("  {part:<24} {n:>12}");
        }
    }
    let g = GeneratorConfig::demo(128, 8, 128);
    let model = brainmclip::model::seeded_init(&device, 1, || g.init::<Flex>(&device));
    let cond = condition::<Flex>(65, 128, 128, &device);
    for guidance in [1.0, 2.0] {
        let ms = generator_ms(&model, &cond, 64, guidance, 5, &device);
        println!("CPU generator, demo config (64x64): 4 steps, guidance {guidance}: {ms:.0} ms per image");
    }
    println!("  demo generator parameters: {}", model.num_params());
    let real = GeneratorConfig::real_size();
    let big = brainmclip::model::seeded_init(&device, 1, || real.init::<Flex>(&device));
    let cond = condition::<Flex>(257, 1024, 768, &device);
    let x = Tensor::<Flex, 4>::zeros([1, 3, 256, 256], &device);
    let t = Tensor::<Flex, 1>::from_data(TensorData::new(vec![0.5f32], [1]), &device);
    let ms = median(
        || {
            let start = Instant::now();
            let _ = big.forward(x.clone(), t.clone(), &cond).into_data();
            start.elapsed().as_secs_f64() * 1e3
        },
        1,
    );
    println!(
        "CPU generator, real-size config (256x256, ViT-L/14 conditioning): one network evaluation {ms:.0} ms (4 steps ≈ {:.1} s); parameters {}",
        4.0 * ms / 1e3,
        big.num_params()
    );
}

#[cfg(feature = "cuda")]
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[cfg(feature = "cuda")]
fn gpu_figures() {
    use brainmclip::model::device::transfer;
    use burn::backend::cuda::CudaDevice;
    use burn::backend::Cuda;
    if !brainmclip::model::device::cuda_usable() {
        println!("GPU: no usable CUDA driver here; GPU figures skipped");
        return;
    }
    let cpu = FlexDevice;
    let gpu = CudaDevice::new(0);
    for (name, c) in [
        ("NSD size (ViT-L/14 targets)", nsd_projector()),
        ("demo subject", demo_projector()),
    ] {
        let on_cpu = brainmclip::model::seeded_init(&cpu, 1, || c.init::<Flex>(&cpu));
        let on_gpu = transfer::<Flex, Cuda, _, _>(on_cpu.clone(), c.init::<Cuda>(&gpu), &gpu)
            .expect("weights move to the GPU");
        let ms = projector_ms(&on_gpu, &c, &gpu);
        let run = |m: &Projector<Flex>| -> Vec<f32> {
            let out = m.forward(
                ramp::<Flex, 2>([1, c.detail_voxels], &cpu),
                ramp::<Flex, 2>([1, c.semantic_voxels], &cpu),
            );
            out.semantic.into_data().to_vec().unwrap_or_default()
        };
        let gpu_out: Vec<f32> = on_gpu
            .forward(
                ramp::<Cuda, 2>([1, c.detail_voxels], &gpu),
                ramp::<Cuda, 2>([1, c.semantic_voxels], &gpu),
            )
            .semantic
            .into_data()
            .to_vec()
            .unwrap_or_default();
        println!(
            "GPU projector, {name}: one sample {ms:.2} ms; max |CPU - GPU| of the semantic output {:.2e}",
            max_abs_diff(&run(&on_cpu), &gpu_out)
        );
    }
    for (name, g, (tokens, width, dim), size) in [
        (
            "demo config (64x64)",
            GeneratorConfig::demo(128, 8, 128),
            (65, 128, 128),
            64,
        ),
        (
            "real-size config (256x256, ViT-L/14 conditioning)",
            GeneratorConfig::real_size(),
            (257, 1024, 768),
            256,
        ),
    ] {
        let on_cpu = brainmclip::model::seeded_init(&cpu, 1, || g.init::<Flex>(&cpu));
        let on_gpu = transfer::<Flex, Cuda, _, _>(on_cpu.clone(), g.init::<Cuda>(&gpu), &gpu)
            .expect("weights move to the GPU");
        let cond = condition::<Cuda>(tokens, width, dim, &gpu);
        for guidance in [1.0, 2.0] {
            let ms = generator_ms(&on_gpu, &cond, size, guidance, 5, &gpu);
            println!("GPU generator, {name}: 4 steps, guidance {guidance}: {ms:.1} ms per image");
        }
        if size == 64 {
            let a = generate(
                &on_cpu,
                &condition::<Flex>(tokens, width, dim, &cpu),
                size,
                1.0,
                &cpu,
            );
            let b = generate(&on_gpu, &cond, size, 1.0, &gpu);
            println!(
                "  max |CPU - GPU| over the 4-step image (pixels in -1..1): {:.2e}",
                max_abs_diff(&a, &b)
            );
        }
        println!("  parameters: {}", on_gpu.num_params());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().all(|a| a != "--bench") {
        println!("(smoke run skipped; use `cargo bench --bench decoders` for figures)");
        return;
    }
    if args.iter().all(|a| a != "--gpu-only") {
        cpu_figures();
    }
    #[cfg(feature = "cuda")]
    gpu_figures();
}
