//! Installed products: what Add/Remove Programs knows, read from the Uninstall registry keys
//! (64-bit and 32-bit views) by running `reg query ... /s` and parsing its output, in the layout of
//! every reg.exe (3.0 of Windows XP / Server 2003, and later). Read-only; an output it cannot read
//! is an error, never "not installed". Resolving a name to a product code is `find`'s job.

use std::path::Path;
use std::time::Duration;

use super::host::Host;
use super::process::{ProcessError, ProcessSpec};
use super::secrets::Redactor;
use crate::plan::{ProductCode, ProductRef};

/// The Uninstall key of the machine's native view.
pub const UNINSTALL_KEY: &str = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";
/// The Uninstall key of 32-bit programs on 64-bit Windows.
pub const UNINSTALL_KEY_WOW64: &str =
    r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall";

/// reg.exe's switch for the 64-bit registry view. Without it, a 32-bit reg.exe on 64-bit Windows
/// (the one a 32-bit build of this executor starts) has `HKLM\SOFTWARE` redirected to the 32-bit
/// view and misses 64-bit products. reg.exe 3.0 (Windows XP / Server 2003) has no such switch and
/// refuses it ("ERROR: Invalid syntax.", exit 1) (project design notes).
pub const VIEW_64: &str = "/reg:64";

const REG_TIMEOUT: Duration = Duration::from_secs(120);

/// What reg.exe prints (on stderr, exit 1) for a key that does not exist, in English.
const REG_ABSENT: &str = "unable to find the specified registry key";

/// The key that holds `WOW6432Node` on 64-bit Windows (listed without `/s`: its subkeys).
pub const SOFTWARE_KEY: &str = r"HKLM\SOFTWARE";

/// Which registry view an entry was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistryView {
    /// `HKLM\SOFTWARE\...` (64-bit programs on 64-bit Windows; everything on 32-bit Windows).
    Native,
    /// `HKLM\SOFTWARE\WOW6432Node\...` (32-bit programs on 64-bit Windows).
    Wow6432Node,
}

/// One Uninstall entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledProduct {
    /// The subkey name, e.g. `{GUID}` for a Windows Installer product.
    pub key: String,
    /// The key name as a product code, when it is one.
    pub product_code: Option<ProductCode>,
    pub display_name: Option<String>,
    pub display_version: Option<String>,
    pub install_location: Option<String>,
    pub view: RegistryView,
}

#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error("listing installed products: {0}")]
    Process(#[from] ProcessError),
    #[error("`{command}` failed with exit code {exit_code}: {message}")]
    Reg {
        command: String,
        exit_code: i32,
        message: String,
    },
    #[error("`{command}` listed {entries} Uninstall entries but no DisplayName could be read from any of them, so an installed product cannot be told from an absent one; reg printed a layout this executor does not know (first value line: {sample:?})")]
    Unreadable {
        command: String,
        entries: usize,
        sample: String,
    },
}

/// The result of looking a product up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(InstalledProduct),
    NotFound,
    /// Several product codes carry the name; the plan must say which by code.
    Ambiguous(Vec<InstalledProduct>),
}

/// Whether `reg query HKLM\SOFTWARE` lists a `WOW6432Node` subkey. Reg failing to list
/// `HKLM\SOFTWARE` at all is an error: nothing can then be told about the other key.
async fn software_lists_wow6432node(
    host: &dyn Host,
    reg: &Path,
    view_64: bool,
    redactor: &Redactor,
    env_remove: &[String],
) -> Result<bool, ProductError> {
    let mut args = vec!["query", SOFTWARE_KEY];
    if view_64 {
        args.push(VIEW_64);
    }
    let mut spec = ProcessSpec::new(reg, &args, REG_TIMEOUT).read_only();
    spec.env_remove = env_remove.to_vec();
    let out = host.run(&spec, redactor).await?;
    if out.exit_code != 0 {
        return Err(ProductError::Reg {
            command: spec.display(),
            exit_code: out.exit_code,
            message: format!("{}{}", out.stderr.trim(), out.stdout.trim()),
        });
    }
    Ok(out.stdout.lines().any(|l| {
        l.trim_end()
            .rsplit('\\')
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case("WOW6432Node"))
    }))
}

