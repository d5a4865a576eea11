//! The reg stand-in: `reg query KEY [/s] [/reg:32|/reg:64]` for the Uninstall keys (64-bit view
//! and WOW6432Node) and their product subkeys, printed the way the flavour's reg.exe prints them:
//! reg.exe 3.0 for IIFP's Windows Server 2003 (no `/reg:*` switches), a later reg.exe for FIM.
//! `reg query HKLM\SOFTWARE` lists SOFTWARE's subkeys, with `WOW6432Node` only on an x64 server:
//! on x86 Windows that key and everything below it is absent (`layout::Arch`).
//! TEST DOUBLE: the lab's "registry" is only the products in lab.json and SOFTWARE's usual
//! subkeys; any other key is absent.

use std::path::Path;

use crate::layout::RegVersion;
use crate::state::{self, Product};
use crate::tools::ToolIo;

const UNINSTALL: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";
const UNINSTALL_WOW: &str = r"SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall";
const WOW6432NODE: &str = r"SOFTWARE\WOW6432Node";
/// SOFTWARE's subkeys on a fresh Windows Server, in reg's (alphabetical) order; an x64 server's
/// 64-bit view adds WOW6432Node after them.
const SOFTWARE_SUBKEYS: [&str; 5] = ["Classes", "Clients", "Microsoft", "ODBC", "Policies"];
const ABSENT: &str = "ERROR: The system was unable to find the specified registry key or value.";
const INVALID: &str = "ERROR: Invalid syntax.";

/// Runs the stand-in; returns the exit code.
pub fn run(lab: &Path, args: &[String], io: &mut ToolIo) -> i32 {
    let st = match state::load(lab) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(io.stderr, "ERROR: {e}");
            return 1;
        }
    };
    let version = st.flavour.windows().reg;
    let invalid = |io: &mut ToolIo, usage: &str| {
        let _ = write!(
            io.stderr,
            "{INVALID}{eol}Type \"{usage} /?\" for usage.{eol}",
            eol = version.line_end()
        );
        1
    };
    let Some((op, rest)) = args.split_first() else {
        return invalid(io, "REG");
    };
    if !op.eq_ignore_ascii_case("query") {
        let _ = writeln!(io.stderr, "{INVALID} The lab's reg supports only QUERY.");
        return 1;
    }
    let mut recurse = false;
    let mut view32 = false;
    let mut key = None;
    for a in rest {
        match a.to_ascii_lowercase().as_str() {
            "/s" => recurse = true,
            // reg.exe 3.0 has no registry view switches (project design notes).
            "/reg:32" | "/reg:64" if version == RegVersion::V3_0 => {
                return invalid(io, "REG QUERY")
            }
            "/reg:32" => view32 = true,
            "/reg:64" => view32 = false,
            _ if key.is_none() && !a.starts_with('/') => key = Some(a.clone()),
            _ => return invalid(io, "REG QUERY"),
        }
    }
    let Some(key) = key else {
        return invalid(io, "REG QUERY");
    };
    let below = below_hklm(&key).unwrap_or_default();
    let arch = st.arch();
    if below.eq_ignore_ascii_case("SOFTWARE") {
        if recurse {
            let _ = writeln!(
                io.stderr,
                r"ERROR: the lab's reg does not list HKLM\SOFTWARE with /s (only its subkeys)"
            );
            return 1;
        }
        let wow = arch.has_wow6432node() && !view32;
        let _ = io.stdout.write_all(software(version, wow).as_bytes());
        return 0;
    }
    let in_wow = below.len() >= WOW6432NODE.len()
        && below[..WOW6432NODE.len()].eq_ignore_ascii_case(WOW6432NODE)
        && below[WOW6432NODE.len()..]
            .chars()
            .next()
            .is_none_or(|c| c == '\\');
    let found = if in_wow && !arch.has_wow6432node() {
        None
    } else {
        query(&st.products, &key, recurse, view32, version)
    };
    match found {
        Some(text) => {
            let _ = io.stdout.write_all(text.as_bytes());
            0
        }
        None => {
            let _ = write!(io.stderr, "{ABSENT}{}", version.line_end());
            1
        }
    }
}

impl RegVersion {
    fn line_end(self) -> &'static str {
        match self {
            RegVersion::V3_0 => "\r\n",
            RegVersion::Later => "\n",
        }
    }

    /// One value line: four spaces of indent, then name, type and data separated by a tab
    /// (3.0) or four spaces (later).
    fn value(self, name: &str, ty: &str, data: &str) -> String {
        match self {
            RegVersion::V3_0 => format!("    {name}\t{ty}\t{data}\r\n"),
            RegVersion::Later => format!("    {name}    {ty}    {data}\n"),
        }
    }

    /// A key with its values. reg.exe 3.0 lists the default value as `<NO NAME>`, set or not.
    fn key(self, name: &str, values: &[(&str, &str, String)]) -> String {
        let eol = self.line_end();
        let mut out = format!("{name}{eol}");
        for (n, ty, data) in values {
            out.push_str(&self.value(n, ty, data));
        }
        if self == RegVersion::V3_0 {
            out.push_str(&self.value("<NO NAME>", "REG_SZ", ""));
        }
        out
    }

    /// The whole output. reg.exe 3.0 opens with its header and ends each key's block with a
    /// blank line; the later layout puts a blank line before each block and one at the end.
    fn print(self, blocks: &[String]) -> String {
        let eol = self.line_end();
        match self {
            RegVersion::V3_0 => {
                let body: String = blocks.iter().map(|b| format!("{b}{eol}")).collect();
                format!("{eol}! REG.EXE VERSION 3.0{eol}{eol}{body}")
            }
            RegVersion::Later => {
                let body: String = blocks.iter().map(|b| format!("{eol}{b}")).collect();
                format!("{body}{eol}")
            }
        }
    }
}

