//! The PowerShell 2.0 text the remote host sends: a path as a single-quoted literal, the
//! `powershell.exe -EncodedCommand` invocation, and one small function per script. Scripts stay
//! inside the subset of /work/notes/ps-subset.md (the lab interprets only that), carry paths and
//! never a secret, and print what may hold non-ASCII (file names) as base64 of its UTF-8 bytes,
//! so nothing depends on the server's console code page. Builds text only; runs nothing.

use base64::Engine;

/// powershell.exe on every Windows that has PowerShell 2.0 (Windows Management Framework 2.0 puts
/// it there on Windows Server 2003 SP2 too). A System32 tool, found by name.
pub const POWERSHELL: &str = "powershell.exe";

/// Bytes of a file per line of a fetch: 256 KiB makes lines of 341 KiB of base64.
pub const CHUNK: usize = 256 * 1024;

/// Every script starts here: a cmdlet error is terminating, so it stops the script (exit 1, the
/// message on stderr) unless a `catch` says what it means.
const PRELUDE: &str = "$ErrorActionPreference = 'Stop'\n";

/// A Windows path as it reaches a script: `/` (from joining a relative path on the admin host)
/// becomes `\`.
pub fn windows_path(path: &str) -> String {
    path.replace('/', "\\")
}

/// `text` as a PowerShell single-quoted string: nothing inside is expanded, and a quote is
/// written twice (about_Quoting_Rules). PowerShell also ends such a string at the typographic
/// single quotes (U+2018..U+201B), so those are doubled as well.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A path as a quoted PowerShell literal, with `\`.
fn lit(path: &str) -> String {
    quote(&windows_path(path))
}

/// The arguments of powershell.exe that run `script`: `-EncodedCommand` takes base64 of the
/// script's UTF-16LE bytes (`powershell.exe -?`; pywinrm's `run_ps` sends scripts the same way),
/// which keeps quotes, `%` and line breaks away from cmd.exe's rules.
pub fn invocation(script: &str) -> Vec<String> {
    let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(utf16);
    [
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-EncodedCommand",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once(encoded))
    .collect()
}

/// `statement` in a `try` whose only way to `absent` (printed, exit 0) is .NET's "not found":
/// FileNotFoundException or DirectoryNotFoundException, which `File.GetAttributes` and
/// `File.OpenRead` throw for a missing file or folder (.NET 2.0 documents both). Access denied
/// (UnauthorizedAccessException) and every other error stop the script: a path that cannot be
/// looked at is never taken for a missing one. (Get-Item cannot tell: PowerShell 2.0's file
/// system provider decides existence with FileInfo.Exists / DirectoryInfo.Exists, which are false
/// on access denied too, so its ItemNotFoundException is no proof of absence.)
fn absent_if_missing(statement: &str) -> String {
    format!(
        "try {{ {statement} }}
catch [System.IO.FileNotFoundException] {{ 'absent'; exit 0 }}
catch [System.IO.DirectoryNotFoundException] {{ 'absent'; exit 0 }}
"
    )
}

/// Stats `path` with `File.GetAttributes` (works for files and folders alike): `absent` when
/// missing, as [`absent_if_missing`] decides.
fn absent_unless_there(path: &str) -> String {
    absent_if_missing(&format!(
        "[void][System.IO.File]::GetAttributes({})",
        lit(path)
    ))
}

/// Prints `absent`, `dir`, or `file BYTES` for what is at `path`. Existence is decided by
/// [`absent_unless_there`]; Get-Item then only describes what is known to be there (it failing
/// now is an error, never `absent`).
pub fn stat(path: &str) -> String {
    format!(
        "{PRELUDE}{there}$i = Get-Item -LiteralPath {p} -Force
if ($i.PSIsContainer) {{ 'dir' }} else {{ 'file ' + $i.Length }}
",
        there = absent_unless_there(path),
        p = lit(path)
    )
}

/// Opens `path` for reading into `$s`, or prints `absent` and exits 0 when the file or its folder
/// is missing; access denied is an error.
fn open_read(path: &str) -> String {
    absent_if_missing(&format!("$s = [System.IO.File]::OpenRead({})", lit(path)))
}

/// The hash object's value as `sha256 HEX` (PowerShell 2.0 has no Get-FileHash: it came with 4.0).
const PRINT_HASH: &str =
    "'sha256 ' + [System.BitConverter]::ToString($h.Hash).Replace('-', '').ToLowerInvariant()\n";

/// Prints `sha256 HEX` of the file at `path`, hashed on the server (`absent` if it is missing).
pub fn sha256(path: &str) -> String {
    format!(
        "{PRELUDE}{open}try {{
  $h = [System.Security.Cryptography.SHA256]::Create()
  [void]$h.ComputeHash($s)
  {PRINT_HASH}}} finally {{ $s.Close() }}
",
        open = open_read(path)
    )
}

