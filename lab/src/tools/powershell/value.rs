//! The values a script handles (strings, integers, booleans, byte[] and the .NET objects of the
//! contract), PowerShell's conversions between them, how each is written to the output, and the
//! exceptions with their .NET base types (what a typed `catch` matches). Conversions PowerShell
//! would make that the lab cannot vouch for are refused with `Flow::Unsupported`.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use super::ast::Pos;

#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    /// Int32 and Int64 alike (both print the same way); arithmetic is checked.
    Int(i64),
    Str(String),
    /// A byte[]: a reference type, so `.Read` fills the caller's buffer.
    Bytes(Rc<RefCell<Vec<u8>>>),
    /// An object[]: what a command that wrote several objects returns.
    List(Rc<Vec<Value>>),
    Item(Rc<Item>),
    /// A System.DateTime in UTC, as ticks (100 ns since 0001-01-01).
    Time(i64),
    Stream(Rc<RefCell<super::dotnet::FileStream>>),
    Sha256(Rc<RefCell<super::dotnet::Sha256Hash>>),
    /// System.Text.Encoding.UTF8.
    Utf8,
    /// A System.Security.AccessControl.FileSecurity (a reference type: its methods change it).
    Acl(Rc<RefCell<super::security::FileSecurity>>),
    /// A System.Security.AccessControl.FileSystemAccessRule.
    AccessRule(Rc<super::security::AccessRule>),
    /// A System.Security.Principal.WindowsIdentity: its account name.
    Identity(Rc<String>),
    /// A System.IO.FileAttributes (File.GetAttributes), its flag bits.
    Attributes(u32),
    /// `$_` in a catch block.
    ErrorRecord(Rc<ErrorRecord>),
    Exception(Rc<Exception>),
}

/// A FileInfo or DirectoryInfo.
#[derive(Debug, Clone)]
pub struct Item {
    /// The Windows path (`C:\X\Y`).
    pub full_name: String,
    pub name: String,
    /// Where it is in the lab's drives.
    pub path: PathBuf,
    pub is_dir: bool,
    pub length: i64,
    pub last_write_ticks: i64,
    pub creation_ticks: i64,
}

/// A .NET exception: its full type name, message and the exception it wraps.
#[derive(Debug, Clone)]
pub struct Exception {
    pub type_name: &'static str,
    pub message: String,
    pub inner: Option<Rc<Exception>>,
}

impl Exception {
    pub fn new(type_name: &'static str, message: impl Into<String>) -> Exception {
        Exception {
            type_name,
            message: message.into(),
            inner: None,
        }
    }

    /// True when this exception is of type `wanted` or derives from it.
    pub fn is_a(&self, wanted: &str) -> bool {
        let mut t = Some(self.type_name);
        while let Some(name) = t {
            if name == wanted {
                return true;
            }
            t = base_type(name);
        }
        false
    }
}

/// An error record: the exception and where it arose (the cmdlet's name for cmdlet errors).
#[derive(Debug, Clone)]
pub struct ErrorRecord {
    pub exception: Rc<Exception>,
    pub command: Option<&'static str>,
    pub at: Pos,
}

impl ErrorRecord {
    /// What powershell.exe writes to stderr for an uncaught error (PowerShell 2.0's layout,
    /// without the `+` detail lines).
    pub fn render(&self) -> String {
        let head = match self.command {
            Some(c) => format!("{c} : "),
            None => String::new(),
        };
        format!("{head}{}\r\nAt {}\r\n", self.exception.message, self.at)
    }
}

pub const ITEM_NOT_FOUND: &str = "System.Management.Automation.ItemNotFoundException";
pub const FILE_NOT_FOUND: &str = "System.IO.FileNotFoundException";
pub const DIRECTORY_NOT_FOUND: &str = "System.IO.DirectoryNotFoundException";
pub const IO: &str = "System.IO.IOException";
pub const UNAUTHORIZED: &str = "System.UnauthorizedAccessException";
pub const METHOD_INVOCATION: &str = "System.Management.Automation.MethodInvocationException";
pub const GET_VALUE_INVOCATION: &str = "System.Management.Automation.GetValueInvocationException";
pub const RUNTIME: &str = "System.Management.Automation.RuntimeException";
pub const PS_INVALID_OPERATION: &str = "System.Management.Automation.PSInvalidOperationException";
pub const PARAMETER_BINDING: &str = "System.Management.Automation.ParameterBindingException";
pub const ARGUMENT: &str = "System.ArgumentException";
pub const ARGUMENT_NULL: &str = "System.ArgumentNullException";
pub const ARGUMENT_OUT_OF_RANGE: &str = "System.ArgumentOutOfRangeException";
pub const OBJECT_DISPOSED: &str = "System.ObjectDisposedException";
pub const WAIT_HANDLE_CANNOT_BE_OPENED: &str = "System.Threading.WaitHandleCannotBeOpenedException";
pub const CRYPTO_UNEXPECTED: &str =
    "System.Security.Cryptography.CryptographicUnexpectedOperationException";

