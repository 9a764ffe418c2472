//! wgpu for real, on lavapipe (Mesa's Vulkan on the CPU, installed by `.ci/run`): the demo
//! projector's decoding, one evaluation of the demo generator and each of the generator's ops on
//! `decode.device = "wgpu"` must equal the CPU's within 1e-3 (absolute on values of order 1;
//! relative for the ops). The ops test found the generator's former disagreement (up to 1.29):
//! a burn 0.21 wgpu matmul defect, reproduced by the ignored test at the end and avoided in
//! `resize_bilinear`. Run: `cargo test --features wgpu --test wgpu_agreement` (without the
//! feature it is empty).
#![cfg(feature = "wgpu")]

use std::path::Path;

use brainmclip::model::calibration::Calibration;
use brainmclip::model::device::{live_device, ComputeDevice, LiveBackend};
use brainmclip::model::generator::files::load_generator;
use brainmclip::model::generator::Condition;
use burn::prelude::*;

const TOLERANCE: f32 = 1e-3;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn demo_projector_on_wgpu_equals_the_cpu() {
    let dir = root().join("calibration/demo");
    let decode = |compute: ComputeDevice| {
        let device = live_device(compute);
        let c = Calibration::<LiveBackend>::load(&dir, &device).unwrap();
        let p = &c.info.projector;
        let out = c
            .decode(&ramp(p.detail_voxels), &ramp(p.semantic_voxels), &device)
            .pop()
            .unwrap();
        (out.detail_tokens, out.embedding)
    };
    let (cpu_tokens, cpu_embedding) = decode(ComputeDevice::Cpu);
    let (gpu_tokens, gpu_embedding) = decode(ComputeDevice::Wgpu);
    let d = max_diff(&cpu_tokens, &gpu_tokens).max(max_diff(&cpu_embedding, &gpu_embedding));
    assert!(d < TOLERANCE, "wgpu vs CPU: max difference {d}");
}

#[test]
fn one_demo_generator_step_on_wgpu_equals_the_cpu() {
    let dir = root().join("assets/demo-generator");
    let step = |compute: ComputeDevice| -> Vec<f32> {
        let device = live_device(compute);
        let (info, unet) = load_generator::<LiveBackend>(&dir, &device).unwrap();
        let g = &info.generator;
        let tokens = g.token_grid * g.token_grid + 1;
        let s = g.image_size;
        let cond = Condition {
            tokens: Tensor::from_data(
                TensorData::new(ramp(tokens * g.token_width), [1, tokens, g.token_width]),
                &device,
            ),
            semantic: Tensor::from_data(
                TensorData::new(ramp(g.semantic_dim), [1, g.semantic_dim]),
                &device,
            ),
        };
        let x = Tensor::from_data(TensorData::new(ramp(3 * s * s), [1, 3, s, s]), &device);
        let t = Tensor::from_data(TensorData::new(vec![0.5f32], [1]), &device);
        unet.forward(x, t, &cond).into_data().to_vec().unwrap()
    };
    let d = max_diff(&step(ComputeDevice::Cpu), &step(ComputeDevice::Wgpu));
    assert!(d < TOLERANCE, "wgpu vs CPU: max difference {d}");
}

