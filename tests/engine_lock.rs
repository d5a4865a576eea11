//! The apply lock under a crowd: many `upgrade` processes start at the same instant, one takes
//! the lock, and every other one is refused with the name of the live holder (pid, host, start
//! time), never "someone" and never a process that died earlier. Processes, not threads: the lock
//! is per open file, and only separate processes have separate pids to name.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use upgrade::engine::lock::ApplyLock;

const CHILD_LOCK: &str = "UPGRADE_TEST_LOCK_PATH";
const CHILD_DIR: &str = "UPGRADE_TEST_LOCK_DIR";
const CHILD_INDEX: &str = "UPGRADE_TEST_LOCK_INDEX";
/// How long the winner keeps the lock: long enough for every other process to be refused.
const HOLD: Duration = Duration::from_millis(2500);

fn wait_for(path: &Path, what: &str) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < Duration::from_secs(30), "no {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One contender, run as a child process of `many_simultaneous_applies_...`: says it is ready,
/// waits for the starting signal, tries the lock once, and prints what happened.
#[test]
#[ignore = "a child process of many_simultaneous_applies_are_refused_with_the_holders_name"]
fn contender() {
    let lock = PathBuf::from(std::env::var_os(CHILD_LOCK).expect("run by the crowd test"));
    let dir = PathBuf::from(std::env::var_os(CHILD_DIR).unwrap());
    let index = std::env::var(CHILD_INDEX).unwrap();
    std::fs::write(dir.join(format!("ready-{index}")), b"").unwrap();
    wait_for(&dir.join("go"), "starting signal");
    match ApplyLock::acquire(&lock) {
        Ok(held) => {
            println!("WON pid {}", std::process::id());
            std::thread::sleep(HOLD);
            drop(held);
        }
        Err(e) => println!("REFUSED {e}"),
    }
}

fn start_crowd(lock: &Path, dir: &Path, size: usize) -> Vec<Child> {
    let children: Vec<Child> = (0..size)
        .map(|i| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "contender",
                    "--ignored",
                    "--nocapture",
                    "--quiet",
                ])
                .env(CHILD_LOCK, lock)
                .env(CHILD_DIR, dir)
                .env(CHILD_INDEX, i.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for i in 0..size {
        wait_for(&dir.join(format!("ready-{i}")), "ready contender");
    }
    std::fs::write(dir.join("go"), b"").unwrap();
    children
}

/// `pid P on HOST since TIME` in a refusal, parsed.
fn holder_named(refusal: &str) -> Option<(u32, String, chrono::DateTime<chrono::FixedOffset>)> {
    let rest = &refusal[refusal.find(": pid ")? + ": pid ".len()..];
    let (pid, rest) = rest.split_once(" on ")?;
    let (host, rest) = rest.split_once(" since ")?;
    let since = rest.split(';').next()?;
    Some((
        pid.parse().ok()?,
        host.to_string(),
        chrono::DateTime::parse_from_rfc3339(since).ok()?,
    ))
}

fn one_round(dir: &Path, lock: &Path, size: usize) {
    let started = chrono::Utc::now();
    let outputs: Vec<String> = start_crowd(lock, dir, size)
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned())
        .collect();
    let lines: Vec<&str> = outputs
        .iter()
        .flat_map(|o| o.lines())
        .filter(|l| l.starts_with("WON ") || l.starts_with("REFUSED "))
        .collect();
    assert_eq!(lines.len(), size, "every contender reports: {outputs:#?}");
    let winners: Vec<u32> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("WON pid "))
        .map(|pid| pid.parse().unwrap())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one takes the lock: {lines:#?}");
    let refusals: Vec<&&str> = lines.iter().filter(|l| l.starts_with("REFUSED ")).collect();
    let unnamed: Vec<&&&str> = refusals
        .iter()
        .filter(|r| match holder_named(r) {
            Some((pid, host, since)) => {
                pid != winners[0]
                    || host.is_empty()
                    || since < started - chrono::Duration::seconds(1)
            }
            None => true,
        })
        .collect();
    assert!(
        unnamed.is_empty(),
        "{} of {} refusals do not name the live holder (pid {}):\n{unnamed:#?}",
        unnamed.len(),
        refusals.len(),
        winners[0]
    );
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("ready-") || name == "go" {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
fn many_simultaneous_applies_are_refused_with_the_holders_name() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("state/plan.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    // A process killed with kill -9 left its name behind; it holds nothing.
    std::fs::write(
        dir.path().join("state/plan.lock.holder.json"),
        br#"{"pid":999999,"host":"gone","since":"2020-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    for _round in 0..2 {
        one_round(dir.path(), &lock, 20);
    }
}
