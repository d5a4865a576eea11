//! The interpreter, construct by construct, on a lab's drives in a temporary folder: each test
//! runs a script as powershell.exe would and checks stdout, stderr and the exit code.

use std::path::Path;

use super::{run, run_script};

/// (exit code, stdout, stderr) of `script` run against the lab in `lab`.
fn ps(lab: &Path, script: &str) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_script(lab, script, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// A lab with C:\Data\a.txt ("hello"), C:\Data\Sub\b.bin (3 bytes) and D:\.
fn lab() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("drives/C/Data");
    std::fs::create_dir_all(data.join("Sub")).unwrap();
    std::fs::create_dir_all(dir.path().join("drives/D")).unwrap();
    std::fs::write(data.join("a.txt"), b"hello").unwrap();
    std::fs::write(data.join("Sub/b.bin"), [1u8, 2, 3]).unwrap();
    dir
}

/// Runs `script` and expects exit 0 with nothing on stderr; returns stdout's lines.
fn lines(lab: &Path, script: &str) -> Vec<String> {
    let (code, out, err) = ps(lab, script);
    assert_eq!((code, err.as_str()), (0, ""), "stdout: {out}");
    assert!(out.is_empty() || out.ends_with("\r\n"), "{out:?}");
    out.split_terminator("\r\n").map(str::to_string).collect()
}

/// Runs `script` and expects exit 1 with `expected` in stderr.
fn fails(lab: &Path, script: &str, expected: &str) {
    let (code, out, err) = ps(lab, script);
    assert_eq!(code, 1, "stdout: {out}");
    assert!(err.contains(expected), "{err}");
}

const STOP: &str = "$ErrorActionPreference = 'Stop'\n";

#[test]
fn literals_print_one_per_line_with_crlf_and_two_quotes_make_one() {
    let dir = lab();
    let (code, out, err) = ps(dir.path(), "'it''s'; 42; $true; $false; $null; ''");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "it's\r\n42\r\nTrue\r\nFalse\r\n\r\n");
}

#[test]
fn plus_concatenates_after_a_string_and_adds_after_a_number() {
    let dir = lab();
    assert_eq!(
        lines(
            dir.path(),
            "'a' + 1; 1 + 2; 1 + '2'; '1' + 2; 'n=' + $true; 5 - 7; $null + 3"
        ),
        ["a1", "3", "3", "12", "n=True", "-2", "3"]
    );
    fails(
        dir.path(),
        &format!("{STOP}1 + 'x'"),
        "Cannot convert value \"x\" to type \"System.Int32\"",
    );
}

#[test]
fn comparisons_ignore_case_for_strings_and_convert_the_right_operand_to_the_left_type() {
    let dir = lab();
    assert_eq!(
        lines(
            dir.path(),
            "'ABC' -eq 'abc'; 'a' -lt 'B'; 'abc' -ne 'ABC'; 10 -gt '9'; '10' -gt 9; 3 -ge 3; 2 -le 1; $null -eq $null; 'x' -eq $null"
        ),
        ["True", "True", "False", "True", "False", "True", "False", "True", "False"]
    );
    assert_eq!(
        lines(
            dir.path(),
            "(1 -eq 1) -and (2 -eq 3); (1 -eq 1) -or (2 -eq 3); -not $true; !''; !'x'"
        ),
        ["False", "True", "False", "True", "False"]
    );
}

#[test]
fn if_elseif_else_takes_the_first_true_branch() {
    let dir = lab();
    let script = "foreach ($n in 1) { if ($n -eq 0) { 'zero' } elseif ($n -eq 1) { 'one' } else { 'many' } }\nif (0) { 'no' } elseif ('') { 'no' } else { 'else' }";
    assert_eq!(lines(dir.path(), script), ["one", "else"]);
}

#[test]
fn while_runs_until_its_condition_fails_or_break() {
    let dir = lab();
    let script = "$i = 0\nwhile ($i -lt 3) { $i; $i = $i + 1 }\nwhile ($true) { $i = $i + 1; if ($i -gt 5) { break } }\n$i";
    assert_eq!(lines(dir.path(), script), ["0", "1", "2", "6"]);
}