/// Every Uninstall entry of both views. A view that does not exist (32-bit Windows has no
/// WOW6432Node) contributes nothing. Each query asks for the 64-bit view (`/reg:64`) until reg
/// refuses the switch (reg.exe 3.0), then goes without it.
/// `env_remove`: variables the reg tool must not inherit (those holding the plan's secrets).
pub async fn installed_products(
    host: &dyn Host,
    reg: &Path,
    redactor: &Redactor,
    env_remove: &[String],
) -> Result<Vec<InstalledProduct>, ProductError> {
    let query = |root: &str, view_64: bool| {
        let mut args = vec!["query", root, "/s"];
        if view_64 {
            args.push(VIEW_64);
        }
        let mut spec = ProcessSpec::new(reg, &args, REG_TIMEOUT).read_only();
        spec.env_remove = env_remove.to_vec();
        spec
    };
    let mut view_64 = true;
    let mut all = Vec::new();
    // The first line reg printed that was not understood, and the command that printed it.
    let mut unreadable: Option<(String, String)> = None;
    for (root, view) in [
        (UNINSTALL_KEY, RegistryView::Native),
        (UNINSTALL_KEY_WOW64, RegistryView::Wow6432Node),
    ] {
        let mut spec = query(root, view_64);
        let mut out = host.run(&spec, redactor).await?;
        // reg.exe 3.0 refuses /reg:64 with exit 1, which is also its code for a missing key: ask
        // again without the switch; if that works, this reg does not know it.
        if out.exit_code == 1 && view_64 {
            spec = query(root, false);
            out = host.run(&spec, redactor).await?;
            if out.exit_code == 0 {
                tracing::debug!(reg = %reg.display(), "reg refused /reg:64 (reg.exe 3.0); querying without it");
                view_64 = false;
            }
        }
        match out.exit_code {
            0 => {
                let listing = parse_reg_query(&out.stdout, root, view);
                all.extend(listing.products);
                if let (None, Some(line)) = (&unreadable, listing.unreadable) {
                    unreadable = Some((spec.display(), line));
                }
            }
            // reg.exe: 1 = the key does not exist; but 1 is also what cmd.exe answers over a
            // remote shell when reg itself cannot be run ("The system cannot find the path
            // specified."), what reg answers for a key it may not read ("Access is denied."), and
            // how a `/s` listing ends that stopped at an unreadable subkey: read as "no such key",
            // every product would look uninstalled. The native Uninstall key exists on every
            // Windows, so its exit 1 is always an error. WOW6432Node exists only on 64-bit
            // Windows: absent in reg's own (English) words, or when `reg query HKLM\SOFTWARE`
            // works and does not list it (any language).
            1 if view == RegistryView::Wow6432Node
                && (out.stderr.contains(REG_ABSENT)
                    || !software_lists_wow6432node(host, reg, view_64, redactor, env_remove)
                        .await?) =>
            {
                tracing::debug!(root, "no such key");
            }
            code => {
                return Err(ProductError::Reg {
                    command: spec.display(),
                    exit_code: code,
                    message: format!("{}{}", out.stderr.trim(), out.stdout.trim()),
                })
            }
        }
    }
    // Entries without a single readable name, in an output with lines that were not understood:
    // the layout is unknown, and reading that as "not installed" would skip an uninstall.
    if let Some((command, sample)) = unreadable {
        if !all.is_empty() && all.iter().all(|p| p.display_name.is_none()) {
            return Err(ProductError::Unreadable {
                command,
                entries: all.len(),
                sample,
            });
        }
    }
    tracing::debug!(count = all.len(), "installed products listed");
    Ok(all)
}

/// What one `reg query ... /s` printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The direct subkeys of the queried key.
    pub products: Vec<InstalledProduct>,
    /// The first line that is not blank, a key, the reg.exe 3.0 header or a value line.
    pub unreadable: Option<String>,
}

