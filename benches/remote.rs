//! Figures for remote mode (issue 10), side by side on the same machine and the same lab (TEST
//! DOUBLE server; its WinRM listener and stand-ins): the seed plan's `plan` and `apply` run from an
//! "admin host" over WinRM against the same plan run locally, and the cost of copying the
//! Extensions folder over WinRM per MiB against the local copy of the same bytes, with the peak
//! resident memory of the `upgrade` process that copied (its `ru_maxrss`, from `wait4`). Run with
//! `cargo bench --bench remote` (`-- copy`: the copy figures only); it prints figures and asserts
//! nothing about speed or memory.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{text, Driver, Rig};

const RUNS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(rig: &Rig, args: &[&str]) -> Duration {
    let t0 = Instant::now();
    let out = rig.upgrade(args);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    took
}

/// plan (fresh), apply, plan (converged) of the seed plan on a fresh rig.
fn seed_times(rig: &Rig) -> [Duration; 3] {
    let p = rig.plan_str();
    [
        time(rig, &["plan", p]),
        time(rig, &["apply", p, "--auto-approve"]),
        time(rig, &["plan", p, "--detailed-exitcode"]),
    ]
}

/// This process's resident set in KiB (`VmRSS`), after resetting its peak to it: a child
/// started by `posix_spawn` shares this process's memory until it execs, and Linux counts the
/// peak of that memory in the child's `ru_maxrss` (`exec_mmap`: `setmax_mm_hiwater_rss`), so
/// without the reset the bench's own peak (the big file it wrote) would show as the child's.
/// Writing 5 to `/proc/self/clear_refs` resets the peak (proc(5), Linux 4.0+); free heap memory
/// is given back first.
fn reset_own_peak() -> u64 {
    // SAFETY: malloc_trim only gives free heap memory back to the system. It lowers the floor:
    // freed memory glibc kept (the big file's bytes among it) would count as resident.
    unsafe { libc::malloc_trim(0) };
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Runs `upgrade ARGS` to its end; returns how long it took, its peak resident set in KiB
/// (`ru_maxrss` of that child, which Linux gives in KiB) and the floor under that figure (this
/// process's resident set when it started the child, see `reset_own_peak`).
fn time_and_peak(rig: &Rig, args: &[&str]) -> (Duration, u64, u64) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let floor = reset_own_peak();
    let t0 = Instant::now();
    // Reaped by `wait4` below, which `Child::wait` cannot replace: it gives no rusage.
    #[allow(clippy::zombie_processes)]
    let child = rig
        .command(args)
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: `usage` is a plain C struct that wait4 fills; an all-zero value is valid for it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child by its pid with valid pointers to locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let took = t0.elapsed();
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    assert!(
        ok,
        "upgrade {args:?} failed ({status}):\n{}",
        std::fs::read_to_string(log.path()).unwrap_or_default()
    );
    (took, u64::try_from(usage.ru_maxrss).unwrap_or(0), floor)
}

/// Apply of a plan that only copies the Extensions folder, with `mib` MiB added to it: its time,
/// the peak resident set of `upgrade` in KiB and the floor under it.
fn copy_time(rig: &Rig, mib: usize, remote: bool) -> (Duration, u64, u64) {
    let ext = rig.path(r"C:\Program Files\Microsoft Identity Integration Server\Extensions");
    let big: Vec<u8> = (0..mib * 1024 * 1024)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    std::fs::write(ext.join("Big.Rules.dll"), big).unwrap();
    let (from, to) = if remote {
        (
            r"C:\Program Files\Microsoft Identity Integration Server\Extensions".to_string(),
            rig.admin_dir().join("copy").display().to_string(),
        )
    } else {
        (
            ext.display().to_string(),
            rig.tmp.path().join("copy").display().to_string(),
        )
    };
    let plan = rig.plan_with_steps(
        "copy-only",
        &format!("  - id: extensions\n    backup_files: {{ from: '{from}', to: '{to}' }}\n"),
    );
    time_and_peak(rig, &["apply", plan.to_str().unwrap(), "--auto-approve"])
}

fn main() {
    let copy_only = std::env::args().any(|a| a == "copy");
    if !copy_only {
        seed_figures();
    }
    copy_figures();
}

fn seed_figures() {
    let mut local = [vec![], vec![], vec![]];
    let mut remote = [vec![], vec![], vec![]];
    for _ in 0..RUNS {
        for (i, t) in seed_times(&Rig::iifp(Driver::Tds, &[]))
            .into_iter()
            .enumerate()
        {
            local[i].push(t);
        }
        for (i, t) in seed_times(&Rig::iifp_remote(&[])).into_iter().enumerate() {
            remote[i].push(t);
        }
    }
    println!("seed plan, local vs over WinRM (same lab, TDS 7.4 / tiberius, median of {RUNS}):");
    for (i, name) in ["plan (fresh)", "apply", "plan (converged)"]
        .iter()
        .enumerate()
    {
        let (l, r) = (median(local[i].clone()), median(remote[i].clone()));
        println!(
            "  {name:<17} local {:>7.3} s   remote {:>7.3} s   remote/local {:>5.2}x",
            l.as_secs_f64(),
            r.as_secs_f64(),
            r.as_secs_f64() / l.as_secs_f64()
        );
    }
}

fn copy_figures() {
    println!(
        "\nExtensions copy (backup_files apply) with a file of N MiB added, median of {RUNS} \
         (peak RSS: the largest of the runs' `upgrade` processes):"
    );
    let mut floor = 0;
    for mib in [4usize, 16, 64] {
        let mut runs = |rig: fn() -> Rig, remote: bool| {
            let (mut times, mut peak) = (vec![], 0);
            for _ in 0..RUNS {
                let (t, rss, under) = copy_time(&rig(), mib, remote);
                times.push(t);
                peak = peak.max(rss);
                floor = floor.max(under);
            }
            (median(times), peak as f64 / 1024.0)
        };
        let (l, local_rss) = runs(|| Rig::iifp(Driver::Tds, &[]), false);
        let (r, remote_rss) = runs(|| Rig::iifp_remote(&[]), true);
        let per_mib = (r.as_secs_f64() - l.as_secs_f64()) / mib as f64;
        println!(
            "  {mib:>3} MiB  local {:>7.3} s {local_rss:>6.1} MiB RSS   remote {:>7.3} s \
             {remote_rss:>6.1} MiB RSS   remote/local {:>6.2}x   WinRM cost {:>6.1} ms/MiB \
             ({:.1} MiB/s over WinRM)",
            l.as_secs_f64(),
            r.as_secs_f64(),
            r.as_secs_f64() / l.as_secs_f64(),
            per_mib * 1000.0,
            mib as f64 / r.as_secs_f64()
        );
    }
    println!(
        "  (an RSS figure cannot be below the bench's own resident set when it started the \
         child, at most {:.1} MiB here)",
        floor as f64 / 1024.0
    );
}
