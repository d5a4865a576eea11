//! A small T-SQL tokenizer and a shape matcher: statements are recognised by their token shape with
//! the literal values pulled out, never by exact text. TEST DOUBLE: it knows only what the lab needs
//! and must not grow into a SQL parser.

/// One T-SQL token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A bare word: keyword or identifier (`SELECT`, `dbo`).
    Word(String),
    /// A delimited identifier: `[x]` or `"x"`, unquoted.
    Quoted(String),
    /// A string literal, `'x'` or `N'x'`, unquoted.
    Str(String),
    Num(String),
    /// `@@VERSION`, `@p1`.
    Var(String),
    Sym(char),
}

impl Tok {
    /// The token as it would be written (for "Incorrect syntax near ...").
    pub fn text(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Num(w) | Tok::Var(w) => w.clone(),
            Tok::Quoted(q) => q.clone(),
            Tok::Str(s) => s.clone(),
            Tok::Sym(c) => c.to_string(),
        }
    }

    /// The name this token spells, if it is an identifier.
    pub fn name(&self) -> Option<&str> {
        match self {
            Tok::Word(w) | Tok::Quoted(w) => Some(w),
            _ => None,
        }
    }
}

/// A token that cannot be read: an unterminated quote or bracket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub near: String,
}

/// Splits SQL text into tokens, dropping whitespace and `--`/`/* */` comments.
pub fn tokenize(sql: &str) -> Result<Vec<Tok>, LexError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || ((c == 'N' || c == 'n') && chars.get(i + 1) == Some(&'\'')) {
            let start = i;
            i += if c == '\'' { 1 } else { 2 };
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(LexError {
                            near: chars[start..].iter().collect(),
                        })
                    }
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c == '[' || c == '"' {
            let close = if c == '[' { ']' } else { '"' };
            let start = i;
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(LexError {
                            near: chars[start..].iter().collect(),
                        })
                    }
                    Some(&ch) if ch == close && chars.get(i + 1) == Some(&close) => {
                        s.push(close);
                        i += 2;
                    }
                    Some(&ch) if ch == close => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Quoted(s));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
        } else if c == '@' || c.is_alphabetic() || c == '_' || c == '#' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '@' | '#' | '$'))
            {
                i += 1;
            }
            let w: String = chars[start..i].iter().collect();
            out.push(if c == '@' { Tok::Var(w) } else { Tok::Word(w) });
        } else {
            out.push(Tok::Sym(c));
            i += 1;
        }
    }
    Ok(out)
}

/// A value pulled out of a statement by a shape: `$S` (string literal), `$N` (name), `$I` (number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    Str(String),
    Name(String),
    Num(String),
}

impl Capture {
    pub fn as_str(&self) -> &str {
        match self {
            Capture::Str(s) | Capture::Name(s) | Capture::Num(s) => s,
        }
    }
}

/// Matches `tokens` against a shape written as SQL with `$S`/`$N`/`$I` holes. Words match
/// case-insensitively and a bare word matches the same name in brackets; a trailing `;` is allowed.
/// `Ok(captures)` on a match, `Err(n)` with the number of tokens that matched before it diverged.
pub fn match_shape(shape: &[Tok], tokens: &[Tok]) -> Result<Vec<Capture>, usize> {
    let tokens = match tokens.last() {
        Some(Tok::Sym(';')) => &tokens[..tokens.len() - 1],
        _ => tokens,
    };
    let mut caps = Vec::new();
    for (i, pat) in shape.iter().enumerate() {
        let Some(tok) = tokens.get(i) else {
            return Err(i);
        };
        let ok = match (pat, tok) {
            (Tok::Word(p), Tok::Str(s)) if p == "$S" => {
                caps.push(Capture::Str(s.clone()));
                true
            }
            (Tok::Word(p), Tok::Word(n) | Tok::Quoted(n)) if p == "$N" => {
                caps.push(Capture::Name(n.clone()));
                true
            }
            (Tok::Word(p), Tok::Num(n)) if p == "$I" => {
                caps.push(Capture::Num(n.clone()));
                true
            }
            (Tok::Word(p), Tok::Word(n) | Tok::Quoted(n)) => p.eq_ignore_ascii_case(n),
            (Tok::Var(p), Tok::Var(n)) => p.eq_ignore_ascii_case(n),
            (Tok::Str(p), Tok::Str(s)) => p == s,
            (Tok::Num(p), Tok::Num(n)) => p == n,
            (Tok::Sym(p), Tok::Sym(s)) => p == s,
            _ => false,
        };
        if !ok {
            return Err(i);
        }
    }
    if tokens.len() == shape.len() {
        Ok(caps)
    } else {
        Err(shape.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap()
    }

    #[test]
    fn literals_and_names_are_captured_whatever_the_spacing_and_case() {
        let sh = shape("SELECT name FROM master.dbo.sysdatabases WHERE name = $S");
        let toks =
            tokenize("select   NAME from [master].dbo.[sysdatabases]\n where name=N'It''s';")
                .unwrap();
        assert_eq!(
            match_shape(&sh, &toks),
            Ok(vec![Capture::Str("It's".into())])
        );
    }

    #[test]
    fn a_different_statement_reports_where_it_diverged() {
        let sh = shape("SELECT name FROM master.dbo.sysdatabases WHERE name = $S");
        let toks = tokenize("SELECT name FROM master.dbo.sysobjects").unwrap();
        assert_eq!(match_shape(&sh, &toks), Err(7));
    }

    #[test]
    fn unterminated_literals_are_lex_errors() {
        assert!(tokenize("SELECT N'abc").is_err());
        assert!(tokenize("SELECT [abc").is_err());
    }
}
