//! Figures for issue 11: a one-step `backup_files` plan against the tools an administrator would
//! compare it with, side by side in the same run, as ratios. Run with
//! `cargo bench --bench backup_files`; knobs: `BENCH_MIB` (default 1024), `BENCH_FILES` (2000),
//! `BENCH_RUNS` (3, medians), `BENCH_PLAN_FILES` (50000), `BENCH_BEFORE` (another `upgrade`
//! binary, e.g. built from the commit before a change, measured in the same runs). It prints figures and asserts nothing about
//! speed. Everything it writes lives in one temporary folder (next to the system's temp folder, or
//! `BENCH_DIR`), and each tree is removed as soon as it has been measured.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const UPGRADE: &str = env!("CARGO_BIN_EXE_upgrade");

fn knob(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: expected a whole number")),
        Err(_) => default,
    }
}

/// splitmix64: fast, good enough that the content neither compresses nor dedups.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `files` files of `bytes` in all, 50 to a folder, random content.
fn make_tree(dir: &Path, files: u64, bytes: u64, seed: u64) {
    let mut rng = Prng(seed);
    let each = (bytes / files.max(1)) as usize;
    let mut buf = vec![0u8; each];
    for i in 0..files {
        let sub = dir.join(format!("d{:03}", i / 50));
        if i % 50 == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        rng.fill(&mut buf);
        std::fs::write(sub.join(format!("f{i:06}.dll")), &buf).unwrap();
    }
}

