//! The cmdlets of the contract with the parameters it lists: Get-Item, Get-ChildItem,
//! Remove-Item, Move-Item (each `-LiteralPath`, which never interprets wildcards), Write-Output and
//! `New-Object` (`byte[] N`, and the access-control objects of `security`). `bind` matches parameter names as PowerShell does (any case, a prefix
//! that names one parameter of the real cmdlet) while the script is parsed; `run` acts on the
//! lab's drives and raises PowerShell's errors. Anything else is refused.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use super::ast::{Command, Expr, Pos, RawElement, Unsupported};
use super::drives::{self, Located};
use super::value::{self, Exception, Value};
use super::{dotnet, security};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmdlet {
    GetItem,
    GetChildItem,
    RemoveItem,
    MoveItem,
    WriteOutput,
    NewObject,
}

/// What the lab knows of a cmdlet: its name, the parameters it implements (name, is a switch),
/// every other parameter the real PowerShell 2.0 cmdlet has (so that prefixes are matched
/// against the real set), and the parameters bound by position.
struct Spec {
    cmdlet: Cmdlet,
    name: &'static str,
    implemented: &'static [(&'static str, bool)],
    others: &'static [&'static str],
    positional: &'static [&'static str],
}

/// The common parameters every cmdlet has (about_CommonParameters, PowerShell 2.0).
const COMMON: [&str; 8] = [
    "Verbose",
    "Debug",
    "ErrorAction",
    "WarningAction",
    "ErrorVariable",
    "WarningVariable",
    "OutVariable",
    "OutBuffer",
];

const SPECS: [Spec; 6] = [
    Spec {
        cmdlet: Cmdlet::GetItem,
        name: "Get-Item",
        implemented: &[("LiteralPath", false), ("Force", true)],
        others: &["Path", "Filter", "Include", "Exclude", "Credential"],
        positional: &["Path"],
    },
    Spec {
        cmdlet: Cmdlet::GetChildItem,
        name: "Get-ChildItem",
        implemented: &[("LiteralPath", false), ("Recurse", true), ("Force", true)],
        others: &["Path", "Filter", "Include", "Exclude", "Name"],
        positional: &["Path", "Filter"],
    },
    Spec {
        cmdlet: Cmdlet::RemoveItem,
        name: "Remove-Item",
        implemented: &[("LiteralPath", false), ("Force", true), ("Recurse", true)],
        others: &[
            "Path",
            "Filter",
            "Include",
            "Exclude",
            "Credential",
            "WhatIf",
            "Confirm",
        ],
        positional: &["Path"],
    },
    Spec {
        cmdlet: Cmdlet::MoveItem,
        name: "Move-Item",
        implemented: &[
            ("LiteralPath", false),
            ("Destination", false),
            ("Force", true),
        ],
        others: &[
            "Path",
            "Filter",
            "Include",
            "Exclude",
            "PassThru",
            "Credential",
            "WhatIf",
            "Confirm",
        ],
        positional: &["Path", "Destination"],
    },
    Spec {
        cmdlet: Cmdlet::WriteOutput,
        name: "Write-Output",
        implemented: &[("InputObject", false)],
        others: &[],
        positional: &["InputObject"],
    },
    Spec {
        cmdlet: Cmdlet::NewObject,
        name: "New-Object",
        implemented: &[("TypeName", false), ("ArgumentList", false)],
        others: &["Property", "ComObject", "Strict"],
        positional: &["TypeName", "ArgumentList"],
    },
];

impl Cmdlet {
    pub fn name(self) -> &'static str {
        spec(self).name
    }
}

fn spec(c: Cmdlet) -> &'static Spec {
    // Every Cmdlet has a Spec (SPECS lists all six).
    SPECS.iter().find(|s| s.cmdlet == c).unwrap_or(&SPECS[0])
}