/// `reg query HKLM\SOFTWARE`: the key, then its subkeys, WOW6432Node among them when `wow`.
fn software(version: RegVersion, wow: bool) -> String {
    let root = r"HKEY_LOCAL_MACHINE\SOFTWARE";
    let names = SOFTWARE_SUBKEYS
        .iter()
        .copied()
        .chain(wow.then_some("WOW6432Node"));
    version.print(&version.listing(root, names))
}

impl RegVersion {
    /// A key listed without /s: reg.exe 3.0 shows the key itself first, then one line per
    /// subkey, `KEY\NAME`.
    fn listing<'a>(self, root: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
        let mut blocks = Vec::new();
        if self == RegVersion::V3_0 {
            blocks.push(self.key(root, &[]));
        }
        let eol = self.line_end();
        blocks.push(names.map(|n| format!(r"{root}\{n}{eol}")).collect());
        blocks
    }
}

/// Splits `HKLM\...` / `HKEY_LOCAL_MACHINE\...` into the path below the hive.
fn below_hklm(key: &str) -> Option<&str> {
    let (hive, rest) = key.trim_end_matches('\\').split_once('\\')?;
    (hive.eq_ignore_ascii_case("HKLM") || hive.eq_ignore_ascii_case("HKEY_LOCAL_MACHINE"))
        .then_some(rest)
}

/// The text `reg query` prints, or `None` for an absent key.
fn query(
    products: &[Product],
    key: &str,
    recurse: bool,
    view32: bool,
    version: RegVersion,
) -> Option<String> {
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
    let root = format!(r"HKEY_LOCAL_MACHINE\{shown}");
    let mut in_view = products.iter().filter(|p| p.wow6432 == wow);
    let entry = |p: &Product| version.key(&format!(r"{root}\{}", p.code), &values(p));
    let mut blocks = Vec::new();
    match base.strip_prefix('\\') {
        None if base.is_empty() && recurse => {
            // reg.exe 3.0 shows the queried key itself first.
            if version == RegVersion::V3_0 {
                blocks.push(version.key(&root, &[]));
            }
            blocks.extend(in_view.map(entry));
        }
        None if base.is_empty() => {
            blocks = version.listing(&root, in_view.map(|p| p.code.as_str()));
        }
        Some(code) => blocks.push(entry(in_view.find(|p| p.code.eq_ignore_ascii_case(code))?)),
        None => return None,
    }
    Some(version.print(&blocks))
}

fn values(p: &Product) -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("DisplayName", "REG_SZ", p.name.clone()),
        ("DisplayVersion", "REG_SZ", p.version.clone()),
        ("InstallLocation", "REG_SZ", p.install_location.clone()),
        ("Publisher", "REG_SZ", p.publisher.clone()),
        (
            "UninstallString",
            "REG_SZ",
            format!("MsiExec.exe /X{}", p.code),
        ),
        ("WindowsInstaller", "REG_DWORD", "0x1".to_string()),
    ]
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
            RegVersion::Later,
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
        assert!(!query(&[iifp(false)], wow, true, false, RegVersion::Later)
            .unwrap()
            .contains("Identity"));
        assert!(query(&[iifp(true)], wow, true, false, RegVersion::Later)
            .unwrap()
            .contains("WOW6432Node\\Microsoft"));
        assert!(query(&[iifp(true)], native, true, true, RegVersion::Later)
            .unwrap()
            .contains("Identity"));
        assert!(
            !query(&[iifp(true)], native, true, false, RegVersion::Later)
                .unwrap()
                .contains("Identity")
        );
    }

    #[test]
    fn a_subkey_is_found_by_code_and_anything_else_is_absent() {
        let k = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\{6a3c2f10-5b8e-4c1d-9e7a-0d1f2b3c4a51}";
        assert!(query(&[iifp(false)], k, false, false, RegVersion::Later)
            .unwrap()
            .contains("DisplayVersion"));
        assert!(query(&[], k, false, false, RegVersion::Later).is_none());
        assert!(query(
            &[iifp(false)],
            r"HKLM\SOFTWARE\Contoso",
            true,
            false,
            RegVersion::Later
        )
        .is_none());
        assert!(query(
            &[iifp(false)],
            r"HKCU\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
            true,
            false,
            RegVersion::Later
        )
        .is_none());
    }

    #[test]
    fn reg_3_0_prints_its_header_tabs_no_name_for_default_values_and_crlf() {
        let root = r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";
        let out = query(&[iifp(false)], root, true, false, RegVersion::V3_0).unwrap();
        let expected = format!(
            "\r\n! REG.EXE VERSION 3.0\r\n\r\n{root}\r\n    <NO NAME>\tREG_SZ\t\r\n\r\n{root}\\{{6A3C2F10-5B8E-4C1D-9E7A-0D1F2B3C4A51}}\r\n    DisplayName\tREG_SZ\tIdentity Integration Feature Pack\r\n    DisplayVersion\tREG_SZ\t3.0.0.0\r\n"
        );
        assert!(out.starts_with(&expected), "{out:?}");
        assert!(
            out.ends_with(
                "    WindowsInstaller\tREG_DWORD\t0x1\r\n    <NO NAME>\tREG_SZ\t\r\n\r\n"
            ),
            "{out:?}"
        );
        assert!(
            !out.replace("\r\n", "").contains('\n'),
            "CRLF only: {out:?}"
        );
    }
}
