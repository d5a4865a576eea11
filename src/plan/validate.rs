//! Checks a structurally sound plan for what serde cannot express: ids and references, order and
//! cycles, the protection an uninstall needs, secrets in installer templates, and per-field rules
//! (the characters names may hold are `names`' job).
//! It reports every problem by field path; positions are added by the loader. It never resolves
//! a secret or touches the server.

use std::collections::HashMap;

use super::graph;
use super::kinds::{PathOn, Where};
use super::names;
use super::values::AbsPath;

use super::types::*;

/// One problem, by field path (e.g. `steps[3].uninstall`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// The problems found so far; each kind's `KindSpec::validate` adds its own.
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Every semantic problem in `plan`.
pub fn check(plan: &Plan) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    if plan.version != 1 {
        p.add(
            "version",
            format!(
                "unsupported plan language version {}; this program knows version 1",
                plan.version
            ),
        );
    }
    if plan.name.is_empty()
        || !plan
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        p.add(
            "name",
            "a plan name is letters, digits, `-`, `_` or `.` (it names the journal file)",
        );
    }
    check_connection(&plan.server.sql, &mut p);
    check_winrm(&plan.server, &mut p);
    check_server_paths(plan, &mut p);
    p.0.extend(names::check(plan));
    if plan.steps.is_empty() {
        p.add("steps", "a plan needs at least one step");
    }
    check_ids_and_references(plan, &mut p);
    if let Err(cycle) = graph::order(plan) {
        let ids = graph::index_by_id(plan);
        let first = cycle
            .first()
            .and_then(|id| ids.get(id))
            .copied()
            .unwrap_or(0);
        let names: Vec<&str> = cycle.iter().map(|id| id.as_str()).collect();
        p.add(
            format!("steps[{first}]"),
            format!(
                "steps depend on each other in a cycle: {}",
                names.join(" -> ")
            ),
        );
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let at = format!("steps[{i}].{}", step.kind.name());
        let here = Where {
            plan,
            index: i,
            at: &at,
        };
        step.kind.spec().validate(&here, &mut p);
    }
    p.0
}

fn check_connection(sql: &SqlConnection, p: &mut Problems) {
    if sql.host.trim().is_empty() {
        p.add(
            "server.sql.host",
            "a host name is needed; `(local)` means this machine",
        );
    }
    if sql.odbc_driver.is_some() && sql.driver == SqlDriver::Tds {
        p.add(
            "server.sql.odbc_driver",
            "`odbc_driver` applies only with `driver: odbc` or `driver: auto`",
        );
    }
}

/// The host part of an endpoint (`server`, `server:port`, `http[s]://server[:port]/path`, an
/// IPv6 address in brackets).
fn endpoint_host(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    }
}

