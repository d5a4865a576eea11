//! A program and its arguments as a WinRS command line: the shell joins Command and Arguments with
//! spaces and the program splits the line by the Microsoft C runtime rules (CommandLineToArgvW).
//! The client asks the shell to start the program directly (WINRS_SKIP_CMD_SHELL), yet each value
//! is also made safe for cmd.exe, should a server run the line through it anyway: operators
//! (`& | < > ^ ( )`) only inside quotes, and `%` (expanded even inside quotes) and `"` refused.
//! Each value arrives as exactly one argument, or is refused with the argument named.

/// A value that cannot be passed through cmd.exe as one literal argument.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} cannot be passed to a remote command: {why}")]
pub struct UnsafeArgument {
    /// "the program name" or "argument N".
    pub what: String,
    pub why: &'static str,
}

/// The program and each argument, quoted for the command line.
pub fn quote(program: &str, args: &[String]) -> Result<(String, Vec<String>), UnsafeArgument> {
    let program = one(program, "the program name".to_string())?;
    let args = args
        .iter()
        .enumerate()
        .map(|(i, a)| one(a, format!("argument {}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((program, args))
}

fn one(value: &str, what: String) -> Result<String, UnsafeArgument> {
    let refuse = |why| {
        Err(UnsafeArgument {
            what: what.clone(),
            why,
        })
    };
    if value.chars().any(char::is_control) {
        return refuse("it holds a control character (a line break, tab or NUL)");
    }
    if value.contains('"') {
        return refuse("it holds a double quote, which cmd.exe would read as the end of quoting");
    }
    if value.contains('%') {
        return refuse("it holds `%`, which cmd.exe expands as a variable even inside quotes");
    }
    let needs_quotes = value.is_empty()
        || value.chars().any(|c| {
            matches!(
                c,
                ' ' | '&' | '|' | '<' | '>' | '^' | '(' | ')' | ',' | ';' | '='
            )
        });
    if !needs_quotes {
        return Ok(value.to_string());
    }
    // Backslashes before the closing quote are doubled, or the C runtime reads `\"` as a quote.
    let trailing = value.len() - value.trim_end_matches('\\').len();
    Ok(format!("\"{value}{}\"", "\\".repeat(trailing)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(args: &[&str]) -> Vec<String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        quote("reg", &args).unwrap().1
    }

    #[test]
    fn a_plain_argument_stays_as_it_is_and_one_with_spaces_or_operators_is_quoted() {
        assert_eq!(
            q(&["query", r"HKLM\SOFTWARE\Microsoft", "/v", ""]),
            ["query", r"HKLM\SOFTWARE\Microsoft", "/v", "\"\""]
        );
        assert_eq!(
            q(&[r"C:\Program Files\x", "a&b", r"C:\Some Dir\"]),
            [r#""C:\Program Files\x""#, "\"a&b\"", r#""C:\Some Dir\\""#]
        );
        assert_eq!(
            quote(r"C:\Program Files\tool.exe", &[]).unwrap().0,
            r#""C:\Program Files\tool.exe""#
        );
    }

    #[test]
    fn quotes_percent_signs_and_line_breaks_are_refused_naming_the_argument() {
        let err = quote("reg", &["ok".into(), "50%".into()]).unwrap_err();
        assert_eq!(err.what, "argument 2");
        assert!(quote("reg", &["a\"b".into()]).is_err());
        assert!(quote("reg", &["a\nb".into()]).is_err());
        assert_eq!(quote("re\"g", &[]).unwrap_err().what, "the program name");
    }
}
