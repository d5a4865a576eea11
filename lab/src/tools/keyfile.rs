//! The lab's key file format: what the miiskmu stand-in exports and the installers import.
//! Lab-only format (a header, the key set id, a sha256 MAC, the key bytes XOR a keystream derived
//! from the service account password and the key set id); it must never hold the password itself.

use sha2::{Digest, Sha256};

use crate::state::KeySet;

const HEADER: &str = "UPGRADE-LAB KEY SET EXPORT v1 (test double, not a real miiskmu file)";

/// Why a key file cannot be imported.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyFileError {
    #[error("not a key file exported by miiskmu (unknown header)")]
    NotAKeyFile,
    #[error("the key file is damaged ({0})")]
    Damaged(&'static str),
    #[error("the password does not open this key file")]
    WrongPassword,
}

fn keystream(password: &str, id: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter: u32 = 0;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(password.as_bytes());
        h.update([0]);
        h.update(id.as_bytes());
        h.update(counter.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

fn mac(password: &str, id: &str, secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"mac");
    h.update(password.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    h.update(secret);
    hex::encode(h.finalize())
}

/// The file text for `key_set` protected by `password`.
pub fn export(key_set: &KeySet, password: &str) -> String {
    // The key set was written by `init` as hex; an undecodable one exports as empty bytes,
    // which import then reports as damaged rather than silently succeeding.
    let secret = hex::decode(&key_set.secret_hex).unwrap_or_default();
    let data: Vec<u8> = secret
        .iter()
        .zip(keystream(password, &key_set.id, secret.len()))
        .map(|(a, b)| a ^ b)
        .collect();
    format!(
        "{HEADER}\nkey-set-id: {}\nmac: {}\ndata: {}\n",
        key_set.id,
        mac(password, &key_set.id, &secret),
        hex::encode(data)
    )
}

fn field<'a>(text: &'a str, name: &str) -> Result<&'a str, KeyFileError> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .ok_or(KeyFileError::Damaged("a field is missing"))
}

/// The key set id a key file claims, without opening it.
pub fn key_set_id(text: &str) -> Result<String, KeyFileError> {
    if text.lines().next() != Some(HEADER) {
        return Err(KeyFileError::NotAKeyFile);
    }
    Ok(field(text, "key-set-id")?.to_string())
}

/// Opens a key file with `password`.
pub fn import(text: &str, password: &str) -> Result<KeySet, KeyFileError> {
    let id = key_set_id(text)?;
    let data = hex::decode(field(text, "data")?).map_err(|_| KeyFileError::Damaged("bad data"))?;
    if data.is_empty() {
        return Err(KeyFileError::Damaged("no key material"));
    }
    let secret: Vec<u8> = data
        .iter()
        .zip(keystream(password, &id, data.len()))
        .map(|(a, b)| a ^ b)
        .collect();
    if mac(password, &id, &secret) != field(text, "mac")? {
        return Err(KeyFileError::WrongPassword);
    }
    Ok(KeySet {
        id,
        secret_hex: hex::encode(secret),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks() -> KeySet {
        KeySet {
            id: "{00000000-1111-2222-3333-444444444444}".into(),
            secret_hex: "00112233445566778899".into(),
        }
    }

    #[test]
    fn a_key_file_opens_with_the_account_password_only_and_never_contains_it() {
        let text = export(&ks(), "Pa55word!");
        assert!(!text.contains("Pa55word!"));
        assert!(!text.contains("00112233445566778899"));
        assert_eq!(key_set_id(&text).unwrap(), ks().id);
        assert_eq!(import(&text, "Pa55word!").unwrap(), ks());
        assert_eq!(
            import(&text, "wrong").unwrap_err(),
            KeyFileError::WrongPassword
        );
    }

    #[test]
    fn a_foreign_or_damaged_file_is_refused() {
        assert_eq!(
            import("MZ not a key file", "p").unwrap_err(),
            KeyFileError::NotAKeyFile
        );
        let cut: String = export(&ks(), "p")
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(matches!(
            import(&cut, "p").unwrap_err(),
            KeyFileError::Damaged(_)
        ));
    }
}
