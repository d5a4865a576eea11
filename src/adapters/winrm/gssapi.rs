//! The platform's GSSAPI (MIT Kerberos' `libgssapi_krb5.so.2`), loaded at run time so that
//! `upgrade` builds on a machine without Kerberos' development files, with a hand-written table of
//! just what the WinRM client's Kerberos logon needs (RFC 2744; the IOV calls of RFC 4121's
//! implementations; MIT's gss_acquire_cred_with_password). Initiator side only: credentials from
//! a password or the user's ticket cache, one security context, wrap and unwrap. Unix only.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use super::kerberos::{Credentials, Mechanism};

type Om = u32;
type Handle = *mut c_void;

/// The shared library, and how to install it on this system.
const LIBRARY: &str = "libgssapi_krb5.so.2";
#[cfg(target_os = "freebsd")]
const INSTALL: &str = "FreeBSD: pkg install krb5";
#[cfg(not(target_os = "freebsd"))]
const INSTALL: &str = "Debian/Ubuntu: apt-get install libgssapi-krb5-2; RHEL: krb5-libs";

#[repr(C)]
struct Buf {
    length: usize,
    value: *mut c_void,
}

const NO_BUF: Buf = Buf {
    length: 0,
    value: std::ptr::null_mut(),
};

fn borrow(bytes: &mut [u8]) -> Buf {
    Buf {
        length: bytes.len(),
        value: bytes.as_mut_ptr().cast(),
    }
}

#[repr(C)]
struct Oid {
    length: Om,
    elements: *const c_void,
}

#[repr(C)]
struct Iov {
    kind: Om,
    buffer: Buf,
}

/// GSS_C_NT_HOSTBASED_SERVICE, 1.2.840.113554.1.2.1.4 (`service@host`).
const NT_HOSTBASED: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x01\x04";
/// GSS_KRB5_NT_PRINCIPAL_NAME, 1.2.840.113554.1.2.2.1 (`user@REALM`).
const NT_KRB5_PRINCIPAL: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x01";
/// The Kerberos V5 mechanism, 1.2.840.113554.1.2.2.
const MECH_KRB5: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02";

const IOV_DATA: Om = 1;
const IOV_HEADER: Om = 2;
const IOV_PADDING: Om = 9;
const INITIATE: c_int = 1;
const CONTINUE_NEEDED: Om = 1;
const MUTUAL: Om = 2;
const REPLAY: Om = 4;
const SEQUENCE: Om = 8;
const CONF: Om = 16;
const INTEG: Om = 32;
/// Asked for: mutual authentication, replay detection, sequencing, confidentiality, integrity.
const FLAGS: Om = MUTUAL | REPLAY | SEQUENCE | CONF | INTEG;
/// What a complete context must give, else it is not used.
const REQUIRED: Om = MUTUAL | CONF | INTEG;

type ImportName = unsafe extern "C" fn(*mut Om, *mut Buf, *const Oid, *mut Handle) -> Om;
type AcquireCred = unsafe extern "C" fn(
    *mut Om,
    Handle,
    Om,
    Handle,
    c_int,
    *mut Handle,
    *mut Handle,
    *mut Om,
) -> Om;
type AcquireWithPassword = unsafe extern "C" fn(
    *mut Om,
    Handle,
    *mut Buf,
    Om,
    Handle,
    c_int,
    *mut Handle,
    *mut Handle,
    *mut Om,
) -> Om;
type InitSecContext = unsafe extern "C" fn(
    *mut Om,
    Handle,
    *mut Handle,
    Handle,
    *const Oid,
    Om,
    Om,
    Handle,
    *mut Buf,
    *mut Handle,
    *mut Buf,
    *mut Om,
    *mut Om,
) -> Om;
type WrapIov = unsafe extern "C" fn(*mut Om, Handle, c_int, Om, *mut c_int, *mut Iov, c_int) -> Om;
type UnwrapIov = unsafe extern "C" fn(*mut Om, Handle, *mut c_int, *mut Om, *mut Iov, c_int) -> Om;
type Release = unsafe extern "C" fn(*mut Om, *mut Handle) -> Om;
type ReleaseBuffer = unsafe extern "C" fn(*mut Om, *mut Buf) -> Om;
type DeleteContext = unsafe extern "C" fn(*mut Om, *mut Handle, *mut Buf) -> Om;
type DisplayStatus = unsafe extern "C" fn(*mut Om, Om, c_int, Handle, *mut Om, *mut Buf) -> Om;