/// Parses `reg query ROOT /s` output (any reg.exe layout, CRLF or LF). Only direct subkeys of
/// `root` (`HKLM\...` or `HKEY_LOCAL_MACHINE\...`) become entries; the root's own values and
/// deeper keys are skipped.
pub fn parse_reg_query(text: &str, root: &str, view: RegistryView) -> Listing {
    let r = match root.strip_prefix("HKLM\\") {
        Some(rest) => format!("HKEY_LOCAL_MACHINE\\{rest}"),
        None => root.to_string(),
    };
    let r = r.trim_end_matches('\\');
    let mut out: Vec<InstalledProduct> = Vec::new();
    let mut unreadable = None;
    // Whether the value lines being read belong to the latest entry (not the root, not deeper).
    let mut in_entry = false;
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let value = parse_value_line(line);
        // reg.exe 3.0 opens with `! REG.EXE VERSION 3.0`.
        let known = line.trim().is_empty() || line.starts_with("HKEY_") || line.starts_with('!');
        if unreadable.is_none() && value.is_none() && !known {
            unreadable = Some(line.to_string());
        }
        if line.starts_with("HKEY_") {
            let key = line.trim_end();
            let child = key
                .get(..r.len())
                .filter(|head| head.eq_ignore_ascii_case(r))
                .and_then(|_| key[r.len()..].strip_prefix('\\'));
            in_entry = match child {
                Some(name) if !name.is_empty() && !name.contains('\\') => {
                    out.push(InstalledProduct {
                        key: name.to_string(),
                        product_code: ProductCode::parse(name).ok(),
                        display_name: None,
                        display_version: None,
                        install_location: None,
                        view,
                    });
                    true
                }
                _ => false,
            };
        } else if in_entry {
            if let (Some((name, _ty, data)), Some(entry)) = (value, out.last_mut()) {
                let data = Some(data.to_string()).filter(|d| !d.is_empty());
                match name.to_ascii_lowercase().as_str() {
                    "displayname" => entry.display_name = data,
                    "displayversion" => entry.display_version = data,
                    "installlocation" => entry.install_location = data,
                    _ => {}
                }
            }
        }
    }
    Listing {
        products: out,
        unreadable,
    }
}

/// A value line -> (name, type, data): an indent, the name, the type (`REG_SZ`, `REG_DWORD`, ...),
/// the data. reg.exe 3.0 (Windows XP / Server 2003) puts one tab on each side of the type and
/// names the default value `<NO NAME>`; later versions put four spaces. Names may contain spaces;
/// the type is the first `REG_*` word with a tab or spaces on both sides (or the line's end after).
fn parse_value_line(line: &str) -> Option<(&str, &str, &str)> {
    let is_sep = |c: char| c == ' ' || c == '\t';
    if !line.starts_with(is_sep) {
        return None;
    }
    let body = line.trim_start_matches(is_sep);
    let mut search = 0;
    while let Some(pos) = body[search..].find("REG_") {
        let start = search + pos;
        search = start + 4;
        let before = &body[..start];
        if !before.ends_with(is_sep) {
            continue;
        }
        let after = &body[start..];
        let ty_end = after
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        let (ty, rest) = after.split_at(ty_end);
        // One separator goes between the type and the data: a tab, four spaces, or a run of
        // spaces; whatever follows it is data.
        let data = if rest.is_empty() {
            ""
        } else if let Some(d) = rest
            .strip_prefix('\t')
            .or_else(|| rest.strip_prefix("    "))
        {
            d
        } else if rest.starts_with(' ') {
            rest.trim_start_matches(' ')
        } else {
            continue;
        };
        return Some((before.trim_end_matches(is_sep), ty, data));
    }
    None
}

