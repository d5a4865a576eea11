//! The reg stand-in: `reg query KEY [/s] [/reg:32|/reg:64]` for the Uninstall keys (64-bit view
//! and WOW6432Node) and their product subkeys, printed the way reg.exe prints them. TEST DOUBLE:
//! the lab's "registry" is only the products in lab.json; any other key is absent (exit 1).

use std::path::Path;

use crate::state::{self, Product};
use crate::tools::ToolIo;

const UNINSTALL: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";
const UNINSTALL_WOW: &str = r"SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall";
const ABSENT: &str = "ERROR: The system was unable to find the specified registry key or value.";

/// Runs the stand-in; returns the exit code.
pub fn run(lab: &Path, args: &[String], io: &mut ToolIo) -> i32 {
    let mut recurse = false;
    let mut view32 = false;
    let mut key = None;
    let Some((op, rest)) = args.split_first() else {
        let _ = writeln!(
            io.stderr,
            "ERROR: Invalid syntax.\nType \"REG /?\" for usage."
        );
        return 1;
    };
    if !op.eq_ignore_ascii_case("query") {
        let _ = writeln!(
            io.stderr,
            "ERROR: Invalid syntax. The lab's reg supports only QUERY."
        );
        return 1;
    }
    for a in rest {
        match a.to_ascii_lowercase().as_str() {
            "/s" => recurse = true,
            "/reg:32" => view32 = true,
            "/reg:64" => view32 = false,
            _ if key.is_none() && !a.starts_with('/') => key = Some(a.clone()),
            _ => {
                let _ = writeln!(
                    io.stderr,
                    "ERROR: Invalid syntax.\nType \"REG QUERY /?\" for usage."
                );
                return 1;
            }
        }
    }
    let Some(key) = key else {
        let _ = writeln!(
            io.stderr,
            "ERROR: Invalid syntax.\nType \"REG QUERY /?\" for usage."
        );
        return 1;
    };
    let st = match state::load(lab) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(io.stderr, "ERROR: {e}");
            return 1;
        }
    };
    match query(&st.products, &key, recurse, view32) {
        Some(text) => {
            let _ = io.stdout.write_all(text.as_bytes());
            0
        }
        None => {
            let _ = writeln!(io.stderr, "{ABSENT}");
            1
        }
    }
}

/// Splits `HKLM\...` / `HKEY_LOCAL_MACHINE\...` into the path below the hive.
fn below_hklm(key: &str) -> Option<&str> {
    let (hive, rest) = key.trim_end_matches('\\').split_once('\\')?;
    (hive.eq_ignore_ascii_case("HKLM") || hive.eq_ignore_ascii_case("HKEY_LOCAL_MACHINE"))
        .then_some(rest)
}

/// The text `reg query` prints, or `None` for an absent key.
fn query(products: &[Product], key: &str, recurse: bool, view32: bool) -> Option<String> {
    let rest = below_hklm(key)?;
    let (base, wow) = if rest.len() >= UNINSTALL_WOW.len()
        && rest[..UNINSTALL_WOW.len()].eq_ignore_ascii_case(UNINSTALL_WOW)
    {
        (&rest[UNINSTALL_WOW.len()..], true)
    } else if rest.len() >= UNINSTALL.len()
        && rest[..UNINSTALL.len()].eq_ignore_ascii_case(UNINSTALL)
    {
        (&rest[UNINSTALL.len()..], view32)
    } else {
        return None;
    };
    let shown = if wow { UNINSTALL_WOW } else { UNINSTALL };
    let in_view = products.iter().filter(|p| p.wow6432 == wow);
    let mut out = String::new();
    match base.strip_prefix('\\') {
        None if base.is_empty() => {
            for p in in_view {
                let name = format!(r"HKEY_LOCAL_MACHINE\{shown}\{}", p.code);
                if recurse {
                    out.push('\n');
                    out.push_str(&name);
                    out.push('\n');
                    out.push_str(&values(p));
                } else {
                    out.push_str(&name);
                    out.push('\n');
                }
            }
            if !recurse {
                out.insert(0, '\n');
            }
            out.push('\n');
        }
        Some(code) => {
            let p = in_view
                .clone()
                .find(|p| p.code.eq_ignore_ascii_case(code))?;
            out.push_str(&format!(
                "\nHKEY_LOCAL_MACHINE\\{shown}\\{}\n{}\n",
                p.code,
                values(p)
            ));
        }
        None => return None,
    }
    Some(out)
}

fn values(p: &Product) -> String {
    let sz = |n: &str, v: &str| format!("    {n}    REG_SZ    {v}\n");
    [
        sz("DisplayName", &p.name),
        sz("DisplayVersion", &p.version),
        sz("InstallLocation", &p.install_location),
        sz("Publisher", &p.publisher),
        sz("UninstallString", &format!("MsiExec.exe /X{}", p.code)),
        "    WindowsInstaller    REG_DWORD    0x1\n".to_string(),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iifp(wow6432: bool) -> Product {
        Product {
            code: "{6A3C2F10-5B8E-4C1D-9E7A-0D1F2B3C4A51}".into(),
            name: "Identity Integration Feature Pack".into(),
            version: "3.0.0.0".into(),
            publisher: "Microsoft Corporation".into(),
            install_location: r"C:\Program Files\Microsoft Identity Integration Server\".into(),
            wow6432,
            service: "miiserver".into(),
        }
    }

    #[test]
    fn a_recursive_query_prints_each_product_like_reg_exe() {
        let out = query(
            &[iifp(false)],
            r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
            true,
            false,
        )
        .unwrap();
        let expected = "\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{6A3C2F10-5B8E-4C1D-9E7A-0D1F2B3C4A51}\n    DisplayName    REG_SZ    Identity Integration Feature Pack\n    DisplayVersion    REG_SZ    3.0.0.0\n    InstallLocation    REG_SZ    C:\\Program Files\\Microsoft Identity Integration Server\\\n";
        assert!(out.starts_with(expected), "{out}");
        assert!(out.ends_with("    WindowsInstaller    REG_DWORD    0x1\n\n"));
    }

    #[test]
    fn products_appear_only_in_their_own_registry_view() {
        let wow =
            r"HKEY_LOCAL_MACHINE\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall";
        let native = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";
        assert!(!query(&[iifp(false)], wow, true, false)
            .unwrap()
            .contains("Identity"));
        assert!(query(&[iifp(true)], wow, true, false)
            .unwrap()
            .contains("WOW6432Node\\Microsoft"));
        assert!(query(&[iifp(true)], native, true, true)
            .unwrap()
            .contains("Identity"));
        assert!(!query(&[iifp(true)], native, true, false)
            .unwrap()
            .contains("Identity"));
    }

    #[test]
    fn a_subkey_is_found_by_code_and_anything_else_is_absent() {
        let k = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\{6a3c2f10-5b8e-4c1d-9e7a-0d1f2b3c4a51}";
        assert!(query(&[iifp(false)], k, false, false)
            .unwrap()
            .contains("DisplayVersion"));
        assert!(query(&[], k, false, false).is_none());
        assert!(query(&[iifp(false)], r"HKLM\SOFTWARE\Contoso", true, false).is_none());
        assert!(query(
            &[iifp(false)],
            r"HKCU\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
            true,
            false
        )
        .is_none());
    }
}
