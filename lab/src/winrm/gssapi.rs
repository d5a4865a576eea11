//! The lab listener's Kerberos acceptor through the platform's GSSAPI (MIT's
//! `libgssapi_krb5.so.2`, loaded at run time so the lab builds on a machine without Kerberos'
//! development files): accept a client's AP-REQ with the service key from a keytab, answer with
//! the AP-REP (mutual authentication), then wrap and unwrap WinRM messages with that context.
//! Independent of the executor's client side on purpose: the lab is checked by pywinrm, the client
//! by the lab. Only the handful of functions the acceptor needs, declared by hand (RFC 2744, RFC
//! 4121 IOV extensions, MIT's gss_acquire_cred_from).

use std::ffi::{c_int, c_void, CString};
use std::path::Path;
use std::sync::OnceLock;

type OM = u32;
type Ptr = *mut c_void;

#[repr(C)]
struct Buffer {
    length: usize,
    value: *mut c_void,
}

impl Buffer {
    fn empty() -> Buffer {
        Buffer {
            length: 0,
            value: std::ptr::null_mut(),
        }
    }

    fn of(bytes: &[u8]) -> Buffer {
        Buffer {
            length: bytes.len(),
            value: bytes.as_ptr() as *mut c_void,
        }
    }
}

#[repr(C)]
struct IovBuffer {
    kind: OM,
    buffer: Buffer,
}

#[repr(C)]
struct KeyValue {
    key: *const i8,
    value: *const i8,
}

#[repr(C)]
struct KeyValueSet {
    count: OM,
    elements: *const KeyValue,
}

const IOV_DATA: OM = 1;
const IOV_HEADER: OM = 2;
const IOV_PADDING: OM = 9;
const ACCEPT: c_int = 2;
const CONTINUE_NEEDED: OM = 1;

type AcquireFrom = unsafe extern "C" fn(
    *mut OM,
    Ptr,
    OM,
    Ptr,
    c_int,
    *const KeyValueSet,
    *mut Ptr,
    *mut Ptr,
    *mut OM,
) -> OM;
type Accept = unsafe extern "C" fn(
    *mut OM,
    *mut Ptr,
    Ptr,
    *mut Buffer,
    Ptr,
    *mut Ptr,
    *mut Ptr,
    *mut Buffer,
    *mut OM,
    *mut OM,
    *mut Ptr,
) -> OM;
type WrapIov =
    unsafe extern "C" fn(*mut OM, Ptr, c_int, OM, *mut c_int, *mut IovBuffer, c_int) -> OM;
type WrapIovLength =
    unsafe extern "C" fn(*mut OM, Ptr, c_int, OM, *mut c_int, *mut IovBuffer, c_int) -> OM;
type UnwrapIov =
    unsafe extern "C" fn(*mut OM, Ptr, *mut c_int, *mut OM, *mut IovBuffer, c_int) -> OM;
type DisplayName = unsafe extern "C" fn(*mut OM, Ptr, *mut Buffer, *mut Ptr) -> OM;
type ReleaseBuffer = unsafe extern "C" fn(*mut OM, *mut Buffer) -> OM;
type ReleasePtr = unsafe extern "C" fn(*mut OM, *mut Ptr) -> OM;
type DeleteContext = unsafe extern "C" fn(*mut OM, *mut Ptr, *mut Buffer) -> OM;
type DisplayStatus = unsafe extern "C" fn(*mut OM, OM, c_int, Ptr, *mut OM, *mut Buffer) -> OM;

/// The functions, from the library that stays loaded for the process' life.
struct Gss {
    _lib: libloading::Library,
    acquire_from: AcquireFrom,
    accept: Accept,
    wrap_iov: WrapIov,
    wrap_iov_length: WrapIovLength,
    unwrap_iov: UnwrapIov,
    display_name: DisplayName,
    release_buffer: ReleaseBuffer,
    release_name: ReleasePtr,
    release_cred: ReleasePtr,
    delete_context: DeleteContext,
    display_status: DisplayStatus,
}

/// A Kerberos failure, with GSSAPI's own words.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Kerberos: {0}")]
pub struct GssError(pub String);

fn gss() -> Result<&'static Gss, GssError> {
    static GSS: OnceLock<Result<Gss, String>> = OnceLock::new();
    GSS.get_or_init(load)
        .as_ref()
        .map_err(|e| GssError(e.clone()))
}

