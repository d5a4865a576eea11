//! The miiskmu stand-in: `miiskmu /e FILE /u:[DOMAIN\]USER PASSWORD|*` (`*` reads one line from
//! standard input). Writes a lab key file of the server's key set, protected by the account's
//! password. TEST DOUBLE: only export (`/e`) is simulated; the password never reaches its output.

use std::path::Path;

use crate::faults;
use crate::layout::resolve;
use crate::state::{self, KeyExport};
use crate::tools::{keyfile, ToolIo};

pub const SUCCESS_TEXT: &str = "The operation has completed successfully.";

struct Export {
    file: String,
    account: String,
    password: String,
}

fn parse(args: &[String]) -> Result<Export, String> {
    match args {
        [e, file, u, password] if e.eq_ignore_ascii_case("/e") => {
            let account = u
                .get(..3)
                .filter(|p| p.eq_ignore_ascii_case("/u:"))
                .map(|_| u[3..].to_string())
                .filter(|a| !a.is_empty())
                .ok_or_else(|| format!("expected /u:[DOMAIN\\]USER, found `{u}`"))?;
            Ok(Export {
                file: file.clone(),
                account,
                password: password.clone(),
            })
        }
        _ => Err("expected: miiskmu /e FILE /u:[DOMAIN\\]USER PASSWORD|*".into()),
    }
}

/// Runs the stand-in; returns the exit code.
pub fn run(lab: &Path, args: &[String], io: &mut ToolIo) -> i32 {
    let mut cmd = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(io.stdout, "Invalid command line: {e}");
            return 1;
        }
    };
    if cmd.password == "*" {
        let _ = write!(io.stdout, "Enter the password for {}: ", cmd.account);
        let mut line = String::new();
        match io.stdin.read_line(&mut line) {
            Ok(n) if n > 0 => cmd.password = line.trim_end_matches(['\r', '\n']).to_string(),
            _ => {
                let _ = writeln!(io.stdout, "\nNo password was entered.");
                return 1;
            }
        }
        let _ = writeln!(io.stdout);
    }
    match export(lab, &cmd) {
        Ok(()) => {
            let _ = writeln!(io.stdout, "{SUCCESS_TEXT}");
            0
        }
        Err(msg) => {
            let _ = writeln!(io.stdout, "{msg}");
            1
        }
    }
}

fn export(lab: &Path, cmd: &Export) -> Result<(), String> {
    if faults::load(lab).map_err(|e| e.to_string())?.miiskmu_fail {
        return Err("Error: the key management operation failed (0x80004005). (injected fault: miiskmu-fail)".into());
    }
    let st = state::load(lab).map_err(|e| e.to_string())?;
    let Some(key_set) = st.key_set.clone() else {
        return Err("Error: no encryption key set was found on this server; the synchronization service is not installed.".into());
    };
    if !st.account.matches(&cmd.account) || cmd.password != st.account.password {
        return Err(format!(
            "Error: the account {} could not be verified: the user name or password is incorrect.",
            cmd.account
        ));
    }
    let path = resolve(lab, &cmd.file);
    std::fs::write(&path, keyfile::export(&key_set, &cmd.password))
        .map_err(|e| format!("Error: cannot write the key file {}: {e}", cmd.file))?;
    state::update(lab, |st| {
        st.key_exports.push(KeyExport {
            path: cmd.file.clone(),
            key_set_id: key_set.id.clone(),
            at: state::now(),
        })
    })
    .map_err(|e| e.to_string())
}
