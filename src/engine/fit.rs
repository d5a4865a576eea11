//! Lines for people fitted to a terminal's width: paths shortened in the middle
//! (`C:\Program Files\...\Extensions\x.dll`, the first folder and the last ones kept), and what
//! is still too wide wrapped at spaces under its line. Only for a terminal of known width: off a
//! terminal and in `--json` every path is shown whole. Pure text in, text out; takes plain
//! (uncoloured) text.

use std::sync::OnceLock;

use regex::Regex;
use unicode_width::UnicodeWidthStr;

/// What stands for the folders left out of a shortened path.
const ELLIPSIS: &str = "...";

/// The columns `text` takes on a terminal.
pub fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// `line` in at most `columns` columns: its paths shortened in the middle as far as needed
/// (the longest first), then, if it is still too wide, wrapped at spaces onto lines indented by
/// `indent` spaces. One string per terminal line.
pub fn fit(line: &str, columns: usize, indent: usize) -> Vec<String> {
    if width(line) <= columns {
        return vec![line.to_string()];
    }
    let spans: Vec<(usize, usize, Vec<String>)> = path_spans(line)
        .into_iter()
        .map(|(start, end)| (start, end, shorter_forms(&line[start..end])))
        .collect();
    // How far each path is shortened: 0 is whole, n is its n-th shorter form.
    let mut level = vec![0; spans.len()];
    let rebuild = |level: &[usize]| {
        let mut out = String::new();
        let mut at = 0;
        for ((start, end, forms), &l) in spans.iter().zip(level) {
            out.push_str(&line[at..*start]);
            match l {
                0 => out.push_str(&line[*start..*end]),
                l => out.push_str(&forms[l - 1]),
            }
            at = *end;
        }
        out.push_str(&line[at..]);
        out
    };
    let mut current = rebuild(&level);
    while width(&current) > columns {
        let shown = |i: usize| match level[i] {
            0 => width(&line[spans[i].0..spans[i].1]),
            l => width(&spans[i].2[l - 1]),
        };
        let longest = (0..spans.len())
            .filter(|&i| level[i] < spans[i].2.len())
            .max_by_key(|&i| (shown(i), std::cmp::Reverse(i)));
        let Some(i) = longest else { break };
        level[i] += 1;
        current = rebuild(&level);
    }
    wrap(&current, columns, indent)
}

/// Paths in free text: `C:\...`, `\\server\share\...` or `/...` at the start of a word (or after
/// a quote, `=`, `(` or `:`); a folder name may hold single spaces before words that begin with
/// a letter, when a separator follows it (`C:\Program Files\Microsoft Identity Integration
/// Server\Extensions`, but not `x.bak 3/10`).
fn paths() -> &'static Regex {
    static PATHS: OnceLock<Regex> = OnceLock::new();
    PATHS.get_or_init(|| {
        // Invariant: a constant pattern that compiles.
        Regex::new(
            r#"(?:^|[\s"'=(:])((?:[A-Za-z]:\\|\\\\|/)(?:[^\s\\/"',;()]+(?: [A-Za-z][^\s\\/"',;()]*)*[\\/])*[^\s\\/"',;()]*)"#,
        )
        .expect("the path pattern compiles")
    })
}

/// Where the paths in `text` begin and end (byte offsets).
fn path_spans(text: &str) -> Vec<(usize, usize)> {
    paths()
        .captures_iter(text)
        .filter_map(|c| c.get(1))
        .map(|m| (m.start(), m.end()))
        .collect()
}

/// `path` with more and more of its middle folders left out, each form shorter than the one
/// before: the first folder and the last two names always stay (a file and its folder, a copy's
/// folder and the one it is in), so that two paths on a line still tell apart.
fn shorter_forms(path: &str) -> Vec<String> {
    let root = if path.starts_with(r"\\") {
        2
    } else if path.as_bytes().get(1) == Some(&b':') {
        3
    } else {
        1
    };
    let Some(body) = path.get(root..) else {
        return Vec::new();
    };
    let seps: Vec<usize> = body
        .char_indices()
        .filter(|&(_, c)| c == '/' || c == '\\')
        .map(|(i, _)| i)
        .collect();
    let mut forms: Vec<String> = Vec::new();
    for k in 1..seps.len().saturating_sub(1) {
        let form = format!(
            "{}{}{ELLIPSIS}{}",
            &path[..root],
            &body[..=seps[0]],
            &body[seps[k]..]
        );
        let before = forms.last().map_or(path.len(), String::len);
        if form.len() < before {
            forms.push(form);
        }
    }
    forms
}

