//! TDS token encoding for the server side: LOGINACK, ENVCHANGE, INFO/ERROR, COLMETADATA, ROW,
//! DONE*/RETURNSTATUS. Types as [MS-TDS] 2.2.5.4 lists them; varbinary is BIGVARBINARYTYPE (0xA5),
//! a USHORTLEN type, the same in 7.1 and 7.4. TEST DOUBLE encoder; the 7.1 layout differs (2-byte UserType, 4-byte DONE
//! row count, 2-byte line number) and is chosen per connection.

use chrono::{NaiveDate, NaiveDateTime};

use crate::sqlmodel::{Column, Message, SqlType, Value};

pub const DONE: u8 = 0xFD;
pub const DONEPROC: u8 = 0xFE;
pub const DONEINPROC: u8 = 0xFF;

pub const DONE_FINAL: u16 = 0x00;
pub const DONE_MORE: u16 = 0x01;
pub const DONE_ERROR: u16 = 0x02;
pub const DONE_COUNT: u16 = 0x10;
pub const DONE_ATTN: u16 = 0x20;

/// BIGVARBINARYTYPE: varbinary(n).
const BIGVARBINARY: u8 = 0xA5;

/// SQL_Latin1_General_CP1_CI_AS: LCID 0x0409, flags IgnoreCase|IgnoreKana|IgnoreWidth, version 0,
/// sort id 52. SQL Server 2000's default and the one its TDS 7.1 collation fields carry.
pub const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// A token stream being built for one reply.
#[derive(Debug)]
pub struct Tokens {
    pub buf: Vec<u8>,
    /// TDS 7.1 layout (SQL Server 2000) instead of 7.2+.
    tds71: bool,
}

fn b_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(255).collect();
    out.push(units.len() as u8);
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
}

fn us_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(u16::MAX as usize).collect();
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
}

/// Days since 1900-01-01 and 1/300-second ticks since midnight (the DATETIME wire format).
pub fn datetime_parts(d: &NaiveDateTime) -> (i32, u32) {
    let epoch = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or_default();
    let days = (d.date() - epoch).num_days() as i32;
    let ms = (d.time() - chrono::NaiveTime::MIN)
        .num_milliseconds()
        .max(0) as u64;
    (days, ((ms * 300 + 500) / 1000) as u32)
}

impl Tokens {
    pub fn new(tds71: bool) -> Tokens {
        Tokens {
            buf: Vec::new(),
            tds71,
        }
    }

    fn with_length(&mut self, token: u8, body: Vec<u8>) {
        self.buf.push(token);
        self.buf
            .extend_from_slice(&(body.len() as u16).to_le_bytes());
        self.buf.extend(body);
    }

    /// LOGINACK: interface T-SQL, the TDS version (big-endian), program name and version.
    pub fn login_ack(&mut self, tds_version: u32, prog_version: [u8; 4]) {
        let mut b = vec![1u8];
        b.extend_from_slice(&tds_version.to_be_bytes());
        b_varchar(&mut b, "Microsoft SQL Server");
        b.extend_from_slice(&prog_version);
        self.with_length(0xAD, b);
    }

    /// ENVCHANGE with string values: 1 database, 2 language, 4 packet size.
    pub fn env_change(&mut self, ty: u8, new: &str, old: &str) {
        let mut b = vec![ty];
        b_varchar(&mut b, new);
        b_varchar(&mut b, old);
        self.with_length(0xE3, b);
    }

    /// ENVCHANGE 7: the SQL collation (TDS 7.1+).
    pub fn env_collation(&mut self) {
        let mut b = vec![7u8, COLLATION.len() as u8];
        b.extend_from_slice(&COLLATION);
        b.push(0);
        self.with_length(0xE3, b);
    }

    fn message(&mut self, token: u8, m: &Message, server: &str) {
        let mut b = Vec::new();
        b.extend_from_slice(&m.number.to_le_bytes());
        b.push(m.state);
        b.push(m.class);
        us_varchar(&mut b, &m.text);
        b_varchar(&mut b, server);
        b_varchar(&mut b, "");
        if self.tds71 {
            b.extend_from_slice(&(m.line as u16).to_le_bytes());
        } else {
            b.extend_from_slice(&m.line.to_le_bytes());
        }
        self.with_length(token, b);
    }

    pub fn error(&mut self, m: &Message, server: &str) {
        self.message(0xAA, m, server);
    }

    pub fn info(&mut self, m: &Message, server: &str) {
        self.message(0xAB, m, server);
    }

    /// COLMETADATA: non-nullable columns use the fixed types (INT4, INT8, BIT, DATETIME),
    /// nullable ones INTN/BITN/DATETIMN; strings are NVARCHAR(n) with the server collation;
    /// binary is BIGVARBINARY(n) (maximum length, no collation).
    pub fn col_metadata(&mut self, columns: &[Column]) {
        let b = &mut self.buf;
        b.push(0x81);
        b.extend_from_slice(&(columns.len() as u16).to_le_bytes());
        for c in columns {
            if self.tds71 {
                b.extend_from_slice(&0u16.to_le_bytes());
            } else {
                b.extend_from_slice(&0u32.to_le_bytes());
            }
            let flags: u16 = if c.nullable { 0x0001 } else { 0x0000 };
            b.extend_from_slice(&flags.to_le_bytes());
            match (c.ty, c.nullable) {
                (SqlType::Int, false) => b.push(0x38),
                (SqlType::Int, true) => b.extend_from_slice(&[0x26, 4]),
                (SqlType::BigInt, false) => b.push(0x7F),
                (SqlType::BigInt, true) => b.extend_from_slice(&[0x26, 8]),
                (SqlType::Bit, false) => b.push(0x32),
                (SqlType::Bit, true) => b.extend_from_slice(&[0x68, 1]),
                (SqlType::DateTime, false) => b.push(0x3D),
                (SqlType::DateTime, true) => b.extend_from_slice(&[0x6F, 8]),
                (SqlType::NVarChar(n), _) => {
                    b.push(0xE7);
                    b.extend_from_slice(&(n.clamp(1, 4000) * 2).to_le_bytes());
                    b.extend_from_slice(&COLLATION);
                }
                (SqlType::VarBinary(n), _) => {
                    b.push(BIGVARBINARY);
                    b.extend_from_slice(&n.clamp(1, 8000).to_le_bytes());
                }
            }
            b_varchar(b, &c.name);
        }
    }