struct Table {
    import_name: ImportName,
    acquire_cred: AcquireCred,
    acquire_with_password: AcquireWithPassword,
    init_sec_context: InitSecContext,
    wrap_iov_length: WrapIov,
    wrap_iov: WrapIov,
    unwrap_iov: UnwrapIov,
    release_name: Release,
    release_cred: Release,
    release_buffer: ReleaseBuffer,
    delete_context: DeleteContext,
    display_status: DisplayStatus,
    /// Keeps the functions above loaded.
    _library: libloading::Library,
}

/// GSSAPI could not be used, or a call failed; the text is GSSAPI's own (never a password).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GssError {
    #[error("Kerberos needs the system's GSSAPI library {LIBRARY} ({INSTALL}), which could not be loaded: {0}")]
    Missing(String),
    #[error("{0}")]
    Call(String),
}

fn table() -> Result<&'static Table, GssError> {
    static TABLE: OnceLock<Result<Table, GssError>> = OnceLock::new();
    TABLE.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Table, GssError> {
    // SAFETY: loading the system's GSSAPI runs its library initialisers, which need nothing.
    let library = unsafe { libloading::Library::new(LIBRARY) }
        .map_err(|e| GssError::Missing(e.to_string()))?;
    fn get<T: Copy>(library: &libloading::Library, name: &str) -> Result<T, GssError> {
        let symbol = format!("{name}\0");
        // SAFETY: each name is looked up with the C signature RFC 2744 / MIT's gssapi.h give it.
        unsafe { library.get::<T>(symbol.as_bytes()) }
            .map(|s| *s)
            .map_err(|e| GssError::Missing(format!("{LIBRARY} lacks {name}: {e}")))
    }
    Ok(Table {
        import_name: get(&library, "gss_import_name")?,
        acquire_cred: get(&library, "gss_acquire_cred")?,
        acquire_with_password: get(&library, "gss_acquire_cred_with_password")?,
        init_sec_context: get(&library, "gss_init_sec_context")?,
        wrap_iov_length: get(&library, "gss_wrap_iov_length")?,
        wrap_iov: get(&library, "gss_wrap_iov")?,
        unwrap_iov: get(&library, "gss_unwrap_iov")?,
        release_name: get(&library, "gss_release_name")?,
        release_cred: get(&library, "gss_release_cred")?,
        release_buffer: get(&library, "gss_release_buffer")?,
        delete_context: get(&library, "gss_delete_sec_context")?,
        display_status: get(&library, "gss_display_status")?,
        _library: library,
    })
}

/// The GSSAPI service name of a WinRM listener: `HTTP@host` (service principal `HTTP/host`).
fn target(host: &str) -> String {
    format!("HTTP@{host}")
}

fn oid(bytes: &'static [u8]) -> Oid {
    Oid {
        // Invariant: the OIDs above are ten bytes or fewer.
        length: bytes.len() as Om,
        elements: bytes.as_ptr().cast(),
    }
}

impl Table {
    /// `what` failed: GSSAPI's messages for the major and the mechanism's minor status.
    fn failed(&self, what: &str, major: Om, minor: Om) -> GssError {
        let mut words = Vec::new();
        for (code, kind) in [(major, 1), (minor, 2)] {
            let mut more: Om = 0;
            if code == 0 {
                continue;
            }
            loop {
                let (mut m, mut text) = (0, NO_BUF);
                let null = std::ptr::null_mut();
                // SAFETY: valid out-pointers; the text is released by `copy`.
                let r = unsafe {
                    (self.display_status)(&mut m, code, kind, null, &mut more, &mut text)
                };
                if r != 0 {
                    break;
                }
                words.push(String::from_utf8_lossy(&self.copy(&mut text)).into_owned());
                if more == 0 {
                    break;
                }
            }
        }
        GssError::Call(format!("{what}: {}", words.join(": ")))
    }

    /// The bytes of a buffer GSSAPI allocated, which is then released.
    fn copy(&self, buf: &mut Buf) -> Vec<u8> {
        let bytes = if buf.value.is_null() || buf.length == 0 {
            Vec::new()
        } else {
            // SAFETY: GSSAPI wrote `length` bytes at `value`.
            unsafe { std::slice::from_raw_parts(buf.value as *const u8, buf.length).to_vec() }
        };
        let mut m = 0;
        // SAFETY: the buffer is GSSAPI's own.
        unsafe { (self.release_buffer)(&mut m, buf) };
        bytes
    }