/// The demo UNet's building blocks one by one, at its shapes: which op makes the generator
/// disagree. Every op is run on both devices from the same inputs; all differences are reported
/// together.
#[test]
fn each_unet_op_on_wgpu_equals_the_cpu() {
    use brainmclip::model::generator::unet::{pixel_shuffle, pixel_unshuffle, resize_bilinear};
    use burn::nn::{GroupNormConfig, LayerNormConfig};
    use burn::tensor::activation::silu;
    use burn::tensor::module::{attention, conv2d, interpolate};
    use burn::tensor::ops::{
        AttentionModuleOptions, ConvOptions, InterpolateMode, InterpolateOptions,
    };
    type T4 = Tensor<LiveBackend, 4>;
    let run = |compute: ComputeDevice| -> Vec<(&'static str, Vec<f32>)> {
        let device = live_device(compute);
        let t4 = |dims: [usize; 4]| -> T4 {
            Tensor::from_data(TensorData::new(ramp(dims.iter().product()), dims), &device)
        };
        let out = |t: T4| -> Vec<f32> { t.into_data().to_vec().unwrap() };
        let conv = |x: T4, o: usize, k: usize, stride: usize| {
            let i = x.dims()[1];
            let w = t4([o, i, k, k]) * 0.1;
            let b = Tensor::from_data(TensorData::new(ramp(o), [o]), &device);
            let p = k / 2;
            conv2d(
                x,
                w,
                Some(b),
                ConvOptions::new([stride, stride], [p, p], [1, 1], 1),
            )
        };
        let mut results = vec![
            (
                "conv 3x3 12->32 at 32x32",
                out(conv(t4([1, 12, 32, 32]), 32, 3, 1)),
            ),
            (
                "conv 3x3 32->32 at 32x32",
                out(conv(t4([1, 32, 32, 32]), 32, 3, 1)),
            ),
            (
                "conv 3x3 stride 2 32 at 32x32",
                out(conv(t4([1, 32, 32, 32]), 32, 3, 2)),
            ),
            (
                "conv 3x3 256->128 at 8x8",
                out(conv(t4([1, 256, 8, 8]), 128, 3, 1)),
            ),
            (
                "conv 3x3 64->64 at 16x16",
                out(conv(t4([1, 64, 16, 16]), 64, 3, 1)),
            ),
            (
                "conv 1x1 128->32 at 8x8",
                out(conv(t4([1, 128, 8, 8]), 32, 1, 1)),
            ),
            (
                "conv 1x1 128->384 at 8x8",
                out(conv(t4([1, 128, 8, 8]), 384, 1, 1)),
            ),
        ];
        let gn = GroupNormConfig::new(8, 64).init::<LiveBackend>(&device);
        results.push((
            "group norm 8 of 64 at 16x16",
            out(gn.forward(t4([1, 64, 16, 16]) * 3.0)),
        ));
        let ln = LayerNormConfig::new(128).init::<LiveBackend>(&device);
        let tokens = Tensor::<LiveBackend, 3>::from_data(
            TensorData::new(ramp(65 * 128), [1, 65, 128]),
            &device,
        );
        results.push((
            "layer norm 128",
            out(ln.forward(tokens).reshape([1, 1, 65, 128])),
        ));
        results.push(("silu", out(silu(t4([1, 32, 8, 8]) * 4.0))));
        let qkv = |s: f32| t4([1, 4, 64, 32]) * s;
        results.push((
            "attention 4 heads, 64 x 32",
            out(attention(
                qkv(1.0),
                qkv(0.5).flip([2]),
                qkv(2.0),
                None,
                None,
                AttentionModuleOptions::default(),
            )),
        ));
        results.push((
            "interpolate nearest 8->16",
            out(interpolate(
                t4([1, 128, 8, 8]),
                [16, 16],
                InterpolateOptions::new(InterpolateMode::Nearest),
            )),
        ));
        results.push((
            "resize bilinear (matmul) 8->32",
            out(resize_bilinear(t4([1, 32, 8, 8]), [32, 32])),
        ));
        results.push((
            "pixel unshuffle 2",
            out(pixel_unshuffle(t4([1, 3, 64, 64]), 2)),
        ));
        results.push((
            "pixel shuffle 2",
            out(pixel_shuffle(t4([1, 12, 32, 32]), 2)),
        ));
        let m = t4([1, 128, 1, 1]);
        let scale = m.clone().slice([0..1, 0..64, 0..1, 0..1]);
        let shift = m.slice([0..1, 64..128, 0..1, 0..1]);
        results.push((
            "modulation (slices, broadcast)",
            out(t4([1, 64, 16, 16]) * (scale + 1.0) + shift),
        ));
        results.push((
            "cat on channels",
            out(Tensor::cat(
                vec![t4([1, 128, 8, 8]), t4([1, 128, 8, 8]) * 2.0],
                1,
            )),
        ));
        results
    };
    let (cpu, gpu) = (run(ComputeDevice::Cpu), run(ComputeDevice::Wgpu));
    // Relative to the op's largest output (the convolutions here reach ~100).
    let relative =
        |a: &[f32], b: &[f32]| max_diff(a, b) / a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let report: Vec<(String, f32)> = cpu
        .iter()
        .zip(&gpu)
        .map(|((name, a), (_, b))| {
            (
                format!("{name}: {:.2e} relative", relative(a, b)),
                relative(a, b),
            )
        })
        .collect();
    for (line, _) in &report {
        eprintln!("{line}");
    }
    let bad: Vec<&String> = report
        .iter()
        .filter(|(_, d)| *d >= TOLERANCE)
        .map(|(line, _)| line)
        .collect();
    assert!(bad.is_empty(), "ops that differ on wgpu: {bad:?}");
}

/// burn 0.21's wgpu defect on its own: the matmul of a left operand made by reshape → swap_dims
/// → reshape of a matmul result, with a right operand that is a `.transpose()` view, is wrong
/// (every output off, relative error ~1), while each piece alone is right. Ignored: it fails
/// until burn is fixed; run it (`--ignored`) on a newer burn, and if it passes the host-side
/// transpose in `resize_bilinear` may go.
#[test]
#[ignore = "burn 0.21 wgpu defect: matmul of a reshaped swap with a transposed view is wrong"]
fn burn_wgpu_matmul_of_a_reshaped_swap_with_a_transposed_view() {
    let run = |compute: ComputeDevice| -> Vec<f32> {
        let device = live_device(compute);
        let matrix = |rows: usize, cols: usize| {
            Tensor::<LiveBackend, 2>::from_data(
                TensorData::new(ramp(rows * cols), [rows, cols]),
                &device,
            )
        };
        let x = matrix(256, 8).matmul(matrix(32, 8).transpose()); // [256, 32]
        let lhs = x.reshape([32, 8, 32]).swap_dims(1, 2).reshape([1024, 8]);
        lhs.matmul(matrix(32, 8).transpose())
            .into_data()
            .to_vec()
            .unwrap()
    };
    let (cpu, gpu) = (run(ComputeDevice::Cpu), run(ComputeDevice::Wgpu));
    let scale = cpu.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let d = max_diff(&cpu, &gpu) / scale;
    assert!(d < TOLERANCE, "wgpu vs CPU: relative difference {d}");
}
