//! The engine: orders steps, observes concurrently, diffs, journals, locks, renders and applies.
//! It knows nothing about MIIS; every step kind is a `dyn Step` from `crate::steps`.

pub mod options;

pub use options::{ApplyOptions, PlanOptions};
