//! The decoders' cost on this CPU (run: `cargo bench --bench decoders`), random weights (the
//! weights do not change the time):
//! - the projector for one sample at NSD size (15 000 detail voxels, 3 000 semantic voxels,
//!   ViT-L/14 targets: 257 tokens x 1024, 768-d embedding) with its parameter counts, beside
//!   the demo subject's size;
//! - the generator: 4-step generation of one 64x64 image (demo config; budget 400 ms), and one
//!   network evaluation of the real-size config (ViT-L/14 conditioning, 256x256), with the
//!   parameter counts of both.

use std::time::Instant;

use brainmclip::model::generator::schedule::{sample, SamplerSettings};
use brainmclip::model::generator::{Condition, GeneratorConfig};
use brainmclip::model::projector::ProjectorConfig;
use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::prelude::*;

fn median(mut f: impl FnMut() -> f64, repeats: usize) -> f64 {
    let _ = f();
    let mut t: Vec<f64> = (0..repeats).map(|_| f()).collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn projector(name: &str, c: &ProjectorConfig) {
    let device = FlexDevice;
    let model = brainmclip::model::seeded_init(&device, 1, || c.init::<Flex>(&device));
    let d = Tensor::<Flex, 2>::zeros([1, c.detail_voxels], &device);
    let s = Tensor::<Flex, 2>::zeros([1, c.semantic_voxels], &device);
    let ms = median(
        || {
            let t = Instant::now();
            let out = model.forward(d.clone(), s.clone());
            let _ = out.detail_tokens.into_data();
            let _ = out.semantic.into_data();
            t.elapsed().as_secs_f64() * 1e3
        },
        5,
    );
    println!("projector, {name}: one sample {ms:.1} ms");
    for (part, n) in model.parameter_counts() {
        println!("  {part:<24} {n:>12}");
    }
}

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        println!("(smoke run skipped; use `cargo bench --bench decoders` for figures)");
        return;
    }
    let nsd = ProjectorConfig {
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
    projector("NSD size (ViT-L/14 targets)", &nsd);
    let demo = ProjectorConfig {
        detail_voxels: 3724,
        semantic_voxels: 992,
        embed_dim: 256,
        detail_tokens: 65,
        detail_width: 128,
        semantic_dim: 128,
        ..nsd.clone()
    };
    projector("demo subject", &demo);

    let device = FlexDevice;
    let g = GeneratorConfig::demo(128, 8, 128);
    let model = brainmclip::model::seeded_init(&device, 1, || g.init::<Flex>(&device));
    let cond = Condition {
        tokens: Tensor::<Flex, 3>::ones([1, 65, 128], &device),
        semantic: Tensor::<Flex, 2>::ones([1, 128], &device),
    };
    for guidance in [1.0, 2.0] {
        let ms = median(
            || {
                let t = Instant::now();
                let settings = SamplerSettings {
                    steps: 4,
                    guidance,
                    seed: 1,
                    start: 1.0,
                };
                let _ = sample(&model, &cond, 64, settings, &device).into_data();
                t.elapsed().as_secs_f64() * 1e3
            },
            5,
        );
        println!(
            "generator, demo config (64x64): 4 steps, guidance {guidance}: {ms:.0} ms per image"
        );
    }
    println!("  demo generator parameters: {}", model.num_params());
    let real = GeneratorConfig::real_size();
    let big = brainmclip::model::seeded_init(&device, 1, || real.init::<Flex>(&device));
    let cond = Condition {
        tokens: Tensor::<Flex, 3>::ones([1, 257, 1024], &device),
        semantic: Tensor::<Flex, 2>::ones([1, 768], &device),
    };
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
        "generator, real-size config (256x256, ViT-L/14 conditioning): one network evaluation {ms:.0} ms (4 steps ≈ {:.1} s); parameters {}",
        4.0 * ms / 1e3,
        big.num_params()
    );
}
