//! The import arrows of `src/` run one way: cli -> engine -> steps -> adapters -> plan (the plan
//! language is its own crate, so the compiler holds that arrow). A module that names a module
//! above it (`steps` naming `engine`, `adapters` naming `steps`) fails here, with the line.

use std::path::Path;

/// Each layer, lowest first; a layer may name itself and the layers below it.
const LAYERS: [&str; 5] = ["plan", "adapters", "steps", "engine", "cli"];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a line names: `crate::engine::x`, each item of `crate::{engine, steps}`.
fn named_modules(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let group = if let Some(inner) = rest.strip_prefix('{') {
            inner.split('}').next().unwrap_or("")
        } else {
            rest
        };
        for item in group.split(',') {
            let name: String = item
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
            if !rest.starts_with('{') {
                break;
            }
        }
    }
    out
}

#[test]
fn a_grouped_import_names_each_of_its_modules() {
    assert_eq!(
        named_modules("use crate::{engine, steps::x};"),
        ["engine", "steps"]
    );
    assert_eq!(named_modules("use crate::adapters::fs;"), ["adapters"]);
}

#[test]
fn no_module_of_src_names_a_module_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (level, layer) in LAYERS.iter().enumerate() {
        let mut files = Vec::new();
        rust_files(&root.join(layer), &mut files);
        assert!(!files.is_empty(), "no sources under src/{layer}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let named = named_modules(line);
                for above in &LAYERS[level + 1..] {
                    if named.iter().any(|m| m == above) {
                        wrong.push(format!(
                            "{}:{}: src/{layer} names `crate::{above}`: {}",
                            file.display(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the arrows:\n{}",
        wrong.join("\n")
    );
}

/// The plan language names nothing of the executor: it is shared with the lab.
#[test]
fn the_plan_crate_names_no_executor_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plan");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 5,
        "the plan crate's sources are not under src/plan"
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("upgrade::"),
            "{} names the executor crate",
            file.display()
        );
    }
}