fn run(cmd: &mut Command) -> Duration {
    let t0 = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn sh(script: &str) -> Duration {
    run(Command::new("sh").args(["-c", script]))
}

fn sync() {
    sh("sync");
}

fn remove(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// A plan with one `backup_files` step. `server.sql` must be there, but nothing in this plan
/// connects: the port is one nobody listens on, so a connection attempt would fail the run.
fn write_plan(path: &Path, state: &Path, from: &Path, to: &Path) {
    std::fs::write(
        path,
        format!(
            "version: 1\nname: bench-backup-files\nserver:\n  sql: {{ host: 127.0.0.1, port: 1, auth: windows }}\n\
             state: {{ dir: '{}' }}\nsteps:\n  - id: extensions\n    backup_files: {{ from: '{}', to: '{}' }}\n",
            state.display(),
            from.display(),
            to.display()
        ),
    )
    .unwrap();
}

fn upgrade(args: &[&str]) -> Command {
    upgrade_of(UPGRADE, args)
}

fn upgrade_of(binary: &str, args: &[&str]) -> Command {
    let mut c = Command::new(binary);
    c.args(args).env("RUST_LOG", "warn");
    c
}

/// Peak resident set of a child, from `wait4`'s rusage (KiB on Linux).
#[cfg(unix)]
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std's `wait` cannot replace
fn peak_rss_kib(mut cmd: Command) -> (i32, i64) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value to be filled in; the pid is our own child, waited
    // for once, here.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    (status, usage.ru_maxrss)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{nproc} CPU(s), {cpu}, {}", std::env::consts::OS)
}

fn has(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    let mib = knob("BENCH_MIB", 1024);
    let files = knob("BENCH_FILES", 2000);
    let runs = knob("BENCH_RUNS", 3).max(1) as usize;
    let plan_files = knob("BENCH_PLAN_FILES", 50_000);
    let root = match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let r = root.path();
    let (src, dst): (PathBuf, PathBuf) = (r.join("src"), r.join("dst"));
    let (state, plan) = (r.join("state"), r.join("plan.yaml"));
    std::fs::create_dir_all(&state).unwrap();
    write_plan(&plan, &state, &src, &dst);
    let plan_s = plan.to_str().unwrap();

    println!("backup_files bench on {}", machine());
    println!("source: {mib} MiB in {files} files (page cache warm); median of {runs} run(s)");
    make_tree(&src, files, mib << 20, 11);
    sync();

    let (mut cp_sync, mut cp, mut first, mut again, mut rsync_q) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let before = std::env::var("BENCH_BEFORE").ok();
    let (mut first_before, mut again_before) = (Vec::new(), Vec::new());
    let rsync = has("rsync");
    let (s, d) = (src.display(), dst.display());
    for _ in 0..runs {
        cp_sync.push(sh(&format!("cp -r '{s}' '{d}' && sync")));
        remove(&dst);
        sync();
        cp.push(sh(&format!("cp -r '{s}' '{d}'")));
        remove(&dst);
        sync();
        let _ = std::fs::remove_file(state.join("bench-backup-files.journal.json"));
        first.push(run(&mut upgrade(&["apply", plan_s, "--auto-approve"])));
        again.push(run(&mut upgrade(&["apply", plan_s, "--auto-approve"])));
        remove(&dst);
        sync();
        if let Some(b) = &before {
            let _ = std::fs::remove_file(state.join("bench-backup-files.journal.json"));
            first_before.push(run(&mut upgrade_of(
                b,
                &["apply", plan_s, "--auto-approve"],
            )));
            again_before.push(run(&mut upgrade_of(
                b,
                &["apply", plan_s, "--auto-approve"],
            )));
            remove(&dst);
            sync();
        }
        if rsync {
            sh(&format!("rsync -a '{s}/' '{d}/'"));
            rsync_q.push(sh(&format!("rsync -a '{s}/' '{d}/'")));
            remove(&dst);
            sync();
        }
    }
    remove(&src);

    let (cp_sync, cp) = (median(cp_sync), median(cp));
    let (first, again) = (median(first), median(again));
    println!("  {:<44} {:>8.3} s", "cp -r SRC DST && sync", secs(cp_sync));
    println!("  {:<44} {:>8.3} s", "cp -r SRC DST", secs(cp));
    println!(
        "  {:<44} {:>8.3} s  {:>6.2}x cp -r && sync  {:>6.2}x cp -r",
        "upgrade apply, first run",
        secs(first),
        secs(first) / secs(cp_sync),
        secs(first) / secs(cp)
    );
    println!(
        "  {:<44} {:>8.3} s  {:>6.3}x the first run",
        "upgrade apply, converged re-run",
        secs(again),
        secs(again) / secs(first)
    );
    if let Some(b) = &before {
        let (f, a) = (median(first_before), median(again_before));
        println!("  BENCH_BEFORE = {b}");
        println!(
            "  {:<44} {:>8.3} s  {:>6.2}x cp -r && sync  {:>6.2}x cp -r",
            "  before: first run",
            secs(f),
            secs(f) / secs(cp_sync),
            secs(f) / secs(cp)
        );
        println!(
            "  {:<44} {:>8.3} s  {:>6.3}x its first run",
            "  before: converged re-run",
            secs(a),
            secs(a) / secs(f)
        );
    }
    if rsync {
        let q = median(rsync_q);
        println!(
            "  {:<44} {:>8.3} s  {:>6.3}x the first run",
            "rsync -a quick check (nothing to copy)",
            secs(q),
            secs(q) / secs(first)
        );
    } else {
        println!("  rsync is not installed here: no quick-check baseline");
    }

    #[cfg(unix)]
    {
        let many = r.join("many");
        std::fs::create_dir_all(&state).unwrap();
        let _ = std::fs::remove_file(state.join("bench-backup-files.journal.json"));
        write_plan(&plan, &state, &many, &dst);
        let mut rng = Prng(7);
        let mut small = [0u8; 200];
        for i in 0..plan_files {
            let sub = many.join(format!("d{:04}", i / 500));
            if i % 500 == 0 {
                std::fs::create_dir_all(&sub).unwrap();
            }
            rng.fill(&mut small);
            std::fs::write(sub.join(format!("f{i:06}.dll")), small).unwrap();
        }
        let (status, kib) = peak_rss_kib(upgrade(&["plan", plan_s]));
        assert_eq!(status, 0, "upgrade plan of {plan_files} files failed");
        if let Some(b) = &before {
            let (status, kib) = peak_rss_kib(upgrade_of(b, &["plan", plan_s]));
            assert_eq!(status, 0, "BENCH_BEFORE plan of {plan_files} files failed");
            println!(
                "  {:<44} {:>8.1} MiB",
                format!("before: upgrade plan, {plan_files} files: peak RSS"),
                kib as f64 / 1024.0
            );
        }
        let (_, validate) = peak_rss_kib(upgrade(&["validate", plan_s]));
        println!(
            "  {:<44} {:>8.1} MiB  (validate: {:.1} MiB)",
            format!("upgrade plan, {plan_files} files: peak RSS"),
            kib as f64 / 1024.0,
            validate as f64 / 1024.0
        );
        remove(&many);
    }
}
