//! What the WinRS shell does with a command line before a program runs: cmd.exe finds the
//! program (a bare name of a System32 tool, or a drive path to a file in the lab's drives, found
//! without regard to case, `.exe` optional), and the program splits its arguments by the
//! CommandLineToArgvW rules. A name cmd.exe cannot find gets cmd.exe's own message and exit 1.
//! TEST DOUBLE: the lab's cmd.exe runs only the stand-ins; it does not interpret `&`, `|`, `<`,
//! `>`, `^` or `%VAR%`, refuses a line that uses the first five and refuses its internal commands
//! (`dir`, `echo`, `type`, ...) with a message that says so (lab/README.md).

use std::path::{Path, PathBuf};

use crate::layout::{win_to_lab, wrapper_tool};

/// cmd.exe's internal commands: a real cmd.exe runs them itself; the lab's does not simulate them
/// and says so rather than pretend they do not exist.
const CMD_BUILTINS: [&str; 44] = [
    "assoc", "break", "call", "cd", "chdir", "cls", "color", "copy", "date", "del", "dir", "echo",
    "endlocal", "erase", "exit", "for", "ftype", "goto", "if", "md", "mkdir", "mklink", "move",
    "path", "pause", "popd", "prompt", "pushd", "rd", "rem", "ren", "rename", "rmdir", "set",
    "setlocal", "shift", "start", "time", "title", "type", "ver", "verify", "vol", "cmd",
];

/// The stand-ins that live in System32 and are found by name on the default PATH.
const SYSTEM32_TOOLS: [&str; 5] = ["reg", "sc", "msiexec", "icacls", "powershell"];
/// Where powershell.exe lives under System32 (Windows PowerShell 1.0 and 2.0 alike install to
/// `v1.0`); cmd.exe finds it by name too, as that folder is on the default PATH.
const POWERSHELL_FOLDER: &str = r"WindowsPowerShell\v1.0";

/// What cmd.exe makes of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Run stand-in `tool` with `args`.
    Run { tool: String, args: Vec<String> },
    /// cmd.exe itself answers: this text on stderr, this exit code.
    Fails { stderr: String, exit: u32 },
}

/// Resolves `line` (WinRS Command and Arguments joined by spaces) against the lab in `lab`.
pub fn resolve(lab: &Path, line: &str) -> Resolved {
    if let Some(op) = unquoted_operator(line) {
        return Resolved::Fails {
            stderr: format!(
                "upgrade-lab: the lab's cmd.exe does not interpret `{op}`; run one program per command\r\n"
            ),
            exit: 1,
        };
    }
    let (program, rest) = split_program(line);
    if CMD_BUILTINS.contains(&program.to_ascii_lowercase().as_str()) {
        return Resolved::Fails {
            stderr: format!(
                "upgrade-lab: the lab's cmd.exe does not simulate `{program}`; it runs only the stand-ins\r\n"
            ),
            exit: 1,
        };
    }
    let args = split_args(rest);
    match find_program(lab, &program) {
        Found::Tool(tool) => Resolved::Run { tool, args },
        Found::NoPath => Resolved::Fails {
            stderr: "The system cannot find the path specified.\r\n".into(),
            exit: 1,
        },
        Found::NotRecognized => Resolved::Fails {
            stderr: format!(
                "'{program}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
            ),
            exit: 1,
        },
    }
}

/// The first of cmd.exe's operators outside double quotes.
fn unquoted_operator(line: &str) -> Option<char> {
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            '&' | '|' | '<' | '>' | '^' if !quoted => return Some(c),
            _ => {}
        }
    }
    None
}

/// The program name (quotes only toggle, as for argv[0]) and the rest of the line.
fn split_program(line: &str) -> (String, &str) {
    let line = line.trim_start_matches([' ', '\t']);
    let mut name = String::new();
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return (name, &line[i..]),
            _ => name.push(c),
        }
    }
    (name, "")
}

/// Splits arguments by the CommandLineToArgvW / Microsoft C runtime rules: whitespace separates,
/// double quotes group, 2n backslashes before a quote give n and the quote groups, 2n+1 give n and
/// a literal quote, other backslashes are literal; `""` inside quotes is a literal quote.
pub fn split_args(rest: &str) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        if i >= chars.len() {
            return args;
        }
        let mut arg = String::new();
        let mut quoted = false;
        while i < chars.len() {
            let c = chars[i];
            if c == '\\' {
                let start = i;
                while i < chars.len() && chars[i] == '\\' {
                    i += 1;
                }
                let n = i - start;
                if i < chars.len() && chars[i] == '"' {
                    arg.extend(std::iter::repeat_n('\\', n / 2));
                    if n % 2 == 1 {
                        arg.push('"');
                        i += 1;
                    }
                } else {
                    arg.extend(std::iter::repeat_n('\\', n));
                }
                continue;
            }
            if c == '"' {
                if quoted && chars.get(i + 1) == Some(&'"') {
                    arg.push('"');
                    i += 2;
                    continue;
                }
                quoted = !quoted;
                i += 1;
                continue;
            }
            if (c == ' ' || c == '\t') && !quoted {
                break;
            }
            arg.push(c);
            i += 1;
        }
        args.push(arg);
    }
}

enum Found {
    Tool(String),
    /// A path whose folder does not exist.
    NoPath,
    NotRecognized,
}

