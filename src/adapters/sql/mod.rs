//! SQL Server access: the statements `upgrade` sends, and the clients that send them.

pub mod statements;
