//! Adapters: the only doors to the outside world (SQL Server, child processes, files, installed
//! products, services, the Windows Installer version). Steps reach the world only through these;
//! nothing here decides what a step should do.

pub mod flush;
pub mod fs;
pub mod host;
pub mod installer_mutex;
pub mod process;
pub mod products;
pub mod remote;
pub mod secrets;
pub mod services;
pub mod sql;
#[cfg(windows)]
pub mod windows_acl;
pub mod windows_installer;
pub mod winrm;