#[test]
fn foreach_visits_every_item_get_childitem_recurse_lists() {
    let dir = lab();
    let script = format!(
        "{STOP}foreach ($f in Get-ChildItem -LiteralPath 'c:\\data' -Recurse -Force) {{ $f.FullName + '|' + $f.Name + '|' + $f.PSIsContainer + '|' + $f.Length }}"
    );
    assert_eq!(
        lines(dir.path(), &script),
        [
            r"C:\data\Sub|Sub|True|",
            r"C:\data\a.txt|a.txt|False|5",
            r"C:\data\Sub\b.bin|b.bin|False|3",
        ]
    );
    // Without -Recurse: the folder's own items only.
    let script =
        format!("{STOP}$items = Get-ChildItem -LiteralPath 'C:\\Data' -Force\n$items.Length");
    assert_eq!(lines(dir.path(), &script), ["2"]);
}

#[test]
fn foreach_over_null_runs_once_as_in_powershell_2() {
    let dir = lab();
    let script = "$none = $null\nforeach ($x in $none) { 'ran' }";
    assert_eq!(lines(dir.path(), script), ["ran"]);
}

#[test]
fn a_typed_catch_takes_item_not_found_and_not_unauthorized_access() {
    let dir = lab();
    let script = format!(
        "{STOP}try {{ Get-Item -LiteralPath 'C:\\Nope' -Force }} catch [System.Management.Automation.ItemNotFoundException] {{ 'not found: ' + $_.Exception.Message }}"
    );
    assert_eq!(
        lines(dir.path(), &script),
        ["not found: Cannot find path 'C:\\Nope' because it does not exist."]
    );
    // OpenRead of a folder throws UnauthorizedAccessException: the ItemNotFound catch passes
    // it by, the next catch that matches takes it.
    let script = format!(
        "{STOP}try {{ [System.IO.File]::OpenRead('C:\\Data') }} catch [System.Management.Automation.ItemNotFoundException] {{ 'wrong' }} catch [UnauthorizedAccessException] {{ 'denied: ' + $_.Exception.InnerException.Message }}"
    );
    assert_eq!(
        lines(dir.path(), &script),
        ["denied: Access to the path 'C:\\Data' is denied."]
    );
    // With no other catch it is not caught at all.
    let script = format!(
        "{STOP}try {{ [System.IO.File]::OpenRead('C:\\Data') }} catch [System.Management.Automation.ItemNotFoundException] {{ 'wrong' }}\n'after'"
    );
    let (code, out, err) = ps(dir.path(), &script);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("Access to the path 'C:\\Data' is denied."),
        "{err}"
    );
}

#[test]
fn io_exception_catches_its_derived_file_and_directory_not_found() {
    let dir = lab();
    let script = format!(
        "{STOP}try {{ [IO.File]::OpenRead('C:\\Data\\none.txt') }} catch [System.IO.IOException] {{ $_.Exception.Message }}\ntry {{ [IO.File]::OpenRead('C:\\NoDir\\x') }} catch [System.IO.DirectoryNotFoundException] {{ 'dir' }}\ntry {{ [IO.File]::OpenRead('C:\\Data\\none.txt') }} catch [System.IO.DirectoryNotFoundException] {{ 'wrong' }} catch {{ 'untyped' }}"
    );
    assert_eq!(
        lines(dir.path(), &script),
        [
            "Exception calling \"OpenRead\" with \"1\" argument(s): \"Could not find file 'C:\\Data\\none.txt'.\"",
            "dir",
            "untyped",
        ]
    );
}

#[test]
fn finally_runs_after_the_body_after_a_catch_and_before_an_uncaught_error_ends_the_script() {
    let dir = lab();
    let script = format!(
        "{STOP}try {{ 'body' }} finally {{ 'finally 1' }}\ntry {{ Get-Item -LiteralPath 'C:\\Nope' }} catch {{ 'caught' }} finally {{ 'finally 2' }}\ntry {{ Get-Item -LiteralPath 'C:\\Nope' }} finally {{ 'finally 3' }}\n'never'"
    );
    let (code, out, err) = ps(dir.path(), &script);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "body\r\nfinally 1\r\ncaught\r\nfinally 2\r\nfinally 3\r\n"
    );
    assert_eq!(
        err,
        "Get-Item : Cannot find path 'C:\\Nope' because it does not exist.\r\nAt line:4 char:7\r\n"
    );
}

