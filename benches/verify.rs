//! Figures for issue 11's verify goals, each as a ratio against a baseline run side by side in the
//! same run, against the lab (TEST DOUBLE server):
//! - `apply` of one verify step of 32 command checks of ~50 ms each, against one such check;
//! - a connector-space search over N objects (`upgrade-lab init --objects N`; default 200,000, env
//!   `VERIFY_BENCH_OBJECTS`), the `upgrade` child's peak RSS (wait4's ru_maxrss) and wall time,
//!   against the same search over the lab's default 1,800 objects.
//!
//! Run with `cargo bench --bench verify`; it prints figures and asserts nothing about speed.
//! `BENCH_BEFORE=<binary>` (another `upgrade`, e.g. built from the commit before a change) runs the
//! command-check figures of that binary too, in the same runs.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{text, Driver, Rig};

const RUNS: usize = 3;
/// How many command checks the wide verify step has.
const CHECKS: usize = 32;
const DEFAULT_OBJECTS: u32 = 200_000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// What one `upgrade` run cost: wall time and the child's peak resident set.
struct Cost {
    wall: Duration,
    max_rss_kib: i64,
}

/// Set (to a file) in the bench's own re-run as the measuring parent: see `measure`.
const MEASURE_ENV: &str = "VERIFY_BENCH_MEASURE_TO";

/// Runs `upgrade ARGS` and reads its peak RSS with wait4. Linux carries the parent's high-water
/// mark into a child across fork/vfork and exec, and this process holds the lab's whole server;
/// so a fresh, small copy of this executable (`measuring_parent`) starts and waits for the child.
fn measure(rig: &Rig, binary: Option<&str>, args: &[&str]) -> Cost {
    let log = rig.tmp.path().join("bench-output.txt");
    let figures = rig.tmp.path().join("bench-figures.txt");
    let upgrade = rig.command(args);
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.arg(binary.map_or(upgrade.get_program(), std::ffi::OsStr::new))
        .args(upgrade.get_args());
    for (k, v) in upgrade.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = std::fs::File::create(&log).unwrap();
    let status = cmd
        .env("RUST_LOG", "upgrade=warn")
        .env(MEASURE_ENV, &figures)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "upgrade {args:?} failed ({status}):\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let figures = std::fs::read_to_string(&figures).unwrap();
    let (wall_us, rss) = figures.trim().split_once(' ').unwrap();
    Cost {
        wall: Duration::from_micros(wall_us.parse().unwrap()),
        max_rss_kib: rss.parse().unwrap(),
    }
}

/// The measuring parent: runs argv[1..], waits with wait4, writes "wall_us max_rss_kib" to the
/// file MEASURE_ENV names and exits with the child's code.
fn measuring_parent(to: &std::ffi::OsStr) -> ! {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let t0 = Instant::now();
    let child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_remove(MEASURE_ENV)
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own child, not yet waited for; status and usage outlive the call.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = t0.elapsed();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    std::fs::write(to, format!("{} {}", wall.as_micros(), usage.ru_maxrss)).unwrap();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    };
    std::process::exit(code)
}

/// `apply` of a plan of `steps`, by this build's `upgrade` or by `binary`.
fn apply_by(rig: &Rig, binary: Option<&str>, name: &str, steps: &str) -> Cost {
    let plan = rig.plan_with_steps(name, steps);
    measure(
        rig,
        binary,
        &["apply", plan.to_str().unwrap(), "--auto-approve"],
    )
}

fn apply(rig: &Rig, name: &str, steps: &str) -> Cost {
    apply_by(rig, None, name, steps)
}

fn checks_step(n: usize) -> String {
    let mut s = String::from("  - id: checks\n    verify:\n      commands:\n");
    for _ in 0..n {
        s.push_str("        - { run: [sleep, \"0.05\"] }\n");
    }
    s
}