/// Binds a command's elements to the cmdlet's parameters, or refuses the command.
pub fn bind(name: &str, raw: Vec<RawElement>, at: Pos) -> Result<Command, Unsupported> {
    let refuse = |what: String, at: Pos| Unsupported { what, at };
    let Some(spec) = SPECS.iter().find(|s| s.name.eq_ignore_ascii_case(name)) else {
        return Err(refuse(format!("the command `{name}`"), at));
    };
    let mut params: Vec<(&'static str, Option<Expr>)> = Vec::new();
    let mut positional = spec.positional.iter();
    let mut elements = raw.into_iter().peekable();
    while let Some(e) = elements.next() {
        let (param, value, at) = match e {
            RawElement::Param { name, value, at } => {
                let (param, switch) = resolve(spec, &name).map_err(|w| refuse(w, at))?;
                let value = match (switch, value) {
                    (_, Some(v)) => Some(v),
                    (true, None) => None,
                    (false, None) => match elements.next_if(|n| matches!(n, RawElement::Arg(_))) {
                        Some(RawElement::Arg(v)) => Some(v),
                        _ => {
                            return Err(refuse(
                                format!(
                                    "{}: Missing an argument for parameter '{param}'.",
                                    spec.name
                                ),
                                at,
                            ))
                        }
                    },
                };
                (param, value, at)
            }
            RawElement::Arg(v) => {
                let at = v.at;
                let Some(p) = positional.find(|p| !params.iter().any(|(q, _)| q == *p)) else {
                    return Err(refuse(
                        format!("{}: A positional parameter cannot be found that accepts this argument.", spec.name),
                        at,
                    ));
                };
                let Some((param, _)) = spec.implemented.iter().find(|(q, _)| q == p) else {
                    return Err(refuse(
                        format!("-{p} of {} (given by position; the lab implements -LiteralPath, which does not interpret wildcards)", spec.name),
                        at,
                    ));
                };
                (*param, Some(v), at)
            }
        };
        if params.iter().any(|(p, _)| *p == param) {
            return Err(refuse(
                format!(
                    "{}: Cannot bind parameter because parameter '{param}' is specified more than once.",
                    spec.name
                ),
                at,
            ));
        }
        params.push((param, value));
    }
    let needed: &[&str] = match spec.cmdlet {
        Cmdlet::MoveItem => &["LiteralPath", "Destination"],
        Cmdlet::WriteOutput => &["InputObject"],
        Cmdlet::NewObject => &["TypeName"],
        _ => &["LiteralPath"],
    };
    if let Some(missing) = needed.iter().find(|n| !params.iter().any(|(p, _)| p == *n)) {
        return Err(refuse(
            format!(
                "{} without -{missing} (PowerShell would prompt for it)",
                spec.name
            ),
            at,
        ));
    }
    Ok(Command {
        cmdlet: spec.cmdlet,
        params,
        at,
    })
}

/// The parameter `given` names: the whole name or a prefix that names only one parameter of the
/// real cmdlet (PowerShell's rule), or an alias.
fn resolve(spec: &Spec, given: &str) -> Result<(&'static str, bool), String> {
    let lower = given.to_ascii_lowercase();
    let alias = match lower.as_str() {
        "pspath" => Some("LiteralPath"),
        "args" => Some("ArgumentList"),
        "ea" | "ev" | "wa" | "wv" | "ov" | "ob" | "vb" | "db" => Some("ErrorAction"),
        _ => None,
    };
    let all = spec
        .implemented
        .iter()
        .map(|(n, _)| *n)
        .chain(spec.others.iter().copied())
        .chain(COMMON);
    let matches: Vec<&'static str> = match alias {
        Some(a) => vec![a],
        None => {
            let all: Vec<&'static str> = all.collect();
            match all.iter().find(|n| n.eq_ignore_ascii_case(given)) {
                Some(exact) => vec![*exact],
                None => all
                    .into_iter()
                    .filter(|n| n.to_ascii_lowercase().starts_with(&lower))
                    .collect(),
            }
        }
    };
    match matches.as_slice() {
        [one] => match spec.implemented.iter().find(|(n, _)| n == one) {
            Some(found) => Ok(*found),
            None => Err(format!("the parameter -{one} of {}", spec.name)),
        },
        [] => Err(format!(
            "{}: A parameter cannot be found that matches parameter name '{given}'.",
            spec.name
        )),
        many => Err(format!(
            "{}: Parameter cannot be processed because the parameter name '{given}' is ambiguous. Possible matches include: {}.",
            spec.name,
            many.iter().map(|m| format!("-{m}")).collect::<Vec<_>>().join(" ")
        )),
    }
}

