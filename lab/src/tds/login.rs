//! PRELOGIN answer (encryption not supported) and LOGIN7 decoding, including the password's
//! obfuscation. TEST DOUBLE: the password is compared and dropped here, never logged or kept.

/// ENCRYPT_NOT_SUP: the double never speaks TLS.
const ENCRYPT_NOT_SUP: u8 = 0x02;

/// The PRELOGIN answer: VERSION, ENCRYPTION = not supported, INSTOPT, THREADID, MARS off.
/// [MS-TDS] 2.2.6.5 PRELOGIN: options as `token, offset, length` (big-endian), 0xFF, then their
/// data. A server's VERSION is its product version: UL_VERSION (major, minor, build big-endian;
/// `version` here) then US_SUBBUILD (0). SQL Server 2000 SP4 answers 8.0.2039.
pub fn prelogin_answer(version: [u8; 4]) -> Vec<u8> {
    let options: [(u8, Vec<u8>); 5] = [
        (
            0,
            vec![version[0], version[1], version[2], version[3], 0, 0],
        ),
        (1, vec![ENCRYPT_NOT_SUP]),
        (2, vec![0]),
        (3, vec![]),
        (4, vec![0]),
    ];
    let mut head = Vec::new();
    let mut data = Vec::new();
    let mut offset = options.len() * 5 + 1;
    for (token, value) in &options {
        head.push(*token);
        head.extend_from_slice(&(offset as u16).to_be_bytes());
        head.extend_from_slice(&(value.len() as u16).to_be_bytes());
        offset += value.len();
        data.extend_from_slice(value);
    }
    head.push(0xFF);
    head.extend(data);
    head
}

/// What the double reads from a LOGIN7 record.
#[derive(PartialEq, Eq)]
pub struct Login {
    /// The TDS version the client asks for (e.g. 0x74000004, 0x71000001).
    pub tds_version: u32,
    /// Requested packet size (0 = server default).
    pub packet_size: u32,
    pub user: String,
    pub password: String,
    pub app_name: String,
    pub database: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("tds_version", &format_args!("{:#x}", self.tds_version))
            .field("packet_size", &self.packet_size)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .finish()
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The UTF-16 string of the OffsetLength pair at `at` (offset, length in characters).
fn field(b: &[u8], at: usize, password: bool) -> Option<String> {
    let off = u16_at(b, at)? as usize;
    let len = u16_at(b, at + 2)? as usize * 2;
    let raw = b.get(off..off + len)?;
    let bytes: Vec<u8> = if password {
        // Obfuscation: each byte had its nibbles swapped, then was XORed with 0xA5.
        raw.iter().map(|x| (x ^ 0xA5).rotate_left(4)).collect()
    } else {
        raw.to_vec()
    };
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// Decodes LOGIN7. `None` when the record is malformed.
pub fn parse_login7(b: &[u8]) -> Option<Login> {
    Some(Login {
        tds_version: u32_at(b, 4)?,
        packet_size: u32_at(b, 8)?,
        user: field(b, 40, false)?,
        password: field(b, 44, true)?,
        app_name: field(b, 48, false)?,
        database: field(b, 68, false)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prelogin_answer_says_encryption_is_not_supported() {
        let a = prelogin_answer([13, 0, 0x13, 0xA2]);
        assert_eq!(a[5], 1); // second option: ENCRYPTION
        let off = u16::from_be_bytes([a[6], a[7]]) as usize;
        assert_eq!(a[off], ENCRYPT_NOT_SUP);
    }

    #[test]
    fn the_prelogin_answer_carries_the_product_version_first() {
        let a = prelogin_answer([8, 0, 0x07, 0xF7]);
        assert_eq!(a[0], 0); // first option: VERSION
        let off = u16::from_be_bytes([a[1], a[2]]) as usize;
        assert_eq!(u16::from_be_bytes([a[3], a[4]]), 6);
        assert_eq!(&a[off..off + 6], &[8, 0, 0x07, 0xF7, 0, 0]); // 8.0.2039
    }

    #[test]
    fn an_obfuscated_password_is_decoded() {
        // "a" = 0x61 0x00 -> swap nibbles 0x16 0x00 -> xor A5: 0xB3 0xA5.
        let mut b = vec![0u8; 94];
        for at in (36..72).step_by(4) {
            b[at..at + 2].copy_from_slice(&94u16.to_le_bytes());
        }
        b[44..46].copy_from_slice(&94u16.to_le_bytes());
        b[46..48].copy_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&[0xB3, 0xA5]);
        assert_eq!(parse_login7(&b).unwrap().password, "a");
    }
}
