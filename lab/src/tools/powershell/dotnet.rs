//! The .NET members of the contract, over the lab's drives: System.IO.File (OpenRead, Exists,
//! GetAttributes, Delete, Move),
//! Directory.CreateDirectory, FileStream (Read, Length, Close), SHA256 (Create, ComputeHash,
//! TransformBlock, TransformFinalBlock, Hash), BitConverter.ToString, Convert.ToBase64String,
//! Encoding.UTF8.GetBytes, the String members, FileInfo / DirectoryInfo / DateTime / ErrorRecord /
//! Exception properties; the access-control members are dispatched to `security`. Exceptions carry .NET's types and messages. Any other member is refused.

use std::cell::RefCell;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::rc::Rc;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::drives::{self, Located};
use super::security;
use super::value::{self, Exception, Item, Value};

/// Why a member did not give a value.
#[derive(Debug)]
pub enum Fault {
    /// The .NET member threw.
    Throw(Exception),
    /// The lab does not implement it.
    Unsupported(String),
}

pub type Net<T> = Result<T, Fault>;

fn throw<T>(type_name: &'static str, message: impl Into<String>) -> Net<T> {
    Err(Fault::Throw(Exception::new(type_name, message)))
}

/// The types a script may name in `[Type]::Member`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaticType {
    File,
    Directory,
    Sha256,
    BitConverter,
    Convert,
    Encoding,
    WindowsIdentity,
    Mutex,
}

impl StaticType {
    /// `System.` optional and any case, as PowerShell resolves type names.
    pub fn resolve(name: &str) -> Option<StaticType> {
        let lower = name.to_ascii_lowercase();
        let short = lower.strip_prefix("system.").unwrap_or(&lower);
        Some(match short {
            "io.file" => StaticType::File,
            "io.directory" => StaticType::Directory,
            "security.cryptography.sha256" => StaticType::Sha256,
            "bitconverter" => StaticType::BitConverter,
            "convert" => StaticType::Convert,
            "text.encoding" => StaticType::Encoding,
            "security.principal.windowsidentity" => StaticType::WindowsIdentity,
            "threading.mutex" => StaticType::Mutex,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            StaticType::File => "System.IO.File",
            StaticType::Directory => "System.IO.Directory",
            StaticType::Sha256 => "System.Security.Cryptography.SHA256",
            StaticType::BitConverter => "System.BitConverter",
            StaticType::Convert => "System.Convert",
            StaticType::Encoding => "System.Text.Encoding",
            StaticType::WindowsIdentity => security::WINDOWS_IDENTITY,
            StaticType::Mutex => "System.Threading.Mutex",
        }
    }
}

/// An open System.IO.FileStream (read only: OpenRead's).
#[derive(Debug)]
pub struct FileStream {
    file: Option<File>,
    length: i64,
}

/// A SHA256 hash object (.NET's SHA256Managed).
#[derive(Debug, Default)]
pub struct Sha256Hash {
    running: Sha256,
    /// The value of the last finished hash (`.Hash`).
    hash: Option<Vec<u8>>,
}

const CLOSED_FILE: &str = "Cannot access a closed file.";

// ---- argument conversions (PowerShell's, as far as the lab vouches for them) ----

/// A string parameter: PowerShell passes `$null` as "" (2.0 has no [NullString]).
fn string_arg(v: &Value) -> Net<String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::Str(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(if *b { "True" } else { "False" }.into()),
        other => Err(Fault::Unsupported(format!(
            "passing a {} as a string argument",
            other.type_name()
        ))),
    }
}

/// An Int32 parameter.
fn int_arg(v: &Value) -> Net<i32> {
    let n = match v {
        Value::Null => 0,
        Value::Int(n) => *n,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => s.trim().parse::<i64>().map_err(|_| {
            Fault::Throw(Exception::new(
                "System.Management.Automation.MethodException",
                format!("Cannot convert argument, with value: \"{s}\", to type \"System.Int32\": \"Input string was not in a correct format.\""),
            ))
        })?,
        other => {
            return Err(Fault::Unsupported(format!(
                "passing a {} as an Int32 argument",
                other.type_name()
            )))
        }
    };
    i32::try_from(n).or_else(|_| {
        throw(
            "System.Management.Automation.MethodException",
            format!("Cannot convert argument, with value: \"{n}\", to type \"System.Int32\": \"Value was either too large or too small for an Int32.\""),
        )
    })
}

