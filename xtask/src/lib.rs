//! The library half of `xtask`: the pipeline runner and the soak, shared by the `cargo xtask`
//! binary and the integration tests (which run them with the built stage binaries).

pub mod launch;
pub mod pipeline;
pub mod soak;
