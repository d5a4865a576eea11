//! What `uninstall` and `install` share: reading an exit status back as its Windows Installer code
//! (the code table is the plan language's `windows_installer`), running an installer with backoff
//! while another installation is in progress (1618), reading the tail of its log, finding a
//! product in the Uninstall keys, and how msiexec is told not to restart Windows.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::adapters::process::{ProcessOutcome, ProcessSpec};
use crate::adapters::products::{self, InstalledProduct, Lookup};
use crate::adapters::windows_installer::{self, Version};
use crate::plan::windows_installer::{ANOTHER_INSTALL, KNOWN};
use crate::plan::{ProductRef, Retry};
use crate::steps::{StepContext, StepError};

/// The Windows Installer code behind an observed exit status. On Windows, and from a server over
/// WinRM, the status is the full code (`full`). Elsewhere (the lab's stand-ins, Wine seen from a
/// Linux parent) a status is cut to 8 bits, so 1605 arrives as 69: a status whose low byte matches
/// exactly one code of the plan language's table ([`KNOWN`]) is that code.
pub fn windows_code(observed: i32, full: bool) -> i32 {
    if full || !(0..=255).contains(&observed) {
        return observed;
    }
    let mut matches = KNOWN.iter().filter(|(k, _)| k & 0xFF == observed);
    match (matches.next(), matches.next()) {
        (Some(&(k, _)), None) => k,
        _ => observed,
    }
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
        cx.world.host(),
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

/// msiexec's standard option for "never restart"; it exists from Windows Installer 3.0 on.
pub const NORESTART: &str = "/norestart";
/// What Microsoft documents as the equivalent of `/norestart` ("Standard Installer Command-Line
/// Options"); every Windows Installer version takes it, 2.0 included.
pub const REALLY_SUPPRESS: &str = "REBOOT=ReallySuppress";

/// The server's Windows Installer, as far as a msiexec command line depends on it. The default is
/// a version not read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowsInstaller {
    /// The file version of msi.dll, when it could be read.
    pub version: Option<Version>,
    /// Why it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

impl WindowsInstaller {
    /// Reads the version of msi.dll beside the plan's msiexec. Never fails: an unreadable
    /// version is recorded, and then only what every version understands is passed.
    pub async fn observe(cx: &StepContext<'_>) -> WindowsInstaller {
        let dll = windows_installer::msi_dll_beside(&cx.world.msiexec());
        match windows_installer::read(cx.world.host(), &dll).await {
            Ok(v) => WindowsInstaller {
                version: Some(v),
                unreadable: None,
            },
            Err(e) => WindowsInstaller {
                version: None,
                unreadable: Some(e.to_string()),
            },
        }
    }

    /// The argument that keeps msiexec from restarting Windows: `/norestart` on Windows Installer
    /// 3.0 and later, else `REBOOT=ReallySuppress`, or nothing when the plan's own arguments set
    /// REBOOT already (`plan_sets_reboot`).
    pub fn no_restart(&self, plan_sets_reboot: bool) -> Option<&'static str> {
        match self.version {
            Some(v) if v.major() >= 3 => Some(NORESTART),
            _ if plan_sets_reboot => None,
            _ => Some(REALLY_SUPPRESS),
        }
    }

    /// Why the command line does not say `/norestart`, for the plan; `None` when it does.
    pub fn note(&self) -> Option<String> {
        match (&self.version, &self.unreadable) {
            (Some(v), _) if v.major() >= 3 => None,
            (Some(v), _) => Some(format!(
                "Windows Installer {v} has no {NORESTART} (3.0 and later); restarts are suppressed with REBOOT=ReallySuppress"
            )),
            (None, why) => Some(format!(
                "the Windows Installer version is unknown ({}); restarts are suppressed with REBOOT=ReallySuppress, which every version takes",
                why.as_deref().unwrap_or("not read")
            )),
        }
    }
}

/// Whether msiexec arguments (`NAME=VALUE`) or property names set the REBOOT property.
pub fn sets_reboot<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> bool {
    args.into_iter().any(|a| {
        let a = a.as_ref();
        a.split_once('=')
            .map_or(a, |(k, _)| k)
            .trim()
            .eq_ignore_ascii_case("REBOOT")
    })
}

/// How `run_with_retry` ended.
#[derive(Debug)]
pub enum Ran {
    /// The installer's last run ended with this outcome, after this many attempts.
    Exited(ProcessOutcome, u32),
    /// Before a retry, the server was found in the state the step wants: another installation
    /// that was in progress (1618, or the `_MSIExecute` mutex set) made the change (typically the
    /// installer of an earlier run of this plan, killed or cut off while the installer went on).
    /// Running it again would install or remove twice.
    DoneMeanwhile { attempts: u32 },
}

