//! The miiskmu stand-in: `miiskmu /e FILE /u:[DOMAIN\]USER PASSWORD|* [/q]` (`*` reads one line from
//! standard input). Writes a lab key file of the server's key set, protected by the account's
//! password. TEST DOUBLE: only export (`/e`) is simulated; the password never reaches its output.
//!
//! Like the real tool, it ends with a message box unless `/q` (quiet) is given: Microsoft's own FIM
//! scripts run `miiskmu /e FILE /u:DOMAIN\USER PASSWORD /q`, and the interactive runbooks show the
//! result in a dialog. On a server session nobody closes that box, so without `/q` the stand-in
//! prints the result and then waits (120 s, then exit 1, so a forgotten `/q` cannot hang a test run). In quiet mode it prints nothing on success
//! (a lab choice: the real tool's console text is unconfirmed, so nothing may depend on it).

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
    quiet: bool,
}

fn parse(args: &[String]) -> Result<Export, String> {
    let quiet = args.iter().any(|a| a.eq_ignore_ascii_case("/q"));
    let rest: Vec<&String> = args
        .iter()
        .filter(|a| !a.eq_ignore_ascii_case("/q"))
        .collect();
    match rest.as_slice() {
        [e, file, u, password] if e.eq_ignore_ascii_case("/e") => {
            let account = u
                .get(..3)
                .filter(|p| p.eq_ignore_ascii_case("/u:"))
                .map(|_| u[3..].to_string())
                .filter(|a| !a.is_empty())
                .ok_or_else(|| format!("expected /u:[DOMAIN\\]USER, found `{u}`"))?;
            Ok(Export {
                file: file.to_string(),
                account,
                password: password.to_string(),
                quiet,
            })
        }
        _ => Err("expected: miiskmu /e FILE /u:[DOMAIN\\]USER PASSWORD|* [/q]".into()),
    }
}

/// How long the stand-in's message box waits. The real one waits for ever; the lab gives up so that
/// a test that forgets `/q` fails instead of hanging a whole run.
const MESSAGE_BOX_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Without `/q` the result stays on screen in a message box until somebody closes it: nobody does.
fn message_box(io: &mut ToolIo, text: &str) -> i32 {
    let _ = writeln!(io.stdout, "[message box] {text}");
    let _ = io.stdout.flush();
    std::thread::sleep(MESSAGE_BOX_WAIT);
    let _ = writeln!(
        io.stdout,
        "(lab: nobody closed the message box in {}s; miiskmu needs /q on a server)",
        MESSAGE_BOX_WAIT.as_secs()
    );
    1
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
    let result = export(lab, &cmd);
    if !cmd.quiet {
        return match &result {
            Ok(()) => message_box(io, SUCCESS_TEXT),
            Err(msg) => message_box(io, msg),
        };
    }
    match result {
        Ok(()) => 0,
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
