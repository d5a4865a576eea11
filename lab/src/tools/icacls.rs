//! The icacls stand-in (System32): `icacls FILE /inheritance:r /grant:r USER:F` (restricting a
//! file to one account; the executor's remote host no longer uses it, as Windows Server 2003
//! SP2's icacls has no /inheritance, KB919240, and sets the ACL through PowerShell's
//! `[System.IO.File]::SetAccessControl` instead) becomes chmod 600 on the lab's
//! file (owner only), and prints what icacls prints: `processed file: FILE` and `Successfully
//! processed 1 files; Failed processing 0 files`. A missing file: `FILE: The system cannot find
//! the file specified.` (stderr), `Successfully processed 0 files; Failed processing 1 files`,
//! exit 2 (ERROR_FILE_NOT_FOUND, Microsoft's "System Error Codes (0-499)"). Any other switch,
//! permission or a folder is refused with a lab message, exit 1.
//! TEST DOUBLE: the lab has no ACLs and no accounts; the user named is not checked.

use std::path::Path;

use crate::layout::win_to_lab;
use crate::tools::ToolIo;

/// ERROR_FILE_NOT_FOUND.
pub const FILE_NOT_FOUND: i32 = 2;

/// Runs the stand-in; returns the exit code.
pub fn run(lab: &Path, args: &[String], io: &mut ToolIo) -> i32 {
    let refuse = |io: &mut ToolIo, why: String| {
        let _ = write!(
            io.stderr,
            "upgrade-lab: the lab's icacls takes only `icacls FILE /inheritance:r /grant:r USER:F` (lab/README.md); {why}\r\n"
        );
        1
    };
    let Some((file, switches)) = args.split_first() else {
        return refuse(io, "it was given nothing".into());
    };
    let mut inheritance = false;
    let mut grant = None;
    let mut rest = switches.iter();
    while let Some(s) = rest.next() {
        match s.to_ascii_lowercase().as_str() {
            "/inheritance:r" => inheritance = true,
            "/grant:r" => match rest.next() {
                Some(ace) => grant = Some(ace.clone()),
                None => return refuse(io, "/grant:r names no USER:F".into()),
            },
            _ => return refuse(io, format!("`{s}` is refused")),
        }
    }
    let Some(ace) = grant.filter(|_| inheritance) else {
        return refuse(
            io,
            "both /inheritance:r and /grant:r USER:F are needed".into(),
        );
    };
    match ace.rsplit_once(':') {
        Some((user, perm)) if !user.is_empty() && matches!(perm, "F" | "(F)") => {}
        _ => return refuse(io, format!("`{ace}` is not USER:F")),
    }
    let Some(path) = win_to_lab(lab, file) else {
        return refuse(io, format!("`{file}` is not a drive path"));
    };
    if path.is_dir() {
        return refuse(io, format!("`{file}` is a folder"));
    }
    if !path.is_file() {
        let _ = write!(
            io.stderr,
            "{file}: The system cannot find the file specified.\r\n"
        );
        let _ = write!(
            io.stdout,
            "Successfully processed 0 files; Failed processing 1 files\r\n"
        );
        return FILE_NOT_FOUND;
    }
    if let Err(e) = owner_only(&path) {
        let _ = write!(io.stderr, "{file}: {e}\r\n");
        let _ = write!(
            io.stdout,
            "Successfully processed 0 files; Failed processing 1 files\r\n"
        );
        return 1;
    }
    let _ = write!(
        io.stdout,
        "processed file: {file}\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n"
    );
    0
}

/// The file at `path` to its owner alone (chmod 600): what the lab makes of an ACL that leaves a
/// file to one account (also powershell's `[System.IO.File]::SetAccessControl`).
#[cfg(unix)]
pub(crate) fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
pub(crate) fn owner_only(path: &Path) -> std::io::Result<()> {
    std::fs::metadata(path).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn icacls(lab: &Path, args: &[&str]) -> (i32, String, String) {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        crate::tools::captured(|io| run(lab, &args, io))
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_granted_to_one_user_becomes_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("drives/D/Upgrade/keys.bin");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"k").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, out, err) = icacls(
            dir.path(),
            &[
                r"D:\Upgrade\keys.bin",
                "/inheritance:r",
                "/grant:r",
                r"LAB\svc-sync:F",
            ],
        );
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "processed file: D:\\Upgrade\\keys.bin\r\nSuccessfully processed 1 files; Failed processing 0 files\r\n"
        );
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_missing_file_fails_with_exit_2_and_other_switches_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("drives/D")).unwrap();
        let (code, out, err) = icacls(
            dir.path(),
            &[r"D:\nope.bin", "/inheritance:r", "/grant:r", "u:F"],
        );
        assert_eq!(code, 2);
        assert_eq!(
            err,
            "D:\\nope.bin: The system cannot find the file specified.\r\n"
        );
        assert!(out.contains("Failed processing 1 files"), "{out}");

        let (code, _, err) = icacls(dir.path(), &[r"D:\nope.bin", "/reset"]);
        assert_eq!(code, 1);
        assert!(err.contains("`/reset` is refused"), "{err}");
        let (code, _, err) = icacls(
            dir.path(),
            &[r"D:\nope.bin", "/inheritance:r", "/grant:r", "u:R"],
        );
        assert_eq!(code, 1);
        assert!(err.contains("is not USER:F"), "{err}");
    }
}