/// A byte[] parameter (`None` for `$null`).
fn bytes_arg(v: &Value) -> Net<Option<Rc<RefCell<Vec<u8>>>>> {
    match v {
        Value::Null => Ok(None),
        Value::Bytes(b) => Ok(Some(b.clone())),
        other => Err(Fault::Unsupported(format!(
            "passing a {} as a byte[] argument",
            other.type_name()
        ))),
    }
}

/// The checks .NET makes of (array, offset, count) before touching the array.
fn check_range(len: usize, offset: i32, count: i32, names: [&str; 2]) -> Net<(usize, usize)> {
    if offset < 0 {
        return throw(
            value::ARGUMENT_OUT_OF_RANGE,
            format!(
                "Non-negative number required.\r\nParameter name: {}",
                names[0]
            ),
        );
    }
    if count < 0 {
        return throw(
            value::ARGUMENT_OUT_OF_RANGE,
            format!(
                "Non-negative number required.\r\nParameter name: {}",
                names[1]
            ),
        );
    }
    let (offset, count) = (offset as usize, count as usize);
    if len - offset.min(len) < count || offset > len {
        return throw(value::ARGUMENT, "Offset and length were out of bounds for the array or count is greater than the number of elements from index to the end of the source collection.");
    }
    Ok((offset, count))
}

fn located(lab: &Path, path: &str) -> Net<Located> {
    if path.is_empty() {
        return throw(value::ARGUMENT, "Empty path name is not legal.");
    }
    drives::locate(lab, path).map_err(Fault::Unsupported)
}

// ---- static members ----

/// `[type]::name` (a property).
pub fn static_property(ty: StaticType, name: &str) -> Net<Value> {
    match (ty, name.to_ascii_lowercase().as_str()) {
        (StaticType::Encoding, "utf8") => Ok(Value::Utf8),
        _ => Err(Fault::Unsupported(format!("[{}]::{name}", ty.name()))),
    }
}

/// `[type]::name(args)`.
pub fn static_call(lab: &Path, ty: StaticType, name: &str, args: &[Value]) -> Net<Value> {
    let lower = name.to_ascii_lowercase();
    match (ty, lower.as_str(), args) {
        (StaticType::File, "openread", [p]) => open_read(lab, &string_arg(p)?),
        (StaticType::File, "exists", [p]) => {
            let p = string_arg(p)?;
            Ok(Value::Bool(
                drives::locate(lab, &p).is_ok_and(|at| at.path.is_file()),
            ))
        }
        (StaticType::File, "setaccesscontrol", [p, acl]) => {
            security::set_access_control(lab, &string_arg(p)?, acl)
        }
        (StaticType::WindowsIdentity, "getcurrent", []) => security::current(lab),
        (StaticType::Mutex, "openexisting", [name]) => open_existing_mutex(lab, &string_arg(name)?),
        (StaticType::File, "getattributes", [p]) => get_attributes(lab, &string_arg(p)?),
        (StaticType::File, "delete", [p]) => delete(lab, &string_arg(p)?),
        (StaticType::File, "move", [from, to]) => {
            move_file(lab, &string_arg(from)?, &string_arg(to)?)
        }
        (StaticType::Directory, "createdirectory", [p]) => create_directory(lab, &string_arg(p)?),
        (StaticType::Sha256, "create", []) => {
            Ok(Value::Sha256(Rc::new(RefCell::new(Sha256Hash::default()))))
        }
        (StaticType::BitConverter, "tostring", [b]) => {
            let Some(b) = bytes_arg(b)? else {
                return throw(
                    value::ARGUMENT_NULL,
                    "Value cannot be null.\r\nParameter name: value",
                );
            };
            let text: Vec<String> = b.borrow().iter().map(|x| format!("{x:02X}")).collect();
            Ok(Value::Str(text.join("-")))
        }
        (StaticType::Convert, "tobase64string", [b, rest @ ..]) if rest.len() != 1 => {
            let Some(b) = bytes_arg(b)? else {
                return throw(
                    value::ARGUMENT_NULL,
                    "Value cannot be null.\r\nParameter name: inArray",
                );
            };
            let b = b.borrow();
            let (offset, count) = match rest {
                [] => (0, b.len()),
                [o, n] => check_range(b.len(), int_arg(o)?, int_arg(n)?, ["offset", "length"])?,
                _ => return Err(unknown_static(ty, name, args.len())),
            };
            Ok(Value::Str(
                base64::engine::general_purpose::STANDARD.encode(&b[offset..offset + count]),
            ))
        }
        _ => Err(unknown_static(ty, name, args.len())),
    }
}

