//! Windows: owner-only files on this machine, what mode 0600 is on unix (a key file's copy, a
//! fetched file under its temporary name). Sets a protected DACL (nothing inherited from the
//! folder) that grants full control to the file's owner, SYSTEM and the Administrators group and
//! to no one else, through the Win32 security API (advapi32). Touches only the file it is given.

use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;
use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{LocalFree, ERROR_SUCCESS, WIN32_ERROR};
use windows_sys::Win32::Security::Authorization::{
    GetNamedSecurityInfoW, SetEntriesInAclW, SetNamedSecurityInfoW, EXPLICIT_ACCESS_W,
    NO_MULTIPLE_TRUSTEE, SET_ACCESS, SE_FILE_OBJECT, TRUSTEE_IS_SID, TRUSTEE_IS_UNKNOWN, TRUSTEE_W,
};
use windows_sys::Win32::Security::{
    CreateWellKnownSid, WinBuiltinAdministratorsSid, WinLocalSystemSid, ACL,
    DACL_SECURITY_INFORMATION, NO_INHERITANCE, OWNER_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SECURITY_MAX_SID_SIZE,
    WELL_KNOWN_SID_TYPE,
};
use windows_sys::Win32::Storage::FileSystem::FILE_ALL_ACCESS;

/// Memory the security API allocated with LocalAlloc, freed with LocalFree when dropped.
struct LocalMemory(*mut core::ffi::c_void);

impl Drop for LocalMemory {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from an API that hands out LocalAlloc memory
            // (GetNamedSecurityInfoW's descriptor, SetEntriesInAclW's ACL) and is freed once.
            unsafe { LocalFree(self.0) };
        }
    }
}

fn check(code: WIN32_ERROR) -> io::Result<()> {
    if code == ERROR_SUCCESS {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(code as i32))
    }
}

/// A well-known SID (SYSTEM, BUILTIN\Administrators) in a buffer of the largest SID's size.
fn well_known(kind: WELL_KNOWN_SID_TYPE) -> io::Result<[u8; SECURITY_MAX_SID_SIZE as usize]> {
    let mut sid = [0u8; SECURITY_MAX_SID_SIZE as usize];
    let mut size = SECURITY_MAX_SID_SIZE;
    // SAFETY: `sid` holds `size` bytes, the most any SID takes; no domain SID is needed for
    // these two (both are local to every machine).
    let ok = unsafe { CreateWellKnownSid(kind, null_mut(), sid.as_mut_ptr().cast(), &mut size) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sid)
}

/// Full control for the trustee whose SID is at `sid`, on this file alone.
fn full_control(sid: PSID) -> EXPLICIT_ACCESS_W {
    EXPLICIT_ACCESS_W {
        grfAccessPermissions: FILE_ALL_ACCESS,
        grfAccessMode: SET_ACCESS,
        grfInheritance: NO_INHERITANCE,
        Trustee: TRUSTEE_W {
            pMultipleTrustee: null_mut(),
            MultipleTrusteeOperation: NO_MULTIPLE_TRUSTEE,
            TrusteeForm: TRUSTEE_IS_SID,
            TrusteeType: TRUSTEE_IS_UNKNOWN,
            ptstrName: sid.cast(),
        },
    }
}

/// Leaves `path` readable and writable by its owner, SYSTEM and Administrators only: its DACL is
/// replaced by one with those three entries and protected from the folder's inherited entries.
pub fn owner_only(path: &Path) -> io::Result<()> {
    let name: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    let mut owner: PSID = null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = null_mut();
    // SAFETY: `name` is NUL-terminated; `owner` points into `descriptor`, which is kept alive
    // (and freed) by `_descriptor` below for as long as `owner` is used.
    check(unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            null_mut(),
            null_mut(),
            null_mut(),
            &mut descriptor,
        )
    })?;
    let _descriptor = LocalMemory(descriptor);
    let mut system = well_known(WinLocalSystemSid)?;
    let mut admins = well_known(WinBuiltinAdministratorsSid)?;
    let entries = [
        full_control(owner),
        full_control(system.as_mut_ptr().cast()),
        full_control(admins.as_mut_ptr().cast()),
    ];
    let mut acl: *mut ACL = null_mut();
    // SAFETY: three entries whose SIDs outlive the call; no old ACL to merge with (a new list).
    check(unsafe { SetEntriesInAclW(entries.len() as u32, entries.as_ptr(), null(), &mut acl) })?;
    let acl = LocalMemory(acl.cast());
    // SAFETY: `name` is NUL-terminated and `acl` a valid ACL that outlives the call; owner,
    // group and SACL are left as they are (null, and not named in the flags).
    check(unsafe {
        SetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            null_mut(),
            null_mut(),
            acl.0.cast(),
            null(),
        )
    })
}
