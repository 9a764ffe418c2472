//! Karlo's unCLIP decoder at its real size (run: `cargo bench --bench unclip -- --device
//! cpu|cuda`; default cpu): the decoder UNet (64x64, 320-1280 channels, 3 ResNets per level,
//! cross-attention with added K/V over 4 + 77 tokens; classifier-free guidance doubles its
//! batch) and a super-resolution UNet (256x256, 6 channels in), built from Karlo's
//! configurations (diffusers' `convert_kakao_brain_unclip_to_diffusers.py`) with random
//! weights, which do not change the time. Prints the median of a few forward passes of each
//! and what one image costs with `decode.steps` 4 (4 decoder + 4 super-resolution passes).

use std::time::Instant;

use brainmclip::model::device::{live_device, select, DeviceChoice, LiveBackend};
use brainmclip::model::unclip::decoder::DecoderConfig;
use brainmclip::model::unclip::super_res::SuperResConfig;
use burn::prelude::*;

const DECODER: &str = r#"{
  "_class_name": "UNet2DConditionModel", "sample_size": 64, "layers_per_block": 3,
  "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D",
                       "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"],
  "up_block_types": ["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                     "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
  "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
  "block_out_channels": [320, 640, 960, 1280], "in_channels": 3, "out_channels": 6,
  "cross_attention_dim": 1536, "class_embed_type": "identity", "attention_head_dim": 64,
  "resnet_time_scale_shift": "scale_shift"
}"#;

const SUPER_RES: &str = r#"{
  "_class_name": "UNet2DModel", "sample_size": 256, "layers_per_block": 3,
  "down_block_types": ["ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D",
                       "ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D"],
  "up_block_types": ["ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D",
                     "ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"],
  "block_out_channels": [320, 640, 960, 1280], "in_channels": 6, "out_channels": 3,
  "add_attention": false
}"#;

/// Karlo's context: 4 image tokens + CLIP's 77 text positions.
const TOKENS: usize = 81;
const RUNS: usize = 3;

fn median_ms(mut f: impl FnMut()) -> f64 {
    f(); // warm-up: allocation, kernel compilation and autotuning on a GPU
    let mut ms: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[RUNS / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().all(|a| a != "--bench") {
        println!("(smoke run skipped; use `cargo bench --bench unclip` for figures)");
        return;
    }
    let choice = match args.iter().position(|a| a == "--device") {
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some("cuda") => DeviceChoice::Cuda,
            Some("wgpu") => DeviceChoice::Wgpu,
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
    let here = std::path::Path::new("bench/unclip.rs");
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).expect("valid JSON");
    let decoder_config =
        DecoderConfig::from_json(here, parse(DECODER)).expect("Karlo's decoder config");
    let plan = decoder_config
        .plan(here)
        .expect("a plan for Karlo's decoder");
    let decoder = decoder_config.init::<LiveBackend>(&plan, &device);
    let super_res = SuperResConfig::from_json(here, parse(SUPER_RES))
        .expect("Karlo's super-resolution config")
        .init::<LiveBackend>(&device);
    println!("Karlo-size unCLIP on {compute}, random weights, median of {RUNS}");

    let latents = Tensor::<LiveBackend, 4>::random(
        [2, 3, 64, 64],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let context = Tensor::<LiveBackend, 3>::random(
        [2, TOKENS, 1536],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let time = Tensor::<LiveBackend, 2>::random(
        [2, 1280],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mask = Tensor::<LiveBackend, 2>::ones([2, TOKENS], &device);
    let decoder_ms = median_ms(|| {
        let out = decoder
            .forward(
                latents.clone(),
                &[500.0, 500.0],
                context.clone(),
                Some(time.clone()),
                Some(mask.clone()),
            )
            .expect("decoder forward");
        let _ = out.into_data();
    });
    println!("decoder pass (64x64, guided: batch 2): {decoder_ms:.0} ms");
    let upscaled = Tensor::<LiveBackend, 4>::random(
        [1, 6, 256, 256],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let super_res_ms = median_ms(|| {
        let out = super_res
            .forward(upscaled.clone(), &[500.0])
            .expect("super-res forward");
        let _ = out.into_data();
    });
    println!("super-resolution pass (256x256, batch 1): {super_res_ms:.0} ms");
    println!(
        "one image at decode.steps 4: {:.1} s (4 decoder + 4 super-resolution passes)",
        4.0 * (decoder_ms + super_res_ms) / 1e3
    );
}
