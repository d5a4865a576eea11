//! The workspace's binaries in the target folder and profile the running executable was built in
//! (`target/<profile>/`, `target/<triple>/<profile>/`; test binaries sit in `deps/` below), and
//! `cargo build` of one of them there, shown as a single line. So `cargo run -p upgrade-lab --
//! rehearse` on a fresh clone builds the `upgrade` it rehearses from the same source, and the lab's
//! tests find the `upgrade-lab` binary. Builds only; runs nothing it builds.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Where a binary of this workspace was built: target folder, profile and target triple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlace {
    /// The folder cargo builds into (the one holding `CACHEDIR.TAG`).
    pub target_dir: PathBuf,
    /// The profile's folder name: `debug` (the dev and test profiles), `release`, or a custom one.
    pub profile: String,
    /// The `--target` triple, when the build was for an explicit target.
    pub triple: Option<String>,
    /// The folder the binaries are in.
    bin_dir: PathBuf,
}

impl BuildPlace {
    /// Where `exe` was built; None when it does not sit in a cargo target folder. The target folder
    /// is the one cargo marks (`CACHEDIR.TAG`, `.rustc_info.json`); a profile folder (it holds
    /// `.fingerprint`) below no marked folder is taken to sit in the target folder itself.
    pub fn of(exe: &Path) -> Option<BuildPlace> {
        let mut bin_dir = exe.parent()?.to_path_buf();
        if bin_dir.file_name().is_some_and(|n| n == "deps") {
            bin_dir.pop();
        }
        let profile = bin_dir.file_name()?.to_string_lossy().into_owned();
        let above = bin_dir.parent()?;
        let (target_dir, triple) = if is_target_folder(above) {
            (above, None)
        } else if above.parent().is_some_and(is_target_folder) {
            (above.parent()?, above.file_name())
        } else if bin_dir.join(".fingerprint").is_dir() {
            (above, None)
        } else {
            return None;
        };
        Some(BuildPlace {
            target_dir: target_dir.to_path_buf(),
            profile,
            triple: triple.map(|t| t.to_string_lossy().into_owned()),
            bin_dir: bin_dir.clone(),
        })
    }

    /// Where the running executable was built.
    pub fn of_this_executable() -> Option<BuildPlace> {
        BuildPlace::of(&std::env::current_exe().ok()?)
    }

    /// The path of binary `bin` in this place.
    pub fn binary(&self, bin: &str) -> PathBuf {
        self.bin_dir
            .join(format!("{bin}{}", std::env::consts::EXE_SUFFIX))
    }

    /// `cargo build -p PACKAGE --bin BIN` of this workspace into this place: same target folder,
    /// profile and triple.
    pub fn cargo_build(&self, package: &str, bin: &str) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", package, "--bin", bin, "--manifest-path"])
            .arg(workspace_manifest())
            .arg("--target-dir")
            .arg(&self.target_dir);
        match self.profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        if let Some(triple) = &self.triple {
            cmd.args(["--target", triple]);
        }
        cmd
    }
}

/// A folder cargo builds into: it marks it with `CACHEDIR.TAG` (when it made it) and keeps
/// `.rustc_info.json` there.
fn is_target_folder(dir: &Path) -> bool {
    dir.join("CACHEDIR.TAG").is_file() || dir.join(".rustc_info.json").is_file()
}

/// The workspace's Cargo.toml (the lab is a member; its source is where it was built from).
pub fn workspace_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR")))
        .join("Cargo.toml")
}