    fn import(&'static self, text: &str, kind: &'static [u8]) -> Result<Name, GssError> {
        let mut bytes = text.as_bytes().to_vec();
        let (mut minor, mut handle) = (0, std::ptr::null_mut());
        // SAFETY: the buffer and OID outlive the call; the name is released by `Name`'s drop.
        let major = unsafe {
            (self.import_name)(&mut minor, &mut borrow(&mut bytes), &oid(kind), &mut handle)
        };
        if major != 0 {
            return Err(self.failed(&format!("the name `{text}`"), major, minor));
        }
        Ok(Name {
            table: self,
            handle,
        })
    }
}

struct Name {
    table: &'static Table,
    handle: Handle,
}

impl Drop for Name {
    fn drop(&mut self) {
        let mut m = 0;
        // SAFETY: the handle came from gss_import_name.
        unsafe { (self.table.release_name)(&mut m, &mut self.handle) };
    }
}

/// A Kerberos security context with one server, being set up or complete.
pub struct Context {
    table: &'static Table,
    handle: Handle,
    cred: Handle,
    target: Name,
}

// SAFETY: a context is used by one task at a time (through `&mut self`, under the client's
// session lock); MIT's handles are not tied to the thread that made them.
unsafe impl Send for Context {}
unsafe impl Send for Name {}

impl Drop for Context {
    fn drop(&mut self) {
        let mut m = 0;
        // SAFETY: handles are this context's own, or null (which GSSAPI ignores).
        unsafe {
            if !self.handle.is_null() {
                (self.table.delete_context)(&mut m, &mut self.handle, std::ptr::null_mut());
            }
        }
        self.release_credentials();
    }
}

impl Context {
    /// Releases the credentials (and so the password MIT keeps in them); idempotent.
    fn release_credentials(&mut self) {
        if !self.cred.is_null() {
            let mut m = 0;
            // SAFETY: the handle is ours; GSSAPI nulls it.
            unsafe { (self.table.release_cred)(&mut m, &mut self.cred) };
            self.cred = std::ptr::null_mut();
        }
    }
}

impl Mechanism for Context {
    type Error = GssError;

    /// Credentials for `credentials` and a context for the service `HTTP@host` (the host-based
    /// service name of the principal `HTTP/host`); nothing is sent yet.
    fn new(credentials: Credentials<'_>, host: &str) -> Result<Context, GssError> {
        let t = table()?;
        let target = t.import(&target(host), NT_HOSTBASED)?;
        let (mut minor, mut cred, null) = (0, std::ptr::null_mut(), std::ptr::null_mut());
        match credentials {
            Credentials::Password(user, password) => {
                let name = t.import(user, NT_KRB5_PRINCIPAL)?;
                let mut secret = zeroize::Zeroizing::new(password.as_bytes().to_vec());
                // SAFETY: the password buffer lives for the call; the cred is ours to release.
                let major = unsafe {
                    (t.acquire_with_password)(
                        &mut minor,
                        name.handle,
                        &mut borrow(&mut secret),
                        0,
                        null,
                        INITIATE,
                        &mut cred,
                        null.cast(),
                        null.cast(),
                    )
                };
                if major != 0 {
                    let what = format!("no ticket for {user} from the realm's KDC (a wrong password, or an account the realm does not know)");
                    return Err(t.failed(&what, major, minor));
                }
            }
            Credentials::Cache(user) => {
                let name = t.import(user, NT_KRB5_PRINCIPAL)?;
                // SAFETY: as above; the ticket cache is the default one (KRB5CCNAME).
                let major = unsafe {
                    (t.acquire_cred)(
                        &mut minor,
                        name.handle,
                        0,
                        null,
                        INITIATE,
                        &mut cred,
                        null.cast(),
                        null.cast(),
                    )
                };
                if major != 0 {
                    return Err(t.failed(
                        &format!("no usable ticket for {user} in the ticket cache (run `kinit {user}` first)"),
                        major,
                        minor,
                    ));
                }
            }
        }
        Ok(Context {
            table: t,
            handle: std::ptr::null_mut(),
            cred,
            target,
        })
    }

