//! Wall-time figures for the closing note and reviews: `upgrade plan` and `upgrade apply` of the
//! seed plan against the lab (TEST DOUBLE server), as ratios against a baseline run side by side:
//! `upgrade validate` of the same plan (process start, parse, validate; no server). Run with
//! `cargo bench --bench e2e`; it prints figures and asserts nothing about speed.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{text, Driver, Rig};

const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(rig: &Rig, args: &[&str], expect: i32) -> Duration {
    let t0 = Instant::now();
    let out = rig.upgrade(args);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(expect), "{}", text(&out));
    took
}

fn main() {
    let mut validate = Vec::new();
    let mut plan_fresh = Vec::new();
    let mut apply = Vec::new();
    let mut plan_converged = Vec::new();
    let mut apply_converged = Vec::new();
    for odbc in [false, true] {
        let name = if odbc {
            "odbc (TDS 7.1, FreeTDS)"
        } else {
            "tds (TDS 7.4, tiberius)"
        };
        for _ in 0..RUNS {
            let rig = Rig::iifp(if odbc { Driver::Odbc } else { Driver::Tds }, &[]);
            let p = rig.plan_str().to_string();
            validate.push(time(&rig, &["validate", &p], 0));
            plan_fresh.push(time(&rig, &["plan", &p], 0));
            apply.push(time(&rig, &["apply", &p, "--auto-approve"], 0));
            plan_converged.push(time(&rig, &["plan", &p, "--detailed-exitcode"], 0));
            apply_converged.push(time(&rig, &["apply", &p, "--auto-approve"], 0));
        }
        let base = median(std::mem::take(&mut validate));
        println!("driver {name}: median of {RUNS} runs, each on a fresh lab");
        println!(
            "  {:<34} {:>9.1} ms  1.00x (baseline)",
            "validate (no server)",
            base.as_secs_f64() * 1e3
        );
        for (label, v) in [
            ("plan, fresh server (7 steps to do)", &mut plan_fresh),
            ("apply, fresh server", &mut apply),
            ("plan, converged server", &mut plan_converged),
            ("apply, converged server (no-op)", &mut apply_converged),
        ] {
            let m = median(std::mem::take(v));
            println!(
                "  {:<34} {:>9.1} ms  {:>5.2}x",
                label,
                m.as_secs_f64() * 1e3,
                m.as_secs_f64() / base.as_secs_f64()
            );
        }
    }
}