/// The one named mutex of the lab's Windows: the Windows Installer's `Global\_MSIExecute`, which
/// exists "only while processing the InstallExecuteSequence table, AdminExecuteSequence table, or
/// AdvtExecuteSequence table" (Microsoft, "_MSIExecute Mutex"): while a lab installer is in its
/// execute phase (`msiexec::installer_busy`). Opening it then is UnauthorizedAccessException in
/// the lab: what access the real mutex grants an administrator is not documented in what the lab
/// cites, and a real server may open it instead; either way it exists. Otherwise, and for every other
/// name (kernel object names are case-sensitive), Mutex.OpenExisting throws
/// WaitHandleCannotBeOpenedException, "No handle of the given name exists." (.NET 2.0).
fn open_existing_mutex(lab: &Path, name: &str) -> Net<Value> {
    let busy = name == r"Global\_MSIExecute"
        && crate::tools::msiexec::installer_busy(lab)
            .map_err(|e| Fault::Throw(Exception::new(value::IO, e.to_string())))?;
    if busy {
        throw(
            value::UNAUTHORIZED,
            format!("Access to the path '{name}' is denied."),
        )
    } else {
        throw(
            value::WAIT_HANDLE_CANNOT_BE_OPENED,
            "No handle of the given name exists.",
        )
    }
}

fn unknown_static(ty: StaticType, name: &str, n: usize) -> Fault {
    Fault::Unsupported(format!("[{}]::{name}() with {n} argument(s)", ty.name()))
}

/// The exception .NET throws for an OS error at `at` (the Win32 error as .NET's __Error.WinIOError
/// maps it): a missing file FileNotFoundException "Could not find file 'P'." (ERROR_FILE_NOT_FOUND),
/// a missing folder on the way DirectoryNotFoundException "Could not find a part of the path 'P'."
/// (ERROR_PATH_NOT_FOUND; also a file where a folder should be), access denied
/// UnauthorizedAccessException "Access to the path 'P' is denied.", anything else IOException.
/// The lab tells denial from the OS's own answer only: run as root, the lab's drives deny nothing.
fn os_error(e: &std::io::Error, at: &Located) -> Fault {
    let (type_name, message) = match e.kind() {
        ErrorKind::NotFound if at.path.parent().is_some_and(Path::is_dir) => (
            value::FILE_NOT_FOUND,
            format!("Could not find file '{}'.", at.full_name),
        ),
        ErrorKind::NotFound | ErrorKind::NotADirectory => (
            value::DIRECTORY_NOT_FOUND,
            format!("Could not find a part of the path '{}'.", at.full_name),
        ),
        ErrorKind::PermissionDenied => (
            value::UNAUTHORIZED,
            format!("Access to the path '{}' is denied.", at.full_name),
        ),
        _ => (value::IO, e.to_string()),
    };
    Fault::Throw(Exception::new(type_name, message))
}

fn denied(at: &Located) -> Fault {
    Fault::Throw(Exception::new(
        value::UNAUTHORIZED,
        format!("Access to the path '{}' is denied.", at.full_name),
    ))
}

fn open_read(lab: &Path, path: &str) -> Net<Value> {
    let at = located(lab, path)?;
    if at.path.is_dir() {
        return Err(denied(&at));
    }
    let file = File::open(&at.path).map_err(|e| os_error(&e, &at))?;
    let length = file
        .metadata()
        .map(|m| i64::try_from(m.len()).unwrap_or(i64::MAX))
        .map_err(|e| Fault::Throw(Exception::new(value::IO, e.to_string())))?;
    Ok(Value::Stream(Rc::new(RefCell::new(FileStream {
        file: Some(file),
        length,
    }))))
}

