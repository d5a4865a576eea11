//! The plan file's bytes: a reviewer must read exactly what runs. Text the YAML reader would cut
//! off, skip or show differently is an error at its line and column; an encoding other than
//! UTF-8 is named so the user can save the plan again; a UTF-8 byte-order mark is accepted.
//! (Corpus cases that are plain text live in tests/bad_plans; these need exact bytes.)

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use upgrade::plan::{self, Diagnostics, LoadedPlan};

fn seed_plan() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plans/iifp-to-miis2003.yaml");
    std::fs::read_to_string(path).expect("the seed plan")
}

/// Writes `bytes` as a plan file and loads it the way `upgrade validate` does.
fn load_bytes(bytes: &[u8]) -> Result<LoadedPlan, Diagnostics> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.yaml");
    std::fs::write(&path, bytes).unwrap();
    plan::load(&path)
}

/// The only diagnostic, as `LINE:COLUMN: message` (the temporary file name left out).
fn only_problem(result: Result<LoadedPlan, Diagnostics>) -> String {
    let diags = match result {
        Ok(loaded) => panic!(
            "accepted as a plan of {} steps, but it must be refused",
            loaded.plan.steps.len()
        ),
        Err(diags) => diags,
    };
    assert_eq!(diags.len(), 1, "{diags}");
    let d = &diags.0[0];
    format!("{}:{}: {}", d.line, d.column, d.message)
}

