//! The powershell.exe stand-in (TEST DOUBLE): `powershell.exe -NoProfile -NonInteractive
//! -ExecutionPolicy Bypass -EncodedCommand <base64 of UTF-16LE>` as the executor's remote host
//! sends it (contract: /work/notes/ps-subset.md, lab/README.md). This module reads the command
//! line and decodes the script; `parse` parses it with tree-sitter-powershell and lowers it to
//! `ast` (refusing what is outside the subset), `eval` runs it with `value`, `dotnet`
//! (`security` for the access-control members), `cmdlets` over `drives`. It never recognises a script by its text: it interprets it.

mod ast;
mod cmdlets;
mod dotnet;
mod drives;
mod eval;
mod parse;
mod security;
mod value;

use std::io::Write;
use std::path::Path;

use base64::Engine;

use crate::tools::ToolIo;

/// powershell.exe's parameters: (name, shortest prefix it takes, takes a value). The prefixes
/// follow powershell.exe's own matching of its parameters; `-ep` is an alias of
/// -ExecutionPolicy.
const PARAMETERS: [(&str, &str, bool); 14] = [
    ("EncodedCommand", "e", true),
    ("ExecutionPolicy", "ex", true),
    ("NoProfile", "nop", false),
    ("NonInteractive", "noni", false),
    ("NoLogo", "nol", false),
    ("NoExit", "noe", false),
    ("Command", "c", true),
    ("File", "f", true),
    ("InputFormat", "in", true),
    ("OutputFormat", "o", true),
    ("WindowStyle", "w", true),
    ("Version", "v", true),
    ("Sta", "s", false),
    ("PSConsoleFile", "psc", true),
];

/// The execution policies of PowerShell 2.0 (about_Execution_Policies).
const POLICIES: [&str; 7] = [
    "Restricted",
    "AllSigned",
    "RemoteSigned",
    "Unrestricted",
    "Bypass",
    "Undefined",
    "Default",
];

/// Runs the stand-in; returns the exit code.
pub fn run(lab: &Path, args: &[String], io: &mut ToolIo) -> i32 {
    let script = match script_of(args) {
        Ok(s) => s,
        Err(why) => {
            let _ = write!(io.stderr, "{why}\r\n");
            return 1;
        }
    };
    run_script(lab, &script, io.stdout, io.stderr)
}

/// Parses and runs `script`; stdout gets its output, stderr its error; returns the exit code.
pub fn run_script(lab: &Path, script: &str, stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    let block = match parse::parse(script) {
        Ok(b) => b,
        Err(parse::ParseFailure::Syntax { at, message }) => {
            let _ = write!(stderr, "ParserError: {message}\r\nAt {at}\r\n");
            return 1;
        }
        Err(parse::ParseFailure::Unsupported(u)) => {
            let _ = write!(stderr, "{u}\r\n");
            return 1;
        }
    };
    let mut interp = eval::Interp::new(lab, stdout);
    match interp.run(&block) {
        Ok(()) => 0,
        Err(value::Flow::Exit(code)) => code,
        Err(value::Flow::Error(rec)) => {
            let _ = write!(stderr, "{}", rec.render());
            1
        }
        Err(value::Flow::Unsupported(u)) => {
            let _ = write!(stderr, "{u}\r\n");
            1
        }
        Err(value::Flow::Break(at)) => {
            let _ = write!(
                stderr,
                "the lab's powershell does not implement break outside a loop (lab/README.md)\r\nAt {at}\r\n"
            );
            1
        }
    }
}

/// The script a command line carries, or what to say about the command line.
fn script_of(args: &[String]) -> Result<String, String> {
    const ONLY: &str = "the lab's powershell.exe only takes -EncodedCommand (with -NoProfile, -NonInteractive, -ExecutionPolicy) (lab/README.md)";
    let mut encoded = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let Some(key) = arg.strip_prefix(['-', '/']).filter(|k| !k.is_empty()) else {
            return Err(format!("{ONLY}; it was given `{arg}`"));
        };
        let lower = key.to_ascii_lowercase();
        let found = if lower == "ep" || lower == "ec" {
            PARAMETERS
                .iter()
                .find(|p| p.1 == if lower == "ep" { "ex" } else { "e" })
        } else {
            PARAMETERS.iter().find(|(name, min, _)| {
                name.to_ascii_lowercase().starts_with(&lower) && lower.len() >= min.len()
            })
        };
        let Some((name, _, takes_value)) = found else {
            return Err(format!("{ONLY}; `{arg}` is not one of its parameters"));
        };
        let value = if *takes_value {
            i += 1;
            Some(
                args.get(i)
                    .ok_or_else(|| format!("Missing argument for parameter -{name}."))?,
            )
        } else {
            None
        };
        match (*name, value) {
            ("EncodedCommand", Some(v)) => encoded = Some(v.clone()),
            ("ExecutionPolicy", Some(v)) => {
                if !POLICIES.iter().any(|p| p.eq_ignore_ascii_case(v)) {
                    return Err(format!(
                        "Invalid argument '{v}' for parameter -ExecutionPolicy."
                    ));
                }
            }
            ("NoProfile" | "NonInteractive", None) => {}
            _ => return Err(format!("{ONLY}; -{name} is refused")),
        }
        i += 1;
    }
    let encoded = encoded.ok_or_else(|| format!("{ONLY}; it was given none"))?;
    decode(&encoded).ok_or_else(|| {
        "Cannot process the command because the value specified with -EncodedCommand is not properly encoded. The value must be Base64 encoded.".to_string()
    })
}

/// Base64 of UTF-16LE -> the script.
fn decode(encoded: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let text = String::from_utf16(&units).ok()?;
    Some(text.trim_start_matches('\u{feff}').to_string())
}

#[cfg(test)]
mod tests;