fn concurrent_checks() {
    let rig = Rig::iifp(Driver::Tds, &[]);
    let before = std::env::var("BENCH_BEFORE").ok();
    let builds: Vec<(&str, Option<&str>)> = match &before {
        Some(b) => vec![("", None), ("before: ", Some(b.as_str()))],
        None => vec![("", None)],
    };
    // For each build, the walls of one check and of CHECKS checks, the builds taking turns.
    let mut walls = vec![(Vec::new(), Vec::new()); builds.len()];
    for run in 0..RUNS {
        for (b, (label, binary)) in builds.iter().enumerate() {
            let tag = if label.is_empty() { "now" } else { "before" };
            let one = apply_by(&rig, *binary, &format!("one-{tag}-{run}"), &checks_step(1));
            let wide = apply_by(
                &rig,
                *binary,
                &format!("wide-{tag}-{run}"),
                &checks_step(CHECKS),
            );
            walls[b].0.push(one.wall);
            walls[b].1.push(wide.wall);
        }
    }
    println!("apply of one verify step, command checks of `sleep 0.05` (median of {RUNS})");
    if let Some(b) = &before {
        println!("  BENCH_BEFORE = {b}");
    }
    for ((label, _), (one, wide)) in builds.iter().zip(walls) {
        let (one, wide) = (median(one), median(wide));
        println!(
            "  {:<44} {:>9.1} ms  1.00x (baseline)",
            format!("{label}1 check"),
            one.as_secs_f64() * 1e3
        );
        println!(
            "  {:<44} {:>9.1} ms  {:>5.2}x",
            format!("{label}{CHECKS} checks"),
            wide.as_secs_f64() * 1e3,
            wide.as_secs_f64() / one.as_secs_f64()
        );
    }
}

fn search_step(by: &str) -> String {
    format!(
        "  - id: find\n    verify:\n      search:\n        - {{ database: MicrosoftIdentityIntegrationServer, management_agent: Contoso AD, {by}, min_count: 1 }}\n"
    )
}

const SEARCHES: &[(&str, &str)] = &[
    ("DN prefix", "dn_prefix: \"CN=Administrator\""),
    ("sub-tree", "subtree: \"CN=Users,DC=contoso,DC=com\""),
    ("anchor prefix", "anchor_prefix: \"00\""),
];

fn searches(driver: fn() -> Driver, label: &str, objects: u32) {
    let base = Rig::iifp(driver(), &[]);
    let t0 = Instant::now();
    let big = Rig::iifp_with_objects(driver(), objects);
    let setup = t0.elapsed();
    println!(
        "connector-space search, {label}: {objects} objects (lab set up in {:.1} s) against the default 1,800",
        setup.as_secs_f64()
    );
    for (i, (what, by)) in SEARCHES.iter().enumerate() {
        let b = apply(&base, &format!("search-base-{i}"), &search_step(by));
        let n = apply(&big, &format!("search-big-{i}"), &search_step(by));
        println!(
            "  {what:<14} 1,800: {:>8.1} ms {:>7.1} MiB | {objects}: {:>8.1} ms {:>7.1} MiB | {:>6.2}x wall {:>5.2}x RSS",
            b.wall.as_secs_f64() * 1e3,
            b.max_rss_kib as f64 / 1024.0,
            n.wall.as_secs_f64() * 1e3,
            n.max_rss_kib as f64 / 1024.0,
            n.wall.as_secs_f64() / b.wall.as_secs_f64(),
            n.max_rss_kib as f64 / b.max_rss_kib as f64
        );
    }
    // The big lab's folder is deleted with `big` (its state.json is the bulk of the disk used).
    drop(big);
}

fn main() {
    if let Some(to) = std::env::var_os(MEASURE_ENV) {
        measuring_parent(&to);
    }
    let objects = std::env::var("VERIFY_BENCH_OBJECTS")
        .ok()
        .map(|v| {
            v.replace(['_', ','], "")
                .parse::<u32>()
                .unwrap_or_else(|e| panic!("VERIFY_BENCH_OBJECTS={v}: {e}"))
        })
        .unwrap_or(DEFAULT_OBJECTS);
    let only = std::env::var("VERIFY_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "checks" {
        concurrent_checks();
    }
    if only.is_empty() || only == "search" {
        searches(|| Driver::Tds, "tds (TDS 7.4, tiberius)", objects);
        searches(|| Driver::Odbc, "odbc (TDS 7.1, FreeTDS)", objects);
    }
    let _ = text; // the harness's output helper, unused here
}