/// File.GetAttributes (.NET 2.0): the attributes of a file or folder; a missing one throws
/// FileNotFoundException or DirectoryNotFoundException, a denied one UnauthorizedAccessException
/// (documented). The lab's items have Directory (16) or Archive (32), plus ReadOnly (1) for a file
/// nobody may write.
fn get_attributes(lab: &Path, path: &str) -> Net<Value> {
    let at = located(lab, path)?;
    let meta = std::fs::metadata(&at.path).map_err(|e| os_error(&e, &at))?;
    let mut bits = if meta.is_dir() { 16 } else { 32 };
    if !meta.is_dir() && meta.permissions().readonly() {
        bits |= 1;
    }
    Ok(Value::Attributes(bits))
}

/// File.Delete (.NET 2.0): "If the file to be deleted does not exist, no exception is thrown"
/// (documented; only ERROR_FILE_NOT_FOUND is ignored, so a missing folder on the way is still
/// DirectoryNotFoundException); a folder is UnauthorizedAccessException (DeleteFile on a folder is
/// ERROR_ACCESS_DENIED), as is a read-only file.
fn delete(lab: &Path, path: &str) -> Net<Value> {
    let at = located(lab, path)?;
    match std::fs::metadata(&at.path) {
        Err(e) if e.kind() == ErrorKind::NotFound && at.path.parent().is_some_and(Path::is_dir) => {
            Ok(Value::Null)
        }
        Err(e) => Err(os_error(&e, &at)),
        Ok(m) if m.is_dir() || m.permissions().readonly() => Err(denied(&at)),
        Ok(_) => std::fs::remove_file(&at.path)
            .map(|()| Value::Null)
            .map_err(|e| os_error(&e, &at)),
    }
}

/// File.Move (.NET 2.0): the source must be a file (else FileNotFoundException "Could not find
/// file 'P'."); an existing destination, file or folder, is IOException "Cannot create a file when
/// that file already exists." (MoveFile's ERROR_ALREADY_EXISTS; documented: "The destination file
/// already exists"); a missing destination folder DirectoryNotFoundException.
fn move_file(lab: &Path, from: &str, to: &str) -> Net<Value> {
    let src = located(lab, from)?;
    let dst = located(lab, to)?;
    if !src.path.is_file() {
        return throw(
            value::FILE_NOT_FOUND,
            format!("Could not find file '{}'.", src.full_name),
        );
    }
    if dst.path.symlink_metadata().is_ok() {
        return throw(
            value::IO,
            "Cannot create a file when that file already exists.",
        );
    }
    std::fs::rename(&src.path, &dst.path)
        .map(|()| Value::Null)
        .map_err(|e| os_error(&e, &dst))
}

fn create_directory(lab: &Path, path: &str) -> Net<Value> {
    let at = located(lab, path)?;
    let mut probe = at.path.as_path();
    loop {
        if probe.is_file() {
            return throw(
                value::IO,
                format!(
                    "Cannot create \"{}\" because a file or directory with the same name already exists.",
                    at.full_name
                ),
            );
        }
        match probe.parent() {
            Some(p) => probe = p,
            None => break,
        }
    }
    std::fs::create_dir_all(&at.path).map_err(|e| match e.kind() {
        ErrorKind::PermissionDenied => Fault::Throw(Exception::new(
            value::UNAUTHORIZED,
            format!("Access to the path '{}' is denied.", at.full_name),
        )),
        _ => Fault::Throw(Exception::new(value::IO, e.to_string())),
    })?;
    let item =
        drives::item(&at).map_err(|e| Fault::Throw(Exception::new(value::IO, e.to_string())))?;
    Ok(Value::Item(Rc::new(item)))
}

// ---- instance members ----

