//! Windows' SSPI Kerberos package (secur32.dll), the Windows side of the WinRM client's Kerberos
//! logon (`kerberos`): credentials from a password or the logged-on user's logon, one initiator
//! context for `HTTP/host` with mutual authentication, confidentiality and integrity, and message
//! encryption with EncryptMessage / DecryptMessage over [TOKEN, DATA] buffers, as pyspnego's SSPI
//! backend (pywinrm on Windows) does. Windows only; no password or token reaches an error text.

use windows_sys::core::HRESULT;
use windows_sys::Win32::Foundation::{SEC_E_OK, SEC_I_CONTINUE_NEEDED};
use windows_sys::Win32::Security::Authentication::Identity::{
    AcquireCredentialsHandleW, DecryptMessage, DeleteSecurityContext, EncryptMessage,
    FreeContextBuffer, FreeCredentialsHandle, InitializeSecurityContextW, QueryContextAttributesW,
    QuerySecurityPackageInfoW, SecBuffer, SecBufferDesc, SecPkgContext_Sizes, SecPkgInfoW,
    ISC_REQ_CONFIDENTIALITY, ISC_REQ_INTEGRITY, ISC_REQ_MUTUAL_AUTH, ISC_REQ_REPLAY_DETECT,
    ISC_REQ_SEQUENCE_DETECT, ISC_RET_CONFIDENTIALITY, ISC_RET_INTEGRITY, ISC_RET_MUTUAL_AUTH,
    SECBUFFER_DATA, SECBUFFER_TOKEN, SECBUFFER_VERSION, SECPKG_ATTR_SIZES, SECPKG_CRED_OUTBOUND,
    SECQOP_WRAP_NO_ENCRYPT, SECURITY_NATIVE_DREP,
};
use windows_sys::Win32::Security::Credentials::SecHandle;
use windows_sys::Win32::System::Diagnostics::Debug::{
    FormatMessageW, FORMAT_MESSAGE_FROM_SYSTEM, FORMAT_MESSAGE_IGNORE_INSERTS,
};
use windows_sys::Win32::System::Rpc::{SEC_WINNT_AUTH_IDENTITY_UNICODE, SEC_WINNT_AUTH_IDENTITY_W};
use zeroize::Zeroizing;

use super::kerberos::{Credentials, Mechanism};

/// Asked for: mutual authentication, replay and sequence detection, confidentiality, integrity.
/// The output token goes to a buffer of ours of the package's cbMaxToken (Wine's Kerberos
/// package does not take ISC_REQ_ALLOCATE_MEMORY).
const FLAGS: u32 = ISC_REQ_MUTUAL_AUTH
    | ISC_REQ_REPLAY_DETECT
    | ISC_REQ_SEQUENCE_DETECT
    | ISC_REQ_CONFIDENTIALITY
    | ISC_REQ_INTEGRITY;
/// What a complete context must give, else it is not used.
const REQUIRED: u32 = ISC_RET_MUTUAL_AUTH | ISC_RET_CONFIDENTIALITY | ISC_RET_INTEGRITY;

/// An SSPI call failed: what was being done, and Windows' words for the status.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SspiError(String);

/// `what` failed with `status`: Windows' message for it and the code, as `klist`/`setspn` users
/// look it up.
fn failed(what: &str, status: HRESULT) -> SspiError {
    let mut text = [0u16; 512];
    // SAFETY: the buffer is ours, of the length given; no inserts are read.
    let n = unsafe {
        FormatMessageW(
            FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
            std::ptr::null(),
            status as u32,
            0,
            text.as_mut_ptr(),
            text.len() as u32,
            std::ptr::null(),
        )
    };
    let words = String::from_utf16_lossy(&text[..(n as usize).min(text.len())]);
    let words = words.trim();
    let code = status as u32;
    if words.is_empty() {
        SspiError(format!("{what}: SSPI status {code:#010x}"))
    } else {
        SspiError(format!("{what}: {words} ({code:#010x})"))
    }
}

