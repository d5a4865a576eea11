//! The bad-plan corpus: every `tests/bad_plans/NAME.yaml` must be rejected with exactly the
//! diagnostics in `NAME.expected` (one `FILE:LINE:COLUMN: PATH: message` per line).
//! An expectation with no plan beside it (`missing-file.expected`) is what `upgrade validate`
//! says of a plan file that is not there.
//! To record the output for a new or changed case, run with `BLESS=1` and review the diff.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bad_plans")
}

fn names_with(ext: &str) -> BTreeSet<String> {
    std::fs::read_dir(corpus_dir())
        .expect("tests/bad_plans exists")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let stem = path.file_stem()?.to_string_lossy().into_owned();
            (path.extension()? == ext).then_some(stem)
        })
        .collect()
}

/// Loads a plan file that is not there, named in the diagnostics as the others are (no folder).
fn load_absent(file: &str) -> Result<upgrade::plan::LoadedPlan, upgrade::plan::Diagnostics> {
    upgrade::plan::load(&corpus_dir().join(file)).map_err(|mut diags| {
        for d in &mut diags.0 {
            d.file = file.to_string();
        }
        diags
    })
}

#[test]
fn every_bad_plan_is_rejected_with_exactly_its_expected_diagnostics() {
    let bless = std::env::var_os("BLESS").is_some();
    let plans = names_with("yaml");
    let expectations = names_with("expected");
    assert!(
        plans.len() >= 40,
        "the corpus must hold at least 40 bad plans, found {}",
        plans.len()
    );
    let missing: Vec<_> = expectations.difference(&plans).cloned().collect();
    assert!(
        missing.iter().all(|name| name.starts_with("missing-")),
        "expectations without a plan (only `missing-*` ones are for absent files): {missing:?}"
    );

    let mut failures = Vec::new();
    for name in plans.iter().chain(&missing) {
        let file = format!("{name}.yaml");
        let loaded = match std::fs::read_to_string(corpus_dir().join(&file)) {
            Ok(text) => upgrade::plan::load_str(&file, &text),
            Err(_) => load_absent(&file),
        };
        let actual = match loaded {
            Ok(_) => {
                failures.push(format!(
                    "{file}: accepted, but it is in the bad-plan corpus"
                ));
                continue;
            }
            Err(diags) => diags.to_string(),
        };
        let expected_path = corpus_dir().join(format!("{name}.expected"));
        if bless {
            std::fs::write(&expected_path, &actual).expect("write expectation");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Err(_) => failures.push(format!(
                "{file}: no {name}.expected; its diagnostics are:\n{actual}"
            )),
            Ok(expected) if expected != actual => failures.push(format!(
                "{file}: diagnostics differ\n--- expected\n{expected}--- actual\n{actual}"
            )),
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_literal_secret_is_never_echoed_back() {
    for name in names_with("yaml") {
        let text = std::fs::read_to_string(corpus_dir().join(format!("{name}.yaml"))).unwrap();
        if let Err(diags) = upgrade::plan::load_str("p.yaml", &text) {
            let shown = diags.to_string();
            for secret in ["hunter2", "Secret123"] {
                assert!(
                    !shown.contains(secret),
                    "{name}: diagnostics repeat the secret: {shown}"
                );
            }
        }
    }
}