/// `value.name` (a property). Unknown members of `$null` are `$null`, as in PowerShell.
pub fn property(v: &Value, name: &str) -> Net<Value> {
    let lower = name.to_ascii_lowercase();
    let int = |n: usize| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(match (v, lower.as_str()) {
        (Value::Null, _) => Value::Null,
        (Value::Str(s), "length") => int(s.encode_utf16().count()),
        // types.ps1xml gives every array a Count alias of Length.
        (Value::Bytes(b), "length" | "count") => int(b.borrow().len()),
        (Value::List(l), "length" | "count") => int(l.len()),
        (Value::Item(i), _) => item_property(i, &lower)
            .ok_or_else(|| Fault::Unsupported(format!("the member {name} of {}", v.type_name())))?,
        (Value::Time(t), "ticks") => Value::Int(*t),
        (Value::Stream(s), "length") => {
            let s = s.borrow();
            if s.file.is_none() {
                return throw(value::OBJECT_DISPOSED, CLOSED_FILE);
            }
            Value::Int(s.length)
        }
        (Value::Sha256(h), "hash") => match &h.borrow().hash {
            Some(hash) => Value::Bytes(Rc::new(RefCell::new(hash.clone()))),
            None => {
                return throw(
                    value::CRYPTO_UNEXPECTED,
                    "Hash must be finalized before the hash value is retrieved.",
                )
            }
        },
        (Value::Identity(name), "name") => Value::Str(name.as_ref().clone()),
        (Value::ErrorRecord(r), "exception") => Value::Exception(r.exception.clone()),
        (Value::Exception(e), "message") => Value::Str(e.message.clone()),
        (Value::Exception(e), "innerexception") => match &e.inner {
            Some(i) => Value::Exception(i.clone()),
            None => Value::Null,
        },
        (Value::List(_), _) => {
            return Err(Fault::Unsupported(format!(
                "the member {name} of an object[] (member enumeration came with PowerShell 3.0)"
            )))
        }
        _ => {
            return Err(Fault::Unsupported(format!(
                "the member {name} of {}",
                v.type_name()
            )))
        }
    })
}

fn item_property(i: &Item, lower: &str) -> Option<Value> {
    Some(match lower {
        "fullname" => Value::Str(i.full_name.clone()),
        "name" => Value::Str(i.name.clone()),
        "psiscontainer" => Value::Bool(i.is_dir),
        // A DirectoryInfo has no Length: PowerShell 2.0 gives $null for a missing property.
        "length" if i.is_dir => Value::Null,
        "length" => Value::Int(i.length),
        "lastwritetimeutc" => Value::Time(i.last_write_ticks),
        "creationtimeutc" => Value::Time(i.creation_ticks),
        _ => return None,
    })
}