fn load() -> Result<Gss, String> {
    // SAFETY: loading MIT's GSSAPI library runs its initialisers, which have no preconditions.
    let lib = unsafe { libloading::Library::new("libgssapi_krb5.so.2") }.map_err(|e| {
        format!("the lab's Kerberos listener needs MIT's GSSAPI library libgssapi_krb5.so.2 (Debian: apt-get install libgssapi-krb5-2): {e}")
    })?;
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the symbol has the C signature declared for its field (RFC 2744 / MIT).
            *unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("libgssapi_krb5.so.2 has no {}: {e}", $name))?
        };
    }
    Ok(Gss {
        acquire_from: sym!("gss_acquire_cred_from"),
        accept: sym!("gss_accept_sec_context"),
        wrap_iov: sym!("gss_wrap_iov"),
        wrap_iov_length: sym!("gss_wrap_iov_length"),
        unwrap_iov: sym!("gss_unwrap_iov"),
        display_name: sym!("gss_display_name"),
        release_buffer: sym!("gss_release_buffer"),
        release_name: sym!("gss_release_name"),
        release_cred: sym!("gss_release_cred"),
        delete_context: sym!("gss_delete_sec_context"),
        display_status: sym!("gss_display_status"),
        _lib: lib,
    })
}

impl Gss {
    /// GSSAPI's text for a failed call.
    fn error(&self, what: &str, major: OM, minor: OM) -> GssError {
        let mut text = Vec::new();
        for (code, kind) in [(major, 1), (minor, 2)] {
            if code == 0 {
                continue;
            }
            let mut ctx: OM = 0;
            loop {
                let (mut m, mut buf) = (0, Buffer::empty());
                // SAFETY: out-pointers are valid; the buffer is released below.
                let r = unsafe {
                    (self.display_status)(
                        &mut m,
                        code,
                        kind,
                        std::ptr::null_mut(),
                        &mut ctx,
                        &mut buf,
                    )
                };
                if r != 0 {
                    break;
                }
                text.push(self.take(&mut buf));
                if ctx == 0 {
                    break;
                }
            }
        }
        GssError(format!("{what}: {}", text.join("; ")))
    }

    /// Copies and releases a buffer GSSAPI allocated.
    fn take(&self, buf: &mut Buffer) -> String {
        let bytes = self.take_bytes(buf);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn take_bytes(&self, buf: &mut Buffer) -> Vec<u8> {
        let out = if buf.value.is_null() {
            Vec::new()
        } else {
            // SAFETY: GSSAPI filled `length` bytes at `value`.
            unsafe { std::slice::from_raw_parts(buf.value as *const u8, buf.length) }.to_vec()
        };
        let mut m = 0;
        // SAFETY: the buffer came from GSSAPI.
        unsafe { (self.release_buffer)(&mut m, buf) };
        out
    }
}

/// An accepting context on one connection.
pub struct Acceptor {
    ctx: Ptr,
    cred: Ptr,
}

// SAFETY: the context is used by one connection's task at a time (`&mut self`); MIT's contexts
// may move between threads.
unsafe impl Send for Acceptor {}

impl Drop for Acceptor {
    fn drop(&mut self) {
        if let Ok(g) = gss() {
            let mut m = 0;
            // SAFETY: handles are ours (or null, which GSSAPI ignores).
            unsafe {
                if !self.ctx.is_null() {
                    (g.delete_context)(&mut m, &mut self.ctx, std::ptr::null_mut());
                }
                if !self.cred.is_null() {
                    (g.release_cred)(&mut m, &mut self.cred);
                }
            }
        }
    }
}

/// What a complete logon gives: the client's principal and the AP-REP for the client.
pub struct Accepted {
    pub client: String,
    pub reply: Vec<u8>,
}

impl Acceptor {
    /// Accepts the client's first token with the keys in `keytab`. The exchange takes one token
    /// (an AP-REQ); a token that needs more is refused.
    /// A refusal may carry GSSAPI's KRB-ERROR token for the client.
    pub fn accept(
        keytab: &Path,
        token: &[u8],
    ) -> Result<(Acceptor, Accepted), super::kerberos::Refused> {
        let g = gss()?;
        let kt = CString::new(keytab.to_string_lossy().as_bytes())
            .map_err(|_| GssError("a keytab path with a NUL".into()))?;
        let key = c"keytab";
        let elements = [KeyValue {
            key: key.as_ptr(),
            value: kt.as_ptr(),
        }];
        let store = KeyValueSet {
            count: 1,
            elements: elements.as_ptr(),
        };
        let mut me = Acceptor {
            ctx: std::ptr::null_mut(),
            cred: std::ptr::null_mut(),
        };
        let (mut minor, null) = (0, std::ptr::null_mut());
        // SAFETY: out-pointers are valid; the store outlives the call.
        let major = unsafe {
            (g.acquire_from)(
                &mut minor,
                null,
                0,
                null,
                ACCEPT,
                &store,
                &mut me.cred,
                null as _,
                null as _,
            )
        };
        if major != 0 {
            return Err(g.error("the service key", major, minor).into());
        }
        let mut input = Buffer::of(token);
        let (mut output, mut name) = (Buffer::empty(), std::ptr::null_mut());
        // SAFETY: the input borrows `token` for the call; outputs are released below.
        let major = unsafe {
            (g.accept)(
                &mut minor,
                &mut me.ctx,
                me.cred,
                &mut input,
                null,
                &mut name,
                null as _,
                &mut output,
                null as _,
                null as _,
                null as _,
            )
        };
        let reply = g.take_bytes(&mut output);
        if major == CONTINUE_NEEDED {
            return Err(GssError("a logon that needs more than one token".into()).into());
        }
        if major != 0 {
            let error = g.error("accepting the logon", major, minor);
            return Err(match reply.is_empty() {
                true => error.into(),
                false => super::kerberos::Refused::WithError(error, reply),
            });
        }
        let mut text = Buffer::empty();
        // SAFETY: `name` came from accept; both are released here.
        let client = unsafe {
            let r = (g.display_name)(&mut minor, name, &mut text, null as _);
            let s = if r == 0 {
                g.take(&mut text)
            } else {
                String::new()
            };
            (g.release_name)(&mut minor, &mut name);
            s
        };
        Ok((me, Accepted { client, reply }))
    }

