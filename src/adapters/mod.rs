//! Adapters: the only doors to the outside world (SQL Server, child processes, files, installed
//! products, services). Steps reach the world only through these.

pub mod sql;