/// Runs an installer, never while another installation is in progress, and never when the change
/// is already on the server. Each attempt first asks the server whether an installer is in its
/// execute phase (the `_MSIExecute` mutex, which Windows Installer sets "only while processing
/// the InstallExecuteSequence table, ..."; while it is set the installer answers 1618). While one
/// is, it waits with the step's `retry` (attempts, doubling delay) and asks again; the server's
/// products are not looked at then (an installation half-way, or rolling back, shows a state that
/// does not last). Once the server is idle, `done_meanwhile` looks at it: when the change is
/// already there (typically made by the installer of an earlier, cut-off run of this plan), the
/// installer is not run. Otherwise it runs; if it answers 1618 all the same, the attempt is spent
/// and the next one starts over with the probe. With every attempt spent while the server stays
/// busy, nothing was started and the step is refused.
pub async fn run_with_retry<F, Fut>(
    cx: &StepContext<'_>,
    spec: &ProcessSpec,
    retry: Option<&Retry>,
    done_meanwhile: F,
) -> Result<Ran, StepError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<bool, StepError>>,
{
    let attempts = retry.map_or(5, |r| r.attempts.max(1));
    let mut delay = retry
        .and_then(|r| r.delay)
        .map_or(Duration::from_secs(30), |d| d.get());
    let mut waited = Duration::ZERO;
    let mut attempt = 1;
    loop {
        let host = cx.world.host();
        if host.installation_in_progress(&cx.world.msiexec()).await? {
            if attempt >= attempts {
                return Err(still_busy(cx, spec, attempts, waited));
            }
            tracing::warn!(
                attempt,
                ?delay,
                "another Windows Installer installation is in progress on the server (its \
                 _MSIExecute mutex is set); waiting before starting the installer"
            );
        } else if done_meanwhile().await? {
            tracing::warn!(
                attempt,
                "the change is on the server already (made by an installation that was in \
                 progress, or since the plan was made); not running the installer"
            );
            return Ok(Ran::DoneMeanwhile { attempts: attempt });
        } else {
            let mut out = cx.world.run(spec).await?;
            out.exit_code = windows_code(out.exit_code, out.full_exit_code);
            if out.exit_code != ANOTHER_INSTALL || attempt >= attempts {
                return Ok(Ran::Exited(out, attempt));
            }
            tracing::warn!(
                attempt,
                ?delay,
                "another installation is in progress (1618); retrying"
            );
        }
        tokio::time::sleep(delay).await;
        waited += delay;
        delay = delay.saturating_mul(2);
        attempt += 1;
    }
}

/// The step's refusal when the server stayed busy through every attempt.
fn still_busy(
    cx: &StepContext<'_>,
    spec: &ProcessSpec,
    attempts: u32,
    waited: Duration,
) -> StepError {
    let program = spec.program.to_string_lossy();
    let program = program.rsplit(['\\', '/']).next().unwrap_or_default();
    StepError::Refused(format!(
        "another Windows Installer installation is in progress on {server} (its _MSIExecute \
         mutex was still set at the last of {attempts} attempts, after waiting {waited:?}), and \
         the change this step makes was not on the server when last looked at; {program} was \
         not started. It may be the installer of an earlier run of this plan that was cut off, \
         still working; run again when it has finished (a longer `retry` waits longer)",
        server = cx.world.server_name(),
    ))
}

/// The last lines of an installer log (Windows Installer writes UTF-16 logs), redacted.
pub async fn log_tail(cx: &StepContext<'_>, path: &Path, lines: usize) -> Option<String> {
    let bytes = cx.world.host().read_file(path).await.ok()?;
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
    use crate::plan::windows_installer::{FATAL, REBOOT_REQUIRED, SUCCESS, UNKNOWN_PRODUCT};

    fn wi(version: Option<[u16; 4]>) -> WindowsInstaller {
        WindowsInstaller {
            version: version.map(Version),
            unreadable: version.is_none().then(|| "cannot read msi.dll".to_string()),
        }
    }

    #[test]
    fn norestart_is_passed_only_to_windows_installer_3_0_and_later() {
        // Windows Server 2003 as released: Windows Installer 2.0.3790.0.
        let w2003 = wi(Some([2, 0, 3790, 0]));
        assert_eq!(w2003.no_restart(false), Some("REBOOT=ReallySuppress"));
        assert_eq!(w2003.no_restart(true), None, "the plan's own REBOOT stands");
        assert!(w2003
            .note()
            .unwrap()
            .contains("Windows Installer 2.0.3790.0"));
        // Windows Server 2003 SP1: 3.1.4000.1830.
        let sp1 = wi(Some([3, 1, 4000, 1830]));
        assert_eq!(sp1.no_restart(false), Some("/norestart"));
        assert_eq!(sp1.no_restart(true), Some("/norestart"));
        assert_eq!(sp1.note(), None);
        let unknown = wi(None);
        assert_eq!(unknown.no_restart(false), Some("REBOOT=ReallySuppress"));
        assert!(unknown.note().unwrap().contains("cannot read msi.dll"));
        assert!(sets_reboot(["/x", "reboot = Force"]));
        assert!(!sets_reboot(["/x", "REBOOTPROMPT=S"]));
        assert!(sets_reboot(["Reboot"]), "a property name");
    }

    #[test]
    fn an_exit_status_cut_to_8_bits_is_read_back_as_its_windows_installer_code() {
        assert_eq!(windows_code(69, false), UNKNOWN_PRODUCT);
        assert_eq!(windows_code(82, false), ANOTHER_INSTALL);
        assert_eq!(windows_code(67, false), FATAL);
        assert_eq!(windows_code(194, false), REBOOT_REQUIRED);
        assert_eq!(windows_code(0, false), SUCCESS);
        assert_eq!(
            windows_code(1, false),
            1,
            "an unknown status stays as it is"
        );
    }

    #[test]
    fn a_full_exit_code_from_a_windows_parent_or_over_winrm_is_taken_as_it_is() {
        // 69 from a server over WinRM is 69, not 1605 (ERROR_UNKNOWN_PRODUCT) whose low byte it is.
        assert_eq!(windows_code(69, true), 69);
        assert_eq!(windows_code(194, true), 194);
        assert_eq!(windows_code(1605, true), UNKNOWN_PRODUCT);
        assert_eq!(windows_code(3010, true), REBOOT_REQUIRED);
    }
}