/// UTF-16 with a terminating NUL, for SSPI's wide strings.
fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(Some(0)).collect()
}

/// A length SSPI counts in 32 bits; anything this client sends is far below 4 GiB.
fn len32(len: usize) -> Result<u32, SspiError> {
    u32::try_from(len)
        .map_err(|_| SspiError(format!("a buffer of {len} bytes is too long for SSPI")))
}

/// `user@REALM` as SSPI's user and domain (`user`, `REALM`), the realm being the domain's DNS
/// name; a name without a realm is the user alone. (Wine's Kerberos package refuses the whole
/// principal as the user with no domain: README, "Kerberos from a Windows admin host".)
fn split_principal(principal: &str) -> (&str, &str) {
    principal.rsplit_once('@').unwrap_or((principal, ""))
}

/// A Kerberos security context with one server, being set up or complete.
pub struct Context {
    cred: Option<SecHandle>,
    handle: Option<SecHandle>,
    /// `HTTP/host`, NUL-terminated.
    target: Vec<u16>,
    /// The longest logon token the package makes.
    max_token: usize,
    /// The context's sizes (cbSecurityTrailer: EncryptMessage's TOKEN), once complete.
    sizes: SecPkgContext_Sizes,
}

// SAFETY: a context is used by one task at a time (through `&mut self`, under the client's
// session lock); SSPI handles are not tied to the thread that made them.
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            // SAFETY: the handle came from InitializeSecurityContextW.
            unsafe { DeleteSecurityContext(&h) };
        }
        self.release_credentials();
    }
}

impl Context {
    /// Releases the credentials (and so what SSPI keeps of the password); idempotent.
    fn release_credentials(&mut self) {
        if let Some(c) = self.cred.take() {
            // SAFETY: the handle came from AcquireCredentialsHandleW.
            unsafe { FreeCredentialsHandle(&c) };
        }
    }

    /// Outbound Kerberos credentials: from the password, or the logged-on user's logon.
    fn outbound(credentials: &Credentials<'_>) -> Result<SecHandle, SspiError> {
        let (user, password) = match credentials {
            Credentials::Password(user, password) => (*user, Some(*password)),
            Credentials::Cache(user) => (*user, None),
        };
        let (name, realm) = split_principal(user);
        let mut name: Vec<u16> = name.encode_utf16().collect();
        let mut realm: Vec<u16> = realm.encode_utf16().collect();
        let mut secret: Zeroizing<Vec<u16>> =
            Zeroizing::new(password.unwrap_or_default().encode_utf16().collect());
        let identity = SEC_WINNT_AUTH_IDENTITY_W {
            User: name.as_mut_ptr(),
            UserLength: len32(name.len())?,
            Domain: realm.as_mut_ptr(),
            DomainLength: len32(realm.len())?,
            Password: secret.as_mut_ptr(),
            PasswordLength: len32(secret.len())?,
            Flags: SEC_WINNT_AUTH_IDENTITY_UNICODE,
        };
        // No identity without a password: the logged-on user's own logon.
        let auth_data = match password {
            Some(_) => (&identity as *const SEC_WINNT_AUTH_IDENTITY_W).cast(),
            None => std::ptr::null(),
        };
        let package = wide("Kerberos");
        let (mut cred, mut expiry) = (SecHandle::default(), 0i64);
        // SAFETY: every pointer is valid for the call; SSPI copies the identity, and the
        // password's buffer is zeroed when `secret` drops at the end of this function.
        let status = unsafe {
            AcquireCredentialsHandleW(
                std::ptr::null(),
                package.as_ptr(),
                SECPKG_CRED_OUTBOUND,
                std::ptr::null(),
                auth_data,
                None,
                std::ptr::null(),
                &mut cred,
                &mut expiry,
            )
        };
        if status != SEC_E_OK {
            let what = match password {
                Some(_) => format!("no Kerberos credentials for {user} from its password"),
                None => format!("no Kerberos credentials of the logged-on user for {user} (without a password the plan's user must be the one logged on)"),
            };
            return Err(failed(&what, status));
        }
        Ok(cred)
    }