/// Streams the file at `path`: one line of base64 per chunk of up to [`CHUNK`] bytes read with
/// FileStream.Read, then `sha256 HEX` of the bytes read, hashed as they are read
/// (TransformBlock / TransformFinalBlock), so the hash is of exactly what was sent. `absent` if the
/// file is missing. Ansible's WinRM connection plugin fetches a file the same way (base64 chunks a
/// PowerShell script writes to stdout); not SMB, which an admin host on Linux cannot reach by a UNC
/// path and which needs a second port open, while WinRM already is.
pub fn stream(path: &str) -> String {
    format!(
        "{PRELUDE}{open}try {{
  $h = [System.Security.Cryptography.SHA256]::Create()
  $buf = New-Object byte[] {CHUNK}
  while ($true) {{
    $n = $s.Read($buf, 0, {CHUNK})
    if ($n -eq 0) {{ break }}
    [void]$h.TransformBlock($buf, 0, $n, $buf, 0)
    [System.Convert]::ToBase64String($buf, 0, $n)
  }}
  [void]$h.TransformFinalBlock($buf, 0, 0)
  {PRINT_HASH}}} finally {{ $s.Close() }}
",
        open = open_read(path)
    )
}

/// Lists every file below the folder `dir`, one line per file: `f B64 BYTES TICKS`, where B64 is
/// base64 of the UTF-8 path relative to `dir` with `/`, and TICKS the last write time in UTC
/// (100 ns since 0001-01-01). `absent` if `dir` is missing, `notdir` if it is a file. One
/// Get-ChildItem listing, not a command per file. (A `foreach` over an empty listing runs once
/// with `$null` in PowerShell 2.0, hence the test of `$i`.)
pub fn walk(dir: &str) -> String {
    format!(
        "{PRELUDE}{there}$root = Get-Item -LiteralPath {p} -Force
if (-not $root.PSIsContainer) {{ 'notdir'; exit 0 }}
$n = $root.FullName.Length
$items = Get-ChildItem -LiteralPath {p} -Recurse -Force
foreach ($i in $items) {{
  if ($i -ne $null -and -not $i.PSIsContainer) {{
    $rel = $i.FullName.Substring($n).Replace('\\', '/')
    if ($rel.StartsWith('/')) {{ $rel = $rel.Substring(1) }}
    $b = [System.Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($rel))
    'f ' + $b + ' ' + $i.Length + ' ' + $i.LastWriteTimeUtc.Ticks
  }}
}}
'end'
",
        there = absent_unless_there(dir),
        p = lit(dir)
    )
}

/// Renames the file `from` to `to`; prints `ok`. `File.Move` fails when `to` exists (.NET 2.0
/// documents IOException for it): the steps move an existing target aside first, and replacing a
/// file silently is never wanted.
pub fn rename(from: &str, to: &str) -> String {
    format!(
        "{PRELUDE}[System.IO.File]::Move({f}, {t})\n'ok'\n",
        f = lit(from),
        t = lit(to)
    )
}

/// Removes the file at `path` if it is there; prints `ok`. `File.Delete` does not throw for a
/// missing file (documented); a missing folder above it (DirectoryNotFoundException) means no
/// file either. A folder, access denied or a read-only file is an error.
pub fn remove_if_exists(path: &str) -> String {
    format!(
        "{PRELUDE}try {{ [System.IO.File]::Delete({p}) }}
catch [System.IO.DirectoryNotFoundException] {{ }}
'ok'
",
        p = lit(path)
    )
}

/// Creates the folder `dir` and its parents (fine if it exists); prints `ok`.
pub fn create_dir(dir: &str) -> String {
    format!(
        "{PRELUDE}[void][System.IO.Directory]::CreateDirectory({p})\n'ok'\n",
        p = lit(dir)
    )
}