/// Each exception type the lab raises or a script may catch, with its .NET base type.
const TYPES: [(&str, Option<&str>); 25] = [
    ("System.Exception", None),
    ("System.SystemException", Some("System.Exception")),
    ("System.ApplicationException", Some("System.Exception")),
    // .NET 2.0's WaitHandleCannotBeOpenedException derives from ApplicationException.
    (
        WAIT_HANDLE_CANNOT_BE_OPENED,
        Some("System.ApplicationException"),
    ),
    (RUNTIME, Some("System.SystemException")),
    (
        "System.Management.Automation.SessionStateException",
        Some(RUNTIME),
    ),
    (
        ITEM_NOT_FOUND,
        Some("System.Management.Automation.SessionStateException"),
    ),
    (
        "System.Management.Automation.MethodException",
        Some(RUNTIME),
    ),
    (
        METHOD_INVOCATION,
        Some("System.Management.Automation.MethodException"),
    ),
    (
        "System.Management.Automation.GetValueException",
        Some(RUNTIME),
    ),
    (
        GET_VALUE_INVOCATION,
        Some("System.Management.Automation.GetValueException"),
    ),
    (PARAMETER_BINDING, Some(RUNTIME)),
    (IO, Some("System.SystemException")),
    (FILE_NOT_FOUND, Some(IO)),
    (DIRECTORY_NOT_FOUND, Some(IO)),
    (UNAUTHORIZED, Some("System.SystemException")),
    (ARGUMENT, Some("System.SystemException")),
    (ARGUMENT_NULL, Some(ARGUMENT)),
    (ARGUMENT_OUT_OF_RANGE, Some(ARGUMENT)),
    (
        "System.InvalidOperationException",
        Some("System.SystemException"),
    ),
    (OBJECT_DISPOSED, Some("System.InvalidOperationException")),
    (
        PS_INVALID_OPERATION,
        Some("System.InvalidOperationException"),
    ),
    (
        "System.Security.Cryptography.CryptographicException",
        Some("System.SystemException"),
    ),
    (
        CRYPTO_UNEXPECTED,
        Some("System.Security.Cryptography.CryptographicException"),
    ),
    (
        "System.OverflowException",
        Some("System.ArithmeticException"),
    ),
];

fn base_type(name: &str) -> Option<&'static str> {
    match name {
        "System.ArithmeticException" => Some("System.SystemException"),
        _ => TYPES.iter().find(|(n, _)| *n == name).and_then(|(_, b)| *b),
    }
}

/// The full name of the exception type a script writes as `name` (any case, `System.` optional,
/// as PowerShell resolves type names); `None` for a type the lab does not know.
pub fn exception_type(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    TYPES
        .iter()
        .map(|(n, _)| *n)
        .chain(["System.ArithmeticException"])
        .find(|full| {
            let f = full.to_ascii_lowercase();
            f == lower || f == format!("system.{lower}")
        })
}

/// How a statement ends other than by falling through.
#[derive(Debug, Clone)]
pub enum Flow {
    Break(Pos),
    Exit(i32),
    /// A terminating error: catchable.
    Error(Rc<ErrorRecord>),
    /// Outside the subset: ends the script, no catch or finally runs.
    Unsupported(super::ast::Unsupported),
}

pub type Eval<T> = Result<T, Flow>;

/// Refuses `what` at `at`.
pub fn unsupported<T>(what: impl Into<String>, at: Pos) -> Eval<T> {
    Err(Flow::Unsupported(super::ast::Unsupported {
        what: what.into(),
        at,
    }))
}

/// A terminating error raised by the language itself (conversions, calls on null).
pub fn runtime_error<T>(type_name: &'static str, message: impl Into<String>, at: Pos) -> Eval<T> {
    Err(Flow::Error(Rc::new(ErrorRecord {
        exception: Rc::new(Exception::new(type_name, message)),
        command: None,
        at,
    })))
}

/// A [Flags] enum's ToString: the names of its set flags in ascending value, joined by ", ".
fn attribute_names(bits: u32) -> String {
    const NAMES: [(u32, &str); 3] = [(1, "ReadOnly"), (16, "Directory"), (32, "Archive")];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    names.join(", ")
}

