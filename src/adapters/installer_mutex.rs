//! Whether a Windows Installer installation is in progress on this machine. Microsoft's
//! "_MSIExecute Mutex": "The _MSIExecute Mutex is set only while processing the
//! InstallExecuteSequence table, AdminExecuteSequence table, or AdvtExecuteSequence table", and
//! while it is set "an attempt to call the installer's API returns ERROR_INSTALL_ALREADY_RUNNING
//! (1618)". On Windows this opens the mutex `Global\_MSIExecute`; on Unix (the rehearsal lab) it
//! asks the lab's stand-in for it, the file `_MSIExecute` beside the plan's msiexec, which the
//! lab's installers lock through their execute phase (lab/README.md). It only looks.

use std::path::Path;

/// The mutex's name (the installer creates it in the global namespace).
pub const NAME: &str = r"Global\_MSIExecute";

/// True while an installer is in its execute phase. `msiexec` is the plan's msiexec: Windows
/// ignores it (the mutex is one for the machine); the lab keeps its stand-in beside it.
pub fn in_progress(msiexec: &Path) -> std::io::Result<bool> {
    imp::in_progress(msiexec)
}

#[cfg(windows)]
mod imp {
    use std::path::Path;

    use windows_sys::Win32::Foundation::{
        CloseHandle, GetLastError, ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND,
    };
    use windows_sys::Win32::System::Threading::{OpenMutexW, SYNCHRONIZATION_SYNCHRONIZE};

    /// OpenMutexW(SYNCHRONIZE, FALSE, name): a handle (closed at once) or ERROR_ACCESS_DENIED
    /// means the mutex exists; ERROR_FILE_NOT_FOUND means it does not.
    pub fn in_progress(_msiexec: &Path) -> std::io::Result<bool> {
        let name: Vec<u16> = super::NAME.encode_utf16().chain([0]).collect();
        // SAFETY: `name` is NUL-terminated UTF-16 that outlives the call.
        let handle = unsafe { OpenMutexW(SYNCHRONIZATION_SYNCHRONIZE, 0, name.as_ptr()) };
        if !handle.is_null() {
            // SAFETY: a handle OpenMutexW returned, closed once.
            unsafe { CloseHandle(handle) };
            return Ok(true);
        }
        // SAFETY: no other call since OpenMutexW on this thread.
        match unsafe { GetLastError() } {
            ERROR_FILE_NOT_FOUND => Ok(false),
            ERROR_ACCESS_DENIED => Ok(true),
            code => Err(std::io::Error::from_raw_os_error(code as i32)),
        }
    }
}

#[cfg(not(windows))]
mod imp {
    use std::fs::{File, TryLockError};
    use std::path::Path;

    /// The lab's `_MSIExecute` beside `msiexec` (a link to the file the lab's installers lock):
    /// locked by another process means in progress. None there (not a lab's msiexec, or a
    /// Windows path this machine cannot open) means no installer: there is no Windows Installer
    /// on this machine. Looking takes a shared lock for an instant.
    pub fn in_progress(msiexec: &Path) -> std::io::Result<bool> {
        let Some(folder) = msiexec.parent().filter(|f| f.is_absolute()) else {
            return Ok(false);
        };
        let file = match File::open(folder.join("_MSIExecute")) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(false),
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::fs::File;

    use super::*;

    #[test]
    fn a_locked_msiexecute_beside_msiexec_is_an_installation_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let msiexec = dir.path().join("msiexec");
        assert!(!in_progress(&msiexec).unwrap(), "no stand-in: no installer");
        let mutex = dir.path().join("_MSIExecute");
        std::fs::write(&mutex, b"").unwrap();
        assert!(!in_progress(&msiexec).unwrap(), "nobody holds it");
        let held = File::options().write(true).open(&mutex).unwrap();
        held.lock().unwrap();
        assert!(in_progress(&msiexec).unwrap(), "an installer holds it");
        drop(held);
        assert!(!in_progress(&msiexec).unwrap(), "released at the end");
        assert!(!in_progress(Path::new(r"C:\Windows\System32\msiexec.exe")).unwrap());
    }
}
