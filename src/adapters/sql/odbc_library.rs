//! Which file a driver registered by name loads, for the unixODBC built into `upgrade`
//! (`vendored-unix-odbc`, see Cargo.toml). Distributions register drivers in odbcinst.ini by bare
//! file name (Debian's tdsodbc: `Driver = libtdsodbc.so`) and build their own unixODBC to look in
//! their driver folder (Debian: `/usr/lib/x86_64-linux-gnu/odbc`, unixODBC's MODULEDIR); the
//! built-in one only asks the dynamic linker, which does not look there. This module finds the file
//! where the system's unixODBC would, and names the file the registrations are read from. It reads
//! what the driver manager reports and whether files exist; it changes nothing.

use std::path::{Path, PathBuf};

use odbc_api::DriverInfo;

/// The folders a distribution's unixODBC loads drivers registered by bare file name from, in the
/// order it looks: the multiarch driver folder (Debian, Ubuntu), then the plain ones.
pub fn driver_folders() -> Vec<PathBuf> {
    let mut folders = Vec::new();
    if let Some(triple) = multiarch_triple() {
        folders.push(PathBuf::from(format!("/usr/lib/{triple}/odbc")));
    }
    for folder in ["/usr/lib/odbc", "/usr/lib64/odbc", "/usr/local/lib/odbc"] {
        folders.push(PathBuf::from(folder));
    }
    folders
}

/// The odbcinst.ini unixODBC reads drivers from: `$ODBCSYSINI/$ODBCINSTINI`, by default
/// `/etc/odbcinst.ini` (the built-in one's SYSTEM_FILE_PATH is /etc, as Debian's).
pub fn odbcinst_ini() -> String {
    let folder = std::env::var("ODBCSYSINI").unwrap_or_else(|_| "/etc".into());
    let file = std::env::var("ODBCINSTINI").unwrap_or_else(|_| "odbcinst.ini".into());
    format!("{folder}/{file}")
}

/// Debian's multiarch name for this machine (`x86_64-linux-gnu`), on Linux.
fn multiarch_triple() -> Option<&'static str> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    Some(match std::env::consts::ARCH {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "x86" => "i386-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        _ => return None,
    })
}

/// What the driver manager is to load for a driver the plan names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// This file: the driver is registered by a bare file name that a driver folder holds.
    File(PathBuf),
    /// The name as it is: a path or file name, a driver registered with a path (the driver
    /// manager loads it), or a bare file name no folder holds (the driver manager then asks the
    /// dynamic linker and says what it could not open).
    AsNamed,
    /// Nothing: the name is not registered and is no file name. unixODBC would try to load a
    /// file of that name and report "cannot open shared object file".
    NotRegistered,
}

/// Looks `driver` up in `registered` (what SQLDrivers lists, i.e. odbcinst.ini) and `folders`.
/// Names and keys compare without case, as unixODBC reads odbcinst.ini; unixODBC built without
/// PLATFORM64 (the built-in one) reads `Driver`, not `Driver64`.
pub fn lookup(driver: &str, registered: &[DriverInfo], folders: &[PathBuf]) -> Lookup {
    let Some(info) = registered
        .iter()
        .find(|d| d.description.eq_ignore_ascii_case(driver))
    else {
        return if is_file_name(driver) {
            Lookup::AsNamed
        } else {
            Lookup::NotRegistered
        };
    };
    let file = info
        .attributes
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("Driver"))
        .map(|(_, value)| value.trim())
        .unwrap_or_default();
    if file.is_empty() || file.contains('/') {
        return Lookup::AsNamed;
    }
    folders
        .iter()
        .map(|folder| folder.join(file))
        .find(|path| Path::is_file(path))
        .map_or(Lookup::AsNamed, Lookup::File)
}

/// A path, or a shared library's file name (`libtdsodbc.so`, `libtdsodbc.so.0`, `x.dylib`).
fn is_file_name(driver: &str) -> bool {
    driver.contains('/')
        || driver.ends_with(".so")
        || driver.contains(".so.")
        || driver.ends_with(".dylib")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn registered(name: &str, driver: &str) -> DriverInfo {
        DriverInfo {
            description: name.into(),
            attributes: HashMap::from([
                (
                    "Description".to_string(),
                    "TDS driver (Sybase/MS SQL)".to_string(),
                ),
                ("Driver".to_string(), driver.to_string()),
            ]),
        }
    }

    #[test]
    fn a_driver_registered_by_bare_file_name_loads_from_the_first_driver_folder_holding_it() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        std::fs::write(second.path().join("libtdsodbc.so"), b"").unwrap();
        let folders = [first.path().to_path_buf(), second.path().to_path_buf()];
        let drivers = [registered("FreeTDS", "libtdsodbc.so")];
        assert_eq!(
            lookup("freetds", &drivers, &folders),
            Lookup::File(second.path().join("libtdsodbc.so"))
        );
        std::fs::write(first.path().join("libtdsodbc.so"), b"").unwrap();
        assert_eq!(
            lookup("FreeTDS", &drivers, &folders),
            Lookup::File(first.path().join("libtdsodbc.so"))
        );
    }

    #[test]
    fn a_driver_registered_with_a_path_or_in_no_folder_and_a_file_name_are_left_to_the_driver_manager(
    ) {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("libtdsodbc.so"), b"").unwrap();
        let folders = [folder.path().to_path_buf()];
        let with_path = [registered("FreeTDS", "/opt/freetds/lib/libtdsodbc.so")];
        assert_eq!(lookup("FreeTDS", &with_path, &folders), Lookup::AsNamed);
        let missing = [registered("FreeTDS", "libnothere.so")];
        assert_eq!(lookup("FreeTDS", &missing, &folders), Lookup::AsNamed);
        for file in ["/usr/lib/libtdsodbc.so", "libtdsodbc.so", "libtdsodbc.so.0"] {
            assert_eq!(lookup(file, &[], &folders), Lookup::AsNamed, "{file}");
        }
    }

    #[test]
    fn a_name_registered_nowhere_is_not_registered() {
        let other = [registered(
            "ODBC Driver 18 for SQL Server",
            "libmsodbcsql-18.so",
        )];
        assert_eq!(lookup("FreeTDS", &other, &[]), Lookup::NotRegistered);
        assert_eq!(lookup("FreeTDS", &[], &[]), Lookup::NotRegistered);
    }

    #[test]
    fn debians_driver_folder_is_searched_first_on_linux() {
        let folders = driver_folders();
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(folders[0], PathBuf::from("/usr/lib/x86_64-linux-gnu/odbc"));
        }
        assert!(folders.contains(&PathBuf::from("/usr/lib/odbc")));
    }
}