/// Runs `cargo build -p PACKAGE --bin BIN` at `place` and returns the binary. Cargo's output is
/// one line: on a terminal the line it is at, rewritten in place, then one line saying what
/// happened (`upgrade: built in 41.2 s (...)`, `upgrade: up to date (...)`); off a terminal only
/// that last line. When the build fails, cargo's whole output is printed and the error says so.
pub fn build(place: &BuildPlace, package: &str, bin: &str) -> Result<PathBuf, String> {
    let mut cmd = place.cargo_build(package, bin);
    let shown = format!("cargo build -p {package} --bin {bin}");
    cmd.arg("--color")
        .arg("never")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("running `{shown}`: {e}"))?;
    // cargo writes its progress to stderr; stdout is drained on a thread so neither pipe fills.
    let stdout = child.stdout.take();
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut out) = stdout {
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
        }
        text
    });
    let terminal = std::io::stdout().is_terminal();
    let mut seen = Vec::new();
    let mut compiled = false;
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            compiled |= line.trim_start().starts_with("Compiling");
            if terminal {
                let mut out = std::io::stdout();
                let _ = write!(out, "\r\x1b[2K{bin}: {}", clip(line.trim(), 70));
                let _ = out.flush();
            }
            seen.push(line);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for `{shown}`: {e}"))?;
    let stdout_text = drain.join().unwrap_or_default();
    if terminal {
        print!("\r\x1b[2K");
    }
    let binary = place.binary(bin);
    if !status.success() || !binary.is_file() {
        println!("{}{stdout_text}", seen.join("\n"));
        return Err(format!(
            "`{shown}` ended with {status}; expected {}",
            binary.display()
        ));
    }
    if compiled {
        println!(
            "{bin}: built in {:.1} s ({shown})",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("{bin}: up to date ({})", binary.display());
    }
    Ok(binary)
}

/// `text` cut to `width` characters, ending in `...` when cut.
fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let kept: String = text.chars().take(width.saturating_sub(3)).collect();
        format!("{kept}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_folder() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55",
        )
        .unwrap();
        t
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_binary_in_target_debug_or_its_deps_is_rebuilt_there_with_the_dev_profile() {
        let t = target_folder();
        for exe in ["debug/upgrade-lab", "debug/deps/rehearse_e2e-0123abcd"] {
            let place = BuildPlace::of(&t.path().join(exe)).unwrap();
            assert_eq!(place.target_dir, t.path());
            assert_eq!(place.profile, "debug");
            assert_eq!(place.triple, None);
            assert_eq!(place.binary("upgrade"), t.path().join("debug/upgrade"));
            let a = args(&place.cargo_build("upgrade", "upgrade"));
            assert_eq!(a[..5], ["build", "-p", "upgrade", "--bin", "upgrade"]);
            assert!(
                a.contains(&t.path().to_string_lossy().into_owned()),
                "{a:?}"
            );
            assert!(!a
                .iter()
                .any(|x| x == "--release" || x == "--profile" || x == "--target"));
        }
    }

    #[test]
    fn release_custom_profiles_and_an_explicit_target_are_kept() {
        let t = target_folder();
        let release = BuildPlace::of(&t.path().join("release/upgrade-lab")).unwrap();
        assert!(args(&release.cargo_build("upgrade", "upgrade")).contains(&"--release".into()));
        let custom =
            BuildPlace::of(&t.path().join("x86_64-unknown-linux-musl/ci/upgrade-lab")).unwrap();
        assert_eq!(custom.target_dir, t.path());
        assert_eq!(custom.triple.as_deref(), Some("x86_64-unknown-linux-musl"));
        let a = args(&custom.cargo_build("upgrade", "upgrade"));
        assert!(a.windows(2).any(|w| w == ["--profile", "ci"]), "{a:?}");
        assert!(
            a.windows(2)
                .any(|w| w == ["--target", "x86_64-unknown-linux-musl"]),
            "{a:?}"
        );
        assert_eq!(
            custom.binary("upgrade"),
            t.path().join("x86_64-unknown-linux-musl/ci/upgrade")
        );
    }

    #[test]
    fn a_target_folder_copied_without_its_tag_is_known_by_its_rustc_info_or_fingerprints() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("debug/.fingerprint")).unwrap();
        let place = BuildPlace::of(&t.path().join("debug/upgrade-lab")).unwrap();
        assert_eq!((place.target_dir.as_path(), place.triple), (t.path(), None));
        std::fs::write(t.path().join(".rustc_info.json"), "{}").unwrap();
        let place = BuildPlace::of(&t.path().join("aarch64-unknown-linux-gnu/debug/x")).unwrap();
        assert_eq!(place.target_dir, t.path());
        assert_eq!(place.triple.as_deref(), Some("aarch64-unknown-linux-gnu"));
    }

    #[test]
    fn a_binary_outside_a_cargo_target_folder_has_no_build_place() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(BuildPlace::of(&t.path().join("bin/upgrade-lab")), None);
        assert_eq!(
            BuildPlace::of(Path::new("/usr/local/bin/upgrade-lab")),
            None
        );
    }
}
