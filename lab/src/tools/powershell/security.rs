//! The .NET 2.0 access-control members of the contract (System.Security.AccessControl,
//! System.Security.Principal; all documented for .NET 2.0 and so in PowerShell 2.0): a new
//! FileSecurity with `SetAccessRuleProtection` and `AddAccessRule`, a FileSystemAccessRule
//! (identity, 'FullControl', 'Allow'), `WindowsIdentity.GetCurrent().Name`, and
//! `File.SetAccessControl`. TEST DOUBLE: the lab has no ACLs; the one ACL it applies, protected
//! and granting only the current account, becomes chmod 600 (owner only). Any other ACL is
//! refused rather than imitated.

use std::cell::RefCell;
use std::rc::Rc;

use std::path::Path;

use super::dotnet::{Fault, Net};
use super::drives;
use super::value::{self, Exception, Value};
use crate::state;

pub const FILE_SECURITY: &str = "System.Security.AccessControl.FileSecurity";
pub const ACCESS_RULE: &str = "System.Security.AccessControl.FileSystemAccessRule";
pub const WINDOWS_IDENTITY: &str = "System.Security.Principal.WindowsIdentity";

/// A FileSecurity made by `New-Object` (no arguments): no entries, inheriting until
/// `SetAccessRuleProtection($true, ...)`.
#[derive(Debug, Default)]
pub struct FileSecurity {
    protected: bool,
    /// The identities given FullControl (Allow), in the order added.
    full_control: Vec<String>,
}

/// A FileSystemAccessRule: FullControl allowed to `identity` (the only rule the lab makes).
#[derive(Debug)]
pub struct AccessRule {
    identity: String,
}

/// The type a `New-Object` type name names (`System.` optional, any case, as PowerShell resolves
/// it); `None` for a type this module does not make.
pub fn resolve(type_name: &str) -> Option<&'static str> {
    let lower = type_name.to_ascii_lowercase();
    let short = lower.strip_prefix("system.").unwrap_or(&lower);
    [FILE_SECURITY, ACCESS_RULE]
        .into_iter()
        .find(|full| full["System.".len()..].eq_ignore_ascii_case(short))
}

/// `New-Object TYPE [(args)]` for a type `resolve` gave.
pub fn construct(type_name: &'static str, args: &[Value]) -> Net<Value> {
    match (type_name, args) {
        (FILE_SECURITY, []) => Ok(Value::Acl(Rc::new(RefCell::new(FileSecurity::default())))),
        (ACCESS_RULE, [identity, rights, kind]) => {
            let Value::Str(identity) = identity else {
                return Err(unsupported(format!(
                    "a FileSystemAccessRule for a {} (an account name as a string)",
                    identity.type_name()
                )));
            };
            // FileSystemRights and AccessControlType from their names, ignoring case as
            // PowerShell converts a string to an enum.
            let named =
                |v: &Value, name: &str| matches!(v, Value::Str(s) if s.eq_ignore_ascii_case(name));
            if !named(rights, "FullControl") || !named(kind, "Allow") {
                return Err(unsupported(
                    "a FileSystemAccessRule other than (identity, 'FullControl', 'Allow')".into(),
                ));
            }
            Ok(Value::AccessRule(Rc::new(AccessRule {
                identity: identity.clone(),
            })))
        }
        _ => Err(unsupported(format!(
            "New-Object {type_name} with {} argument(s)",
            args.len()
        ))),
    }
}

/// `[System.Security.Principal.WindowsIdentity]::GetCurrent()`: the account the stand-in runs as,
/// the one the lab's WinRM listener logs on (`COMPUTER\user`, as WindowsIdentity.Name spells a
/// local account).
pub fn current(lab: &Path) -> Net<Value> {
    Ok(Value::Identity(Rc::new(current_name(lab)?)))
}

fn current_name(lab: &Path) -> Net<String> {
    let st = state::load(lab)
        .map_err(|e| unsupported(format!("WindowsIdentity without lab.json: {e}")))?;
    let Some(login) = st.winrm else {
        return Err(unsupported(
            "WindowsIdentity in a lab without a WinRM account (lab.json; `serve` adds it)".into(),
        ));
    };
    Ok(format!("{}\\{}", st.flavour.computer_name(), login.user))
}

