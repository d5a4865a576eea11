//! Checked scalar values of the plan language: absolute paths, GUIDs, durations, hashes, step ids
//! and secret references. Each parses from YAML with an error that says what was expected;
//! none of them touches the world (a secret is resolved only by `crate::secrets`).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Implements `Serialize`/`Deserialize` for a newtype over `String` checked by `parse`.
macro_rules! checked_string {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                $ty::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

/// An absolute path: Windows `C:\...`, UNC `\\server\share\...`, or POSIX `/...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub struct AbsPath(#[schemars(regex(pattern = r"^([A-Za-z]:[\\/]|\\\\[^\\]+\\[^\\]+|/)"))] String);
checked_string!(AbsPath);

impl AbsPath {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let b = raw.as_bytes();
        let drive = b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && (b[2] == b'\\' || b[2] == b'/');
        let unc = raw.starts_with(r"\\")
            && {
                let rest = &raw[2..];
                let mut parts = rest.split('\\');
                matches!((parts.next(), parts.next()), (Some(s), Some(h)) if !s.is_empty() && !h.is_empty())
            };
        let posix = raw.starts_with('/');
        if drive || unc || posix {
            Ok(AbsPath(raw.to_string()))
        } else {
            Err(format!(
                "expected an absolute path (C:\\..., \\\\server\\share\\... or /...), found `{raw}`"
            ))
        }
    }

    /// The path as this machine's file system sees it.
    pub fn to_path_buf(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(&self.0)
    }
}

/// A Windows Installer product code: a GUID in braces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, JsonSchema)]
pub struct ProductCode(
    #[schemars(regex(
        pattern = r"^\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}$"
    ))]
    String,
);
checked_string!(ProductCode);

impl ProductCode {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = raw.len() == 38
            && raw.starts_with('{')
            && raw.ends_with('}')
            && raw[1..37].char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        if ok {
            Ok(ProductCode(raw.to_ascii_uppercase()))
        } else {
            Err(format!(
                "expected a product code like {{12345678-1234-1234-1234-123456789ABC}}, found `{raw}`"
            ))
        }
    }
}

/// A sha256 digest in hex (64 characters).
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
pub struct Sha256Hex(#[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))] String);
checked_string!(Sha256Hex);

impl Sha256Hex {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() == 64 && raw.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(Sha256Hex(raw.to_ascii_lowercase()))
        } else {
            Err(format!(
                "expected a sha256 digest of 64 hex digits, found `{raw}`"
            ))
        }
    }
}

/// The start of a binary value in hex digits, any case, optionally after `0x`: connector-space
/// anchors are binary in MIIS and FIM, and clients render binary in either case.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
pub struct HexPrefix(#[schemars(regex(pattern = r"^(0[xX])?[0-9a-fA-F]+$"))] String);
checked_string!(HexPrefix);

impl HexPrefix {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let digits = without_0x(raw);
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(HexPrefix(raw.to_string()))
        } else {
            Err(format!(
                "expected hex digits (anchors are binary), e.g. `0a1b2c` or `0x0A1B2C`, found `{raw}`"
            ))
        }
    }

    /// The hex digits in lower case, without `0x`.
    pub fn digits(&self) -> String {
        without_0x(&self.0).to_ascii_lowercase()
    }

    /// Whether `bytes`, in hex, start with these digits.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        hex::encode(bytes).starts_with(&self.digits())
    }
}

/// Hex text without its `0x` (or `0X`), as T-SQL writes binary constants.
pub fn without_0x(hex: &str) -> &str {
    hex.strip_prefix("0x")
        .or_else(|| hex.strip_prefix("0X"))
        .unwrap_or(hex)
}

/// A product version as Windows Installer and Add/Remove Programs write it: one to four numbers
/// separated by dots (`4.1.3419.0`). Versions compare number by number, a missing part counting
/// as 0, never as text (`4.1.10000.0` is later than `4.1.3419.0`).
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
pub struct DottedVersion(#[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+){0,3}$"))] String);
checked_string!(DottedVersion);

impl DottedVersion {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if version_parts(raw).is_some() {
            Ok(DottedVersion(raw.to_string()))
        } else {
            Err(format!(
                "expected a version of one to four numbers separated by dots, e.g. `4.1.3419.0`, found `{raw}`"
            ))
        }
    }

    /// How `observed` (a `DisplayVersion` as read) compares with this version; `None` when it is
    /// not a dotted version.
    pub fn compare(&self, observed: &str) -> Option<std::cmp::Ordering> {
        let mine = version_parts(&self.0)?;
        Some(version_parts(observed.trim())?.cmp(&mine))
    }
}

/// `1.2.3` -> `[1, 2, 3, 0]`; `None` unless one to four dot-separated numbers.
fn version_parts(raw: &str) -> Option<[u64; 4]> {
    let mut out = [0u64; 4];
    for (n, part) in raw.split('.').enumerate() {
        if n == 4 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        out[n] = part.parse().ok()?;
    }
    Some(out)
}

/// A step id: letters, digits, `-` and `_`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub struct StepId(#[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9_-]*$"))] String);
checked_string!(StepId);

impl StepId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut chars = raw.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(StepId(raw.to_string()))
        } else {
            Err(format!(
                "expected a step id (a letter, then letters, digits, `-` or `_`), found `{raw}`"
            ))
        }
    }
}

// Not `humantime`: it also takes `1M` (a month, beside `1m`, a minute), `1h 30m` and `2days`,
// which the schema's pattern and a reviewer's eye do not expect, and writes durations back in
// that wider form.
/// A duration written as a number and a unit: `90s`, `30m`, `24h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub struct Duration(#[schemars(with = "DurationText")] std::time::Duration);

