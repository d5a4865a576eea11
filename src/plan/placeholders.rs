//! The install step's template placeholders (`{answers.store.server}`, `{log}`, ...): which exist,
//! which carry a secret, and where they occur in a string. Validation and the install step both use
//! this list; rendering values is the install step's job, not this module's.

/// A placeholder an install template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placeholder {
    /// The text between the braces, e.g. `answers.store.server`.
    pub name: &'static str,
    /// Whether its value is a secret (never on a command line unless the plan allows it).
    pub secret: bool,
    /// What it renders as.
    pub meaning: &'static str,
}

const fn p(name: &'static str, meaning: &'static str) -> Placeholder {
    Placeholder {
        name,
        secret: false,
        meaning,
    }
}

/// Every known placeholder. Absent optional answers render as the empty string.
pub const KNOWN: &[Placeholder] = &[
    p("answers.setup_type", "`complete` or `custom`"),
    p(
        "answers.store.server",
        "the SQL Server holding the existing database",
    ),
    p(
        "answers.store.instance",
        "its named instance (empty for the default instance)",
    ),
    p("answers.store.database", "the sync database name"),
    p("answers.store.reuse_existing", "`yes` or `no`"),
    p(
        "answers.service_account.user",
        "the service account's user name",
    ),
    p(
        "answers.service_account.domain",
        "the service account's domain",
    ),
    Placeholder {
        name: "answers.service_account.password",
        secret: true,
        meaning: "the service account's password (secret)",
    },
    p("answers.groups.admins", "the administrators group"),
    p("answers.groups.operators", "the operators group"),
    p("answers.groups.joiners", "the joiners group"),
    p("answers.groups.browse", "the browse group"),
    p("answers.groups.password_set", "the password set group"),
    p(
        "answers.key_file",
        "the key file: the export_keys step's file, or the given path",
    ),
    p("log", "the installer log path"),
];

/// The placeholder called `name`, if it exists.
pub fn lookup(name: &str) -> Option<&'static Placeholder> {
    KNOWN.iter().find(|p| p.name == name)
}

/// One `{name}` occurrence in a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence<'a> {
    /// The text between the braces.
    pub name: &'a str,
    /// Byte range of the whole `{name}`, braces included.
    pub start: usize,
    pub end: usize,
}

impl Occurrence<'_> {
    /// The known placeholder, or `None` for an unknown name.
    pub fn known(&self) -> Option<&'static Placeholder> {
        lookup(self.name)
    }
}

/// Finds every `{name}` in `text`, where name is a letter or `_`, then letters, digits, `_` and
/// `.`. Anything else in braces (a product code `{1234ABCD-...}`, a lone brace) is plain text.
pub fn find(text: &str) -> Vec<Occurrence<'_>> {
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            let body_start = i + 1;
            let mut j = body_start;
            while j < bytes.len()
                && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'.')
            {
                j += 1;
            }
            let starts_well = bytes
                .get(body_start)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
            if j < bytes.len() && bytes[j] == b'}' && starts_well {
                found.push(Occurrence {
                    name: &text[body_start..j],
                    start: i,
                    end: j + 1,
                });
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    found
}

/// Replaces every placeholder in `text` with `value(name)`; the first error from `value` stops it.
pub fn render<E>(
    text: &str,
    mut value: impl FnMut(&str) -> Result<String, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for occ in find(text) {
        out.push_str(&text[last..occ.start]);
        out.push_str(&value(occ.name)?);
        last = occ.end;
    }
    out.push_str(&text[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_placeholders_and_leaves_product_codes_alone() {
        let text = "/x {12345678-ABCD-1234-1234-123456789ABC} /sqlserver:{answers.store.server} /log:{log}";
        let names: Vec<_> = find(text).iter().map(|o| o.name).collect();
        assert_eq!(names, ["answers.store.server", "log"]);
    }

    #[test]
    fn the_password_is_the_only_secret() {
        let secrets: Vec<_> = KNOWN.iter().filter(|p| p.secret).map(|p| p.name).collect();
        assert_eq!(secrets, ["answers.service_account.password"]);
    }

    #[test]
    fn render_replaces_each_occurrence() {
        let out = render::<()>("/sqlserver:{answers.store.server} x{log}y", |n| {
            Ok(format!("<{n}>"))
        })
        .unwrap();
        assert_eq!(out, "/sqlserver:<answers.store.server> x<log>y");
    }
}
