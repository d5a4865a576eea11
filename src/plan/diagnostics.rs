//! What validation reports: one diagnostic per problem, each with the file, line, column and field
//! path it concerns. Collecting many is the point; nothing here decides what is an error.

use std::fmt;

use serde::Serialize;

use super::source::escape_for_terminal;

/// One problem in a plan file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The plan file as the user named it.
    pub file: String,
    /// 1-based line; 0 when the problem has no place in the file (e.g. it cannot be read).
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// Field path like `steps[3].uninstall.product`; empty for the whole document.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = escape_for_terminal(&self.file);
        // A problem with no place in the file (it cannot be read) is the file's own.
        if self.line == 0 && self.path.is_empty() {
            return write!(f, "{file}: {}", escape_for_terminal(&self.message));
        }
        let path = if self.path.is_empty() {
            "(plan)"
        } else {
            &self.path
        };
        // Paths and messages repeat keys and values from the plan: never raw to a terminal.
        write!(
            f,
            "{file}:{}:{}: {}: {}",
            self.line,
            self.column,
            escape_for_terminal(path),
            escape_for_terminal(&self.message)
        )
    }
}

/// Every problem found in a plan, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Sorts by position, then path and message, and drops exact duplicates.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            (a.line, a.column, &a.path, &a.message).cmp(&(b.line, b.column, &b.path, &b.message))
        });
        self.0.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