#[test]
fn exit_n_ends_the_script_with_n_after_finally() {
    let dir = lab();
    let (code, out, _) = ps(dir.path(), "'a'\ntry { exit 3 } finally { 'f' }\n'b'");
    assert_eq!((code, out.as_str()), (3, "a\r\nf\r\n"));
    assert_eq!(ps(dir.path(), "exit 1605").0, 1605);
    assert_eq!(ps(dir.path(), "exit").0, 0);
}

#[test]
fn an_uncaught_error_goes_to_stderr_and_exits_1() {
    let dir = lab();
    let (code, out, err) = ps(
        dir.path(),
        &format!("{STOP}'before'\n$s = [System.IO.File]::OpenRead('C:\\Data\\none.txt')\n'after'"),
    );
    assert_eq!((code, out.as_str()), (1, "before\r\n"));
    assert_eq!(err, "Exception calling \"OpenRead\" with \"1\" argument(s): \"Could not find file 'C:\\Data\\none.txt'.\"\r\nAt line:3 char:6\r\n");
}

#[test]
fn a_double_quoted_string_is_refused_and_nothing_runs() {
    let dir = lab();
    let (code, out, err) = ps(dir.path(), "'first'\n$x = \"C:\\Data\"");
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "the lab's powershell does not implement double-quoted strings (lab/README.md)\r\nAt line:2 char:6\r\n"
    );
}

#[test]
fn an_unknown_cmdlet_or_a_pipeline_is_refused_and_nothing_runs() {
    let dir = lab();
    let (code, out, err) = ps(
        dir.path(),
        "'first'\nGet-FileHash -LiteralPath 'C:\\Data\\a.txt'",
    );
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with(
            "the lab's powershell does not implement the command `Get-FileHash` (lab/README.md)"
        ),
        "{err}"
    );
    fails(
        dir.path(),
        "Get-Item -LiteralPath 'C:\\Data' | Out-Null",
        "does not implement pipelines (`|`)",
    );
}

#[test]
fn a_syntax_error_is_a_parser_error_with_line_and_column_and_nothing_runs() {
    let dir = lab();
    let (code, out, err) = ps(dir.path(), "'first'\nif ($true) { 'x' ");
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.starts_with("ParserError: "), "{err}");
    assert!(err.contains("At line:2 char:"), "{err}");
}

#[test]
fn parameters_match_by_unambiguous_prefix_and_wildcard_paths_are_refused() {
    let dir = lab();
    assert_eq!(
        lines(
            dir.path(),
            &format!("{STOP}(Get-Item -lit 'C:\\Data\\a.txt' -fo).Length; (Get-Item -LiteralPath:'C:\\Data').Name")
        ),
        ["5", "Data"]
    );
    fails(
        dir.path(),
        "Get-Item -F 'C:\\Data'",
        "the parameter name 'F' is ambiguous. Possible matches include: -Force -Filter.",
    );
    fails(
        dir.path(),
        "Get-Item 'C:\\Data'",
        "-Path of Get-Item (given by position",
    );
    fails(
        dir.path(),
        "Get-Item -Path 'C:\\Data'",
        "the parameter -Path of Get-Item",
    );
}

#[test]
fn a_cmdlet_error_without_error_action_stop_is_refused_as_the_lab_cannot_continue_past_it() {
    let dir = lab();
    fails(
        dir.path(),
        "Get-Item -LiteralPath 'C:\\Nope'\n'after'",
        "non-terminating errors (set $ErrorActionPreference = 'Stop')",
    );
}

#[test]
fn an_object_written_to_the_output_is_refused_as_powershell_would_format_a_table() {
    let dir = lab();
    fails(
        dir.path(),
        &format!("{STOP}[System.IO.Directory]::CreateDirectory('D:\\New')"),
        "writing a System.IO.DirectoryInfo to the output",
    );
    // [void] it, and the folder is there.
    lines(
        dir.path(),
        &format!("{STOP}[void][System.IO.Directory]::CreateDirectory('D:\\New\\A\\B')"),
    );
    assert!(dir.path().join("drives/D/New/A/B").is_dir());
}

