//! The plan language: types, checked values, loading with source positions, and validation.
//! Nothing here touches the server; a plan that fails here never reaches the engine.

pub mod types;
pub mod values;

pub use types::*;
pub use values::*;