/// `line` broken at spaces (never inside a path: `Program Files` stays together) into lines of
/// at most `columns` columns, the lines after the first indented by `indent` spaces; a word
/// wider than a line is cut where the line ends.
fn wrap(line: &str, columns: usize, indent: usize) -> Vec<String> {
    let lead = " ".repeat(indent.min(columns / 2));
    let body = line.trim_start_matches(' ');
    let mut current = line[..line.len() - body.len()].to_string();
    let mut lines: Vec<String> = Vec::new();
    // Whether `current` holds a word yet (beyond its indentation).
    let mut has_word = false;
    for word in words(body) {
        if width(&current) + width(word) + usize::from(has_word) <= columns {
            if has_word {
                current.push(' ');
            }
            current.push_str(word);
            has_word = true;
            continue;
        }
        if has_word {
            let full = std::mem::replace(&mut current, lead.clone());
            lines.push(full.trim_end().to_string());
        }
        let mut rest = word;
        while width(&current) + width(rest) > columns {
            let cut = cut_at(rest, columns.saturating_sub(width(&current)));
            current.push_str(&rest[..cut]);
            lines.push(std::mem::replace(&mut current, lead.clone()));
            rest = &rest[cut..];
        }
        current.push_str(rest);
        has_word = !rest.is_empty();
    }
    if has_word || lines.is_empty() {
        lines.push(current.trim_end().to_string());
    }
    lines
}

/// `text` split at its spaces, except those inside a path.
fn words(text: &str) -> Vec<&str> {
    let inside = path_spans(text);
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' && !inside.iter().any(|&(a, b)| a < i && i < b) {
            out.push(&text[start..i]);
            start = i + 1;
        }
    }
    out.push(&text[start..]);
    out
}

/// The byte offset at which `text` is at most `columns` wide (at least one character).
fn cut_at(text: &str, columns: usize) -> usize {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > columns && i > 0 {
            return i;
        }
        used += w;
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_windows_path_loses_its_middle_folders_and_keeps_its_first_and_its_last_two() {
        let line =
            r"  write: C:\Program Files\Microsoft Identity Integration Server\Extensions\x.dll";
        assert_eq!(
            fit(line, 50, 8),
            [r"  write: C:\Program Files\...\Extensions\x.dll"]
        );
        assert_eq!(
            fit(line, 45, 8),
            [
                r"  write:",
                r"        C:\Program Files\...\Extensions\x.dll"
            ]
        );
        assert_eq!(fit(line, 200, 8), [line]);
    }

    #[test]
    fn the_longest_path_is_shortened_first_so_each_keeps_its_last_folders() {
        let line = "copy: 3 file(s), /tmp/lab-1/drives/C/Program Files/Extensions -> /tmp/lab-1/drives/D/Upgrade/long/deep/Extensions";
        let fitted = fit(line, 100, 6);
        assert_eq!(
            fitted,
            ["copy: 3 file(s), /tmp/.../C/Program Files/Extensions -> /tmp/.../D/Upgrade/long/deep/Extensions"]
        );
        assert!(fitted.iter().all(|l| width(l) <= 100));
    }

    #[test]
    fn what_paths_cannot_shorten_enough_is_wrapped_under_the_line() {
        let line = "  + remove-iifp: removed Identity Integration Feature Pack 3.0.0.0 {6A3C2F10-5B8E-4C1D-9E7A-0D1F2B3C4A51}: msiexec exit 0 (success)";
        let fitted = fit(line, 60, 4);
        assert_eq!(
            fitted,
            [
                "  + remove-iifp: removed Identity Integration Feature Pack",
                "    3.0.0.0 {6A3C2F10-5B8E-4C1D-9E7A-0D1F2B3C4A51}: msiexec",
                "    exit 0 (success)",
            ]
        );
        let word = format!("  sql: {}", "x".repeat(70));
        assert!(fit(&word, 30, 6).iter().all(|l| width(l) <= 30));
    }

    #[test]
    fn unc_paths_sql_strings_and_switches_are_found_and_dates_and_rates_are_not() {
        let found: Vec<&str> = paths()
            .captures_iter(r"N'\\srv\share\a\b.bak' /keyfile:/tmp/a/b 3/10 files 2026-11-27 MB/s")
            .filter_map(|c| c.get(1))
            .map(|m| m.as_str())
            .collect();
        assert_eq!(found, [r"\\srv\share\a\b.bak", "/keyfile:/tmp/a/b"]);
        assert_eq!(
            shorter_forms(r"\\srv\share\a\b.bak"),
            [r"\\srv\...\a\b.bak"]
        );
    }
}
