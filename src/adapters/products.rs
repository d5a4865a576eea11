//! Installed products: what Add/Remove Programs knows, read from the Uninstall registry keys
//! (64-bit and 32-bit views) by running `reg query ... /s` and parsing its output.
//! Read-only; resolving a display name to a product code is `find`'s job, deciding is the step's.

use std::path::Path;
use std::time::Duration;

use super::process::{ProcessError, ProcessSpec};
use super::secrets::Redactor;
use crate::plan::{ProductCode, ProductRef};

/// The Uninstall key of the machine's native view.
pub const UNINSTALL_KEY: &str = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";
/// The Uninstall key of 32-bit programs on 64-bit Windows.
pub const UNINSTALL_KEY_WOW64: &str =
    r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall";

const REG_TIMEOUT: Duration = Duration::from_secs(120);

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
}

/// The result of looking a product up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(InstalledProduct),
    NotFound,
    /// Several product codes carry the name; the plan must say which by code.
    Ambiguous(Vec<InstalledProduct>),
}

/// Every Uninstall entry of both views. A view that does not exist (32-bit Windows has no
/// WOW6432Node) contributes nothing.
/// `env_remove`: variables the reg tool must not inherit (those holding the plan's secrets).
pub async fn installed_products(
    reg: &Path,
    redactor: &Redactor,
    env_remove: &[String],
) -> Result<Vec<InstalledProduct>, ProductError> {
    let mut all = Vec::new();
    for (root, view) in [
        (UNINSTALL_KEY, RegistryView::Native),
        (UNINSTALL_KEY_WOW64, RegistryView::Wow6432Node),
    ] {
        let mut spec = ProcessSpec::new(reg, &["query", root, "/s"], REG_TIMEOUT);
        spec.env_remove = env_remove.to_vec();
        let out = spec.run(redactor).await?;
        match out.exit_code {
            0 => all.extend(parse_reg_query(&out.stdout, root, view)),
            // reg.exe: 1 = the key does not exist.
            1 if out.stderr.contains("unable to find") || out.stdout.trim().is_empty() => {
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
    tracing::debug!(count = all.len(), "installed products listed");
    Ok(all)
}

/// Parses `reg query ROOT /s` output. Only direct subkeys of `root` (`HKLM\...` or
/// `HKEY_LOCAL_MACHINE\...`) become entries; the root's own values and deeper keys are skipped.
pub fn parse_reg_query(text: &str, root: &str, view: RegistryView) -> Vec<InstalledProduct> {
    let r = match root.strip_prefix("HKLM\\") {
        Some(rest) => format!("HKEY_LOCAL_MACHINE\\{rest}"),
        None => root.to_string(),
    };
    let r = r.trim_end_matches('\\');
    let mut out: Vec<InstalledProduct> = Vec::new();
    // Whether the value lines being read belong to the latest entry (not the root, not deeper).
    let mut in_entry = false;
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
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
            if let (Some((name, _ty, data)), Some(entry)) = (parse_value_line(line), out.last_mut())
            {
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
    out
}

/// `    NAME    REG_TYPE    DATA` -> (name, type, data). Names may contain spaces; the type
/// token is the first `REG_*` word surrounded by the 4-space separators.
fn parse_value_line(line: &str) -> Option<(&str, &str, &str)> {
    let body = line.strip_prefix("    ")?;
    let mut search = 0;
    while let Some(pos) = body[search..].find("    REG_") {
        let start = search + pos;
        let name = &body[..start];
        let after = &body[start + 4..];
        let ty_end = after
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .unwrap_or(after.len());
        let ty = &after[..ty_end];
        let rest = &after[ty_end..];
        if rest.is_empty() {
            return Some((name, ty, ""));
        }
        if let Some(data) = rest.strip_prefix("    ") {
            return Some((name, ty, data));
        }
        search = start + 4;
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
        let products = parse_reg_query(&reg_output(), UNINSTALL_KEY, RegistryView::Native);
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
        let products = parse_reg_query(text, UNINSTALL_KEY_WOW64, RegistryView::Wow6432Node);
        assert_eq!(products.len(), 1);
        assert_eq!(products[0].view, RegistryView::Wow6432Node);
        assert_eq!(products[0].display_version.as_deref(), Some("3.0.0.0"));
        assert!(
            parse_reg_query(text, UNINSTALL_KEY, RegistryView::Native).is_empty(),
            "another root's keys are not ours"
        );
    }

    #[test]
    fn value_lines_split_on_the_type_token() {
        assert_eq!(
            parse_value_line("    A B    REG_SZ    x    y"),
            Some(("A B", "REG_SZ", "x    y"))
        );
        assert_eq!(
            parse_value_line("    Empty    REG_SZ    "),
            Some(("Empty", "REG_SZ", ""))
        );
        assert_eq!(
            parse_value_line("    Empty    REG_SZ"),
            Some(("Empty", "REG_SZ", ""))
        );
        assert_eq!(
            parse_value_line("    (Default)    REG_SZ    v"),
            Some(("(Default)", "REG_SZ", "v"))
        );
        assert_eq!(parse_value_line("no indent    REG_SZ    v"), None);
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

    #[cfg(unix)]
    #[tokio::test]
    async fn both_views_are_queried_and_a_missing_view_is_no_entries() {
        let dir = tempfile::tempdir().unwrap();
        let reg = dir.path().join("reg");
        let native = dir.path().join("native.txt");
        std::fs::write(&native, reg_output()).unwrap();
        let script = format!(
            "#!/bin/sh\ncase \"$2\" in\n*WOW6432Node*) echo 'ERROR: The system was unable to find the specified registry key or value.' >&2; exit 1;;\n*) cat '{}';;\nesac\n",
            native.display()
        );
        std::fs::write(&reg, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o755)).unwrap();
        let products = installed_products(&reg, &Redactor::default(), &[])
            .await
            .unwrap();
        assert_eq!(products.len(), 3);
        assert!(products.iter().all(|p| p.view == RegistryView::Native));

        std::fs::write(
            &reg,
            "#!/bin/sh\necho 'ERROR: Access is denied.' >&2\nexit 5\n",
        )
        .unwrap();
        let err = installed_products(&reg, &Redactor::default(), &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Access is denied"), "{err}");
    }
}
