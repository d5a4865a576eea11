//! Figures for remote mode (issue 10), side by side on the same machine and the same lab (TEST
//! DOUBLE server; its WinRM listener and stand-ins): the seed plan's `plan` and `apply` run from an
//! "admin host" over WinRM against the same plan run locally, and the cost of copying the
//! Extensions folder over WinRM per MiB against the local copy of the same bytes. Run with
//! `cargo bench --bench remote`; it prints figures and asserts nothing about speed.

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

/// Apply of a plan that only copies the Extensions folder, with `mib` MiB added to it.
fn copy_time(rig: &Rig, mib: usize, remote: bool) -> Duration {
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
    let t0 = Instant::now();
    let out = rig.upgrade(&["apply", plan.to_str().unwrap(), "--auto-approve"]);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    took
}

fn main() {
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
    println!(
        "\nExtensions copy (backup_files apply) with a file of N MiB added, median of {RUNS}:"
    );
    for mib in [4usize, 16, 64] {
        let l = median(
            (0..RUNS)
                .map(|_| copy_time(&Rig::iifp(Driver::Tds, &[]), mib, false))
                .collect(),
        );
        let r = median(
            (0..RUNS)
                .map(|_| copy_time(&Rig::iifp_remote(&[]), mib, true))
                .collect(),
        );
        let per_mib = (r.as_secs_f64() - l.as_secs_f64()) / mib as f64;
        println!(
            "  {mib:>3} MiB  local {:>7.3} s   remote {:>7.3} s   remote/local {:>6.2}x   \
             WinRM cost {:>6.1} ms/MiB ({:.1} MiB/s over WinRM)",
            l.as_secs_f64(),
            r.as_secs_f64(),
            r.as_secs_f64() / l.as_secs_f64(),
            per_mib * 1000.0,
            mib as f64 / r.as_secs_f64()
        );
    }
}
