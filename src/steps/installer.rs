//! What `uninstall` and `install` share: the Windows Installer exit-code table, running an installer
//! with backoff while another installation is in progress (1618), reading the tail of its log, and
//! finding a product in the Uninstall keys.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::adapters::process::{ProcessOutcome, ProcessSpec};
use crate::adapters::products::{self, InstalledProduct, Lookup};
use crate::plan::{ProductRef, Retry};
use crate::steps::{StepContext, StepError};

pub const SUCCESS: i32 = 0;
pub const UNKNOWN_PRODUCT: i32 = 1605;
pub const ANOTHER_INSTALL: i32 = 1618;
pub const FATAL: i32 = 1603;
pub const PACKAGE_UNREADABLE: i32 = 1619;
pub const REBOOT_INITIATED: i32 = 1641;
pub const REBOOT_REQUIRED: i32 = 3010;

/// The codes this module knows, for [`windows_code`].
const KNOWN: [i32; 7] = [
    SUCCESS,
    UNKNOWN_PRODUCT,
    ANOTHER_INSTALL,
    FATAL,
    PACKAGE_UNREADABLE,
    REBOOT_INITIATED,
    REBOOT_REQUIRED,
];

/// The Windows Installer code behind an observed exit status. On Windows the status is the full
/// code. Elsewhere (the lab's stand-ins, Wine seen from a Linux parent) a status is cut to 8 bits,
/// so 1605 arrives as 69: a status whose low byte matches exactly one known code is that code.
pub fn windows_code(observed: i32) -> i32 {
    if cfg!(windows) || !(0..=255).contains(&observed) {
        return observed;
    }
    let mut matches = KNOWN.iter().filter(|&&k| k & 0xFF == observed);
    match (matches.next(), matches.next()) {
        (Some(&k), None) => k,
        _ => observed,
    }
}

/// What an exit code means, in words for the summary.
pub fn meaning(code: i32) -> &'static str {
    match code {
        SUCCESS => "success",
        UNKNOWN_PRODUCT => "the product is not installed",
        ANOTHER_INSTALL => "another installation is in progress",
        FATAL => "fatal error during installation",
        PACKAGE_UNREADABLE => "the installation package could not be opened",
        REBOOT_INITIATED => "success; a restart was started",
        REBOOT_REQUIRED => "success; a restart is required",
        _ => "failure",
    }
}

pub fn needs_reboot(code: i32) -> bool {
    code == REBOOT_REQUIRED || code == REBOOT_INITIATED
}

/// A product as observed, without registry noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub code: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
}

impl From<&InstalledProduct> for Product {
    fn from(p: &InstalledProduct) -> Self {
        Product {
            code: p.product_code.as_ref().map(|c| c.to_string()),
            name: p.display_name.clone(),
            version: p.display_version.clone(),
        }
    }
}

impl std::fmt::Display for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name.as_deref().unwrap_or("(no name)"))?;
        if let Some(v) = &self.version {
            write!(f, " {v}")?;
        }
        if let Some(c) = &self.code {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

/// The lookup of one product on the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "found")]
pub enum Found {
    One { product: Product },
    None,
    Several { products: Vec<Product> },
}

/// Finds a product in the Uninstall keys (64- and 32-bit views).
pub async fn find_product(cx: &StepContext<'_>, wanted: &ProductRef) -> Result<Found, StepError> {
    let installed = products::installed_products(
        &cx.world.reg(),
        &cx.world.redactor,
        &cx.world.secret_env_names(),
    )
    .await?;
    Ok(match products::find(&installed, wanted) {
        Lookup::Found(p) => Found::One {
            product: Product::from(&p),
        },
        Lookup::NotFound => Found::None,
        Lookup::Ambiguous(ps) => Found::Several {
            products: ps.iter().map(Product::from).collect(),
        },
    })
}

/// Runs an installer, retrying while exit 1618 says another installation is in progress.
pub async fn run_with_retry(
    cx: &StepContext<'_>,
    spec: &ProcessSpec,
    retry: Option<&Retry>,
) -> Result<(ProcessOutcome, u32), StepError> {
    let attempts = retry.map_or(5, |r| r.attempts.max(1));
    let mut delay = retry
        .and_then(|r| r.delay)
        .map_or(Duration::from_secs(30), |d| d.get());
    let mut attempt = 1;
    loop {
        let mut out = cx.world.run(spec).await?;
        out.exit_code = windows_code(out.exit_code);
        if out.exit_code != ANOTHER_INSTALL || attempt >= attempts {
            return Ok((out, attempt));
        }
        tracing::warn!(
            attempt,
            ?delay,
            "another installation is in progress (1618); retrying"
        );
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
        attempt += 1;
    }
}

/// The last lines of an installer log (Windows Installer writes UTF-16 logs), redacted.
pub fn log_tail(cx: &StepContext<'_>, path: &Path, lines: usize) -> Option<String> {
    let bytes = crate::adapters::fs::read_file(path).ok()?;
    let text = if bytes.starts_with(&[0xFF, 0xFE]) {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    Some(
        cx.world
            .redactor
            .redact(&all[all.len().saturating_sub(lines)..].join("\n")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_table_says_what_each_code_means() {
        assert_eq!(meaning(1605), "the product is not installed");
        assert!(needs_reboot(3010) && needs_reboot(1641) && !needs_reboot(0));
        assert_eq!(meaning(12345), "failure");
    }

    #[test]
    fn an_exit_status_cut_to_8_bits_is_read_back_as_its_windows_installer_code() {
        if cfg!(windows) {
            return;
        }
        assert_eq!(windows_code(69), UNKNOWN_PRODUCT);
        assert_eq!(windows_code(82), ANOTHER_INSTALL);
        assert_eq!(windows_code(67), FATAL);
        assert_eq!(windows_code(194), REBOOT_REQUIRED);
        assert_eq!(windows_code(0), SUCCESS);
        assert_eq!(windows_code(1), 1, "an unknown status stays as it is");
    }
}