    /// The sizes EncryptMessage needs, once the context is complete.
    fn query_sizes(handle: &SecHandle) -> Result<SecPkgContext_Sizes, SspiError> {
        let mut sizes = SecPkgContext_Sizes::default();
        // SAFETY: SECPKG_ATTR_SIZES writes a SecPkgContext_Sizes.
        let status = unsafe {
            QueryContextAttributesW(
                handle,
                SECPKG_ATTR_SIZES,
                (&mut sizes as *mut SecPkgContext_Sizes).cast(),
            )
        };
        if status != SEC_E_OK {
            return Err(failed("the context's message sizes", status));
        }
        Ok(sizes)
    }

    fn complete(&self) -> Result<&SecHandle, SspiError> {
        match &self.handle {
            Some(h) if self.sizes.cbSecurityTrailer > 0 => Ok(h),
            _ => Err(SspiError("the Kerberos logon is not complete".into())),
        }
    }
}

/// The Kerberos package's cbMaxToken.
fn max_token() -> Result<usize, SspiError> {
    let package = wide("Kerberos");
    let mut info: *mut SecPkgInfoW = std::ptr::null_mut();
    // SAFETY: SSPI allocates the info, read once and released with FreeContextBuffer.
    let status = unsafe { QuerySecurityPackageInfoW(package.as_ptr(), &mut info) };
    if status != SEC_E_OK || info.is_null() {
        return Err(failed("the Kerberos security package", status));
    }
    // SAFETY: SSPI returned a valid SecPkgInfoW.
    let max = unsafe { (*info).cbMaxToken } as usize;
    // SAFETY: the info is SSPI's own.
    unsafe { FreeContextBuffer(info.cast()) };
    Ok(max)
}

/// An SSPI buffer over bytes of ours.
fn buffer(kind: u32, bytes: &mut [u8]) -> Result<SecBuffer, SspiError> {
    Ok(SecBuffer {
        cbBuffer: len32(bytes.len())?,
        BufferType: kind,
        pvBuffer: bytes.as_mut_ptr().cast(),
    })
}

fn describe(buffers: &mut [SecBuffer]) -> SecBufferDesc {
    SecBufferDesc {
        ulVersion: SECBUFFER_VERSION,
        // Invariant: two or three buffers.
        cBuffers: buffers.len() as u32,
        pBuffers: buffers.as_mut_ptr(),
    }
}

impl Mechanism for Context {
    type Error = SspiError;

    /// Credentials for `credentials` and a context for the service principal `HTTP/host`;
    /// nothing is sent yet.
    fn new(credentials: Credentials<'_>, host: &str) -> Result<Context, SspiError> {
        Ok(Context {
            cred: Some(Context::outbound(&credentials)?),
            handle: None,
            target: wide(&format!("HTTP/{host}")),
            max_token: max_token()?,
            sizes: SecPkgContext_Sizes::default(),
        })
    }