    /// Encrypts `plain` as the WinRM encrypted body carries it: (header, encrypted data with its
    /// padding), by gss_wrap_iov with [HEADER, DATA, PADDING] ([MS-WSMV] 2.2.9.1.2); with
    /// `encrypt` false, integrity only (the lab's `kerberos-sign-only` fault).
    pub fn wrap(&mut self, plain: &[u8], encrypt: bool) -> Result<(Vec<u8>, Vec<u8>), GssError> {
        let conf_req = c_int::from(encrypt);
        let g = gss()?;
        let mut data = plain.to_vec();
        let mut iov = [
            IovBuffer {
                kind: IOV_HEADER,
                buffer: Buffer::empty(),
            },
            IovBuffer {
                kind: IOV_DATA,
                buffer: Buffer::of(&data),
            },
            IovBuffer {
                kind: IOV_PADDING,
                buffer: Buffer::empty(),
            },
        ];
        let (mut minor, mut conf) = (0, 0);
        // SAFETY: the IOV array is valid for the call; only lengths are written.
        let major = unsafe {
            (g.wrap_iov_length)(
                &mut minor,
                self.ctx,
                conf_req,
                0,
                &mut conf,
                iov.as_mut_ptr(),
                3,
            )
        };
        if major != 0 {
            return Err(g.error("sizing an encrypted message", major, minor));
        }
        let mut header = vec![0u8; iov[0].buffer.length];
        let mut padding = vec![0u8; iov[2].buffer.length];
        iov[0].buffer = Buffer::of(&header);
        iov[1].buffer = Buffer::of(&data);
        iov[2].buffer = Buffer::of(&padding);
        iov[0].buffer.value = header.as_mut_ptr().cast();
        iov[1].buffer.value = data.as_mut_ptr().cast();
        iov[2].buffer.value = padding.as_mut_ptr().cast();
        // SAFETY: every buffer points at memory we own, of the length given; GSSAPI writes in place.
        let major = unsafe {
            (g.wrap_iov)(
                &mut minor,
                self.ctx,
                conf_req,
                0,
                &mut conf,
                iov.as_mut_ptr(),
                3,
            )
        };
        if major != 0 {
            return Err(g.error("encrypting a message", major, minor));
        }
        if encrypt && conf == 0 {
            return Err(GssError("the context did not encrypt the message".into()));
        }
        padding.truncate(iov[2].buffer.length);
        data.extend_from_slice(&padding);
        Ok((header, data))
    }

    /// Decrypts a message's (header, data) in place by gss_unwrap_iov with [HEADER, DATA, DATA],
    /// the empty last buffer as pyspnego's unwrap_winrm gives MIT for AES and RC4 alike.
    pub fn unwrap(&mut self, header: &[u8], data: &[u8]) -> Result<Vec<u8>, GssError> {
        let g = gss()?;
        let mut header = header.to_vec();
        let mut data = data.to_vec();
        let mut iov = [
            IovBuffer {
                kind: IOV_HEADER,
                buffer: Buffer::of(&header),
            },
            IovBuffer {
                kind: IOV_DATA,
                buffer: Buffer::of(&data),
            },
            IovBuffer {
                kind: IOV_DATA,
                buffer: Buffer::empty(),
            },
        ];
        iov[0].buffer.value = header.as_mut_ptr().cast();
        iov[1].buffer.value = data.as_mut_ptr().cast();
        let (mut minor, mut conf, mut qop) = (0, 0, 0);
        // SAFETY: the buffers are ours, of the lengths given; GSSAPI decrypts in place.
        let major = unsafe {
            (g.unwrap_iov)(
                &mut minor,
                self.ctx,
                &mut conf,
                &mut qop,
                iov.as_mut_ptr(),
                3,
            )
        };
        if major != 0 {
            return Err(g.error("decrypting a message", major, minor));
        }
        if conf == 0 {
            return Err(GssError(
                "a message that was signed but not encrypted".into(),
            ));
        }
        data.truncate(iov[1].buffer.length);
        Ok(data)
    }
}
