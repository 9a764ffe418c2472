//! Which device the models run on: the CPU (burn's `flex` backend) by default, an NVIDIA GPU
//! when the binary is built with the `cuda` feature and a driver is present. This module only
//! chooses and names the device and moves weights between backends; the jobs that use it
//! (calibration, generator training) are generic over the backend.

use burn::module::Module;
use burn::prelude::*;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use serde::{Deserialize, Serialize};

/// What the user asked for (`--device`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// A CUDA GPU when one is usable, otherwise the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
    /// A GPU through wgpu (Vulkan, Metal, DX12; lavapipe on a machine with only a CPU).
    Wgpu,
}

/// The device a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeDevice {
    Cpu,
    /// CUDA device by ordinal.
    Cuda(usize),
    /// wgpu's default adapter.
    Wgpu,
}

impl std::fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComputeDevice::Cpu => write!(
                f,
                "CPU ({} threads)",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
            ComputeDevice::Cuda(i) => write!(f, "CUDA GPU {i}"),
            ComputeDevice::Wgpu => write!(f, "wgpu (default adapter)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--device cuda: this binary was built without the `cuda` feature (rebuild with `cargo build --release --features cuda`)")]
    NotCompiled,
    #[error("--device cuda: no usable CUDA driver (libcuda and libnvrtc must be loadable, e.g. through LD_LIBRARY_PATH, and a GPU present)")]
    NoDriver,
    #[error("--device wgpu: this binary was built without the `wgpu` feature (rebuild with `cargo build --release --features wgpu`)")]
    WgpuNotCompiled,
}

/// True when libcuda and libnvrtc load and at least one GPU is visible. Probed before burn
/// touches CUDA, because burn panics on a machine without the driver.
#[cfg(feature = "cuda")]
pub fn cuda_usable() -> bool {
    // SAFETY: these only try to dlopen the libraries and report whether that worked.
    let libs = unsafe {
        cudarc::driver::sys::is_culib_present() && cudarc::nvrtc::sys::is_culib_present()
    };
    libs && matches!(cudarc::driver::CudaContext::device_count(), Ok(n) if n > 0)
}

#[cfg(not(feature = "cuda"))]
pub fn cuda_usable() -> bool {
    false
}

/// Resolves the user's choice against what this binary and machine offer.
pub fn select(choice: DeviceChoice) -> Result<ComputeDevice, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(ComputeDevice::Cpu),
        DeviceChoice::Auto if cuda_usable() => Ok(ComputeDevice::Cuda(0)),
        DeviceChoice::Auto => Ok(ComputeDevice::Cpu),
        DeviceChoice::Cuda if !cfg!(feature = "cuda") => Err(DeviceError::NotCompiled),
        DeviceChoice::Cuda if cuda_usable() => Ok(ComputeDevice::Cuda(0)),
        DeviceChoice::Cuda => Err(DeviceError::NoDriver),
        DeviceChoice::Wgpu if cfg!(feature = "wgpu") => Ok(ComputeDevice::Wgpu),
        DeviceChoice::Wgpu => Err(DeviceError::WgpuNotCompiled),
    }
}

/// The backend live decoding runs on: burn's dispatch over the backends this binary has, so one
/// compiled decode path serves the CPU, CUDA and wgpu, chosen at start-up.
pub type LiveBackend = burn::Dispatch;

/// The dispatch device for a resolved device (`select` only gives compiled ones).
pub fn live_device(device: ComputeDevice) -> burn::DispatchDevice {
    match device {
        #[cfg(feature = "cuda")]
        ComputeDevice::Cuda(i) => burn::backend::cuda::CudaDevice::new(i).into(),
        #[cfg(feature = "wgpu")]
        ComputeDevice::Wgpu => burn::backend::wgpu::WgpuDevice::default().into(),
        _ => burn::backend::flex::FlexDevice.into(),
    }
}

/// Runs `$body` with `$B` bound to the autodiff backend of `$device` and `$dev` to its burn
/// device: one generic job, instantiated for each compiled backend.
#[macro_export]
macro_rules! with_train_backend {
    ($device:expr, |$B:ident, $dev:ident| $body:expr) => {
        match $device {
            #[cfg(feature = "cuda")]
            $crate::model::device::ComputeDevice::Cuda(i) => {
                type $B = burn::backend::Autodiff<burn::backend::Cuda>;
                let $dev = burn::backend::cuda::CudaDevice::new(i);
                $body
            }
            #[cfg(feature = "wgpu")]
            $crate::model::device::ComputeDevice::Wgpu => {
                type $B = burn::backend::Autodiff<burn::backend::Wgpu>;
                let $dev = burn::backend::wgpu::WgpuDevice::default();
                $body
            }
            _ => {
                type $B = burn::backend::Autodiff<burn::backend::Flex>;
                let $dev = burn::backend::flex::FlexDevice;
                $body
            }
        }
    };
}

/// The same weights on another backend (through burn's own record serialisation), so a model
/// initialised on the CPU starts identically on a GPU.
pub fn transfer<B1: Backend, B2: Backend, M1: Module<B1>, M2: Module<B2>>(
    source: M1,
    target: M2,
    device: &B2::Device,
) -> Result<M2, burn::record::RecorderError> {
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::new();
    let bytes = Recorder::<B1>::record(&recorder, source.into_record(), ())?;
    let record = Recorder::<B2>::load(&recorder, bytes, device)?;
    Ok(target.load_record(record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::flex::FlexDevice;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn cpu_is_always_available_and_cuda_without_the_feature_is_refused() {
        assert_eq!(select(DeviceChoice::Cpu).unwrap(), ComputeDevice::Cpu);
        if !cfg!(feature = "cuda") {
            assert_eq!(select(DeviceChoice::Auto).unwrap(), ComputeDevice::Cpu);
            let e = select(DeviceChoice::Cuda).unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }

    #[test]
    fn transfer_copies_the_weights_exactly() {
        let device = FlexDevice;
        let a: Linear<Flex> =
            crate::model::seeded_init(&device, 3, || LinearConfig::new(4, 3).init(&device));
        let b: Linear<Autodiff<Flex>> =
            crate::model::seeded_init(&device, 9, || LinearConfig::new(4, 3).init(&device));
        let b = transfer::<Flex, Autodiff<Flex>, _, _>(a.clone(), b, &device).unwrap();
        let x = Tensor::<Flex, 2>::ones([2, 4], &device);
        let ya: Vec<f32> = a.forward(x.clone()).into_data().to_vec().unwrap();
        let yb: Vec<f32> = b.valid().forward(x).into_data().to_vec().unwrap();
        assert_eq!(ya, yb);
    }
}