    /// ROW: one value per column in the layout COLMETADATA announced.
    pub fn row(&mut self, columns: &[Column], values: &[Value]) {
        let b = &mut self.buf;
        b.push(0xD1);
        for (c, v) in columns.iter().zip(values) {
            let fixed = !c.nullable;
            match (c.ty, v) {
                (SqlType::NVarChar(_), Value::Null) => {
                    b.extend_from_slice(&0xFFFFu16.to_le_bytes())
                }
                (SqlType::NVarChar(n), v) => {
                    let text = match v {
                        Value::Str(s) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    let units: Vec<u16> = text
                        .encode_utf16()
                        .take(n.clamp(1, 4000) as usize)
                        .collect();
                    b.extend_from_slice(&((units.len() * 2) as u16).to_le_bytes());
                    b.extend(units.iter().flat_map(|u| u.to_le_bytes()));
                }
                // A USHORTLEN value: NULL is the length 0xFFFF (CHARBIN_NULL).
                (SqlType::VarBinary(_), Value::Null) => {
                    b.extend_from_slice(&0xFFFFu16.to_le_bytes())
                }
                (SqlType::VarBinary(n), v) => {
                    let bytes = match v {
                        Value::Bin(bytes) => bytes.as_slice(),
                        _ => &[],
                    };
                    let bytes = &bytes[..bytes.len().min(n.clamp(1, 8000).into())];
                    b.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                    b.extend_from_slice(bytes);
                }
                (_, Value::Null) => b.push(0),
                (SqlType::Int, v) => {
                    if !fixed {
                        b.push(4);
                    }
                    let n = match v {
                        Value::Int(n) => *n,
                        Value::BigInt(n) => *n as i32,
                        _ => 0,
                    };
                    b.extend_from_slice(&n.to_le_bytes());
                }
                (SqlType::BigInt, v) => {
                    if !fixed {
                        b.push(8);
                    }
                    let n = match v {
                        Value::Int(n) => *n as i64,
                        Value::BigInt(n) => *n,
                        _ => 0,
                    };
                    b.extend_from_slice(&n.to_le_bytes());
                }
                (SqlType::Bit, v) => {
                    if !fixed {
                        b.push(1);
                    }
                    b.push(u8::from(matches!(v, Value::Bit(true))));
                }
                (SqlType::DateTime, v) => {
                    if !fixed {
                        b.push(8);
                    }
                    let (days, ticks) = match v {
                        Value::DateTime(d) => datetime_parts(d),
                        _ => (0, 0),
                    };
                    b.extend_from_slice(&days.to_le_bytes());
                    b.extend_from_slice(&ticks.to_le_bytes());
                }
            }
        }
    }

    /// DONE / DONEPROC / DONEINPROC with status flags and a row count.
    pub fn done(&mut self, token: u8, status: u16, cur_cmd: u16, count: u64) {
        self.buf.push(token);
        self.buf.extend_from_slice(&status.to_le_bytes());
        self.buf.extend_from_slice(&cur_cmd.to_le_bytes());
        if self.tds71 {
            self.buf.extend_from_slice(&(count as u32).to_le_bytes());
        } else {
            self.buf.extend_from_slice(&count.to_le_bytes());
        }
    }

    /// RETURNSTATUS of a stored procedure (sp_executesql).
    pub fn return_status(&mut self, status: i32) {
        self.buf.push(0x79);
        self.buf.extend_from_slice(&status.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_is_days_since_1900_and_three_hundredths() {
        let d = NaiveDateTime::parse_from_str("1900-01-02 00:00:01.500", "%Y-%m-%d %H:%M:%S%.3f")
            .unwrap();
        assert_eq!(datetime_parts(&d), (1, 450));
    }

    #[test]
    fn tds71_metadata_has_two_byte_user_types() {
        let cols = [Column::new("n", SqlType::Int, false)];
        let mut t71 = Tokens::new(true);
        t71.col_metadata(&cols);
        let mut t74 = Tokens::new(false);
        t74.col_metadata(&cols);
        assert_eq!(t74.buf.len(), t71.buf.len() + 2);
        assert_eq!(&t71.buf[..7], &[0x81, 1, 0, 0, 0, 0, 0]);
        assert_eq!(t71.buf[7], 0x38);
    }

    #[test]
    fn varbinary_is_bigvarbinary_with_a_two_byte_length_and_ffff_for_null() {
        let cols = [Column::new("anchor", SqlType::VarBinary(400), true)];
        let mut t = Tokens::new(true);
        t.col_metadata(&cols);
        // token, count, user type (7.1: 2 bytes), flags, type, max length, name
        assert_eq!(&t.buf[..10], &[0x81, 1, 0, 0, 0, 1, 0, 0xA5, 0x90, 0x01]);
        let mut r = Tokens::new(true);
        r.row(&cols, &[Value::Bin(vec![0xAB, 0x01])]);
        r.row(&cols, &[Value::Null]);
        assert_eq!(r.buf, [0xD1, 2, 0, 0xAB, 0x01, 0xD1, 0xFF, 0xFF]);
    }
}
