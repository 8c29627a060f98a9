//! Compiles the c10d shim (`src/c10d_shim.cpp`) against the libtorch torch-sys links and the Gloo
//! headers `cargo xtask setup` fetches (`.libtorch/gloo/include`, or `RLHF_GLOO_INCLUDE`), and
//! records the rpath like every crate that links libtorch. Without the Gloo headers the crate still
//! builds, single-process only (cfg `no_gloo`), and a multi-process launch says how to fix it.
#[path = "../rlhf-model/link-rpath.rs"]
mod link_rpath;

use std::path::PathBuf;

fn gloo_include() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RLHF_GLOO_INCLUDE") {
        return Some(PathBuf::from(dir));
    }
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?).join("../..");
    let ours = root.join(".libtorch/gloo/include");
    ours.join("gloo/algorithm.h").is_file().then_some(ours)
}

fn main() {
    link_rpath::main();
    println!("cargo::rustc-check-cfg=cfg(no_gloo)");
    println!("cargo:rerun-if-env-changed=RLHF_GLOO_INCLUDE");
    println!("cargo:rerun-if-changed=src/c10d_shim.cpp");
    println!("cargo:rerun-if-changed=../../.libtorch/gloo/include/gloo/algorithm.h");
    let lib = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from);
    let (Some(gloo), Some(lib)) = (gloo_include(), lib) else {
        println!("cargo:warning=rlhf-dist: no Gloo headers (run `cargo xtask setup`): single-process build");
        println!("cargo:rustc-cfg=no_gloo");
        return;
    };
    let include = lib.parent().expect("libtorch's lib dir has a parent").join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .define("USE_C10D_GLOO", None)
        .file("src/c10d_shim.cpp")
        .compile("rlhf_c10d");
}
