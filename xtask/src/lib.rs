//! The library half of `xtask`: the pipeline runner, shared by the `cargo xtask` binary and the
//! integration tests (which run presets with the built stage binaries).

pub mod pipeline;