fn find_program(lab: &Path, program: &str) -> Found {
    let stem = |name: &str| -> String {
        let lower = name.to_ascii_lowercase();
        lower.strip_suffix(".exe").unwrap_or(&lower).to_string()
    };
    if !program.contains(['\\', '/', ':']) {
        let s = stem(program);
        return match SYSTEM32_TOOLS.iter().find(|t| **t == s) {
            Some(t) => Found::Tool(t.to_string()),
            None => Found::NotRecognized,
        };
    }
    let normal = program.replace('/', "\\");
    // The server's System32 is under its %SystemRoot% (C:\WINNT on a server upgraded from
    // Windows 2000): a tool is there, not at C:\Windows\System32.
    let system32 = crate::state::load(lab)
        .map(|st| st.system32())
        .unwrap_or_else(|_| format!(r"{}\System32", crate::layout::DEFAULT_SYSTEM_ROOT));
    if let Some((folder, name)) = normal.rsplit_once('\\') {
        let s = stem(name);
        if folder.eq_ignore_ascii_case(&system32) && s != "powershell" {
            if let Some(t) = SYSTEM32_TOOLS.iter().find(|t| **t == s) {
                return Found::Tool(t.to_string());
            }
        }
        if folder.eq_ignore_ascii_case(&format!(r"{system32}\{POWERSHELL_FOLDER}"))
            && s == "powershell"
        {
            return Found::Tool(s);
        }
    }
    let Some(mapped) = win_to_lab(lab, &normal) else {
        return Found::NotRecognized;
    };
    let drive_root = lab.join("drives");
    let Ok(relative) = mapped.strip_prefix(&drive_root) else {
        return Found::NotRecognized;
    };
    let parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let Some((file, folders)) = parts.split_last() else {
        return Found::NotRecognized;
    };
    let Some(folder) = find_folder(&drive_root, folders) else {
        return Found::NoPath;
    };
    let lower = file.to_ascii_lowercase();
    let mut candidates = vec![file.clone()];
    match lower.strip_suffix(".exe") {
        Some(bare) => candidates.push(bare.to_string()),
        None => candidates.push(format!("{file}.exe")),
    }
    candidates
        .iter()
        .filter_map(|c| entry_ci(&folder, c))
        .filter(|p| p.is_file())
        .find_map(|p| wrapper_tool(&p))
        .map_or(Found::NotRecognized, Found::Tool)
}

/// The folder `parts` under `root`, matched without regard to case as Windows does.
fn find_folder(root: &Path, parts: &[String]) -> Option<PathBuf> {
    let mut at = root.to_path_buf();
    for p in parts {
        at = entry_ci(&at, p).filter(|e| e.is_dir())?;
    }
    Some(at)
}

fn entry_ci(folder: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(folder)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().eq_ignore_ascii_case(name))
        .map(|e| e.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_as_the_c_runtime_splits_them() {
        assert_eq!(
            split_args(r#" query "HKLM\SOFTWARE\A B" /s"#),
            vec!["query", r"HKLM\SOFTWARE\A B", "/s"]
        );
        assert_eq!(
            split_args(r#"a\\"b c" d\"e f\g"#),
            vec![r"a\b c", r#"d"e"#, r"f\g"]
        );
        assert_eq!(split_args(r#""say ""hi""""#), vec![r#"say "hi""#]);
    }

    #[test]
    fn an_unknown_program_gets_what_cmd_exe_says() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("drives/C/Windows")).unwrap();
        assert_eq!(
            resolve(dir.path(), "ipconfig /all"),
            Resolved::Fails {
                stderr: "'ipconfig' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n".into(),
                exit: 1
            }
        );
        assert_eq!(
            resolve(dir.path(), r"C:\Nowhere\x.exe"),
            Resolved::Fails {
                stderr: "The system cannot find the path specified.\r\n".into(),
                exit: 1
            }
        );
        assert_eq!(
            resolve(dir.path(), r"REG.EXE query HKLM"),
            Resolved::Run {
                tool: "reg".into(),
                args: vec!["query".into(), "HKLM".into()]
            }
        );
        assert!(matches!(
            resolve(dir.path(), "sc query x & del y"),
            Resolved::Fails { exit: 1, .. }
        ));
        let Resolved::Fails { stderr, .. } = resolve(dir.path(), "echo hi") else {
            panic!("echo ran")
        };
        assert!(stderr.contains("does not simulate `echo`"), "{stderr}");
    }

    #[test]
    fn powershell_and_icacls_are_found_by_name_and_powershell_by_its_full_path() {
        let dir = tempfile::tempdir().unwrap();
        let tool = |line: &str| match resolve(dir.path(), line) {
            Resolved::Run { tool, .. } => tool,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(tool("powershell -enc AAAA"), "powershell");
        assert_eq!(tool("PowerShell.EXE -enc AAAA"), "powershell");
        assert_eq!(
            tool(r"C:\WINDOWS\system32\WindowsPowerShell\v1.0\powershell.exe -enc AAAA"),
            "powershell"
        );
        assert_eq!(
            tool(r#"icacls "D:\Upgrade\k.bin" /inheritance:r"#),
            "icacls"
        );
        assert_eq!(tool(r"C:\Windows\System32\icacls.exe x"), "icacls");
    }
}
