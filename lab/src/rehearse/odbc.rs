//! Whether this machine can rehearse a SQL Server 2000 plan faithfully: over ODBC through the
//! FreeTDS driver speaking TDS 7.1, as `upgrade` reaches SQL Server 2000. `upgrade` finds drivers by
//! their registration with unixODBC (its built-in unixODBC reads the same file as the system's:
//! `$ODBCSYSINI/$ODBCINSTINI`, by default `/etc/odbcinst.ini`); Debian's and Ubuntu's tdsodbc
//! package registers `[FreeTDS]` there when installed. Reads that file; changes nothing.

use std::path::{Path, PathBuf};

/// The name FreeTDS's ODBC driver is registered under (Debian's /usr/share/tdsodbc/odbcinst.ini).
pub const FREETDS: &str = "FreeTDS";

/// What this machine offers for the ODBC path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OdbcPath {
    /// FreeTDS is registered: the rehearsal names it, as a plan on a Linux admin host would.
    FreeTds,
    /// It is not: `why` says what is missing, in a few words.
    Missing { why: String },
}

/// The odbcinst.ini unixODBC reads drivers from, as the environment sets it.
pub fn odbcinst_ini() -> PathBuf {
    let folder = std::env::var_os("ODBCSYSINI").unwrap_or_else(|| "/etc".into());
    let file = std::env::var_os("ODBCINSTINI").unwrap_or_else(|| "odbcinst.ini".into());
    Path::new(&folder).join(file)
}

/// FreeTDS's registration in `ini`: present, and (when registered with a path) the file there.
pub fn freetds_in(ini: &Path) -> OdbcPath {
    let Ok(text) = std::fs::read_to_string(ini) else {
        return OdbcPath::Missing {
            why: format!(
                "the FreeTDS ODBC driver is not registered (no {})",
                ini.display()
            ),
        };
    };
    match registered_driver(&text, FREETDS) {
        None => OdbcPath::Missing {
            why: format!(
                "the FreeTDS ODBC driver is not registered in {}",
                ini.display()
            ),
        },
        Some(file) if file.starts_with('/') && !Path::new(&file).is_file() => OdbcPath::Missing {
            why: format!(
                "the FreeTDS ODBC driver registered in {} is missing ({file})",
                ini.display()
            ),
        },
        Some(_) => OdbcPath::FreeTds,
    }
}

/// The `Driver` value of section `[name]` of an odbcinst.ini (names and keys without case, as
/// unixODBC reads them); Some("") when the section has none.
fn registered_driver(ini: &str, name: &str) -> Option<String> {
    let mut in_section = false;
    let mut found = None;
    for line in ini.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if in_section {
                break;
            }
            in_section = section.trim().eq_ignore_ascii_case(name);
            if in_section {
                found = Some(String::new());
            }
        } else if in_section {
            if let Some((key, value)) = line.split_once('=') {
                if key.trim().eq_ignore_ascii_case("Driver") {
                    found = Some(value.trim().to_string());
                }
            }
        }
    }
    found
}

/// The one line a rehearsal prints when it takes the nearest path instead of ODBC and TDS 7.1.
pub fn substitute_note(why: &str) -> String {
    format!(
        "note: {why}: SQL Server 2000 is rehearsed by the lab answering as SQL Server 2016 (TDS 7.4) \
         through upgrade's built-in TDS client, not over ODBC and TDS 7.1 as on the real server; \
         for the faithful rehearsal install the FreeTDS ODBC driver (`apt install tdsodbc`)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Debian's tdsodbc registers (/usr/share/tdsodbc/odbcinst.ini, through odbcinst).
    const DEBIAN: &str =
        "[ODBC]\nTrace = No\n\n[FreeTDS]\nDescription=TDS driver (Sybase/MS SQL)\n\
                          Driver=libtdsodbc.so\nSetup=libtdsS.so\nUsageCount=1\n";

    #[test]
    fn freetds_registered_as_debian_does_is_the_faithful_path() {
        let t = tempfile::tempdir().unwrap();
        let ini = t.path().join("odbcinst.ini");
        std::fs::write(&ini, DEBIAN).unwrap();
        assert_eq!(freetds_in(&ini), OdbcPath::FreeTds);
        std::fs::write(&ini, DEBIAN.replace("[FreeTDS]", "[freetds]")).unwrap();
        assert_eq!(freetds_in(&ini), OdbcPath::FreeTds);
    }

    #[test]
    fn no_list_no_section_or_a_registered_file_that_is_gone_is_missing_and_says_which() {
        let t = tempfile::tempdir().unwrap();
        let ini = t.path().join("odbcinst.ini");
        let why = |p: OdbcPath| match p {
            OdbcPath::Missing { why } => why,
            OdbcPath::FreeTds => panic!("taken for registered"),
        };
        assert!(why(freetds_in(&ini)).contains("not registered (no "));
        std::fs::write(&ini, "[ODBC]\nTrace = No\n").unwrap();
        assert!(why(freetds_in(&ini)).contains("not registered"));
        std::fs::write(
            &ini,
            DEBIAN.replace("libtdsodbc.so", "/nowhere/libtdsodbc.so"),
        )
        .unwrap();
        assert!(why(freetds_in(&ini)).contains("/nowhere/libtdsodbc.so"));
    }

    #[test]
    fn the_note_is_one_line_naming_what_was_used_and_the_package() {
        let note = substitute_note("the FreeTDS ODBC driver is not registered in /x/odbcinst.ini");
        assert!(!note.contains('\n'));
        assert!(note.contains("built-in TDS client") && note.contains("`apt install tdsodbc`"));
    }
}
