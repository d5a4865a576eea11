//! The Windows build of `upgrade` and Wine to run it in, for the tests that run `upgrade.exe`
//! (local plan: `windows_wine`; admin host of a remote plan: `windows_wine_remote`). Needs
//! Debian's rustc-web, cargo-web, rust-web-src, libstd-rust-web-dev, gcc-mingw-w64-x86-64, wine
//! and wine64 (`.ci/run` installs them); without them a test fails here and names the package.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::text;

const TARGET: &str = "x86_64-win7-windows-gnu";

/// Fails the test, naming the Debian packages, when `program` is not on the PATH.
pub fn need(program: &str, packages: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "`{program}` is missing: install {packages} (Debian), as .ci/run does"
    );
}

/// Builds upgrade.exe with Debian's rustc-web and mingw (std built for the win7 target, which
/// needs no bcryptprimitives.dll, absent from Wine 8), into its own target folder.
pub fn windows_exe() -> PathBuf {
    need("x86_64-w64-mingw32-gcc", "gcc-mingw-w64-x86-64");
    assert!(
        Path::new("/usr/bin/cargo").exists(),
        "Debian's cargo is missing: install cargo-web"
    );
    assert!(
        Path::new("/usr/bin/rustc").exists() && Path::new("/usr/lib/rustlib/src/rust/library").exists(),
        "Debian's rustc-web with its std sources is missing: install rustc-web rust-web-src libstd-rust-web-dev"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = root.join("target").join("windows");
    let out = Command::new("/usr/bin/cargo")
        .current_dir(root)
        .args([
            "build",
            "-p",
            "upgrade",
            "--bin",
            "upgrade",
            "-Zbuild-std=std,panic_abort",
            "--target",
            TARGET,
        ])
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTC", "/usr/bin/rustc")
        .env("CARGO_TARGET_DIR", &target_dir)
        .env(
            "CARGO_TARGET_X86_64_WIN7_WINDOWS_GNU_LINKER",
            "x86_64-w64-mingw32-gcc",
        )
        .env("CC_x86_64_win7_windows_gnu", "x86_64-w64-mingw32-gcc")
        .env("AR_x86_64_win7_windows_gnu", "x86_64-w64-mingw32-ar")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Windows build failed: {}",
        text(&out)
    );
    target_dir.join(TARGET).join("debug").join("upgrade.exe")
}

/// A Wine "machine" in its own prefix.
pub struct Wine {
    pub prefix: PathBuf,
}

impl Wine {
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        need("wine", "wine wine64");
        Command::new("wine")
            .args(args)
            .envs(env.iter().copied())
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }
}

/// `Z:\...`: how a Windows program under Wine names a Linux path.
pub fn z(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}