/// Why a cmdlet did not finish.
#[derive(Debug)]
pub enum Fault {
    /// A cmdlet error (terminating under `$ErrorActionPreference = 'Stop'`).
    Error(Exception),
    Unsupported(String),
}

type Run<T> = Result<T, Fault>;

/// The bound arguments, evaluated.
pub struct Args<'a> {
    pub values: &'a [(&'static str, Option<Value>)],
}

impl Args<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_ref())
    }

    /// A switch: present without a value, or with a true one (`-Force:$true`).
    fn switch(&self, name: &str) -> bool {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .is_some_and(|(_, v)| v.as_ref().is_none_or(Value::truthy))
    }

    fn path(&self, name: &str) -> Run<String> {
        match self.get(name) {
            Some(Value::Str(s)) => Ok(s.clone()),
            Some(Value::Null) | None => Err(Fault::Error(Exception::new(
                value::PARAMETER_BINDING,
                format!("Cannot bind argument to parameter '{name}' because it is null."),
            ))),
            Some(other) => Err(Fault::Unsupported(format!(
                "passing a {} to -{name}",
                other.type_name()
            ))),
        }
    }
}

/// Runs `cmdlet`; returns what it writes to the pipeline.
pub fn run(lab: &Path, cmdlet: Cmdlet, args: &Args) -> Run<Vec<Value>> {
    match cmdlet {
        Cmdlet::GetItem => {
            let (given, at) = existing(lab, args, "LiteralPath")?;
            Ok(vec![Value::Item(Rc::new(io(drives::item(&at), &given)?))])
        }
        Cmdlet::GetChildItem => {
            let (given, at) = existing(lab, args, "LiteralPath")?;
            let top = io(drives::item(&at), &given)?;
            if !top.is_dir {
                return Ok(vec![Value::Item(Rc::new(top))]);
            }
            let mut out = Vec::new();
            list(&at, args.switch("Recurse"), &given, &mut out)?;
            Ok(out)
        }
        Cmdlet::RemoveItem => {
            let (given, at) = existing(lab, args, "LiteralPath")?;
            if at.path.is_dir() {
                let empty = io(std::fs::read_dir(&at.path), &given)?.next().is_none();
                if !empty && !args.switch("Recurse") {
                    // PowerShell asks to confirm removing a folder with children; a
                    // non-interactive host cannot ask.
                    return Err(Fault::Error(Exception::new(
                        value::PS_INVALID_OPERATION,
                        "Windows PowerShell is in NonInteractive mode. Read and Prompt functionality is not available.",
                    )));
                }
                io(std::fs::remove_dir_all(&at.path), &given)?;
            } else {
                io(std::fs::remove_file(&at.path), &given)?;
            }
            Ok(Vec::new())
        }
        Cmdlet::MoveItem => {
            let (given, from) = existing(lab, args, "LiteralPath")?;
            let dest_given = args.path("Destination")?;
            let mut to = located(lab, &dest_given)?;
            if to.path.is_dir() {
                let name = from.full_name.rsplit('\\').next().unwrap_or_default();
                to = located(lab, &format!("{}\\{name}", to.full_name))?;
            }
            if to.path.exists() {
                if to.path.is_dir() || !args.switch("Force") {
                    return Err(Fault::Error(Exception::new(
                        value::IO,
                        "Cannot create a file when that file already exists.",
                    )));
                }
            } else if !to.path.parent().is_some_and(Path::is_dir) {
                return Err(Fault::Error(Exception::new(
                    value::DIRECTORY_NOT_FOUND,
                    "Could not find a part of the path.",
                )));
            }
            io(std::fs::rename(&from.path, &to.path), &given)?;
            Ok(Vec::new())
        }
        Cmdlet::WriteOutput => Ok(match args.get("InputObject") {
            Some(v @ (Value::List(_) | Value::Bytes(_))) => v.elements(),
            Some(v) => vec![v.clone()],
            None => Vec::new(),
        }),
        Cmdlet::NewObject => new_object(args),
    }
}

