//! `upgrade`: a declarative upgrade-plan executor for Microsoft identity synchronization servers.
//! `plan` is the language, `engine` orders/diffs/journals/applies, `steps` holds one file per step
//! kind, and `adapters` are the only code that touches SQL Server, processes, files and the registry.

pub mod adapters;
pub mod cli;
pub mod engine;
/// The plan language, its own crate (`src/plan`, shared with the lab) under its old path.
pub use upgrade_plan as plan;
pub mod steps;
