//! The plan file as text, before and around YAML: UTF-8 only (a leading byte-order mark is
//! accepted and dropped), no character that cuts, hides or reorders what a reviewer reads, and
//! exactly one YAML document. What a reviewer reads must be all that runs; nothing here
//! interprets the plan's fields.

use std::borrow::Cow;

use yaml_rust2::parser::{Event, Parser};

/// A problem with the file's text, at a 1-based line and column (characters, as an editor counts
/// them, the byte-order mark not counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextProblem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

const BOM: char = '\u{feff}';

/// The file's bytes as text, or why they are not UTF-8. UTF-16 and UTF-32 (what Windows editors
/// call "Unicode") are named, so the user knows to save the plan as UTF-8.
pub fn decode(bytes: Vec<u8>) -> Result<String, TextProblem> {
    if let Some(problem) = wide_encoding(&bytes) {
        return Err(problem);
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // The prefix is valid UTF-8 by definition of `valid_up_to`.
        let before = std::str::from_utf8(valid).unwrap_or_default();
        let (line, column) = end_of(before);
        TextProblem {
            line,
            column,
            message: format!(
                "the plan file is not UTF-8 text (invalid byte 0x{:02X}); save the plan as UTF-8",
                e.as_bytes()[valid.len()]
            ),
        }
    })
}

/// The text YAML is to read: `text` without its byte-order mark. Refused, with one problem per
/// line that holds one, when the text has characters that make it read differently from how it
/// runs.
pub fn yaml_text(text: &str) -> Result<&str, Vec<TextProblem>> {
    if let Some(problem) = wide_encoding(text.as_bytes()) {
        return Err(vec![problem]);
    }
    let body = text.strip_prefix(BOM).unwrap_or(text);
    let mut problems = Vec::new();
    for (number, line) in body.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some((column, c)) = line.chars().enumerate().find(|(_, c)| misleading(*c)) {
            problems.push(TextProblem {
                line: number + 1,
                column: column + 1,
                message: describe(c),
            });
        }
    }
    if problems.is_empty() {
        Ok(body)
    } else {
        Err(problems)
    }
}

/// Where a second YAML document starts, for text whose first document has already loaded: the
/// YAML reader stops after the first, so anything after `---` or `...` would be read by a
/// reviewer and never run.
pub fn second_document(text: &str) -> Option<TextProblem> {
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    let mut ended_by_dots = None;
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => return None,
            Ok((Event::DocumentEnd, mark)) => {
                let line = text
                    .lines()
                    .nth(mark.line().saturating_sub(1))
                    .unwrap_or("");
                let at = line.chars().skip(mark.col()).collect::<String>();
                ended_by_dots = at.starts_with("...").then_some(mark);
            }
            Ok((Event::DocumentStart, mark)) => {
                documents += 1;
                if documents < 2 {
                    continue;
                }
                let (mark, message) = match ended_by_dots {
                    Some(dots) => (
                        dots,
                        "the plan's YAML document ends here (`...`); the text after it would \
                         never run",
                    ),
                    None => (
                        mark,
                        "a second YAML document starts here; a plan file is one document, and \
                         nothing after its first would run",
                    ),
                };
                return Some(TextProblem {
                    line: mark.line(),
                    column: mark.col() + 1,
                    message: message.to_string(),
                });
            }
            Ok(_) => {}
            Err(e) => {
                return Some(TextProblem {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                    message: format!(
                        "text after the end of the plan's YAML document (`---` or `...`) would \
                         never run, and is not even valid YAML: {}",
                        e.info()
                    ),
                })
            }
        }
    }
}

/// `text` as a terminal may be given it: every character `misleading` names is written as
/// `\u{1b}` instead, except line feeds and the carriage return of a CRLF line end, so that no
/// name from a plan or a server can move the cursor, clear the screen or reorder what is shown.
pub fn escape_for_terminal(text: &str) -> Cow<'_, str> {
    let mut chars = text.chars().peekable();
    let mut shown = String::new();
    let mut changed = false;
    while let Some(c) = chars.next() {
        let line_end = c == '\n' || (c == '\r' && chars.peek() == Some(&'\n'));
        if misleading(c) && !line_end {
            shown.extend(c.escape_unicode());
            changed = true;
        } else {
            shown.push(c);
        }
    }
    if changed {
        Cow::Owned(shown)
    } else {
        Cow::Borrowed(text)
    }
}

/// UTF-16 or UTF-32 text, told by its byte-order mark or by the zero bytes ASCII gets in it.
fn wide_encoding(bytes: &[u8]) -> Option<TextProblem> {
    let name = match bytes {
        [0xFF, 0xFE, 0, 0, ..] | [1..=0x7F, 0, 0, 0, ..] => "UTF-32 little-endian",
        [0, 0, 0xFE, 0xFF, ..] | [0, 0, 0, 1..=0x7F, ..] => "UTF-32 big-endian",
        [0xFF, 0xFE, ..] | [1..=0x7F, 0, ..] => "UTF-16 little-endian",
        [0xFE, 0xFF, ..] | [0, 1..=0x7F, ..] => "UTF-16 big-endian",
        _ => return None,
    };
    Some(TextProblem {
        line: 1,
        column: 1,
        message: format!(
            "the plan file is {name} text; save the plan as UTF-8 (in Notepad: Save As, \
             Encoding: UTF-8)"
        ),
    })
}

/// Characters a plan may not hold anywhere, comments included: they cut the text short for the
/// YAML reader (NUL), hide or rewrite it on a terminal (escape sequences, a carriage return that
/// does not end a line), break lines in some editors but not for YAML, or show it in another
/// order than it is read (bidirectional controls, "Trojan Source"). YAML 1.2 (section 5.1)
/// already allows no C0 or C1 control but tab and line ends.
pub(crate) fn misleading(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            | '\u{2028}' | '\u{2029}' | BOM | '\u{fffe}' | '\u{ffff}')
}

fn describe(c: char) -> String {
    let code = format!("U+{:04X}", u32::from(c));
    match c {
        '\0' => format!(
            "a NUL character ({code}); the YAML reader stops at it, so the rest of the file \
             would never run"
        ),
        '\r' => format!(
            "a carriage return ({code}) that does not end a line; a terminal shows the text \
             after it over the start of the line (use LF or CRLF line ends)"
        ),
        '\u{2028}' | '\u{2029}' => format!(
            "a Unicode line or paragraph separator ({code}); some editors break the line here \
             but YAML does not (use a line feed)"
        ),
        BOM => format!(
            "a byte-order mark ({code}) inside the text; it is invisible, and only the file's \
             first character may be one"
        ),
        c if c.is_control() => format!(
            "a control character ({code}); it can hide or rewrite text on a terminal, and a \
             plan may hold only tabs and line ends besides printable text"
        ),
        _ => format!(
            "an invisible character ({code}) that changes the order or look of the text around \
             it; a reviewer would not read what runs"
        ),
    }
}

/// The 1-based line and column just after `before`.
fn end_of(before: &str) -> (usize, usize) {
    let before = before.strip_prefix(BOM).unwrap_or(before);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}