impl Value {
    /// The .NET type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "System.Boolean",
            Value::Int(_) => "System.Int64",
            Value::Str(_) => "System.String",
            Value::Bytes(_) => "System.Byte[]",
            Value::List(_) => "System.Object[]",
            Value::Item(i) if i.is_dir => "System.IO.DirectoryInfo",
            Value::Item(_) => "System.IO.FileInfo",
            Value::Time(_) => "System.DateTime",
            Value::Stream(_) => "System.IO.FileStream",
            Value::Sha256(_) => "System.Security.Cryptography.SHA256Managed",
            Value::Utf8 => "System.Text.UTF8Encoding",
            Value::Acl(_) => super::security::FILE_SECURITY,
            Value::AccessRule(_) => super::security::ACCESS_RULE,
            Value::Identity(_) => super::security::WINDOWS_IDENTITY,
            Value::Attributes(_) => "System.IO.FileAttributes",
            Value::ErrorRecord(_) => "System.Management.Automation.ErrorRecord",
            Value::Exception(e) => e.type_name,
        }
    }

    /// PowerShell's truth value of a condition.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(n) => *n != 0,
            Value::Str(s) => !s.is_empty(),
            Value::Bytes(b) => {
                let b = b.borrow();
                match b.len() {
                    0 => false,
                    1 => b[0] != 0,
                    _ => true,
                }
            }
            Value::List(l) => match l.len() {
                0 => false,
                1 => l[0].truthy(),
                _ => true,
            },
            _ => true,
        }
    }

    /// The value as a string where PowerShell's conversion is one the lab vouches for.
    pub fn to_text(&self, at: Pos) -> Eval<String> {
        match self {
            Value::Null => Ok(String::new()),
            Value::Bool(true) => Ok("True".into()),
            Value::Bool(false) => Ok("False".into()),
            Value::Int(n) => Ok(n.to_string()),
            Value::Str(s) => Ok(s.clone()),
            Value::Attributes(bits) => Ok(attribute_names(*bits)),
            other => unsupported(
                format!(
                    "converting a {} to a string (use one of its string members)",
                    other.type_name()
                ),
                at,
            ),
        }
    }

    /// The value as an integer (`target` names the .NET type in PowerShell's message).
    pub fn to_int(&self, target: &str, at: Pos) -> Eval<i64> {
        match self {
            Value::Null => Ok(0),
            Value::Bool(b) => Ok(i64::from(*b)),
            Value::Int(n) => Ok(*n),
            Value::Str(s) => match s.trim().parse::<i64>() {
                Ok(n) => Ok(n),
                Err(_) => runtime_error(
                    RUNTIME,
                    format!(
                        "Cannot convert value \"{s}\" to type \"{target}\". Error: \"Input string was not in a correct format.\""
                    ),
                    at,
                ),
            },
            other => unsupported(
                format!("converting a {} to {target}", other.type_name()),
                at,
            ),
        }
    }

    /// The lines powershell.exe writes for this value (a collection: one per element).
    pub fn output_lines(&self, at: Pos) -> Eval<Vec<String>> {
        match self {
            Value::Null => Ok(Vec::new()),
            Value::Bool(_) | Value::Int(_) | Value::Str(_) | Value::Attributes(_) => {
                Ok(vec![self.to_text(at)?])
            }
            Value::Bytes(b) => Ok(b.borrow().iter().map(|x| x.to_string()).collect()),
            Value::List(items) => {
                let mut lines = Vec::new();
                for i in items.iter() {
                    lines.extend(i.output_lines(at)?);
                }
                Ok(lines)
            }
            other => unsupported(
                format!(
                    "writing a {} to the output (PowerShell would format it as a table; output one of its members, or [void] it)",
                    other.type_name()
                ),
                at,
            ),
        }
    }

    /// The elements a `foreach` visits: a collection's elements; a scalar once. PowerShell 2.0
    /// visits `$null` once too (3.0 stopped that), so a script must test for it.
    pub fn elements(&self) -> Vec<Value> {
        match self {
            Value::List(items) => items.as_ref().clone(),
            Value::Bytes(b) => b
                .borrow()
                .iter()
                .map(|x| Value::Int(i64::from(*x)))
                .collect(),
            other => vec![other.clone()],
        }
    }

    /// A command's output as one value: nothing is `$null`, one object is itself, more are an
    /// object[].
    pub fn from_output(mut out: Vec<Value>) -> Value {
        match out.len() {
            0 => Value::Null,
            1 => out.remove(0),
            _ => Value::List(Rc::new(out)),
        }
    }
}