/// `New-Object TYPE [ARGS]`: a byte[], or one of the access-control objects `security` makes
/// (ARGS, an object[], are the constructor's arguments, as New-Object passes -ArgumentList).
fn new_object(args: &Args) -> Run<Vec<Value>> {
    let type_name = match args.get("TypeName") {
        Some(Value::Str(s)) => s.clone(),
        _ => String::new(),
    };
    let lower = type_name.to_ascii_lowercase();
    if lower == "byte[]" || lower == "system.byte[]" {
        return new_bytes(args);
    }
    let Some(full) = security::resolve(&type_name) else {
        return Err(Fault::Unsupported(format!(
            "New-Object `{type_name}` (the lab makes byte[] N, FileSecurity and FileSystemAccessRule)"
        )));
    };
    let arguments = match args.get("ArgumentList") {
        None => Vec::new(),
        Some(Value::List(items)) => items.as_ref().clone(),
        Some(one) => vec![one.clone()],
    };
    match security::construct(full, &arguments) {
        Ok(v) => Ok(vec![v]),
        Err(dotnet::Fault::Throw(e)) => Err(Fault::Error(e)),
        Err(dotnet::Fault::Unsupported(what)) => Err(Fault::Unsupported(what)),
    }
}

/// `New-Object byte[] N`: N zero bytes.
fn new_bytes(args: &Args) -> Run<Vec<Value>> {
    let n = match args.get("ArgumentList") {
        Some(Value::Int(n)) => *n,
        Some(Value::Str(s)) => s.trim().parse().unwrap_or(-1),
        _ => -1,
    };
    let Ok(n) = usize::try_from(n) else {
        return Err(Fault::Unsupported(
            "New-Object byte[] without a size that is a non-negative integer".into(),
        ));
    };
    Ok(vec![Value::Bytes(Rc::new(RefCell::new(vec![0; n])))])
}

fn located(lab: &Path, given: &str) -> Run<Located> {
    drives::locate(lab, given).map_err(Fault::Unsupported)
}

/// `-name`'s path, which must exist: ItemNotFoundException with PowerShell's message if not.
/// Every error looking at it counts as "not there", on purpose: PowerShell 2.0's file system
/// provider decides existence with FileInfo.Exists / DirectoryInfo.Exists, which are false when
/// the path cannot be read (access denied) too, so its cmdlets say ItemNotFound for a denied path.
/// The .NET members (`dotnet.rs`) are the ones that tell UnauthorizedAccessException apart.
fn existing(lab: &Path, args: &Args, name: &str) -> Run<(String, Located)> {
    let given = args.path(name)?;
    let at = located(lab, &given)?;
    if at.path.symlink_metadata().is_err() {
        return Err(Fault::Error(Exception::new(
            value::ITEM_NOT_FOUND,
            format!("Cannot find path '{given}' because it does not exist."),
        )));
    }
    Ok((given, at))
}

/// Every item in folder `at` (and below it with `recurse`): a folder's items, then each
/// subfolder's in turn.
fn list(at: &Located, recurse: bool, given: &str, out: &mut Vec<Value>) -> Run<()> {
    let items = io(drives::children(at), given)?;
    let folders: Vec<Located> = items
        .iter()
        .filter(|i| i.is_dir)
        .map(|i| Located {
            full_name: i.full_name.clone(),
            path: i.path.clone(),
        })
        .collect();
    out.extend(items.into_iter().map(|i| Value::Item(Rc::new(i))));
    if recurse {
        for f in &folders {
            list(f, true, given, out)?;
        }
    }
    Ok(())
}

/// A file system error as the cmdlet reports it.
fn io<T>(r: std::io::Result<T>, given: &str) -> Run<T> {
    r.map_err(|e| {
        Fault::Error(match e.kind() {
            std::io::ErrorKind::PermissionDenied => Exception::new(
                value::UNAUTHORIZED,
                format!("Access to the path '{given}' is denied."),
            ),
            _ => Exception::new(value::IO, e.to_string()),
        })
    })
}
