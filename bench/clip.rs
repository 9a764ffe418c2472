//! CLIP forward time on this CPU (run: `cargo bench --bench clip`): ViT-L/14 at 224 px with
//! random weights (the weights do not change the time), one image and a batch of 32, every
//! hidden state kept as the detail target needs; and the tiny fixture encoder for reference.

use std::time::Instant;

use brainmclip::model::clip::VisionConfig;
use burn::backend::flex::FlexDevice;
use burn::backend::Flex;
use burn::prelude::*;

fn vit_l14() -> VisionConfig {
    VisionConfig {
        image_size: 224,
        patch_size: 14,
        hidden_size: 1024,
        intermediate_size: 4096,
        num_hidden_layers: 24,
        num_attention_heads: 16,
        layer_norm_eps: 1e-5,
        hidden_act: "quick_gelu".into(),
        num_channels: 3,
    }
}

fn time(config: &VisionConfig, batch: usize, repeats: usize) -> f64 {
    let device = FlexDevice;
    let model = config.init::<Flex>(Some(768), &device);
    let s = config.image_size;
    let pixels = Tensor::<Flex, 4>::random(
        [batch, 3, s, s],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    // Warm-up (and lazy parameter initialisation).
    let _ = model
        .forward(pixels.clone(), true)
        .last_hidden_state
        .into_data();
    let mut times = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let out = model.forward(pixels.clone(), true);
        let _ = out.image_embeds.map(|e| e.into_data());
        let _ = out.last_hidden_state.into_data();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        println!("(smoke run skipped; use `cargo bench --bench clip` for figures)");
        return;
    }
    let l = vit_l14();
    let one = time(&l, 1, 3);
    println!("ViT-L/14 @ 224, CPU (burn flex): 1 image {:.2} s", one);
    let batch = time(&l, 32, 1);
    println!(
        "ViT-L/14 @ 224, CPU (burn flex): batch of 32 {:.1} s ({:.2} s per image)",
        batch,
        batch / 32.0
    );
    let tiny = VisionConfig {
        image_size: 64,
        patch_size: 8,
        hidden_size: 128,
        intermediate_size: 512,
        num_hidden_layers: 6,
        num_attention_heads: 4,
        ..l
    };
    let t1 = time(&tiny, 1, 10);
    let t32 = time(&tiny, 32, 3);
    println!("demo-sized encoder (64 px, patch 8, width 128, 6 blocks): 1 image {:.1} ms, batch of 32 {:.0} ms", t1 * 1e3, t32 * 1e3);
}
