//! Which characters the names and values of a plan may hold. They reach ODBC connection strings,
//! command lines, SQL and terminals, so no string anywhere holds a control character or an
//! invisible one that reorders text (text of several lines may hold line feeds and tabs); a host
//! is a host name or address; an instance name follows SQL Server's naming rules. Reports by
//! field path and never repeats the value (it could hold a secret or an escape sequence).

use serde_json::Value;

use super::node_de::{index, join};
use super::source::misleading;
use super::types::{Plan, StepKind};
use super::validate::Problem;

/// The fields that hold text of several lines, with their indices written `[]`.
const MULTI_LINE: &[&str] = &[
    "description",
    "steps[].description",
    "steps[].install.stdin",
    "steps[].verify.sql[].query",
];

/// Every character problem in `plan`'s names and values.
pub fn check(plan: &Plan) -> Vec<Problem> {
    let mut out = Vec::new();
    // Every string, found by walking the plan's serialized form, so that a field added later is
    // checked too. Serializing plain data with string map keys to a `Value` cannot fail.
    let value = serde_json::to_value(plan).expect("a plan serializes to a JSON value");
    walk(&value, "", &mut out);
    if let Some(name) = &plan.server.host {
        host(name, "server.host", &mut out);
    }
    let sql = &plan.server.sql;
    host(&sql.host, "server.sql.host", &mut out);
    if let Some(name) = &sql.instance {
        instance(name, "server.sql.instance", &mut out);
    }
    for (i, step) in plan.steps.iter().enumerate() {
        if let StepKind::Install(install) = &step.kind {
            if let Some(store) = &install.answers.store {
                let at = format!("steps[{i}].install.answers.store");
                host(&store.server, &format!("{at}.server"), &mut out);
                if let Some(name) = &store.instance {
                    instance(name, &format!("{at}.instance"), &mut out);
                }
            }
        }
    }
    out
}

fn walk(value: &Value, path: &str, out: &mut Vec<Problem>) {
    match value {
        Value::String(s) => text(s, path, out),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &index(path, i), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                match bad_character(key, false) {
                    Some(problem) => {
                        out.push(Problem {
                            path: path.to_string(),
                            message: format!("a key {problem}"),
                        });
                        walk(item, path, out);
                    }
                    None => walk(item, &join(path, key), out),
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn text(s: &str, path: &str, out: &mut Vec<Problem>) {
    if let Some(problem) = bad_character(s, MULTI_LINE.contains(&shape(path).as_str())) {
        out.push(Problem {
            path: path.to_string(),
            message: problem,
        });
    }
}

/// `steps[3].verify.sql[0].query` -> `steps[].verify.sql[].query`.
fn shape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// What is wrong with the first character of `s` a terminal or a connection string would take
/// for something else.
fn bad_character(s: &str, multi_line: bool) -> Option<String> {
    let (at, c) = s.chars().enumerate().find(|(_, c)| {
        if multi_line {
            *c != '\n' && misleading(*c)
        } else {
            c.is_control() || misleading(*c)
        }
    })?;
    let what = if c.is_control() {
        "a control character"
    } else {
        "an invisible formatting character"
    };
    let rule = if multi_line {
        "only line feeds and tabs may break up this text"
    } else {
        "this is one line of printable text (it can reach a connection string, a command line \
         or a terminal)"
    };
    Some(format!(
        "holds {what} (U+{:04X}) at character {}; {rule}",
        u32::from(c),
        at + 1
    ))
}

/// A host is a computer name, DNS name or IP address, or `(local)`: never connection-string
/// syntax, spaces, or a named instance or port written into it.
fn host(host: &str, path: &str, out: &mut Vec<Problem>) {
    // Control characters are reported by the walk over every string.
    let Some(c) = host
        .trim()
        .chars()
        .find(|c| !c.is_control() && (c.is_whitespace() || ";{}=,\\/'\"".contains(*c)))
    else {
        return;
    };
    let message = match c {
        '\\' => "a host names the computer only; put a named instance in `instance:`".to_string(),
        c if c.is_whitespace() => {
            "a host is a computer name, DNS name or IP address, or `(local)`, and holds no spaces"
                .to_string()
        }
        c => format!(
            "a host is a computer name, DNS name or IP address, or `(local)`; `{c}` cannot be \
             part of one{}",
            if c == ',' {
                " (a port is given on its own)"
            } else {
                ""
            }
        ),
    };
    out.push(Problem {
        path: path.to_string(),
        message,
    });
}

/// SQL Server 2000 Books Online, "Instance Naming Rules": at most 16 characters; the first a
/// letter, `&`, `_` or `#`; the rest letters, digits, `$`, `_`, `#` or `&` (no spaces, `\`, `@`...).
fn instance(name: &str, path: &str, out: &mut Vec<Problem>) {
    if name.chars().any(char::is_control) {
        return; // reported by the walk over every string
    }
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || "&_#".contains(c));
    let rest_ok = name
        .chars()
        .all(|c| c.is_alphanumeric() || "$_#&".contains(c));
    if !first_ok || !rest_ok || name.chars().count() > 16 {
        out.push(Problem {
            path: path.to_string(),
            message: "an instance name is at most 16 letters, digits, `$`, `_`, `#` or `&`, \
                      starting with a letter, `_`, `#` or `&` (SQL Server's instance naming rules)"
                .to_string(),
        });
    }
}