/// `$acl.SetAccessRuleProtection(isProtected, preserveInheritance)`. A FileSecurity made here
/// holds no inherited entries, so preserving them copies nothing.
pub fn set_protection(
    acl: &RefCell<FileSecurity>,
    protect: &Value,
    _preserve: &Value,
) -> Net<Value> {
    acl.borrow_mut().protected = bool_arg(protect)?;
    Ok(Value::Null)
}

/// `$acl.AddAccessRule(rule)`.
pub fn add_rule(acl: &RefCell<FileSecurity>, rule: &Value) -> Net<Value> {
    match rule {
        Value::AccessRule(r) => {
            acl.borrow_mut().full_control.push(r.identity.clone());
            Ok(Value::Null)
        }
        Value::Null => Err(Fault::Throw(Exception::new(
            value::ARGUMENT_NULL,
            "Value cannot be null.\r\nParameter name: rule",
        ))),
        other => Err(unsupported(format!(
            "AddAccessRule of a {}",
            other.type_name()
        ))),
    }
}

/// `[System.IO.File]::SetAccessControl(path, fileSecurity)`.
pub fn set_access_control(lab: &Path, path: &str, acl: &Value) -> Net<Value> {
    let acl = match acl {
        Value::Acl(a) => a.borrow(),
        Value::Null => {
            return Err(Fault::Throw(Exception::new(
                value::ARGUMENT_NULL,
                "Value cannot be null.\r\nParameter name: fileSecurity",
            )))
        }
        other => {
            return Err(unsupported(format!(
                "SetAccessControl with a {}",
                other.type_name()
            )))
        }
    };
    let at = drives::locate(lab, path).map_err(Fault::Unsupported)?;
    if at.path.is_dir() {
        return Err(unsupported("SetAccessControl on a folder".into()));
    }
    if !at.path.is_file() {
        if !at.path.parent().is_some_and(Path::is_dir) {
            return Err(unsupported(
                "SetAccessControl on a path whose folder is missing".into(),
            ));
        }
        // FileSecurity turns SetSecurityInfo's ERROR_FILE_NOT_FOUND into
        // `new FileNotFoundException(name)`: the message is the full path itself
        // (FileSystemSecurity._HandleErrorCode in dotnet/runtime, ported from .NET Framework).
        return Err(Fault::Throw(Exception::new(
            value::FILE_NOT_FOUND,
            at.full_name.clone(),
        )));
    }
    if !acl.protected {
        return Err(unsupported(
            "SetAccessControl with an ACL that inherits the folder's entries (the lab applies only a protected one: SetAccessRuleProtection($true, ...))".into(),
        ));
    }
    let me = current_name(lab)?;
    if acl.full_control.is_empty() {
        return Err(unsupported(
            "SetAccessControl with an ACL that grants nobody access".into(),
        ));
    }
    if let Some(other) = acl.full_control.iter().find(|i| !same_account(i, &me)) {
        return Err(unsupported(format!(
            "SetAccessControl granting {other} (the lab applies only an ACL granting the current account, {me})"
        )));
    }
    crate::tools::icacls::owner_only(&at.path).map_err(|e| {
        Fault::Throw(match e.kind() {
            std::io::ErrorKind::PermissionDenied => Exception::new(
                value::UNAUTHORIZED,
                "Attempted to perform an unauthorized operation.",
            ),
            _ => Exception::new(value::IO, e.to_string()),
        })
    })?;
    Ok(Value::Null)
}

/// `COMPUTER\user` or `user` names the local account `me` (`COMPUTER\user`), ignoring case as
/// Windows compares account names.
fn same_account(given: &str, me: &str) -> bool {
    given.eq_ignore_ascii_case(me)
        || me
            .rsplit('\\')
            .next()
            .is_some_and(|user| given.eq_ignore_ascii_case(user))
}

/// A Boolean parameter: PowerShell converts a number (non-zero is true) too.
fn bool_arg(v: &Value) -> Net<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Int(n) => Ok(*n != 0),
        other => Err(unsupported(format!(
            "passing a {} as a Boolean argument",
            other.type_name()
        ))),
    }
}

fn unsupported(what: String) -> Fault {
    Fault::Unsupported(what)
}
