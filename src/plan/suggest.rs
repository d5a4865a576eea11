//! "Did you mean ...?": the name a place accepts that is nearest to one it does not (a misspelt
//! field, step kind or choice). Only for messages; it decides nothing about validity.

/// The candidate nearest to `unknown`, when one is near enough to be a likely misspelling
/// (at most one edit per three characters, a swap of two neighbours counting as one) and no
/// other candidate is as near.
pub fn nearest<'a>(unknown: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let unknown_lower = unknown.to_lowercase();
    let limit = (unknown.chars().count() / 3).max(1);
    let mut scored: Vec<(usize, &'a str)> = candidates
        .iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&unknown_lower, &c.to_lowercase()),
                *c,
            )
        })
        .filter(|(distance, _)| *distance <= limit)
        .collect();
    scored.sort_by_key(|(distance, _)| *distance);
    match scored.as_slice() {
        [(best, name), rest @ ..] if rest.first().is_none_or(|(next, _)| next > best) => Some(name),
        _ => None,
    }
}

/// `` did you mean `name`? `` for the nearest candidate, if any.
pub fn did_you_mean(unknown: &str, candidates: &[&str]) -> Option<String> {
    nearest(unknown, candidates).map(|name| format!("did you mean `{name}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: &[&str] = &[
        "backup_database",
        "export_keys",
        "backup_files",
        "snapshot_connector_space",
        "uninstall",
        "install",
        "verify",
        "service",
    ];

    #[test]
    fn a_misspelt_kind_or_field_finds_the_intended_one() {
        assert_eq!(nearest("backup_databse", KINDS), Some("backup_database"));
        assert_eq!(nearest("Backup_Database", KINDS), Some("backup_database"));
        assert_eq!(
            nearest("verfy", &["database", "to", "verify"]),
            Some("verify")
        );
        assert_eq!(
            nearest("afer", &["id", "after", "description"]),
            Some("after")
        );
        assert_eq!(nearest("stoped", &["stopped", "running"]), Some("stopped"));
    }

    #[test]
    fn a_name_near_nothing_or_equally_near_two_gets_no_guess() {
        assert_eq!(nearest("reboot", KINDS), None);
        assert_eq!(nearest("x", &["a", "b"]), None);
        assert_eq!(nearest("", KINDS), None);
    }
}