/// The WinRM settings that cannot work, each with what to write instead.
fn check_winrm(server: &Server, p: &mut Problems) {
    let Some(w) = server.connect.winrm() else {
        return;
    };
    let at = "server.connect.winrm";
    let kerberos = w.auth == WinrmAuth::Kerberos;
    // Kerberos goes through MIT's libgssapi_krb5.so.2, which Linux and FreeBSD (MIT krb5
    // package) have; macOS has its own GSS framework. The WinRM client's SSPI path (Windows) has
    // never run against a Kerberos listener: Wine's Kerberos package, the only Windows this
    // project tests on, does not lay out EncryptMessage's output as Windows does (README,
    // "Kerberos"), so it is not offered until it has.
    if kerberos && !cfg!(any(target_os = "linux", target_os = "freebsd")) {
        p.add(
            format!("{at}.auth"),
            "Kerberos is available in the Linux and FreeBSD builds of upgrade only (it goes \
             through MIT Kerberos' GSSAPI on the admin host; the Windows build's SSPI path has \
             not been tested against a Kerberos WinRM listener, so it is not offered); use ntlm \
             (Windows' default listener takes it, and over HTTP every message is encrypted)",
        );
    }
    if kerberos && w.user.contains('\\') {
        p.add(
            format!("{at}.user"),
            "Kerberos names an account `user@REALM`, the realm being the domain's DNS name in \
             capitals (e.g. `admin@CORP.EXAMPLE.COM`), not `DOMAIN\\user`: the NetBIOS domain \
             name is not the realm",
        );
    }
    if kerberos {
        let (field, host) = match &w.endpoint {
            Some(e) => ("endpoint", endpoint_host(e)),
            None => ("host", server.host.as_deref().unwrap_or_default()),
        };
        if host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
        {
            let path = match field {
                "endpoint" => format!("{at}.endpoint"),
                _ => "server.host".to_string(),
            };
            p.add(
                path,
                format!(
                    "Kerberos needs the server's name, not the address `{host}`: the ticket is \
                     for the service principal HTTP/<name> the server's account holds (e.g. \
                     `miis01.corp.example.com`); use the name, or auth: ntlm"
                ),
            );
        }
    }
    if matches!(w.auth, WinrmAuth::Ntlm | WinrmAuth::Basic) && w.password.is_none() {
        p.add(
            format!("{at}.password"),
            "NTLM and Basic need the account's password: `{env: NAME}`, `{file: PATH}` or \
             `{prompt: true}` (only `auth: kerberos` can do without one: it then uses the \
             ticket cache)",
        );
    }
    if w.auth == WinrmAuth::Basic && !w.https {
        p.add(
            format!("{at}.auth"),
            "Basic over plain HTTP is refused: it sends the password in clear with every \
             request, and Windows' WinRM service refuses it by default (AllowUnencrypted=false); \
             use `auth: ntlm` (encrypted over HTTP), or `https: true` with an HTTPS listener",
        );
    }
    if w.ca.is_some() && !w.https {
        p.add(
            format!("{at}.ca"),
            "`ca` is the certificate authority of an HTTPS listener, but `https` is false; set \
             `https: true`, or remove `ca` (NTLM over HTTP is encrypted without a certificate)",
        );
    }
    match &w.endpoint {
        None if server.host.is_none() => p.add(
            format!("{at}.endpoint"),
            "no endpoint and no `server.host`: name the sync server in `server.host` (then \
             `upgrade` connects to it on WinRM's default port), or give `endpoint`, e.g. \
             `http://miis01:5985/wsman`",
        ),
        Some(e) => {
            let scheme = e.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
            match scheme.as_deref() {
                None => {}
                Some("http") if w.https => p.add(
                    format!("{at}.endpoint"),
                    "the endpoint says http:// but `https` is true; make them agree",
                ),
                Some("https") if !w.https => p.add(
                    format!("{at}.endpoint"),
                    "the endpoint says https:// but `https` is false (the default); add \
                     `https: true`, or write the endpoint with http://",
                ),
                Some("http" | "https") => {}
                Some(_) => p.add(
                    format!("{at}.endpoint"),
                    "an endpoint is `server`, `server:port` or `http[s]://server[:port]/wsman`",
                ),
            }
        }
        None => {}
    }
    if w.timeout.is_some_and(|t| t.get().is_zero()) {
        p.add(
            format!("{at}.timeout"),
            "a timeout of 0 seconds would give up on every WinRM operation at once",
        );
    }
}

/// With `server.connect: winrm`, `upgrade` may run on Linux while every path a step uses on the
/// sync server is a path on a Windows server: such a path must be a Windows absolute path (a share
/// only for installer media). Local plans keep every absolute path as it is.
fn check_server_paths(plan: &Plan, p: &mut Problems) {
    if plan.server.connect.is_local() {
        return;
    }
    let tools = &plan.tools;
    for (name, path) in [
        ("miiskmu", &tools.miiskmu),
        ("msiexec", &tools.msiexec),
        ("reg", &tools.reg),
        ("sc", &tools.sc),
    ] {
        if let Some(path) = path {
            check_server_path(path, PathOn::Server, &format!("tools.{name}"), p);
        }
    }
    for (i, step) in plan.steps.iter().enumerate() {
        for f in step.kind.spec().paths() {
            let at = format!("steps[{i}].{}.{}", step.kind.name(), f.field);
            check_server_path(f.path, f.on, &at, p);
        }
    }
}

