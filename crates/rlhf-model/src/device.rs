//! Device and dtype selection shared by every stage binary, plus seeding and peak-memory helpers.
//!
//! Binaries flatten [`DeviceArgs`] into their CLI (`--device cpu|cuda|auto`, `--dtype f32|bf16|f16`)
//! and call [`DeviceArgs::resolve`] once. Asking for CUDA where libtorch cannot use it is an error,
//! never a silent fallback to the CPU.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where tensors live, as asked for on the command line or in a config file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The CPU.
    Cpu,
    /// The first CUDA GPU; an error when libtorch has no CUDA or no GPU is visible.
    Cuda,
    /// CUDA when available, otherwise the CPU.
    #[default]
    Auto,
}

/// The floating-point type of model weights and activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float (the reference precision; parity tests use it).
    #[default]
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half precision.
    F16,
}

/// `--device` and `--dtype`, for a binary to `#[command(flatten)]` into its arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
pub struct DeviceArgs {
    /// Where to run: cpu, cuda (fails if unavailable) or auto (cuda when available).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Floating-point type of weights and activations.
    #[arg(long, value_enum, default_value_t = DType::F32)]
    pub dtype: DType,
}

/// A resolved device and dtype, ready to build models with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub device: tch::Device,
    pub kind: tch::Kind,
}

impl DeviceChoice {
    /// The `tch` device for this choice; `Cuda` without a usable GPU is an error. A rank of a
    /// data-parallel launch takes the GPU of its `LOCAL_RANK` (modulo the GPUs visible).
    pub fn resolve(self) -> Result<tch::Device> {
        let cuda_available = tch::Cuda::is_available();
        let gpu = || {
            let local_rank = std::env::var("LOCAL_RANK").ok().and_then(|r| r.trim().parse::<usize>().ok());
            tch::Device::Cuda(local_rank.unwrap_or(0) % tch::Cuda::device_count().max(1) as usize)
        };
        match self {
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda if cuda_available => Ok(gpu()),
            DeviceChoice::Cuda => Err(Error::DeviceUnavailable(
                "--device cuda was requested but this libtorch build has no CUDA support or no GPU \
                 is visible; use --device cpu or a CUDA libtorch (see docs/gpu.md)"
                    .into(),
            )),
            DeviceChoice::Auto if cuda_available => Ok(gpu()),
            DeviceChoice::Auto => Ok(tch::Device::Cpu),
        }
    }
}

impl DType {
    /// The matching `tch` tensor kind.
    pub fn kind(self) -> tch::Kind {
        match self {
            DType::F32 => tch::Kind::Float,
            DType::Bf16 => tch::Kind::BFloat16,
            DType::F16 => tch::Kind::Half,
        }
    }
}

impl DeviceArgs {
    /// Resolves `--device` (see [`DeviceChoice::resolve`]) and `--dtype`.
    pub fn resolve(&self) -> Result<Placement> {
        Ok(Placement { device: self.device.resolve()?, kind: self.dtype.kind() })
    }
}

/// Seeds libtorch's generators: the CPU one and, when CUDA is present, every GPU's.
///
/// Trainers keep their own Rust RNG (see `rlhf_train::TrainRng`) for data order and
/// sampling decisions; this covers what libtorch draws itself (initialisation, dropout, `multinomial`).
pub fn seed_everything(seed: u64) {
    // `at::manual_seed` seeds the CPU and all CUDA generators; tch takes the seed as i64.
    tch::manual_seed(seed as i64);
}

/// Peak resident memory of this process in bytes (`VmHWM` from `/proc/self/status`), when the OS
/// reports it (Linux).
pub fn peak_host_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// Peak memory on `device` in bytes: the process's peak resident memory for the CPU. For CUDA this
/// is `None`: tch 0.24 does not expose the caching allocator's statistics.
pub fn peak_memory_bytes(device: tch::Device) -> Option<u64> {
    match device {
        tch::Device::Cpu => peak_host_memory_bytes(),
        _ => None,
    }
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let mut fields = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    let unit_bytes = match fields.next()? {
        "kB" => 1024,
        "mB" | "MB" => 1024 * 1024,
        _ => return None,
    };
    Some(value * unit_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        device: DeviceArgs,
    }

    fn parse(args: &[&str]) -> DeviceArgs {
        Cli::parse_from([&["stage"], args].concat()).device
    }

    #[test]
    fn defaults_to_auto_and_f32() {
        assert_eq!(parse(&[]), DeviceArgs { device: DeviceChoice::Auto, dtype: DType::F32 });
        let expected_device = if tch::Cuda::is_available() { tch::Device::Cuda(0) } else { tch::Device::Cpu };
        let placement = parse(&[]).resolve().unwrap();
        assert_eq!(placement, Placement { device: expected_device, kind: tch::Kind::Float });
    }

    #[test]
    fn parses_every_dtype() {
        for (name, kind) in [("f32", tch::Kind::Float), ("bf16", tch::Kind::BFloat16), ("f16", tch::Kind::Half)] {
            let placement = parse(&["--device", "cpu", "--dtype", name]).resolve().unwrap();
            assert_eq!(placement, Placement { device: tch::Device::Cpu, kind });
        }
    }

    #[test]
    fn cuda_without_a_gpu_is_one_clear_error() {
        let resolved = parse(&["--device", "cuda"]).resolve();
        if tch::Cuda::is_available() {
            assert_eq!(resolved.unwrap().device, tch::Device::Cuda(0));
        } else {
            let message = resolved.unwrap_err().to_string();
            assert!(message.starts_with("--device cuda was requested but"), "{message}");
            assert_eq!(message.lines().count(), 1);
        }
    }

    #[test]
    fn reads_peak_memory_on_the_cpu() {
        let status = "Name:\tcat\nVmPeak:\t  9000 kB\nVmHWM:\t    1536 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(1536 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tcat\n"), None);
        if cfg!(target_os = "linux") {
            assert!(peak_memory_bytes(tch::Device::Cpu).is_some_and(|bytes| bytes > 0));
        }
    }
}