/// `value.name(args)`.
pub fn call(v: &Value, name: &str, args: &[Value]) -> Net<Value> {
    let lower = name.to_ascii_lowercase();
    match (v, lower.as_str(), args) {
        (Value::Str(s), "substring", [start, rest @ ..]) if rest.len() <= 1 => {
            let units: Vec<u16> = s.encode_utf16().collect();
            let start = int_arg(start)?;
            if start < 0 || start as usize > units.len() {
                return throw(
                    value::ARGUMENT_OUT_OF_RANGE,
                    "startIndex cannot be larger than length of string.\r\nParameter name: startIndex",
                );
            }
            let start = start as usize;
            let end = match rest {
                [n] => {
                    let n = int_arg(n)?;
                    if n < 0 || start + n as usize > units.len() {
                        return throw(
                            value::ARGUMENT_OUT_OF_RANGE,
                            "Index and length must refer to a location within the string.\r\nParameter name: length",
                        );
                    }
                    start + n as usize
                }
                _ => units.len(),
            };
            Ok(Value::Str(String::from_utf16_lossy(&units[start..end])))
        }
        (Value::Str(s), "replace", [from, to]) => {
            let (from, to) = (string_arg(from)?, string_arg(to)?);
            if from.is_empty() {
                return throw(
                    value::ARGUMENT,
                    "String cannot be of zero length.\r\nParameter name: oldValue",
                );
            }
            Ok(Value::Str(s.replace(&from, &to)))
        }
        (Value::Str(s), "tolowerinvariant", []) => Ok(Value::Str(s.to_lowercase())),
        (Value::Str(s), "startswith", [p]) => Ok(Value::Bool(s.starts_with(&string_arg(p)?))),
        (Value::Stream(st), "read", [buf, off, count]) => {
            let Some(buf) = bytes_arg(buf)? else {
                return throw(
                    value::ARGUMENT_NULL,
                    "Buffer cannot be null.\r\nParameter name: array",
                );
            };
            let mut buf = buf.borrow_mut();
            let (off, count) = check_range(
                buf.len(),
                int_arg(off)?,
                int_arg(count)?,
                ["offset", "count"],
            )?;
            let mut st = st.borrow_mut();
            let Some(file) = st.file.as_mut() else {
                return throw(value::OBJECT_DISPOSED, CLOSED_FILE);
            };
            let n = read_some(file, &mut buf[off..off + count])?;
            Ok(Value::Int(n as i64))
        }
        (Value::Stream(st), "close", []) => {
            st.borrow_mut().file = None;
            Ok(Value::Null)
        }
        (Value::Sha256(h), "computehash", [Value::Stream(st)]) => {
            let mut st = st.borrow_mut();
            let Some(file) = st.file.as_mut() else {
                return throw(value::OBJECT_DISPOSED, CLOSED_FILE);
            };
            let mut hasher = Sha256::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = read_some(file, &mut chunk)?;
                if n == 0 {
                    break;
                }
                hasher.update(&chunk[..n]);
            }
            let hash = hasher.finalize().to_vec();
            h.borrow_mut().hash = Some(hash.clone());
            Ok(Value::Bytes(Rc::new(RefCell::new(hash))))
        }
        (Value::Sha256(h), "transformblock", [input, off, count, output, out_off]) => {
            let block = input_block(input, off, count)?;
            // HashAlgorithm.TransformBlock copies the block to outputBuffer at outputOffset when
            // one is given (after checking the range), and then hashes it.
            if let Some(output) = bytes_arg(output)? {
                let mut output = output.borrow_mut();
                let n = i32::try_from(block.len()).unwrap_or(i32::MAX);
                let (at, n) = check_range(
                    output.len(),
                    int_arg(out_off)?,
                    n,
                    ["outputOffset", "inputCount"],
                )?;
                output[at..at + n].copy_from_slice(&block);
            }
            h.borrow_mut().running.update(&block);
            Ok(Value::Int(block.len() as i64))
        }
        (Value::Sha256(h), "transformfinalblock", [input, off, count]) => {
            let block = input_block(input, off, count)?;
            let mut h = h.borrow_mut();
            h.running.update(&block);
            // .NET starts a new hash after the final block.
            let done = std::mem::take(&mut h.running).finalize().to_vec();
            h.hash = Some(done);
            // It returns a copy of the block.
            Ok(Value::Bytes(Rc::new(RefCell::new(block))))
        }
        (Value::Acl(acl), "setaccessruleprotection", [protect, preserve]) => {
            security::set_protection(acl, protect, preserve)
        }
        (Value::Acl(acl), "addaccessrule", [rule]) => security::add_rule(acl, rule),
        (Value::Utf8, "getbytes", [s]) => Ok(Value::Bytes(Rc::new(RefCell::new(
            string_arg(s)?.into_bytes(),
        )))),
        _ => Err(Fault::Unsupported(format!(
            "the method {name}() of {} with {} argument(s)",
            v.type_name(),
            args.len()
        ))),
    }
}

/// The (inputBuffer, inputOffset, inputCount) of TransformBlock / TransformFinalBlock, checked
/// as .NET checks them; a copy of that part of the buffer.
fn input_block(input: &Value, off: &Value, count: &Value) -> Net<Vec<u8>> {
    let Some(input) = bytes_arg(input)? else {
        return throw(
            value::ARGUMENT_NULL,
            "Value cannot be null.\r\nParameter name: inputBuffer",
        );
    };
    let input = input.borrow();
    let (off, count) = check_range(
        input.len(),
        int_arg(off)?,
        int_arg(count)?,
        ["inputOffset", "inputCount"],
    )?;
    Ok(input[off..off + count].to_vec())
}

/// One read: FileStream.Read returns what one read of the file gives (0 at the end).
fn read_some(file: &mut File, buf: &mut [u8]) -> Net<usize> {
    loop {
        match file.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return throw(value::IO, e.to_string()),
        }
    }
}
