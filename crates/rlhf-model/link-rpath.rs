//! Build script shared by every crate that links libtorch into a binary or test (rlhf-model and the
//! stage crates point their `build` key here). It records libtorch's lib directory as an rpath so the
//! binaries run with no `LD_LIBRARY_PATH`, and keeps `libtorch_cuda` linked when the libtorch in use
//! has it (otherwise the linker's as-needed mode drops it and CUDA silently disappears).
use std::path::PathBuf;
use std::process::Command;

fn torch_lib_dir() -> Option<PathBuf> {
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
        let out = Command::new(python)
            .args(["-c", "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
            .output()
            .ok()?;
        return Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()));
    }
    if let Some(lib) = std::env::var_os("LIBTORCH_LIB") {
        return Some(PathBuf::from(lib).join("lib"));
    }
    std::env::var_os("LIBTORCH").map(|dir| PathBuf::from(dir).join("lib"))
}

pub fn main() {
    for var in ["LIBTORCH", "LIBTORCH_LIB", "LIBTORCH_USE_PYTORCH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    if !target.contains("linux") {
        return;
    }
    let Some(lib) = torch_lib_dir() else { return };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