/// Leaves the file at `path` to the account the script runs as (the one WinRM logs on as, which
/// also runs the setup that imports a key file) and prints `ok`: a protected ACL, so no entry is
/// inherited from the folder, whose one entry gives that account full control; it replaces the
/// file's DACL, so Administrators and SYSTEM lose access too. .NET 2.0's
/// System.Security.AccessControl, not `icacls FILE /inheritance:r /grant:r USER:F`: the icacls.exe
/// of Windows Server 2003 SP2 (KB919240, support.microsoft.com/kb/919240) has /grant[:r] but no
/// /inheritance switch, which came with later versions.
pub fn restrict(path: &str) -> String {
    format!(
        "{PRELUDE}$p = {p}
$acl = New-Object System.Security.AccessControl.FileSecurity
$acl.SetAccessRuleProtection($true, $false)
$me = [System.Security.Principal.WindowsIdentity]::GetCurrent().Name
$rule = New-Object System.Security.AccessControl.FileSystemAccessRule($me, 'FullControl', 'Allow')
$acl.AddAccessRule($rule)
[System.IO.File]::SetAccessControl($p, $acl)
'ok'
",
        p = lit(path)
    )
}

/// Prints `busy` while a Windows Installer installation is in progress on the server, else `idle`:
/// whether the `_MSIExecute` mutex, which the installer sets "only while processing the
/// InstallExecuteSequence table, AdminExecuteSequence table, or AdvtExecuteSequence table"
/// (Microsoft, "_MSIExecute Mutex"), exists. Mutex.OpenExisting (.NET 2.0) opens it (exists),
/// throws UnauthorizedAccessException (exists, kept from this account) or
/// WaitHandleCannotBeOpenedException (does not exist); any other error stops the script. The
/// handle opened is closed when powershell.exe ends, a moment later.
pub fn installation_in_progress(name: &str) -> String {
    format!(
        "{PRELUDE}try {{ [void][System.Threading.Mutex]::OpenExisting({n}); 'busy' }}
catch [System.Threading.WaitHandleCannotBeOpenedException] {{ 'idle' }}
catch [System.UnauthorizedAccessException] {{ 'busy' }}
",
        n = quote(name)
    )
}

/// Prints `root B64`: base64 of the UTF-8 bytes of the server's `%SystemRoot%` (its Windows
/// folder), empty when it is not set.
pub fn system_root() -> String {
    format!(
        "{PRELUDE}'root ' + [System.Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($env:SystemRoot))
"
    )
}