/// The seed plan with `insert` put at the start of line `line` (1-based).
fn seed_with(line: usize, insert: &str) -> String {
    let text = seed_plan();
    let at: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    format!("{}{insert}{}", &text[..at], &text[at..])
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn a_nul_byte_does_not_cut_an_eight_step_plan_down_to_five() {
    let seed = seed_plan();
    assert_eq!(
        plan::load_str("seed.yaml", &seed).unwrap().plan.steps.len(),
        8
    );
    let line = line_of(&seed, "- id: remove-iifp");
    let cut = seed_with(line, "\0");
    let problem = only_problem(load_bytes(cut.as_bytes()));
    assert_eq!(
        problem,
        format!(
            "{line}:1: a NUL character (U+0000); the YAML reader stops at it, so the rest of the \
             file would never run"
        )
    );
}

#[test]
fn a_utf8_byte_order_mark_is_accepted_and_kept_in_the_hash() {
    let bytes = [b"\xEF\xBB\xBF".as_slice(), seed_plan().as_bytes()].concat();
    let loaded = load_bytes(&bytes).expect("a plan saved with a byte-order mark is valid");
    assert_eq!(loaded.plan.steps.len(), 8);
    assert_eq!(loaded.plan.name, "iifp-to-miis2003");
    assert_eq!(loaded.sha256, hex::encode(Sha256::digest(&bytes)));
}

#[test]
fn a_byte_order_mark_does_not_shift_the_columns_an_editor_shows() {
    let text =
        "\u{feff}version: 2\nname: x\nserver: { sql: { host: h, auth: windows } }\nsteps: []\n";
    let diags = plan::load_str("p.yaml", text).unwrap_err();
    let d = &diags.0[0];
    assert_eq!(
        (d.line, d.column, d.path.as_str()),
        (1, 10, "version"),
        "{diags}"
    );
}

#[test]
fn a_plan_of_nothing_but_a_byte_order_mark_is_called_empty() {
    assert_eq!(
        only_problem(load_bytes(b"\xEF\xBB\xBF")),
        "1:1: the plan is empty; a plan has version:, name:, server: and steps:"
    );
}

#[test]
fn utf16_and_utf32_plans_are_told_to_be_saved_as_utf8() {
    let text = seed_plan();
    let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let utf32le: Vec<u8> = text
        .chars()
        .flat_map(|c| u32::from(c).to_le_bytes())
        .collect();
    let cases = [
        (
            "UTF-16 little-endian",
            [b"\xFF\xFE".as_slice(), &le].concat(),
        ),
        ("UTF-16 little-endian", le.clone()),
        ("UTF-16 big-endian", [b"\xFE\xFF".as_slice(), &be].concat()),
        ("UTF-16 big-endian", be.clone()),
        ("UTF-32 little-endian", utf32le),
    ];
    for (encoding, bytes) in cases {
        assert_eq!(
            only_problem(load_bytes(&bytes)),
            format!(
                "1:1: the plan file is {encoding} text; save the plan as UTF-8 (in Notepad: \
                 Save As, Encoding: UTF-8)"
            )
        );
    }
    // A test harness that reads the file as UTF-8 first gets the same answer.
    let as_utf8 = String::from_utf8(le).expect("ASCII in UTF-16 is valid UTF-8, with NULs");
    let diags = plan::load_str("p.yaml", &as_utf8).unwrap_err();
    assert!(
        diags.to_string().contains("UTF-16 little-endian"),
        "{diags}"
    );
}

#[test]
fn bytes_that_are_not_utf8_are_placed_at_their_line_and_column() {
    let bytes = [b"version: 1\nname: caf".as_slice(), b"\xE9\n"].concat();
    assert_eq!(
        only_problem(load_bytes(&bytes)),
        "2:10: the plan file is not UTF-8 text (invalid byte 0xE9); save the plan as UTF-8"
    );
}

#[test]
fn characters_that_hide_or_reorder_text_are_errors_wherever_they_are() {
    let cases = [
        // An escape sequence in a comment hides the lines after it on a terminal.
        ("# note\x1b[8m\n", 7, "a control character (U+001B)"),
        ("description: a\x7fb\n", 15, "a control character (U+007F)"),
        (
            "description: a\u{85}b\n",
            15,
            "a control character (U+0085)",
        ),
        (
            "description: ok\rname: shown\n",
            16,
            "a carriage return (U+000D) that does not end a line",
        ),
        (
            "# abc\u{202e}def\n",
            6,
            "an invisible character (U+202E) that changes the order",
        ),
        (
            "# abc\u{2066}def\n",
            6,
            "an invisible character (U+2066) that changes the order",
        ),
        (
            "# abc\u{2028}steps: []\n",
            6,
            "a Unicode line or paragraph separator (U+2028)",
        ),
        (
            "# a\u{feff}\n",
            4,
            "a byte-order mark (U+FEFF) inside the text",
        ),
    ];
    let line = line_of(&seed_plan(), "name: iifp-to-miis2003");
    for (insert, column, start) in cases {
        let problem = only_problem(load_bytes(seed_with(line, insert).as_bytes()));
        assert!(
            problem.starts_with(&format!("{line}:{column}: {start}")),
            "{insert:?}: {problem}"
        );
    }
}

#[test]
fn every_line_with_such_a_character_is_reported() {
    let text = seed_with(3, "# \x1b[2J\n# \x1b[H\n");
    let diags = plan::load_str("p.yaml", &text).unwrap_err();
    let at: Vec<(usize, usize)> = diags.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(at, [(3, 3), (4, 3)], "{diags}");
}

#[test]
fn crlf_line_ends_tabs_and_a_closing_document_marker_are_fine() {
    let seed = seed_plan();
    let crlf = seed.replace('\n', "\r\n");
    assert_eq!(load_bytes(crlf.as_bytes()).unwrap().plan.steps.len(), 8);
    let tab_in_comment = seed_with(2, "#\tcomment with a tab\n");
    assert_eq!(
        load_bytes(tab_in_comment.as_bytes())
            .unwrap()
            .plan
            .steps
            .len(),
        8
    );
    let explicit = format!("---\n{seed}...\n# after the end, only comments\n");
    assert_eq!(load_bytes(explicit.as_bytes()).unwrap().plan.steps.len(), 8);
}

#[test]
fn text_after_the_end_of_the_document_is_an_error_even_with_crlf_line_ends() {
    let text = format!("{}...\r\nsteps: []\r\n", seed_plan().replace('\n', "\r\n"));
    let line = text.lines().count() - 1;
    assert_eq!(
        only_problem(load_bytes(text.as_bytes())),
        format!("{line}:1: the plan's YAML document ends here (`...`); the text after it would never run")
    );
}

#[test]
fn a_saved_plan_of_a_bom_file_loads_again() {
    // `apply` of a saved plan re-reads the recorded source with load_str: the BOM must survive.
    let bytes = [b"\xEF\xBB\xBF".as_slice(), seed_plan().as_bytes()].concat();
    let loaded = load_bytes(&bytes).unwrap();
    let again = plan::load_str("plan.yaml", &loaded.source).unwrap();
    assert_eq!(again.sha256, loaded.sha256);
    assert!(Path::new(&loaded.path).ends_with("plan.yaml"));
}