#[test]
fn sha256_by_compute_hash_and_by_blocks_agree_and_print_as_bitconverter_does() {
    let dir = lab();
    let script = format!(
        "{STOP}$p = 'C:\\Data\\a.txt'
$s = [System.IO.File]::OpenRead($p)
$h = [System.Security.Cryptography.SHA256]::Create()
[System.BitConverter]::ToString($h.ComputeHash($s))
$s.Close()
$s = [System.IO.File]::OpenRead($p)
$buf = New-Object -TypeName byte[] -ArgumentList 2
$h = [System.Security.Cryptography.SHA256]::Create()
while ($true) {{
  $n = $s.Read($buf, 0, $buf.Length)
  if ($n -eq 0) {{ break }}
  [void]$h.TransformBlock($buf, 0, $n, $null, 0)
}}
[void]$h.TransformFinalBlock($buf, 0, 0)
$s.Close()
[System.BitConverter]::ToString($h.Hash).Replace('-', '').ToLowerInvariant()
$s.Length"
    );
    let (code, out, err) = ps(dir.path(), &script);
    let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    let dashed: Vec<String> = (0..32)
        .map(|i| sha[2 * i..2 * i + 2].to_ascii_uppercase())
        .collect();
    assert_eq!(out, format!("{}\r\n{sha}\r\n", dashed.join("-")), "{err}");
    // A closed stream: ObjectDisposedException, wrapped as a property getter's.
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Exception getting \"Length\": \"Cannot access a closed file.\""),
        "{err}"
    );
}

#[test]
fn base64_chunks_and_utf8_names_convert_as_dotnet_does() {
    let dir = lab();
    let script = format!(
        "{STOP}$s = [IO.File]::OpenRead('C:\\Data\\a.txt')
$buf = New-Object byte[] 4
$n = $s.Read($buf, 0, 4)
[Convert]::ToBase64String($buf, 0, $n)
$n = $s.Read($buf, 0, 4)
[Convert]::ToBase64String($buf, 0, $n)
$s.Read($buf, 0, 4)
[Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes('Ünï'))"
    );
    assert_eq!(
        lines(dir.path(), &script),
        ["aGVsbA==", "bw==", "0", "w5xuw68="]
    );
}

#[test]
fn string_members_follow_dotnet() {
    let dir = lab();
    let script = "$s = 'C:\\Data\\X'\n$s.Length; $s.Substring(3); $s.Substring(3, 4); $s.Replace('\\', '/'); $s.ToLowerInvariant(); $s.StartsWith('C:\\'); $s.StartsWith('c:'); [string]12 + 'x'; [int64]'  42 ' + 1; 'é'.Length";
    assert_eq!(
        lines(dir.path(), script),
        [
            "9",
            "Data\\X",
            "Data",
            "C:/Data/X",
            "c:\\data\\x",
            "True",
            "False",
            "12x",
            "43",
            "1"
        ]
    );
    fails(
        dir.path(),
        &format!("{STOP}'abc'.Substring(4)"),
        "startIndex cannot be larger than length of string.",
    );
    fails(
        dir.path(),
        &format!("{STOP}'abc'.Trim()"),
        "does not implement the method Trim()",
    );
}

#[test]
fn remove_item_and_move_item_act_on_the_drives() {
    let dir = lab();
    let script = format!(
        "{STOP}Move-Item -LiteralPath 'C:\\Data\\a.txt' -Destination 'C:\\Data\\Sub\\b.bin' -Force
[System.IO.File]::Exists('C:\\Data\\a.txt'); [System.IO.File]::Exists('C:\\Data\\Sub\\b.bin'); [System.IO.File]::Exists('C:\\Data\\Sub')
try {{ Remove-Item -LiteralPath 'C:\\Data\\Sub' -Force }} catch {{ $_.Exception.Message }}
Remove-Item -LiteralPath 'C:\\Data\\Sub\\B.BIN' -Force
Remove-Item -LiteralPath 'C:\\Data' -Recurse -Force
try {{ Remove-Item -LiteralPath 'C:\\Data' }} catch [System.Management.Automation.ItemNotFoundException] {{ 'gone' }}"
    );
    assert_eq!(
        lines(dir.path(), &script),
        [
            "False",
            "True",
            "False",
            "Windows PowerShell is in NonInteractive mode. Read and Prompt functionality is not available.",
            "gone"
        ]
    );
    assert!(!dir.path().join("drives/C/Data").exists());
}