    /// One step of the logon: the server's last token in (none at first), the next token out.
    /// `Ok((token, true))` once the context is complete (mutual authentication done).
    fn step(&mut self, input: Option<&[u8]>) -> Result<(Vec<u8>, bool), GssError> {
        let t = self.table;
        let mut input = input.map(<[u8]>::to_vec);
        let mut input_buf = input.as_deref_mut().map(borrow);
        let input_ptr = input_buf
            .as_mut()
            .map_or(std::ptr::null_mut(), |b| b as *mut Buf);
        let (mut minor, mut output, null) = (0, NO_BUF, std::ptr::null_mut());
        let mut granted: Om = 0;
        // SAFETY: every pointer is valid for the call; the output is released by `copy`.
        let major = unsafe {
            (t.init_sec_context)(
                &mut minor,
                self.cred,
                &mut self.handle,
                self.target.handle,
                &oid(MECH_KRB5),
                FLAGS,
                0,
                null,
                input_ptr,
                null.cast(),
                &mut output,
                &mut granted,
                null.cast(),
            )
        };
        let token = t.copy(&mut output);
        match major {
            0 => {
                // MIT keeps a copy of the password in a credential from one: not needed once
                // the context is complete, so it goes now rather than with the session.
                self.release_credentials();
                if granted & REQUIRED != REQUIRED {
                    return Err(GssError::Call(format!(
                        "the context lacks mutual authentication, confidentiality or integrity (flags {granted:#x})"
                    )));
                }
                Ok((token, true))
            }
            CONTINUE_NEEDED => Ok((token, false)),
            _ => Err(t.failed("the logon", major, minor)),
        }
    }

    /// Encrypts `plain` for WinRM ([MS-WSMV] 2.2.9.1.2): gss_wrap_iov with [HEADER, DATA,
    /// PADDING]; returns (header, encrypted data followed by its padding).
    fn wrap(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), GssError> {
        let t = self.table;
        let mut data = plain.to_vec();
        let mut iov = [
            Iov {
                kind: IOV_HEADER,
                buffer: NO_BUF,
            },
            Iov {
                kind: IOV_DATA,
                buffer: borrow(&mut data),
            },
            Iov {
                kind: IOV_PADDING,
                buffer: NO_BUF,
            },
        ];
        let (mut minor, mut conf) = (0, 0);
        // SAFETY: the IOV array is valid; only the lengths are written.
        let major = unsafe {
            (t.wrap_iov_length)(
                &mut minor,
                self.handle,
                1,
                0,
                &mut conf,
                iov.as_mut_ptr(),
                3,
            )
        };
        if major != 0 {
            return Err(t.failed("sizing a message", major, minor));
        }
        let mut header = vec![0u8; iov[0].buffer.length];
        let mut padding = vec![0u8; iov[2].buffer.length];
        iov[0].buffer = borrow(&mut header);
        iov[1].buffer = borrow(&mut data);
        iov[2].buffer = borrow(&mut padding);
        // SAFETY: each buffer is ours with the length GSSAPI asked for; it encrypts in place.
        let major = unsafe {
            (t.wrap_iov)(
                &mut minor,
                self.handle,
                1,
                0,
                &mut conf,
                iov.as_mut_ptr(),
                3,
            )
        };
        if major != 0 {
            return Err(t.failed("encrypting a message", major, minor));
        }
        if conf == 0 {
            return Err(GssError::Call("the context cannot encrypt".into()));
        }
        let used = iov[2].buffer.length;
        data.extend_from_slice(&padding[..used]);
        Ok((header, data))
    }

    /// Decrypts and checks the server's (header, data) with gss_unwrap_iov: [HEADER, DATA, DATA]
    /// with an empty last buffer, which is how MIT takes AES and RC4 alike (pyspnego's
    /// `unwrap_winrm`). A message that was not encrypted is refused.
    fn unwrap(&mut self, header: &[u8], data: &[u8]) -> Result<Vec<u8>, GssError> {
        let t = self.table;
        let mut header = header.to_vec();
        let mut data = data.to_vec();
        let mut iov = [
            Iov {
                kind: IOV_HEADER,
                buffer: borrow(&mut header),
            },
            Iov {
                kind: IOV_DATA,
                buffer: borrow(&mut data),
            },
            Iov {
                kind: IOV_DATA,
                buffer: NO_BUF,
            },
        ];
        let (mut minor, mut conf, mut qop) = (0, 0, 0);
        // SAFETY: the buffers are ours, of the lengths given; GSSAPI decrypts in place.
        let major = unsafe {
            (t.unwrap_iov)(
                &mut minor,
                self.handle,
                &mut conf,
                &mut qop,
                iov.as_mut_ptr(),
                3,
            )
        };
        if major != 0 {
            return Err(t.failed("the server's message does not verify", major, minor));
        }
        if conf == 0 {
            return Err(GssError::Call(
                "the server's message was not encrypted".into(),
            ));
        }
        let len = iov[1].buffer.length.min(data.len());
        data.truncate(len);
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_http_at_the_endpoints_host() {
        assert_eq!(
            target("miis01.corp.example.com"),
            "HTTP@miis01.corp.example.com"
        );
    }
}
