//! Decoding of client requests: the SQL text of a batch, and of an `sp_executesql` RPC (its first
//! parameter). TEST DOUBLE: other procedures are reported by name so the server can refuse them.

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Batch(String),
    /// `sp_executesql` with its statement.
    ExecuteSql(String),
    /// Any other procedure (refused with 2812).
    OtherProc(String),
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(Malformed("request ends early"))?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Malformed> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
}

fn utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Skips ALL_HEADERS (sent by TDS 7.2+ clients, and by tiberius always) when present. A 7.1
/// request starts with text or the procedure name, which never looks like a plausible header block.
fn skip_all_headers(b: &[u8]) -> usize {
    let Some(total) = b
        .get(0..4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    else {
        return 0;
    };
    if total < 4 + 6 || total > b.len() {
        return 0;
    }
    let mut at = 4;
    while at < total {
        let Some(len) = b
            .get(at..at + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
        else {
            return 0;
        };
        let ty = b
            .get(at + 4..at + 6)
            .map(|s| u16::from_le_bytes([s[0], s[1]]));
        if len < 6 || !matches!(ty, Some(1..=3)) {
            return 0;
        }
        at += len;
    }
    if at == total {
        total
    } else {
        0
    }
}

/// The SQL text of a batch (packet type 1).
pub fn decode_batch(b: &[u8]) -> Request {
    Request::Batch(utf16(&b[skip_all_headers(b)..]))
}

/// Reads a string parameter's value after its type byte.
fn string_param(c: &mut Cur, ty: u8) -> Result<String, Malformed> {
    let wide = matches!(ty, 0xE7 | 0xEF | 0x63);
    let decode = |bytes: &[u8]| {
        if wide {
            utf16(bytes)
        } else {
            bytes.iter().map(|b| *b as char).collect()
        }
    };
    match ty {
        0xE7 | 0xEF | 0xA7 | 0xAF => {
            let max = c.u16()?;
            c.take(5)?; // collation
            if max == 0xFFFF {
                // PLP: total length, then chunks until a zero-length one.
                let total = c.u64()?;
                if total == u64::MAX {
                    return Ok(String::new());
                }
                let mut data = Vec::new();
                loop {
                    let n = c.u32()? as usize;
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(c.take(n)?);
                }
                Ok(decode(&data))
            } else {
                let n = c.u16()?;
                if n == 0xFFFF {
                    return Ok(String::new());
                }
                Ok(decode(c.take(n as usize)?))
            }
        }
        0x63 | 0x23 => {
            c.u32()?; // max length
            c.take(5)?; // collation
            let n = c.u32()?;
            if n == u32::MAX {
                return Ok(String::new());
            }
            Ok(decode(c.take(n as usize)?))
        }
        _ => Err(Malformed("the statement parameter is not a string type")),
    }
}

/// Decodes an RPC request (packet type 3): procedure and, for sp_executesql, the statement.
pub fn decode_rpc(b: &[u8]) -> Result<Request, Malformed> {
    let mut c = Cur {
        b,
        at: skip_all_headers(b),
    };
    let name_len = c.u16()?;
    let proc_name = if name_len == 0xFFFF {
        match c.u16()? {
            10 => "sp_executesql".to_string(),
            id => format!("#proc id {id}"),
        }
    } else {
        utf16(c.take(name_len as usize * 2)?)
    };
    let base = proc_name
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .trim_matches(['[', ']']);
    if !base.eq_ignore_ascii_case("sp_executesql") {
        return Ok(Request::OtherProc(proc_name));
    }
    c.u16()?; // option flags
    let pname_len = c.u8()? as usize;
    c.take(pname_len * 2)?;
    c.u8()?; // status flags
    let ty = c.u8()?;
    Ok(Request::ExecuteSql(string_param(&mut c, ty)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn all_headers() -> Vec<u8> {
        let mut b = 22u32.to_le_bytes().to_vec();
        b.extend(18u32.to_le_bytes());
        b.extend(2u16.to_le_bytes());
        b.extend([0u8; 8]);
        b.extend(1u32.to_le_bytes());
        b
    }

    #[test]
    fn a_batch_with_or_without_all_headers_gives_its_text() {
        let mut b = all_headers();
        b.extend(text("SELECT 1"));
        assert_eq!(decode_batch(&b), Request::Batch("SELECT 1".into()));
        assert_eq!(
            decode_batch(&text("SELECT 1")),
            Request::Batch("SELECT 1".into())
        );
    }

    #[test]
    fn sp_executesql_by_id_with_a_plp_statement() {
        let mut b = all_headers();
        b.extend([0xFF, 0xFF, 10, 0, 0, 0]);
        b.extend([0, 0, 0xE7, 0xFF, 0xFF, 9, 4, 0xD0, 0, 0x34]);
        let sql = text("SELECT @@VERSION");
        b.extend((sql.len() as u64).to_le_bytes());
        b.extend((sql.len() as u32).to_le_bytes());
        b.extend(&sql);
        b.extend(0u32.to_le_bytes());
        assert_eq!(
            decode_rpc(&b),
            Ok(Request::ExecuteSql("SELECT @@VERSION".into()))
        );
    }

    #[test]
    fn another_procedure_is_named() {
        let mut b = vec![6, 0];
        b.extend(text("sp_who"));
        b.extend([0, 0]);
        assert_eq!(decode_rpc(&b), Ok(Request::OtherProc("sp_who".into())));
    }
}