#[derive(JsonSchema)]
#[allow(dead_code)] // only describes the schema of `Duration`
struct DurationText(#[schemars(regex(pattern = r"^[0-9]+(s|m|h|d)$"))] String);

impl Duration {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let err = || format!("expected a duration like 90s, 30m, 24h or 7d, found `{raw}`");
        let Some(unit_at) = raw.find(|c: char| !c.is_ascii_digit()) else {
            if raw.is_empty() {
                return Err(err());
            }
            return Err(format!(
                "`{raw}` has no unit: expected a duration like 90s, 30m, 24h or 7d (seconds: `{raw}s`)"
            ));
        };
        let (num, unit) = raw.split_at(unit_at);
        if num.is_empty() {
            return Err(err());
        }
        let n: u64 = num.parse().map_err(|_| {
            format!("`{raw}` is too long a duration: the number does not fit in 64 bits")
        })?;
        let unit_secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(err()),
        };
        let secs = n.checked_mul(unit_secs).ok_or_else(|| {
            format!("`{raw}` is too long a duration: it overflows the clock's seconds")
        })?;
        Ok(Duration(std::time::Duration::from_secs(secs)))
    }

    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Duration::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        match s {
            _ if s != 0 && s.is_multiple_of(86_400) => write!(f, "{}d", s / 86_400),
            _ if s != 0 && s.is_multiple_of(3600) => write!(f, "{}h", s / 3600),
            _ if s != 0 && s.is_multiple_of(60) => write!(f, "{}m", s / 60),
            _ => write!(f, "{s}s"),
        }
    }
}

/// Where a secret comes from. A literal value is never accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Secret {
    /// An environment variable of the `upgrade` process.
    Env(String),
    /// A file whose content (trailing newline removed) is the secret.
    File(AbsPath),
    /// Ask on the terminal (`prompt: true`).
    Prompt(bool),
}

/// The error text for a literal secret; the value itself is never repeated.
pub const LITERAL_SECRET: &str =
    "a literal secret is not allowed; use {env: NAME}, {file: PATH} or {prompt: true}";

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_yaml::Value;
        // Decide by shape: anything but a one-key mapping is a literal (never echoed back).
        let value = Value::deserialize(d)?;
        let Some(map) = value.as_mapping() else {
            return Err(D::Error::custom(LITERAL_SECRET));
        };
        let one_of = "expected exactly one of {env: NAME}, {file: PATH} or {prompt: true}";
        let mut entries = map.iter();
        let (Some((key, val)), None) = (entries.next(), entries.next()) else {
            return Err(D::Error::custom(one_of));
        };
        match (key.as_str(), val) {
            (Some("env"), Value::String(name)) if !name.is_empty() => Ok(Secret::Env(name.clone())),
            (Some("env"), _) => Err(D::Error::custom(
                "expected an environment variable name in {env: NAME}",
            )),
            (Some("file"), Value::String(path)) => AbsPath::parse(path)
                .map(Secret::File)
                .map_err(D::Error::custom),
            (Some("file"), _) => Err(D::Error::custom(
                "expected an absolute path in {file: PATH}",
            )),
            (Some("prompt"), Value::Bool(true)) => Ok(Secret::Prompt(true)),
            (Some("prompt"), Value::Bool(false)) => Err(D::Error::custom(
                "`prompt: false` gives no secret; use {env: NAME}, {file: PATH} or {prompt: true}",
            )),
            (Some("prompt"), _) => Err(D::Error::custom("expected {prompt: true}")),
            _ => Err(D::Error::custom(one_of)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn a_duration_too_long_for_the_clock_is_an_error_not_a_panic() {
        assert_eq!(
            Duration::parse("7d").unwrap().get(),
            std::time::Duration::from_secs(7 * 86_400)
        );
        let e = Duration::parse("213503982334602d").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        let e = Duration::parse("99999999999999999999s").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        let e = Duration::parse("99999999999999999999d").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        let e = Duration::parse("d").unwrap_err();
        assert!(e.contains("expected a duration"), "{e}");
    }

    #[test]
    fn a_number_without_a_unit_is_not_taken_for_seconds() {
        // `timeout_secs: 90` rewritten as `timeout: 90` must not silently mean something.
        let e = Duration::parse("90").unwrap_err();
        assert_eq!(
            e,
            "`90` has no unit: expected a duration like 90s, 30m, 24h or 7d (seconds: `90s`)"
        );
        assert!(Duration::parse("")
            .unwrap_err()
            .contains("expected a duration"));
    }

    #[test]
    fn versions_compare_number_by_number_not_as_text() {
        let sp1 = DottedVersion::parse("4.1.3419.0").unwrap();
        assert_eq!(sp1.compare("4.1.2273.0"), Some(Less), "R2 RTM is older");
        assert_eq!(sp1.compare("4.1.3419.0"), Some(Equal));
        assert_eq!(sp1.compare("4.1.3766.0"), Some(Greater));
        assert_eq!(sp1.compare("4.1.10000.0"), Some(Greater), "not text order");
        assert_eq!(sp1.compare("4.1.3419"), Some(Equal), "a missing part is 0");
        assert_eq!(sp1.compare("4.2"), Some(Greater));
        assert_eq!(sp1.compare("4.1.x"), None);
        assert_eq!(sp1.compare(""), None);
    }

    #[test]
    fn a_version_that_is_not_dotted_numbers_is_refused() {
        for bad in ["", "4.", ".1", "4.1.3419.0.1", "v4.1", "4.1 SP1", "4..1"] {
            let err = DottedVersion::parse(bad).unwrap_err();
            assert!(err.contains("e.g. `4.1.3419.0`"), "{bad}: {err}");
        }
        assert!(DottedVersion::parse("4").is_ok());
    }
}