    fn step(&mut self, input: Option<&[u8]>) -> Result<(Vec<u8>, bool), SspiError> {
        let cred = self
            .cred
            .ok_or_else(|| SspiError("the Kerberos logon is already complete".into()))?;
        let mut input = input.map(<[u8]>::to_vec);
        let mut in_buffers = match input.as_deref_mut() {
            Some(token) => vec![buffer(SECBUFFER_TOKEN, token)?],
            None => Vec::new(),
        };
        let in_desc = describe(&mut in_buffers);
        let mut token = vec![0u8; self.max_token];
        let mut out_buffers = [buffer(SECBUFFER_TOKEN, &mut token)?];
        let mut out_desc = describe(&mut out_buffers);
        let mut new = self.handle.unwrap_or_default();
        let (mut granted, mut expiry) = (0u32, 0i64);
        let old = self
            .handle
            .as_ref()
            .map_or(std::ptr::null(), |h| h as *const SecHandle);
        // SAFETY: every pointer is valid for the call; SSPI writes the token into ours.
        let status = unsafe {
            InitializeSecurityContextW(
                &cred,
                old,
                self.target.as_ptr(),
                FLAGS,
                0,
                SECURITY_NATIVE_DREP,
                if input.is_some() {
                    &in_desc
                } else {
                    std::ptr::null()
                },
                0,
                &mut new,
                &mut out_desc,
                &mut granted,
                &mut expiry,
            )
        };
        token.truncate(out_buffers[0].cbBuffer as usize);
        if status == SEC_E_OK || status == SEC_I_CONTINUE_NEEDED {
            self.handle = Some(new);
        }
        match status {
            SEC_E_OK => {
                // The context holds what it needs; the credentials (the password) go now rather
                // than with the session.
                self.release_credentials();
                if granted & REQUIRED != REQUIRED {
                    return Err(SspiError(format!(
                        "the context lacks mutual authentication, confidentiality or integrity (flags {granted:#x})"
                    )));
                }
                self.sizes = Context::query_sizes(&new)?;
                Ok((token, true))
            }
            SEC_I_CONTINUE_NEEDED => Ok((token, false)),
            _ => Err(failed("the logon", status)),
        }
    }

    /// EncryptMessage over [TOKEN, DATA], the token sized by SECPKG_ATTR_SIZES' cbSecurityTrailer,
    /// no PADDING buffer: what pyspnego's SSPI `wrap_winrm` gives Windows. Returns (header,
    /// encrypted data).
    fn wrap(&mut self, plain: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SspiError> {
        let handle = *self.complete()?;
        let mut header = vec![0u8; self.sizes.cbSecurityTrailer as usize];
        let mut data = plain.to_vec();
        let mut buffers = [
            buffer(SECBUFFER_TOKEN, &mut header)?,
            buffer(SECBUFFER_DATA, &mut data)?,
        ];
        let desc = describe(&mut buffers);
        // SAFETY: each buffer is ours with the length given; SSPI encrypts in place and writes
        // the lengths it used.
        let status = unsafe { EncryptMessage(&handle, 0, &desc, 0) };
        if status != SEC_E_OK {
            return Err(failed("encrypting a message", status));
        }
        header.truncate(buffers[0].cbBuffer as usize);
        data.truncate(buffers[1].cbBuffer as usize);
        Ok((header, data))
    }

    /// DecryptMessage over [TOKEN (the header), DATA]; a message only signed is refused.
    fn unwrap(&mut self, header: &[u8], data: &[u8]) -> Result<Vec<u8>, SspiError> {
        let handle = *self.complete()?;
        let mut header = header.to_vec();
        let mut data = data.to_vec();
        let mut buffers = [
            buffer(SECBUFFER_TOKEN, &mut header)?,
            buffer(SECBUFFER_DATA, &mut data)?,
        ];
        let desc = describe(&mut buffers);
        let mut qop = 0u32;
        // SAFETY: each buffer is ours with the length given; SSPI decrypts in place.
        let status = unsafe { DecryptMessage(&handle, &desc, 0, &mut qop) };
        if status != SEC_E_OK {
            return Err(failed("the server's message does not verify", status));
        }
        if qop & SECQOP_WRAP_NO_ENCRYPT == SECQOP_WRAP_NO_ENCRYPT {
            return Err(SspiError("the server's message was not encrypted".into()));
        }
        // The plain text is in place: where SSPI's DATA buffer now points, for its new length.
        let start = (buffers[1].pvBuffer as usize).wrapping_sub(data.as_ptr() as usize);
        let end = start.saturating_add(buffers[1].cbBuffer as usize);
        data.get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| SspiError("SSPI's decrypted data lies outside the message".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_is_split_into_user_and_realm_at_its_last_at_sign() {
        assert_eq!(
            split_principal("admin@CORP.EXAMPLE.COM"),
            ("admin", "CORP.EXAMPLE.COM")
        );
        assert_eq!(split_principal("admin"), ("admin", ""));
    }
}