/// Every script this module can produce, for a path (and a second one): what the parse test
/// checks against the PowerShell grammar.
#[cfg(test)]
pub fn all(path: &str, other: &str) -> Vec<(&'static str, String)> {
    vec![
        ("stat", stat(path)),
        ("sha256", sha256(path)),
        ("stream", stream(path)),
        ("walk", walk(path)),
        ("rename", rename(path, other)),
        ("remove_if_exists", remove_if_exists(path)),
        ("create_dir", create_dir(path)),
        ("restrict", restrict(path)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_a_single_quoted_literal_with_quotes_doubled_and_backslashes() {
        assert_eq!(
            lit("C:/Program Files/O'Brien's/x.dll"),
            r"'C:\Program Files\O''Brien''s\x.dll'"
        );
        // Nothing in a single-quoted string expands: `$`, backquote and `%` stay as they are.
        assert_eq!(quote("a $b `c %d%"), "'a $b `c %d%'");
        // Non-ASCII stays as it is (the script travels as UTF-16LE).
        assert_eq!(quote(r"D:\Ünïcødé\日本.dll"), r"'D:\Ünïcødé\日本.dll'");
        // A typographic quote ends a PowerShell string too, so it is doubled.
        assert_eq!(quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
    }

    #[test]
    fn the_encoded_command_is_base64_of_the_scripts_utf16le() {
        let script = "'Ünï ''x''' # 日本\n";
        let args = invocation(script);
        assert_eq!(
            args[..5],
            [
                "-NoProfile",
                "-NonInteractive",
                "-ExecutionPolicy",
                "Bypass",
                "-EncodedCommand"
            ]
        );
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&args[5])
            .unwrap();
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16(&units).unwrap(), script);
        // The example of `powershell.exe -?`: 'dir "c:\program files" ' encodes to this.
        let doc = invocation("dir \"c:\\program files\" ");
        assert_eq!(
            doc[5],
            "ZABpAHIAIAAiAGMAOgBcAHAAcgBvAGcAcgBhAG0AIABmAGkAbABlAHMAIgAgAA=="
        );
    }

    /// Every ERROR or MISSING node of `text` parsed by tree-sitter-powershell, with its position.
    fn parse_errors(text: &str) -> Vec<String> {
        let mut parser = tree_sitter::Parser::new();
        parser
            .set_language(&tree_sitter_powershell::LANGUAGE.into())
            .unwrap();
        let tree = parser.parse(text, None).unwrap();
        let mut errors = Vec::new();
        let mut stack = vec![tree.root_node()];
        while let Some(node) = stack.pop() {
            if node.is_error() || node.is_missing() {
                let at = node.start_position();
                errors.push(format!(
                    "{} at {}:{}",
                    node.kind(),
                    at.row + 1,
                    at.column + 1
                ));
            }
            let mut cursor = node.walk();
            stack.extend(node.children(&mut cursor));
        }
        errors
    }

    #[test]
    fn every_script_parses_as_powershell_whatever_the_path_holds() {
        // The grammar does find a broken script (so the check below can fail).
        assert!(!parse_errors("try { 'a' ").is_empty());
        assert!(!parse_errors("$x = 'unterminated").is_empty());
        for (path, other) in [
            (
                r"C:\Program Files\Microsoft Identity Integration Server\Extensions",
                r"D:\b",
            ),
            (r"D:\Upgrade\O'Brien's keys\k.bin", r"D:\it''s"),
            (r"D:\Ünïcødé\日本語\файл.dll", r"E:\x y\z"),
            (r"C:\a $b `c %d% ; & | ( ) { } # @ [x] ‘q’", r"C:\x"),
            ("C:/Upgrade/with/slashes", "C:/x"),
        ] {
            for (name, text) in all(path, other) {
                let errors = parse_errors(&text);
                assert!(errors.is_empty(), "{name} for {path}: {errors:?}\n{text}");
            }
        }
    }

    #[test]
    fn every_invocation_fits_on_a_cmd_exe_command_line_even_for_a_path_of_max_path() {
        // cmd.exe takes at most 8191 characters (CreateProcess 32767); MAX_PATH is 260.
        let long = format!(r"C:\{}", "ü".repeat(256));
        for (name, text) in all(&long, &long) {
            let line: usize = invocation(&text).iter().map(|a| a.len() + 1).sum();
            assert!(line + POWERSHELL.len() < 8191, "{name}: {line} characters");
        }
    }

    #[test]
    fn only_dotnets_not_found_makes_a_path_absent_never_get_items_or_a_denial() {
        // PowerShell 2.0's Get-Item says ItemNotFound for a path it may not read (FileInfo.Exists
        // is false on access denied): no script may take that for "absent".
        for (name, text) in all(r"C:\k.bin", r"D:\b") {
            assert!(!text.contains("ItemNotFoundException"), "{name}: {text}");
            assert!(!text.contains("UnauthorizedAccess"), "{name}: {text}");
            for line in text.lines().filter(|l| l.starts_with("catch")) {
                assert!(
                    line.starts_with("catch [System.IO.FileNotFoundException]")
                        || line.starts_with("catch [System.IO.DirectoryNotFoundException]"),
                    "{name} catches more than not found: {line}"
                );
            }
        }
        // Those that look at a path decide by a .NET call that throws on denial.
        for text in [stat("C:\\x"), walk("C:\\x")] {
            assert!(
                text.contains("[System.IO.File]::GetAttributes('C:\\x')"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_rename_never_replaces_a_file_and_hashing_passes_an_output_buffer() {
        let text = rename(r"C:\a", r"C:\b");
        assert!(
            text.contains(r"[System.IO.File]::Move('C:\a', 'C:\b')"),
            "{text}"
        );
        assert!(!text.contains("-Force"), "{text}");
        assert!(
            !stream(r"C:\a").contains("$null"),
            "TransformBlock given $null"
        );
    }

    #[test]
    fn the_probes_of_the_server_parse_and_tell_a_missing_mutex_from_one_kept_from_us() {
        let probe = installation_in_progress(r"Global\_MSIExecute");
        let root = system_root();
        for text in [&probe, &root] {
            let errors = parse_errors(text);
            assert!(errors.is_empty(), "{errors:?}\n{text}");
        }
        assert!(
            probe.contains(r"[System.Threading.Mutex]::OpenExisting('Global\_MSIExecute')"),
            "{probe}"
        );
        // Only "no handle of that name" is idle; access denied means it exists.
        let idle: Vec<&str> = probe.lines().filter(|l| l.contains("'idle'")).collect();
        assert_eq!(
            idle,
            ["catch [System.Threading.WaitHandleCannotBeOpenedException] { 'idle' }"],
            "{probe}"
        );
        assert!(
            probe.contains("catch [System.UnauthorizedAccessException] { 'busy' }"),
            "{probe}"
        );
        assert!(root.contains("$env:SystemRoot"), "{root}");
    }

    #[test]
    fn every_script_holds_its_path_only_as_a_quoted_literal() {
        for (name, text) in all(r"C:\it's", r"D:\b") {
            assert!(text.contains(r"'C:\it''s'"), "{name}: {text}");
            assert!(!text.contains('"'), "{name} has a double-quoted string");
        }
    }
}