fn check_server_path(path: &AbsPath, on: PathOn, at: &str, p: &mut Problems) {
    let text = path.as_str();
    let b = text.as_bytes();
    let drive = b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':';
    let share = text.starts_with(r"\\");
    let why = "with `server.connect: winrm` this is a path on the sync server, a Windows server, \
               whatever machine `upgrade` runs on";
    match on {
        PathOn::Server if share => p.add(
            at,
            format!(
                "{why}: expected a path on the server's own disks such as `C:\\...` (a share \
                 `\\\\server\\share\\...` is for installer media only), found `{text}`"
            ),
        ),
        PathOn::Server if !drive => p.add(
            at,
            format!("{why}: expected a Windows absolute path such as `C:\\...`, found `{text}`"),
        ),
        PathOn::ServerOrShare if !drive && !share => p.add(
            at,
            format!(
                "{why}: expected a Windows absolute path such as `C:\\...`, or a share the \
                 server reads, `\\\\server\\share\\...`, found `{text}`"
            ),
        ),
        _ => {}
    }
}

/// An installer's log is written on the sync server; its default is in the state folder, which
/// with `server.connect: winrm` is the admin host's. Such a plan names the log on the server.
pub(crate) fn check_remote_log(log: Option<&AbsPath>, w: &Where<'_>, p: &mut Problems) {
    if log.is_none() && !w.plan.server.connect.is_local() {
        p.add(
            format!("{}.log", w.at),
            "with `server.connect: winrm` the installer writes its log on the sync server, and \
             the default (the state folder) is on this admin host; give `log: C:\\...`, a file \
             on the server, e.g. `C:\\Upgrade\\install.log`",
        );
    }
}

fn check_ids_and_references(plan: &Plan, p: &mut Problems) {
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, step) in plan.steps.iter().enumerate() {
        if let Some(first) = first_index.get(step.id.as_str()) {
            p.add(
                format!("steps[{i}].id"),
                format!(
                    "duplicate step id `{}` (already used by steps[{first}])",
                    step.id
                ),
            );
        } else {
            first_index.insert(step.id.as_str(), i);
        }
    }
    for (i, step) in plan.steps.iter().enumerate() {
        for (k, dep) in step.after.iter().enumerate() {
            let path = format!("steps[{i}].after[{k}]");
            if dep == &step.id {
                p.add(path, format!("step `{dep}` cannot come after itself"));
            } else if !first_index.contains_key(dep.as_str()) {
                p.add(path, format!("no step has the id `{dep}`"));
            }
        }
        for r in step.kind.spec().references() {
            let path = format!("steps[{i}].{}", r.field);
            match first_index.get(r.target.as_str()) {
                None => p.add(path, format!("no step has the id `{}`", r.target)),
                Some(&j) if plan.steps[j].kind.name() != r.required_kind => p.add(
                    path,
                    format!(
                        "`{}` is a {} step, but this must name a step of kind {}",
                        r.target,
                        plan.steps[j].kind.name(),
                        r.required_kind
                    ),
                ),
                Some(_) => {}
            }
        }
    }
}

pub(crate) fn check_exit_codes(codes: Option<&[i32]>, at: &str, p: &mut Problems) {
    if codes.is_some_and(|c| c.is_empty()) {
        p.add(
            format!("{at}.accept_exit_codes"),
            "list at least one exit code, or leave accept_exit_codes out for the default",
        );
    }
}

pub(crate) fn check_retry(retry: Option<&Retry>, at: &str, p: &mut Problems) {
    if retry.is_some_and(|r| r.attempts == 0) {
        p.add(
            format!("{at}.retry.attempts"),
            "attempts counts every try, so it must be at least 1",
        );
    }
}

/// Why a tool's timeout cannot be zero.
pub(crate) const TOOL_AT_ONCE: &str = "a timeout of 0 seconds would stop the tool at once";

/// A step's wait is `timeout` or its old spelling `timeout_secs`, not both, and never zero
/// (`why_not_zero` says what a zero wait would do in this kind of step).
pub(crate) fn check_timeout(spec: &impl Timeout, at: &str, why_not_zero: &str, p: &mut Problems) {
    let (timeout, secs) = spec.timeout_fields();
    if timeout.is_some() && secs.is_some() {
        p.add(
            format!("{at}.timeout_secs"),
            "`timeout` and `timeout_secs` both say how long to wait; keep `timeout` (e.g. \
             `timeout: 90s`) and remove `timeout_secs`, its old spelling in seconds",
        );
    }
    if timeout.is_some_and(|t| t.get().is_zero()) {
        p.add(format!("{at}.timeout"), why_not_zero);
    }
    if secs == Some(0) {
        p.add(format!("{at}.timeout_secs"), why_not_zero);
    }
}
