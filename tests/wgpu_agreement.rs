//! wgpu for real, on lavapipe (Mesa's Vulkan on the CPU, installed by `.ci/run`): the demo
//! projector's decoding and one evaluation of the demo generator on `decode.device = "wgpu"`
//! must equal the CPU's within 1e-3 (absolute, on values of order 1). The projector does; the
//! generator does not yet (ignored, with the figure, until found). Run:
//! `cargo test --features wgpu --test wgpu_agreement` (without the feature it is empty).
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
#[ignore = "open defect, issue 17: on lavapipe the UNet output differs from the CPU by up to 1.29"]
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
