//! Reading typed values out of SQL rows, tolerant of how each client reports a type
//! (ODBC hands back text where TDS gives integers).

use chrono::NaiveDateTime;

use crate::adapters::sql::SqlValue;

pub fn text(v: &SqlValue) -> Option<String> {
    match v {
        SqlValue::Null => None,
        SqlValue::Int(i) => Some(i.to_string()),
        SqlValue::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        SqlValue::Text(s) => Some(s.clone()),
        SqlValue::DateTime(t) => Some(t.to_string()),
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
}