/// Finds a product by code (either view) or by display name (case-insensitive, exact).
pub fn find(products: &[InstalledProduct], wanted: &ProductRef) -> Lookup {
    let matches: Vec<&InstalledProduct> = match wanted {
        ProductRef::ProductCode(code) => products
            .iter()
            .filter(|p| p.product_code.as_ref() == Some(code))
            .collect(),
        ProductRef::Name(name) => products
            .iter()
            .filter(|p| {
                p.display_name
                    .as_deref()
                    .is_some_and(|d| d.trim().eq_ignore_ascii_case(name.trim()))
            })
            .collect(),
    };
    let Some(first) = matches.first() else {
        return Lookup::NotFound;
    };
    // The same product seen twice (e.g. in both views) is one product; distinct keys are not.
    let mut distinct: Vec<&InstalledProduct> = Vec::new();
    for p in &matches {
        if !distinct.iter().any(|d| d.key.eq_ignore_ascii_case(&p.key)) {
            distinct.push(p);
        }
    }
    if distinct.len() == 1 {
        Lookup::Found((*first).clone())
    } else {
        Lookup::Ambiguous(distinct.into_iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::host::Local;

    const IIFP: &str = "{6A2E5F1C-3B9D-4E0A-8C71-2F4D9B6E1A35}";

    fn reg_output() -> String {
        [
            "",
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
            "",
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\AddressBook",
            "",
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\{6a2e5f1c-3b9d-4e0a-8c71-2f4d9b6e1a35}",
            "    AuthorizedCDFPrefix    REG_SZ    ",
            "    DisplayName    REG_SZ    Identity Integration Feature Pack",
            "    DisplayVersion    REG_SZ    3.0.0.0",
            r"    InstallLocation    REG_EXPAND_SZ    C:\Program Files\Microsoft Identity Integration Server\",
            "    VersionMajor    REG_DWORD    0x3",
            "    Estimated Size    REG_DWORD    0x1a2b",
            r"    UninstallString    REG_EXPAND_SZ    MsiExec.exe /X{6A2E5F1C-3B9D-4E0A-8C71-2F4D9B6E1A35}",
            "",
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\{6a2e5f1c-3b9d-4e0a-8c71-2f4d9b6e1a35}\Nested",
            "    DisplayName    REG_SZ    Not an entry",
            "",
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\SQL Server 2000 Tools",
            "    Display Name Odd    REG_SZ    with    four spaces",
            "    DisplayName    REG_SZ    Microsoft SQL Server 2000    Tools",
            "",
        ]
        .join("\r\n")
    }

    #[test]
    fn real_reg_output_with_crlf_becomes_one_entry_per_subkey() {
        let products = parse_reg_query(&reg_output(), UNINSTALL_KEY, RegistryView::Native).products;
        assert_eq!(products.len(), 3, "{products:#?}");
        assert_eq!(products[0].key, "AddressBook");
        assert_eq!(products[0].product_code, None);
        assert_eq!(products[0].display_name, None);
        let iifp = &products[1];
        assert_eq!(iifp.product_code.as_ref().map(|c| c.as_str()), Some(IIFP));
        assert_eq!(
            iifp.display_name.as_deref(),
            Some("Identity Integration Feature Pack")
        );
        assert_eq!(iifp.display_version.as_deref(), Some("3.0.0.0"));
        assert_eq!(
            iifp.install_location.as_deref(),
            Some(r"C:\Program Files\Microsoft Identity Integration Server\")
        );
        assert_eq!(products[2].key, "SQL Server 2000 Tools");
        assert_eq!(
            products[2].display_name.as_deref(),
            Some("Microsoft SQL Server 2000    Tools")
        );
    }

    #[test]
    fn output_without_the_root_line_and_with_lf_only_is_read_too() {
        let text = "\nHKEY_LOCAL_MACHINE\\SOFTWARE\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{6A2E5F1C-3B9D-4E0A-8C71-2F4D9B6E1A35}\n    DisplayName    REG_SZ    Identity Integration Feature Pack\n    DisplayVersion    REG_SZ    3.0.0.0\n\n";
        let products =
            parse_reg_query(text, UNINSTALL_KEY_WOW64, RegistryView::Wow6432Node).products;
        assert_eq!(products.len(), 1);
        assert_eq!(products[0].view, RegistryView::Wow6432Node);
        assert_eq!(products[0].display_version.as_deref(), Some("3.0.0.0"));
        assert!(
            parse_reg_query(text, UNINSTALL_KEY, RegistryView::Native)
                .products
                .is_empty(),
            "another root's keys are not ours"
        );
    }

    /// `reg query ... /s` as reg.exe 3.0 (Windows XP / Server 2003) prints it: a version header,
    /// `<NO NAME>` for default values, one tab around the type, CRLF line ends.
    fn reg_3_0_output() -> String {
        [
            "",
            "! REG.EXE VERSION 3.0",
            "",
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
            "    <NO NAME>\tREG_SZ\t",
            "",
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\{6A2E5F1C-3B9D-4E0A-8C71-2F4D9B6E1A35}",
            "    DisplayName\tREG_SZ\tIdentity Integration Feature Pack",
            "    DisplayVersion\tREG_SZ\t3.0.0.0",
            "    InstallLocation\tREG_SZ\tC:\\Program Files\\Microsoft Identity Integration Server\\",
            "    WindowsInstaller\tREG_DWORD\t0x1",
            "    <NO NAME>\tREG_SZ\t",
            "",
            "",
        ]
        .join("\r\n")
    }

    #[test]
    fn reg_3_0_output_of_windows_server_2003_names_the_installed_feature_pack() {
        let listing = parse_reg_query(&reg_3_0_output(), UNINSTALL_KEY, RegistryView::Native);
        assert_eq!(listing.unreadable, None, "every line is understood");
        let products = listing.products;
        assert_eq!(products.len(), 1, "{products:#?}");
        let iifp = &products[0];
        assert_eq!(iifp.product_code.as_ref().map(|c| c.as_str()), Some(IIFP));
        assert_eq!(
            iifp.display_name.as_deref(),
            Some("Identity Integration Feature Pack")
        );
        assert_eq!(iifp.display_version.as_deref(), Some("3.0.0.0"));
        assert_eq!(
            iifp.install_location.as_deref(),
            Some(r"C:\Program Files\Microsoft Identity Integration Server\")
        );
    }

    #[test]
    fn value_lines_split_on_tabs_or_runs_of_spaces_around_the_type_token() {
        type Split<'a> = Option<(&'a str, &'a str, &'a str)>;
        let cases: [(&str, Split); 11] = [
            // Modern reg.exe: four spaces; names and data may hold spaces.
            (
                "    A B    REG_SZ    x    y",
                Some(("A B", "REG_SZ", "x    y")),
            ),
            ("    Empty    REG_SZ    ", Some(("Empty", "REG_SZ", ""))),
            ("    Empty    REG_SZ", Some(("Empty", "REG_SZ", ""))),
            (
                "    (Default)    REG_SZ    v",
                Some(("(Default)", "REG_SZ", "v")),
            ),
            // reg.exe 3.0: one tab each side, `<NO NAME>` for the default value.
            ("    <NO NAME>\tREG_SZ\t", Some(("<NO NAME>", "REG_SZ", ""))),
            (
                "    Display Name\tREG_EXPAND_SZ\ta\tb",
                Some(("Display Name", "REG_EXPAND_SZ", "a\tb")),
            ),
            (
                "\tDisplayName\tREG_SZ\tx",
                Some(("DisplayName", "REG_SZ", "x")),
            ),
            // Other runs of spaces.
            (
                "  DisplayName  REG_SZ  x",
                Some(("DisplayName", "REG_SZ", "x")),
            ),
            // REG_ inside a name is not the type.
            (
                "    MY_REG_SZ\tREG_SZ\tx",
                Some(("MY_REG_SZ", "REG_SZ", "x")),
            ),
            ("    DisplayName = x", None),
            ("no indent    REG_SZ    v", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_value_line(line), want, "{line:?}");
        }
    }

    fn product(key: &str, name: &str, view: RegistryView) -> InstalledProduct {
        InstalledProduct {
            key: key.to_string(),
            product_code: ProductCode::parse(key).ok(),
            display_name: Some(name.to_string()),
            display_version: None,
            install_location: None,
            view,
        }
    }

    #[test]
    fn a_display_name_resolves_to_its_product_code_ignoring_case() {
        let products = vec![
            product(
                IIFP,
                "Identity Integration Feature Pack",
                RegistryView::Wow6432Node,
            ),
            product(
                "{11111111-2222-3333-4444-555555555555}",
                "Other",
                RegistryView::Native,
            ),
        ];
        let wanted = ProductRef::Name("identity integration feature pack".into());
        match find(&products, &wanted) {
            Lookup::Found(p) => assert_eq!(p.product_code.unwrap().as_str(), IIFP),
            other => panic!("{other:?}"),
        }
        let by_code = ProductRef::ProductCode(ProductCode::parse(&IIFP.to_lowercase()).unwrap());
        assert!(matches!(find(&products, &by_code), Lookup::Found(_)));
        assert_eq!(
            find(&products, &ProductRef::Name("Identity Integration".into())),
            Lookup::NotFound
        );
    }

    #[test]
    fn two_codes_sharing_a_name_are_ambiguous() {
        let products = vec![
            product(
                IIFP,
                "Identity Integration Feature Pack",
                RegistryView::Native,
            ),
            product(
                "{11111111-2222-3333-4444-555555555555}",
                "Identity Integration Feature Pack",
                RegistryView::Native,
            ),
        ];
        match find(
            &products,
            &ProductRef::Name("Identity Integration Feature Pack".into()),
        ) {
            Lookup::Ambiguous(ps) => assert_eq!(ps.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    /// A scripted reg: `body` is shell code that sees the arguments as `$@`; every run's
    /// arguments are appended to `calls.log` beside it.
    #[cfg(unix)]
    fn scripted_reg(dir: &Path, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let reg = dir.join("reg");
        let calls = dir.join("calls.log");
        std::fs::write(
            &reg,
            format!("#!/bin/sh\necho \"$*\" >> '{}'\n{body}\n", calls.display()),
        )
        .unwrap();
        std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o755)).unwrap();
        reg
    }

    #[cfg(unix)]
    fn calls(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[cfg(unix)]
    const ABSENT: &str =
        "echo 'ERROR: The system was unable to find the specified registry key or value.' >&2; exit 1";

    /// A scripted reg that prints `native` unless one of the shell `case` clauses `first`
    /// (matched against all its arguments) answers the call.
    #[cfg(unix)]
    fn reg_listing(dir: &Path, native: &str, first: &str) -> std::path::PathBuf {
        let file = dir.join("native.txt");
        std::fs::write(&file, native).unwrap();
        scripted_reg(
            dir,
            &format!("case \"$*\" in {first} *) cat '{}';; esac", file.display()),
        )
    }

    #[cfg(unix)]
    fn no_wow(dir: &Path, native: &str) -> std::path::PathBuf {
        reg_listing(dir, native, &format!("*WOW6432Node*) {ABSENT};;"))
    }

    #[cfg(unix)]
    fn finds_iifp(products: &[InstalledProduct]) -> bool {
        let wanted = ProductRef::Name("Identity Integration Feature Pack".into());
        matches!(find(products, &wanted), Lookup::Found(_))
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn uninstall_entries_without_any_readable_display_name_are_an_error_never_absent() {
        let dir = tempfile::tempdir().unwrap();
        let reg = no_wow(
            dir.path(),
            "\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{6A2E5F1C-3B9D-4E0A-8C71-2F4D9B6E1A35}\n    DisplayName = Identity Integration Feature Pack\n\n",
        );
        let err = installed_products(&Local, &reg, &Redactor::default(), &[])
            .await
            .expect_err("an unreadable listing must not read as `not installed`");
        let text = err.to_string();
        assert!(text.contains("1 Uninstall entr"), "{text}");
        assert!(
            text.contains("DisplayName = Identity Integration Feature Pack"),
            "the error shows a line it could not read: {text}"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn entries_that_are_read_but_name_no_program_are_a_bare_windows_not_an_error() {
        // A fresh Windows lists component keys (AddressBook, ...) that carry no DisplayName.
        let dir = tempfile::tempdir().unwrap();
        let reg = no_wow(
            dir.path(),
            "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\AddressBook\r\n    (Default)    REG_SZ    \r\n\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\WIC\r\n    SystemComponent    REG_DWORD    0x1\r\n\r\n",
        );
        let products = installed_products(&Local, &reg, &Redactor::default(), &[])
            .await
            .unwrap();
        assert_eq!(products.len(), 2);
        assert!(products.iter().all(|p| p.display_name.is_none()));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_32_bit_reg_is_asked_for_the_64_bit_view_where_a_64_bit_product_is_listed() {
        // A 32-bit reg.exe on 64-bit Windows (what a 32-bit build of the executor starts) sees
        // HKLM\SOFTWARE redirected to the 32-bit view unless it is given /reg:64.
        let dir = tempfile::tempdir().unwrap();
        let reg = reg_listing(
            dir.path(),
            &reg_output(),
            &format!("*WOW6432Node*) {ABSENT};; *'Uninstall /s') printf '\\r\\n';;"),
        );
        let products = installed_products(&Local, &reg, &Redactor::default(), &[])
            .await
            .unwrap();
        assert!(finds_iifp(&products), "{products:#?}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn reg_3_0_refuses_reg_64_and_is_asked_again_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let refuse = "printf 'ERROR: Invalid syntax.\\r\\nType \"REG QUERY /?\" for usage.\\r\\n' >&2; exit 1";
        let reg = reg_listing(
            dir.path(),
            &reg_3_0_output(),
            &format!("*/reg:64*) {refuse};; *WOW6432Node*) {ABSENT};;"),
        );
        let products = installed_products(&Local, &reg, &Redactor::default(), &[])
            .await
            .unwrap();
        assert!(finds_iifp(&products), "{products:#?}");
        assert_eq!(
            calls(dir.path()),
            vec![
                format!("query {UNINSTALL_KEY} /s /reg:64"),
                format!("query {UNINSTALL_KEY} /s"),
                format!("query {UNINSTALL_KEY_WOW64} /s"),
            ],
            "refused once, then never passed again"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_reg_that_cannot_be_run_is_an_error_never_no_products() {
        // Over a remote shell cmd.exe answers a reg it cannot find with exit 1 and this text on
        // stderr, stdout empty: the same exit code as reg's "no such key".
        let dir = tempfile::tempdir().unwrap();
        let reg = scripted_reg(
            dir.path(),
            "echo 'The system cannot find the path specified.' >&2; exit 1",
        );
        let err = installed_products(&Local, &reg, &Redactor::default(), &[])
            .await
            .expect_err("a reg that does not run must not read as `nothing installed`");
        assert!(
            err.to_string()
                .contains("The system cannot find the path specified."),
            "{err}"
        );
    }

    /// A scripted reg whose WOW6432Node queries run `wow` and whose `HKLM\SOFTWARE` lists the
    /// one subkey `subkey`; the native view lists IIFP.
    #[cfg(unix)]
    fn wow_answering(dir: &Path, wow: &str, subkey: &str) -> std::path::PathBuf {
        reg_listing(
            dir,
            &reg_output(),
            &format!(
                "*WOW6432Node*) {wow};; *'SOFTWARE /reg:64') printf '\\r\\nHKEY_LOCAL_MACHINE\\\\SOFTWARE\\\\{subkey}\\r\\n';;"
            ),
        )
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn an_absent_wow6432node_in_another_language_is_absent_when_hklm_software_does_not_list_it(
    ) {
        // A German reg.exe: "FEHLER: Der angegebene Registrierungsschluessel bzw. Wert wurde
        // nicht gefunden." for the missing WOW6432Node key of a 32-bit Windows.
        let dir = tempfile::tempdir().unwrap();
        let german = "echo 'FEHLER: Der angegebene Registrierungsschluessel bzw. Wert wurde nicht gefunden.' >&2; exit 1";
        let reg = wow_answering(dir.path(), german, "Microsoft");
        let products = installed_products(&Local, &reg, &Redactor::default(), &[])
            .await
            .unwrap();
        assert!(finds_iifp(&products), "{products:#?}");
        assert!(
            calls(dir.path()).contains(&format!("query {SOFTWARE_KEY} /reg:64")),
            "{:?}",
            calls(dir.path())
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_key_reg_may_not_read_is_an_error_in_either_view_never_no_products() {
        let denied = "echo 'ERROR: Access is denied.' >&2; exit 1";
        // The native key: exit 1 is never "absent" there.
        let dir = tempfile::tempdir().unwrap();
        let reg = reg_listing(
            dir.path(),
            &reg_output(),
            &format!("*'Uninstall /s'*) {denied};;"),
        );
        let err = installed_products(&Local, &reg, &Redactor::default(), &[])
            .await
            .expect_err("an unreadable Uninstall key must not read as `nothing installed`");
        assert!(err.to_string().contains("Access is denied"), "{err}");
        // WOW6432Node, which HKLM\SOFTWARE lists: there, so exit 1 is not "absent" either.
        let dir = tempfile::tempdir().unwrap();
        let reg = wow_answering(dir.path(), denied, "WOW6432Node");
        let err = installed_products(&Local, &reg, &Redactor::default(), &[])
            .await
            .expect_err("an unreadable WOW6432Node must not read as `nothing installed there`");
        assert!(err.to_string().contains("Access is denied"), "{err}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn both_views_are_queried_and_a_missing_view_is_no_entries() {
        let dir = tempfile::tempdir().unwrap();
        let reg = no_wow(dir.path(), &reg_output());
        let products = installed_products(&Local, &reg, &Redactor::default(), &[])
            .await
            .unwrap();
        assert_eq!(products.len(), 3);
        assert!(products.iter().all(|p| p.view == RegistryView::Native));

        std::fs::write(
            &reg,
            "#!/bin/sh\necho 'ERROR: Access is denied.' >&2\nexit 5\n",
        )
        .unwrap();
        let err = installed_products(&Local, &reg, &Redactor::default(), &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Access is denied"), "{err}");
    }
}
