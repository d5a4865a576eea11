//! What can go wrong talking to a WinRM server, worded for the administrator who must act on it:
//! which setting on the server to check, and whether a command may still be running. No variant
//! holds a password or a command's stdin.

use std::path::PathBuf;
use std::time::Duration;

use super::cmdline::UnsafeArgument;
use super::response::Fault;

/// Why a command's outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interruption {
    /// No exit code within the command's timeout; the command was left running.
    TimedOut(Duration),
    /// The connection broke (or the server stopped answering) during this operation.
    Dropped {
        operation: &'static str,
        cause: String,
    },
    /// The server answered this operation with an error before the command reported its end.
    Failed {
        operation: &'static str,
        cause: String,
    },
}

impl std::fmt::Display for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interruption::TimedOut(after) => write!(
                f,
                "it gave no exit code within {}s and was left running (it was not terminated, so an installer is not cut off half-way; the server's shell idle timeout reclaims its shell)",
                after.as_secs()
            ),
            Interruption::Failed { operation, cause } => write!(
                f,
                "{operation} failed before the command reported its end ({cause}); its shell was left alone"
            ),
            Interruption::Dropped { operation, cause } => {
                write!(f, "the connection was lost during {operation} ({cause})")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WinrmError {
    #[error("Basic authentication over plain HTTP is refused before connecting: it would send the password in clear, and Windows refuses it by default (service settings AllowUnencrypted=false, Basic=false). Use auth: ntlm (encrypted over HTTP), or https: true")]
    BasicOverHttp,
    #[error("Kerberos is available in the Linux, FreeBSD and Windows builds of this WinRM client only (through MIT Kerberos' GSSAPI or Windows' SSPI); use auth: ntlm (encrypted over HTTP, Windows' default listener), or basic with https: true")]
    KerberosUnsupported,
    #[error("NTLM and Basic need the account's password; only Kerberos can do without one (it then uses the ticket cache)")]
    NoPassword,
    #[error("{endpoint}: Kerberos logon of `{user}`: {cause}")]
    Kerberos {
        endpoint: String,
        user: String,
        cause: String,
    },
    #[error("{endpoint} refused the Kerberos logon of `{user}` (HTTP 401){why}: the account is not allowed to use WinRM there (it must be an administrator of the server), the server's key for HTTP/{host} does not match the realm's (check `setspn -L` for the server's account), this machine's clock and the server's or the domain controller's are more than 5 minutes apart (Kerberos' default tolerance), or Kerberos is off on the server (`winrm get winrm/config/service/auth`: Kerberos=false)")]
    KerberosRefused {
        endpoint: String,
        user: String,
        host: String,
        /// The server's own reason (its KRB-ERROR, as GSSAPI words it, e.g. ": Clock skew too
        /// great"), or empty.
        why: String,
    },
    #[error("{endpoint} refused a request of the Kerberos session of `{user}` (HTTP 401) after the logon had succeeded: the session's ticket or security context has expired or was dropped by the server; run again to log on afresh (with a ticket cache, renew it with `kinit {user}` first)")]
    KerberosExpired { endpoint: String, user: String },
    #[error("the WinRM endpoint `{endpoint}` is not usable: {why} (expected e.g. http://server:5985/wsman or https://server:5986/wsman)")]
    BadEndpoint { endpoint: String, why: String },
    #[error("the CA certificate file {}: {why}", path.display())]
    CaFile { path: PathBuf, why: String },
    #[error("nothing listens at {endpoint} (connection refused): WinRM is not listening there. On the server run `winrm quickconfig` (Windows Server 2003 SP2 / 2008: install Windows Management Framework 2.0, KB968930, first); the default ports are 5985 for HTTP and 5986 for HTTPS")]
    NotListening { endpoint: String },
    #[error("cannot connect to {endpoint}: {cause}")]
    Connect { endpoint: String, cause: String },
    #[error("the TLS handshake with {endpoint} failed: {cause}. The server's certificate must be valid for its name and issued by a trusted CA (give the CA with `ca`); Windows Server 2003 / 2008 speak only TLS 1.0, which this client does not: use NTLM over HTTP there")]
    Tls { endpoint: String, cause: String },
    #[error("{endpoint} refused the logon of `{user}` (HTTP 401): wrong user name or password. A local account is `user` or `COMPUTER\\user`, a domain account `DOMAIN\\user`")]
    Unauthorized { endpoint: String, user: String },
    #[error("{endpoint} refused the Basic logon of `{user}` (HTTP 401): wrong user name or password, or Basic authentication is off on the server (its default). Check with `winrm get winrm/config/service/auth`; allow it with `winrm set winrm/config/service/auth @{{Basic=\"true\"}}`, or use auth: ntlm")]
    BasicRefused { endpoint: String, user: String },
    #[error("{endpoint} does not offer NTLM logon (its 401 offers `{offered}`): check `winrm get winrm/config/service/auth` (Negotiate=true is Windows' default)")]
    NoNegotiate { endpoint: String, offered: String },
    #[error("{endpoint}: NTLM logon: {cause}")]
    Ntlm { endpoint: String, cause: String },
    #[error("{endpoint} refused the {operation} request (HTTP {status}){hint}")]
    Refused {
        endpoint: String,
        operation: &'static str,
        status: u16,
        hint: &'static str,
    },
    #[error("the WinRM service on {endpoint} answered {operation} with a fault: {} ({}{})", fault.reason, fault.subcode, fault.wsman_code.map(|c| format!(", error {c}")).unwrap_or_default())]
    Fault {
        endpoint: String,
        operation: &'static str,
        fault: Fault,
    },
    #[error("{endpoint}: {operation}: {cause}")]
    Protocol {
        endpoint: String,
        operation: &'static str,
        cause: String,
    },
    #[error("the connection to {endpoint} was lost during {operation} ({cause}); no command had been started")]
    Lost {
        endpoint: String,
        operation: &'static str,
        cause: String,
    },
    #[error("`{program}` MAY STILL BE RUNNING on {endpoint}: {why}. Observe the server's state again before retrying; the command was not retried")]
    MayStillBeRunning {
        program: String,
        endpoint: String,
        why: Interruption,
    },
    #[error("`{program}` on {endpoint} ended with exit code {exit_code}, but its output could not be taken here: {source}")]
    StdoutRefused {
        program: String,
        endpoint: String,
        exit_code: u32,
        source: std::io::Error,
    },
    /// The command ran to its end, but answers that may have held some of its output were lost
    /// with a dropped connection: what arrived is not all it printed.
    #[error("`{program}` on {endpoint} ended with exit code {exit_code}, but the connection dropped while its output was being received and {lost_answers} answer(s) that may have held some of it were lost (the server does not send an answer twice): its output is incomplete and was not used{}", refused.as_ref().map(|r| format!(" (what arrived, with the gap, was also refused here: {r})")).unwrap_or_default())]
    OutputLost {
        program: String,
        endpoint: String,
        exit_code: u32,
        lost_answers: u32,
        /// Why the caller's writer refused the output, when it did: a gap is the likely cause.
        refused: Option<String>,
    },
    #[error(transparent)]
    UnsafeArgument(#[from] UnsafeArgument),
    #[error("no secure random numbers for the NTLM logon: {0}")]
    Random(String),
}

impl WinrmError {
    /// Can the connection this error happened on not carry another request? Only a fault the
    /// server answered in order, a refused argument, output refused here or lost on an earlier
    /// connection (the command ran to its end) and a command timeout leave it usable; anything
    /// else (lost, unanswered, unreadable, a signature that did not verify, which leaves the RC4
    /// streams out of step) ends it.
    pub(super) fn ends_session(&self) -> bool {
        !matches!(
            self,
            WinrmError::Fault { .. }
                | WinrmError::UnsafeArgument(_)
                | WinrmError::StdoutRefused { .. }
                | WinrmError::OutputLost { .. }
                | WinrmError::MayStillBeRunning {
                    why: Interruption::TimedOut(_),
                    ..
                }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> WinrmError {
        WinrmError::Lost {
            endpoint: "e".into(),
            operation: "Create",
            cause: "reset".into(),
        }
    }

    /// A connection lost during Create (no command yet) must not be kept for the next command:
    /// only answered faults and a timeout leave the connection in step.
    #[test]
    fn only_an_answered_fault_or_timeout_leaves_the_connection_usable() {
        let may_run = |why| WinrmError::MayStillBeRunning {
            program: "p".into(),
            endpoint: "e".into(),
            why,
        };
        assert!(lost().ends_session());
        assert!(WinrmError::Protocol {
            endpoint: "e".into(),
            operation: "Receive",
            cause: "bad signature".into()
        }
        .ends_session());
        assert!(may_run(Interruption::Dropped {
            operation: "Receive",
            cause: "reset".into()
        })
        .ends_session());
        assert!(!may_run(Interruption::TimedOut(Duration::from_secs(1))).ends_session());
        let fault = Fault {
            code: "s:Sender".into(),
            subcode: "w:InvalidSelectors".into(),
            wsman_code: None,
            reason: "r".into(),
        };
        assert!(!WinrmError::Fault {
            endpoint: "e".into(),
            operation: "Command",
            fault
        }
        .ends_session());
    }
}
