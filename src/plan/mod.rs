//! The plan language: types, checked values, loading with source positions, and validation.
//! Nothing here touches the server; a plan that fails here never reaches the engine.

pub mod diagnostics;
pub mod graph;
pub mod kinds;
pub mod load;
pub mod names;
pub mod node_de;
pub mod placeholders;
pub mod schema;
pub mod source;
pub mod suggest;
pub mod types;
pub mod validate;
pub mod values;
pub mod windows_installer;
pub mod write;

pub use diagnostics::{Diagnostic, Diagnostics};
pub use load::{load, load_str, LoadedPlan};
pub use types::*;
pub use values::*;
