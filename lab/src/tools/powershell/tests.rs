//! The interpreter, construct by construct, on a lab's drives in a temporary folder.

use super::run_script;

fn ps(lab: &std::path::Path, script: &str) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_script(lab, script, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn literals_print_one_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = ps(dir.path(), "'it''s'; 42; $true; $false; $null");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "it's\r\n42\r\nTrue\r\nFalse\r\n");
}
