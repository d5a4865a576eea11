//! The values, result sets and messages the SQL model answers with, independent of the wire.
//! TEST DOUBLE. The TDS layer encodes these; nothing here knows about packets or tokens.

use chrono::NaiveDateTime;

/// The column types the double can return (the ones the executor reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Int,
    BigInt,
    Bit,
    /// nvarchar(n), n in characters (at most 4000).
    NVarChar(u16),
    DateTime,
    /// varbinary(n), n in bytes (at most 8000).
    VarBinary(u16),
}

/// One result-set column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

impl Column {
    pub fn new(name: &str, ty: SqlType, nullable: bool) -> Column {
        Column {
            name: name.to_string(),
            ty,
            nullable,
        }
    }
}

/// One cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i32),
    BigInt(i64),
    Bit(bool),
    Str(String),
    DateTime(NaiveDateTime),
    Bin(Vec<u8>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}

impl From<Option<&str>> for Value {
    fn from(s: Option<&str>) -> Value {
        s.map_or(Value::Null, Value::from)
    }
}

/// A result set: columns and rows (each row has one value per column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

/// An error or informational message as SQL Server sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub number: u32,
    pub state: u8,
    /// Severity: 0-10 informational, 11+ errors.
    pub class: u8,
    pub text: String,
    pub line: u32,
}

impl Message {
    pub fn error(number: u32, class: u8, text: impl Into<String>) -> Message {
        Message {
            number,
            state: 1,
            class,
            text: text.into(),
            line: 1,
        }
    }
    pub fn info(number: u32, text: impl Into<String>) -> Message {
        Message {
            number,
            state: 1,
            class: 0,
            text: text.into(),
            line: 1,
        }
    }
}

/// One item of an answer, in the order the server sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Rows(ResultSet),
    Info(Message),
    Error(Message),
}

/// Everything a statement answers. `failed()` when any error was raised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub replies: Vec<Reply>,
}

impl Outcome {
    pub fn rows(set: ResultSet) -> Outcome {
        Outcome {
            replies: vec![Reply::Rows(set)],
        }
    }
    pub fn error(msg: Message) -> Outcome {
        Outcome {
            replies: vec![Reply::Error(msg)],
        }
    }
    /// An error followed by the "terminating abnormally" 3013 SQL Server adds to BACKUP/RESTORE errors.
    pub fn abnormal(msg: Message, what: &str) -> Outcome {
        Outcome {
            replies: vec![
                Reply::Error(msg),
                Reply::Error(Message::error(
                    3013,
                    16,
                    format!("{what} is terminating abnormally."),
                )),
            ],
        }
    }
    pub fn failed(&self) -> bool {
        self.replies.iter().any(|r| matches!(r, Reply::Error(_)))
    }
    /// The first error, if any (for tests and logs).
    pub fn first_error(&self) -> Option<&Message> {
        self.replies.iter().find_map(|r| match r {
            Reply::Error(m) => Some(m),
            _ => None,
        })
    }
}
