//! `rlhf-eval`: evaluation of the pipeline's models, and sampling responses from a policy
//! ([`generate`]), e.g. SFT samples for labelling into comparisons.
//!
//! The library takes config structs and writes files; the binary only parses the command line.

mod error;
pub mod generate;

pub use error::{Error, Result};
