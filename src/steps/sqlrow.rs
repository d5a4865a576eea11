//! Reading typed values out of SQL rows, tolerant of how each client reports a type
//! (ODBC hands back text where TDS gives integers).

use chrono::NaiveDateTime;

use crate::adapters::sql::SqlValue;
use crate::plan::without_0x;

pub fn text(v: &SqlValue) -> Option<String> {
    match v {
        SqlValue::Null => None,
        SqlValue::Int(i) => Some(i.to_string()),
        SqlValue::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        SqlValue::Text(s) => Some(s.clone()),
        SqlValue::DateTime(t) => Some(t.to_string()),
        SqlValue::Binary(_) => Some(v.to_string()),
    }
}

/// A binary value's bytes; also hex text (`0A1B` or `0x0a1b`), as a driver may hand binary over.
pub fn bytes(v: &SqlValue) -> Option<Vec<u8>> {
    match v {
        SqlValue::Binary(b) => Some(b.clone()),
        SqlValue::Text(s) => hex::decode(without_0x(s.trim())).ok(),
        _ => None,
    }
}

pub fn int(v: &SqlValue) -> Option<i64> {
    match v {
        SqlValue::Int(i) => Some(*i),
        SqlValue::Bool(b) => Some(i64::from(*b)),
        SqlValue::Text(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn time(v: &SqlValue) -> Option<NaiveDateTime> {
    match v {
        SqlValue::DateTime(t) => Some(*t),
        SqlValue::Text(s) => [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%b %e %Y %l:%M%p",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s.trim(), f).ok()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odbc_text_values_read_like_tds_typed_ones() {
        assert_eq!(int(&SqlValue::Text(" 42 ".into())), Some(42));
        assert_eq!(int(&SqlValue::Int(7)), Some(7));
        assert_eq!(text(&SqlValue::Null), None);
        let t = time(&SqlValue::Text("2026-11-25 10:11:12.123".into())).unwrap();
        assert_eq!(t.to_string(), "2026-11-25 10:11:12.123");
    }

    #[test]
    fn binary_reads_the_same_as_bytes_or_as_hex_text_in_either_case() {
        let want = Some(vec![0x0a, 0xbc]);
        assert_eq!(bytes(&SqlValue::Binary(vec![0x0a, 0xbc])), want);
        assert_eq!(bytes(&SqlValue::Text("0ABC".into())), want);
        assert_eq!(bytes(&SqlValue::Text("0x0abc".into())), want);
        assert_eq!(bytes(&SqlValue::Text("E00001x".into())), None);
        assert_eq!(
            text(&SqlValue::Binary(vec![0x0a, 0xbc])).as_deref(),
            Some("0x0ABC")
        );
    }
}
