//! Models: CLIP (both towers, Hugging Face weights in and out), the conditioner (an encoder's
//! features for the generator), the BrainMCLIP projector, the generator and its files, the
//! losses that train them, device choice, and diffusers' Karlo unCLIP decoder (`unclip/`).
//! Nothing here imports `train/` or `sim/`.

pub mod calibration;
pub mod clip;
pub mod clip_text;
pub mod conditioner;
pub mod device;
pub mod generator;
pub mod load;
pub mod loss;
pub mod preprocess;
pub mod projector;
pub mod save;
pub mod targets;
pub mod tokenizer;
pub mod unclip;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

/// The backend's random generator is global: one seeded initialisation at a time.
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Touches every float parameter, so lazily initialised ones draw their values now.
struct Materialise;

impl<B: Backend> ModuleVisitor<B> for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// Builds a module with the backend seeded to `seed`, its parameters drawn before the lock is
/// released: the same seed gives the same weights whatever else the process is doing.
pub fn seeded_init<B: Backend, M: Module<B>>(
    device: &B::Device,
    seed: u64,
    build: impl FnOnce() -> M,
) -> M {
    let _guard = INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    B::seed(device, seed);
    let module = build();
    module.visit(&mut Materialise);
    module
}