#[test]
fn a_move_onto_an_existing_file_needs_force() {
    let dir = lab();
    let script = format!(
        "{STOP}try {{ Move-Item -LiteralPath 'C:\\Data\\a.txt' -Destination 'C:\\Data\\Sub\\b.bin' }} catch [System.IO.IOException] {{ $_.Exception.Message }}"
    );
    assert_eq!(
        lines(dir.path(), &script),
        ["Cannot create a file when that file already exists."]
    );
}

#[test]
fn a_method_on_null_is_an_error_and_a_member_of_null_is_null() {
    let dir = lab();
    assert_eq!(lines(dir.path(), "$nothing.Length; 'x'"), ["x"]);
    fails(
        dir.path(),
        &format!("{STOP}$nothing.Close()"),
        "You cannot call a method on a null-valued expression.",
    );
}

/// The command line as the cmd shell passes it.
fn powershell_exe(lab: &Path, args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    crate::tools::captured(|io| run(lab, &args, io))
}

fn encoded(script: &str) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn the_command_line_takes_encoded_command_with_its_abbreviations_and_refuses_command() {
    let dir = lab();
    let b64 = encoded("'hi'");
    for args in [
        vec![
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-EncodedCommand",
            &b64,
        ],
        vec!["-nop", "-noni", "-ep", "bypass", "-enc", &b64],
        vec!["-ENCODEDCOMMAND", &b64],
        vec!["/e", &b64],
    ] {
        assert_eq!(
            powershell_exe(dir.path(), &args),
            (0, "hi\r\n".into(), String::new()),
            "{args:?}"
        );
    }
    for (args, expected) in [
        (vec!["-Command", "'hi'"], "only takes -EncodedCommand"),
        (vec!["-enc", "not base64!"], "is not properly encoded"),
        (
            vec!["-ep", "Sideways", "-enc", &b64],
            "Invalid argument 'Sideways'",
        ),
    ] {
        let (code, _, err) = powershell_exe(dir.path(), &args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn catch_exception_takes_every_error_the_lab_raises_including_a_null_path() {
    let dir = lab();
    let script = format!(
        "{STOP}try {{ Get-Item -LiteralPath $nothing }} catch [System.Exception] {{ $_.Exception.Message }}"
    );
    assert_eq!(
        lines(dir.path(), &script),
        ["Cannot bind argument to parameter 'LiteralPath' because it is null."]
    );
    for t in [
        super::value::ITEM_NOT_FOUND,
        super::value::FILE_NOT_FOUND,
        super::value::DIRECTORY_NOT_FOUND,
        super::value::IO,
        super::value::UNAUTHORIZED,
        super::value::METHOD_INVOCATION,
        super::value::GET_VALUE_INVOCATION,
        super::value::RUNTIME,
        super::value::PS_INVALID_OPERATION,
        super::value::PARAMETER_BINDING,
        super::value::ARGUMENT,
        super::value::ARGUMENT_NULL,
        super::value::ARGUMENT_OUT_OF_RANGE,
        super::value::OBJECT_DISPOSED,
        super::value::CRYPTO_UNEXPECTED,
        "System.Management.Automation.MethodException",
    ] {
        let e = super::value::Exception::new(t, "x");
        assert!(
            e.is_a("System.Exception"),
            "{t} does not derive from System.Exception"
        );
    }
}

#[test]
fn a_member_outside_the_subset_ends_the_script_and_no_catch_or_finally_runs() {
    let dir = lab();
    let (code, out, err) = ps(
        dir.path(),
        "'before'\ntry { 'abc'.Trim() } catch { 'caught' } finally { 'finally' }\n'after'",
    );
    assert_eq!((code, out.as_str()), (1, "before\r\n"));
    assert_eq!(
        err,
        "the lab's powershell does not implement the method Trim() of System.String with 0 argument(s) (lab/README.md)\r\nAt line:2 char:7\r\n"
    );
}

#[test]
fn a_script_with_crlf_line_ends_runs_and_reports_lines_as_windows_counts_them() {
    let dir = lab();
    let script = "$ErrorActionPreference = 'Stop'\r\nif ($true) {\r\n  'a'\r\n}\r\nGet-Item -LiteralPath 'C:\\Nope'\r\n";
    let (code, out, err) = ps(dir.path(), script);
    assert_eq!((code, out.as_str()), (1, "a\r\n"));
    assert!(err.ends_with("At line:5 char:1\r\n"), "{err}");
}

#[test]
fn a_try_that_powershells_parser_rejects_is_refused_though_the_grammar_takes_it() {
    let dir = lab();
    fails(
        dir.path(),
        "try { 'x' }",
        "The Try statement is missing its Catch or Finally block.",
    );
    fails(
        dir.path(),
        "try { 'x' } catch { 'a' } catch [System.IO.IOException] { 'b' }",
        "Catch block must be the last catch block.",
    );
}

/// A lab made by `init` (lab.json with its WinRM account, the IIFP server `MIISLAB`) with
/// D:\Upgrade\keys.bin readable by everyone.
fn initialised_lab() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::layout::InitOptions {
        exe: Some("/bin/true".into()),
        ..crate::layout::InitOptions::new(crate::layout::Flavour::Iifp)
    };
    let lab = crate::layout::Lab::init_with(dir.path(), &opts).unwrap();
    let key = crate::layout::win_to_lab(lab.dir(), r"D:\Upgrade\keys.bin").unwrap();
    std::fs::write(&key, b"key set").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    (dir, key)
}

/// The ACL the executor's remote host applies to a key file, with `protect` and `rights`.
fn restrict(path: &str, protect: &str, who: &str, rights: &str) -> String {
    format!(
        "{STOP}$p = '{path}'
$acl = New-Object System.Security.AccessControl.FileSecurity
$acl.SetAccessRuleProtection({protect}, $false)
$me = {who}
$rule = New-Object System.Security.AccessControl.FileSystemAccessRule($me, '{rights}', 'Allow')
$acl.AddAccessRule($rule)
[System.IO.File]::SetAccessControl($p, $acl)
'ok'
"
    )
}

const CURRENT: &str = "[System.Security.Principal.WindowsIdentity]::GetCurrent().Name";

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_current_identity_is_the_account_winrm_logs_on_as_on_the_lab_computer() {
    let (dir, _) = initialised_lab();
    assert_eq!(
        lines(dir.path(), &format!("{STOP}{CURRENT}")),
        [r"MIISLAB\Administrator"]
    );
}

#[test]
fn a_protected_acl_granting_only_the_current_account_leaves_the_key_file_to_its_owner() {
    let (dir, key) = initialised_lab();
    let script = restrict(r"d:\upgrade\KEYS.bin", "$true", CURRENT, "FullControl");
    assert_eq!(lines(dir.path(), &script), ["ok"]);
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600);
    // The account by its bare name, `fullcontrol` in any case: the same ACL.
    let script = restrict(
        r"D:\Upgrade\keys.bin",
        "1",
        "'administrator'",
        "fullcontrol",
    );
    assert_eq!(lines(dir.path(), &script), ["ok"]);
}

#[test]
fn an_acl_the_lab_cannot_vouch_for_is_refused_and_the_file_is_left_as_it_was() {
    let (dir, key) = initialised_lab();
    let path = r"D:\Upgrade\keys.bin";
    for (script, expected) in [
        (
            restrict(path, "$false", CURRENT, "FullControl"),
            "SetAccessControl with an ACL that inherits the folder's entries",
        ),
        (
            restrict(path, "$true", r"'MIISLAB\Guest'", "FullControl"),
            r"SetAccessControl granting MIISLAB\Guest",
        ),
        (
            restrict(path, "$true", CURRENT, "Read"),
            "a FileSystemAccessRule other than (identity, 'FullControl', 'Allow')",
        ),
        (
            format!("{STOP}$acl = New-Object System.Security.AccessControl.FileSecurity\n$acl.SetAccessRuleProtection($true, $false)\n[System.IO.File]::SetAccessControl('{path}', $acl)"),
            "SetAccessControl with an ACL that grants nobody access",
        ),
    ] {
        let (code, out, err) = ps(dir.path(), &script);
        assert_eq!((code, out.as_str()), (1, ""), "{script}");
        assert!(
            err.starts_with("the lab's powershell does not implement ") && err.contains(expected),
            "{err}"
        );
        #[cfg(unix)]
        assert_eq!(mode(&key), 0o644, "{script}");
    }
}

#[test]
fn set_access_control_on_a_missing_file_throws_file_not_found_with_the_full_path() {
    let (dir, _) = initialised_lab();
    let script = restrict(r"d:\upgrade\gone.bin", "$true", CURRENT, "FullControl");
    fails(
        dir.path(),
        &script,
        "Exception calling \"SetAccessControl\" with \"2\" argument(s): \"D:\\upgrade\\gone.bin\"",
    );
    let caught = format!(
        "try {{ {} }} catch [System.IO.FileNotFoundException] {{ 'caught: ' + $_.Exception.InnerException.Message }}",
        restrict(r"D:\Upgrade\gone.bin", "$true", CURRENT, "FullControl").replace('\n', "; ")
    );
    assert_eq!(lines(dir.path(), &caught), [r"caught: D:\Upgrade\gone.bin"]);
}

#[test]
fn new_object_takes_a_parenthesised_list_after_the_type_name_as_its_argument_list() {
    let dir = lab();
    // One element is itself (PowerShell's parentheses), so byte[](3) is three bytes.
    assert_eq!(
        lines(dir.path(), "$b = New-Object byte[](3)\n$b.Length"),
        ["3"]
    );
    // A list after something other than a bare word is still refused.
    fails(
        dir.path(),
        "Write-Output 'a'('b', 'c')",
        "a parenthesised list after an argument",
    );
}

#[test]
fn get_attributes_names_a_file_or_folder_and_throws_not_found_for_a_missing_one() {
    let dir = lab();
    let script = format!(
        "{STOP}[System.IO.File]::GetAttributes('C:\\Data')
[System.IO.File]::GetAttributes('c:\\data\\A.TXT')
try {{ [System.IO.File]::GetAttributes('C:\\Data\\nope.txt') }} catch [System.IO.FileNotFoundException] {{ 'file: ' + $_.Exception.InnerException.Message }}
try {{ [System.IO.File]::GetAttributes('C:\\Nope\\x.txt') }} catch [System.IO.FileNotFoundException] {{ 'wrong' }} catch [System.IO.DirectoryNotFoundException] {{ 'dir: ' + $_.Exception.InnerException.Message }}
try {{ [System.IO.File]::GetAttributes('C:\\Data\\a.txt\\x') }} catch [System.IO.DirectoryNotFoundException] {{ 'under a file' }}"
    );
    assert_eq!(
        lines(dir.path(), &script),
        [
            "Directory",
            "Archive",
            "file: Could not find file 'C:\\Data\\nope.txt'.",
            "dir: Could not find a part of the path 'C:\\Nope\\x.txt'.",
            "under a file"
        ]
    );
}

#[test]
fn file_delete_ignores_a_missing_file_but_not_a_missing_folder_or_a_folder() {
    let dir = lab();
    let script = format!(
        "{STOP}[System.IO.File]::Delete('C:\\Data\\a.txt')
[System.IO.File]::Delete('C:\\Data\\a.txt')
[System.IO.File]::Exists('C:\\Data\\a.txt')
try {{ [System.IO.File]::Delete('C:\\Nope\\a.txt') }} catch [System.IO.DirectoryNotFoundException] {{ 'no folder' }}
try {{ [System.IO.File]::Delete('C:\\Data\\Sub') }} catch [System.UnauthorizedAccessException] {{ $_.Exception.InnerException.Message }}"
    );
    assert_eq!(
        lines(dir.path(), &script),
        [
            "False",
            "no folder",
            "Access to the path 'C:\\Data\\Sub' is denied."
        ]
    );
    assert!(dir.path().join("drives/C/Data/Sub/b.bin").exists());
}

#[test]
fn file_move_renames_but_never_onto_an_existing_file() {
    let dir = lab();
    let script = format!(
        "{STOP}try {{ [System.IO.File]::Move('C:\\Data\\a.txt', 'C:\\Data\\Sub\\b.bin') }} catch [System.IO.IOException] {{ $_.Exception.InnerException.Message }}
[System.IO.File]::Move('C:\\Data\\a.txt', 'C:\\Data\\c.txt')
[System.IO.File]::Exists('C:\\Data\\a.txt'); [System.IO.File]::Exists('C:\\Data\\c.txt')
try {{ [System.IO.File]::Move('C:\\Data\\a.txt', 'C:\\Data\\d.txt') }} catch [System.IO.FileNotFoundException] {{ 'no source' }}"
    );
    assert_eq!(
        lines(dir.path(), &script),
        [
            "Cannot create a file when that file already exists.",
            "False",
            "True",
            "no source"
        ]
    );
    assert_eq!(
        std::fs::read(dir.path().join("drives/C/Data/Sub/b.bin")).unwrap(),
        [1, 2, 3]
    );
}

#[test]
fn transform_block_copies_the_block_to_an_output_buffer_when_given_one() {
    let dir = lab();
    let script = format!(
        "{STOP}$in = [System.Text.Encoding]::UTF8.GetBytes('hello')
$out = New-Object byte[] 7
$h = [System.Security.Cryptography.SHA256]::Create()
$h.TransformBlock($in, 1, 3, $out, 2)
[void]$h.TransformBlock($in, 0, 5, $in, 0)
[void]$h.TransformFinalBlock($in, 0, 0)
[System.Convert]::ToBase64String($out)
[System.BitConverter]::ToString($h.Hash).Replace('-', '').ToLowerInvariant()
try {{ [void]$h.TransformBlock($in, 0, 5, $out, 3) }} catch [System.ArgumentException] {{ 'out of bounds' }}"
    );
    use base64::Engine;
    use sha2::Digest;
    assert_eq!(
        lines(dir.path(), &script),
        [
            "3".to_string(),
            base64::engine::general_purpose::STANDARD.encode([0, 0, b'e', b'l', b'l', 0, 0]),
            hex::encode(sha2::Sha256::digest(b"ellhello")),
            "out of bounds".to_string()
        ]
    );
}

/// The executor's probe (src/adapters/remote/script.rs `installation_in_progress`), as written.
const MSIEXECUTE_PROBE: &str = "$ErrorActionPreference = 'Stop'
try { [void][System.Threading.Mutex]::OpenExisting('Global\\_MSIExecute'); 'busy' }
catch [System.Threading.WaitHandleCannotBeOpenedException] { 'idle' }
catch [System.UnauthorizedAccessException] { 'busy' }
";

#[test]
fn the_msiexecute_mutex_exists_only_while_an_installer_of_the_lab_is_in_its_execute_phase() {
    let (dir, _) = initialised_lab();
    assert_eq!(lines(dir.path(), MSIEXECUTE_PROBE), ["idle"]);
    // An installer in its execute phase holds the lab's _MSIExecute.
    let held = crate::tools::msiexec::installer_lock(
        dir.path(),
        crate::tools::msiexec::Installer::Msiexec,
    )
    .unwrap();
    assert_eq!(lines(dir.path(), MSIEXECUTE_PROBE), ["busy"]);
    fails(
        dir.path(),
        "[void][System.Threading.Mutex]::OpenExisting('Global\\_MSIExecute')",
        "Access to the path 'Global\\_MSIExecute' is denied.",
    );
    // Kernel object names are case-sensitive; no other mutex exists in the lab.
    fails(
        dir.path(),
        "[void][Threading.Mutex]::OpenExisting('Global\\_msiexecute')",
        "No handle of the given name exists.",
    );
    drop(held);
    assert_eq!(lines(dir.path(), MSIEXECUTE_PROBE), ["idle"]);
}

#[test]
fn env_systemroot_is_the_labs_windows_folder_and_other_variables_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::layout::InitOptions {
        exe: Some("/bin/true".into()),
        system_root: Some(r"C:\WINNT".into()),
        ..crate::layout::InitOptions::new(crate::layout::Flavour::Iifp)
    };
    let lab = crate::layout::Lab::init_with(dir.path(), &opts).unwrap();
    assert_eq!(
        lines(lab.dir(), "$env:SystemRoot; $ENV:windir"),
        [r"C:\WINNT", r"C:\WINNT"]
    );
    fails(lab.dir(), "$env:PATH", "$env:path");
    // Its System32 holds the tools and the mutex's stand-in, C:\Windows nothing.
    let system32 = lab.lab_path(r"C:\WINNT\System32");
    assert!(system32.join("msiexec.exe").is_file());
    assert!(system32.join("_MSIExecute").exists());
    assert!(!lab.lab_path(r"C:\Windows").exists());
}
