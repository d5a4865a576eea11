//! Runs a parsed script with PowerShell 2.0's semantics for the subset: variables (any case),
//! `+` as concatenation or addition, comparisons that ignore case for strings, conditions,
//! loops, try/catch/finally with typed catches matched against the exception's .NET base types,
//! `exit N`, and every value a statement produces written to stdout as powershell.exe writes it
//! (CRLF). Errors that PowerShell would let a script continue past are refused unless the
//! script set `$ErrorActionPreference = 'Stop'`, as the contract's scripts do.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;

use super::ast::{BinOp, Block, Cast, Catch, Command, Expr, ExprKind, Pipeline, Pos, Stmt};
use super::cmdlets;
use super::dotnet;
use super::value::{self, unsupported, ErrorRecord, Eval, Exception, Flow, Value};

pub struct Interp<'a> {
    lab: &'a Path,
    vars: HashMap<String, Value>,
    out: &'a mut dyn Write,
    /// try blocks being run (a statement-terminating error inside one is caught).
    try_depth: usize,
    loop_depth: usize,
}

impl<'a> Interp<'a> {
    pub fn new(lab: &'a Path, out: &'a mut dyn Write) -> Interp<'a> {
        Interp {
            lab,
            vars: HashMap::new(),
            out,
            try_depth: 0,
            loop_depth: 0,
        }
    }

    /// `$env:NAME` from the lab server's environment, which holds what the scripts read:
    /// `SystemRoot` and `windir` (both the Windows folder, lab.json's `system_root`). The lab
    /// refuses any other name rather than answer `$null` for a variable a real server may have.
    fn env(&self, name: &str, at: Pos) -> Eval<Value> {
        match name {
            "systemroot" | "windir" => match crate::state::load(self.lab) {
                Ok(st) => Ok(Value::Str(st.system_root)),
                Err(e) => Err(Flow::Error(Rc::new(ErrorRecord {
                    exception: Rc::new(Exception::new(value::IO, e.to_string())),
                    command: None,
                    at,
                }))),
            },
            other => unsupported(
                format!("$env:{other} (the lab's environment has SystemRoot and windir)"),
                at,
            ),
        }
    }

    /// Runs the script to its end, an `exit`, or an error.
    pub fn run(&mut self, script: &Block) -> Eval<()> {
        let r = self.block(script);
        let _ = self.out.flush();
        r
    }

    fn stop_preference(&self) -> bool {
        matches!(self.vars.get("erroractionpreference"), Some(Value::Str(s)) if s.eq_ignore_ascii_case("stop"))
    }

    fn block(&mut self, block: &Block) -> Eval<()> {
        for s in block {
            match self.statement(s) {
                Err(Flow::Error(rec))
                    if rec.command.is_none() && self.try_depth == 0 && !self.stop_preference() =>
                {
                    return unsupported(
                        format!(
                            "continuing after a statement-terminating error (set $ErrorActionPreference = 'Stop'): {}",
                            rec.exception.message
                        ),
                        rec.at,
                    );
                }
                other => other?,
            }
        }
        Ok(())
    }

    fn statement(&mut self, s: &Stmt) -> Eval<()> {
        match s {
            Stmt::Output(p) => {
                for v in self.pipeline_output(p)? {
                    let at = pipeline_pos(p);
                    for line in v.output_lines(at)? {
                        let _ = write!(self.out, "{line}\r\n");
                    }
                }
                Ok(())
            }
            Stmt::Assign { var, value } => {
                let v = self.pipeline_value(value)?;
                match var.as_str() {
                    "null" => {}
                    _ => {
                        self.vars.insert(var.clone(), v);
                    }
                }
                Ok(())
            }
            Stmt::If {
                branches,
                otherwise,
            } => {
                for (cond, body) in branches {
                    if self.pipeline_value(cond)?.truthy() {
                        return self.block(body);
                    }
                }
                match otherwise {
                    Some(body) => self.block(body),
                    None => Ok(()),
                }
            }
            Stmt::While { cond, body } => {
                self.loop_depth += 1;
                let r = (|| {
                    while self.pipeline_value(cond)?.truthy() {
                        match self.block(body) {
                            Err(Flow::Break(_)) => break,
                            other => other?,
                        }
                    }
                    Ok(())
                })();
                self.loop_depth -= 1;
                r
            }
            Stmt::Foreach { var, source, body } => {
                let items = match source {
                    Pipeline::Command(_) => self.pipeline_output(source)?,
                    Pipeline::Expr(e) => self.expr(e)?.elements(),
                };
                self.loop_depth += 1;
                let mut r = Ok(());
                for item in items {
                    self.vars.insert(var.clone(), item);
                    match self.block(body) {
                        Err(Flow::Break(_)) => break,
                        Err(other) => {
                            r = Err(other);
                            break;
                        }
                        Ok(()) => {}
                    }
                }
                self.loop_depth -= 1;
                r
            }
            Stmt::Try {
                body,
                catches,
                finally,
            } => self.try_statement(body, catches, finally.as_ref()),
            Stmt::Break(at) => {
                if self.loop_depth == 0 {
                    return unsupported("break outside a loop", *at);
                }
                Err(Flow::Break(*at))
            }
            Stmt::Exit(code) => {
                let code = match code {
                    Some(p) => {
                        let at = pipeline_pos(p);
                        let n = self.pipeline_value(p)?.to_int("System.Int32", at)?;
                        // A Windows exit code is a DWORD: its bits as an i32.
                        n as i32
                    }
                    None => 0,
                };
                Err(Flow::Exit(code))
            }
        }
    }

    fn try_statement(
        &mut self,
        body: &Block,
        catches: &[Catch],
        finally: Option<&Block>,
    ) -> Eval<()> {
        self.try_depth += 1;
        let r = self.block(body);
        self.try_depth -= 1;
        let r = match r {
            Err(Flow::Error(rec)) => match catches.iter().find(|c| catches_error(c, &rec)) {
                Some(c) => {
                    let saved = self.vars.insert("_".into(), Value::ErrorRecord(rec));
                    let r = self.block(&c.body);
                    match saved {
                        Some(v) => self.vars.insert("_".into(), v),
                        None => self.vars.remove("_"),
                    };
                    r
                }
                None => Err(Flow::Error(rec)),
            },
            other => other,
        };
        if matches!(r, Err(Flow::Unsupported(_))) {
            return r;
        }
        if let Some(f) = finally {
            self.block(f)?;
        }
        r
    }

    /// What a pipeline writes: a command's objects, or an expression's value (collections are
    /// enumerated when written).
    fn pipeline_output(&mut self, p: &Pipeline) -> Eval<Vec<Value>> {
        match p {
            Pipeline::Expr(e) => Ok(vec![self.expr(e)?]),
            Pipeline::Command(c) => self.command(c),
        }
    }

    /// A pipeline as one value (assignment, condition, parentheses).
    fn pipeline_value(&mut self, p: &Pipeline) -> Eval<Value> {
        match p {
            Pipeline::Expr(e) => self.expr(e),
            Pipeline::Command(c) => Ok(Value::from_output(self.command(c)?)),
        }
    }

    fn command(&mut self, c: &Command) -> Eval<Vec<Value>> {
        let mut values = Vec::new();
        for (name, e) in &c.params {
            let v = match e {
                Some(e) => Some(self.expr(e)?),
                None => None,
            };
            values.push((*name, v));
        }
        let args = cmdlets::Args { values: &values };
        match cmdlets::run(self.lab, c.cmdlet, &args) {
            Ok(out) => Ok(out),
            Err(cmdlets::Fault::Unsupported(what)) => unsupported(what, c.at),
            Err(cmdlets::Fault::Error(ex)) => {
                if !self.stop_preference() {
                    return unsupported(
                        format!(
                            "non-terminating errors (set $ErrorActionPreference = 'Stop'): {}: {}",
                            c.cmdlet.name(),
                            ex.message
                        ),
                        c.at,
                    );
                }
                Err(Flow::Error(Rc::new(ErrorRecord {
                    exception: Rc::new(ex),
                    command: Some(c.cmdlet.name()),
                    at: c.at,
                })))
            }
        }
    }

    fn expr(&mut self, e: &Expr) -> Eval<Value> {
        let at = e.at;
        match &e.kind {
            ExprKind::Str(s) => Ok(Value::Str(s.clone())),
            ExprKind::Int(n) => Ok(Value::Int(*n)),
            ExprKind::Bool(b) => Ok(Value::Bool(*b)),
            ExprKind::Null => Ok(Value::Null),
            ExprKind::Var(name) => Ok(self.vars.get(name).cloned().unwrap_or(Value::Null)),
            ExprKind::Env(name) => self.env(name, at),
            ExprKind::Binary(BinOp::And, l, r) => Ok(Value::Bool(
                self.expr(l)?.truthy() && self.expr(r)?.truthy(),
            )),
            ExprKind::Binary(BinOp::Or, l, r) => Ok(Value::Bool(
                self.expr(l)?.truthy() || self.expr(r)?.truthy(),
            )),
            ExprKind::Binary(op, l, r) => {
                let (l, r) = (self.expr(l)?, self.expr(r)?);
                binary(*op, &l, &r, at)
            }
            ExprKind::Not(x) => Ok(Value::Bool(!self.expr(x)?.truthy())),
            ExprKind::Negate(x) => {
                let n = self.expr(x)?.to_int("System.Int32", at)?;
                match n.checked_neg() {
                    Some(n) => Ok(Value::Int(n)),
                    None => unsupported("integer overflow", at),
                }
            }
            ExprKind::Cast(cast, x) => {
                let v = self.expr(x)?;
                match cast {
                    Cast::Void => Ok(Value::Null),
                    Cast::Str => Ok(Value::Str(v.to_text(at)?)),
                    Cast::Int64 => Ok(Value::Int(v.to_int("System.Int64", at)?)),
                    Cast::Int32 => {
                        let n = v.to_int("System.Int32", at)?;
                        if i32::try_from(n).is_err() {
                            return value::runtime_error(
                                value::RUNTIME,
                                format!("Cannot convert value \"{n}\" to type \"System.Int32\". Error: \"Value was either too large or too small for an Int32.\""),
                                at,
                            );
                        }
                        Ok(Value::Int(n))
                    }
                }
            }
            ExprKind::Member(target, name) => {
                let t = self.expr(target)?;
                net(dotnet::property(&t, name), at, Wrap::Get(name))
            }
            ExprKind::StaticMember(ty, name) => {
                net(dotnet::static_property(*ty, name), at, Wrap::Get(name))
            }
            ExprKind::Invoke(target, name, args) => {
                let t = self.expr(target)?;
                if matches!(t, Value::Null) {
                    return value::runtime_error(
                        value::RUNTIME,
                        "You cannot call a method on a null-valued expression.",
                        at,
                    );
                }
                let args = self.exprs(args)?;
                let r = dotnet::call(&t, name, &args);
                net(r, at, Wrap::Call(name, args.len()))
            }
            ExprKind::StaticInvoke(ty, name, args) => {
                let args = self.exprs(args)?;
                let r = dotnet::static_call(self.lab, *ty, name, &args);
                net(r, at, Wrap::Call(name, args.len()))
            }
            ExprKind::Index(target, index) => {
                let t = self.expr(target)?;
                let i = self.expr(index)?.to_int("System.Int32", at)?;
                index_into(&t, i, at)
            }
            ExprKind::Array(items) => Ok(Value::List(Rc::new(self.exprs(items)?))),
            ExprKind::Paren(p) => self.pipeline_value(p),
        }
    }

    fn exprs(&mut self, list: &[Expr]) -> Eval<Vec<Value>> {
        list.iter().map(|e| self.expr(e)).collect()
    }
}

/// How PowerShell reports an exception a .NET member threw.
enum Wrap<'n> {
    /// A property getter: GetValueInvocationException.
    Get(&'n str),
    /// A method with this many arguments: MethodInvocationException.
    Call(&'n str, usize),
}

/// A .NET member's result: a thrown exception becomes PowerShell's wrapper (the exception
/// itself is its InnerException, which a typed catch also matches).
fn net(r: dotnet::Net<Value>, at: Pos, wrap: Wrap) -> Eval<Value> {
    match r {
        Ok(v) => Ok(v),
        Err(dotnet::Fault::Unsupported(what)) => unsupported(what, at),
        Err(dotnet::Fault::Throw(inner)) => {
            let (type_name, message) = match wrap {
                Wrap::Get(name) => (
                    value::GET_VALUE_INVOCATION,
                    format!("Exception getting \"{name}\": \"{}\"", inner.message),
                ),
                Wrap::Call(name, n) => (
                    value::METHOD_INVOCATION,
                    format!(
                        "Exception calling \"{name}\" with \"{n}\" argument(s): \"{}\"",
                        inner.message
                    ),
                ),
            };
            Err(Flow::Error(Rc::new(ErrorRecord {
                exception: Rc::new(Exception {
                    type_name,
                    message,
                    inner: Some(Rc::new(inner)),
                }),
                command: None,
                at,
            })))
        }
    }
}

fn pipeline_pos(p: &Pipeline) -> Pos {
    match p {
        Pipeline::Expr(e) => e.at,
        Pipeline::Command(c) => c.at,
    }
}

/// A typed catch matches the error's exception or a base of it; for a .NET member's exception,
/// which PowerShell wraps, the wrapped exception too.
fn catches_error(c: &Catch, rec: &ErrorRecord) -> bool {
    if c.types.is_empty() {
        return true;
    }
    let mut ex = Some(rec.exception.as_ref());
    while let Some(e) = ex {
        if c.types.iter().any(|t| e.is_a(t)) {
            return true;
        }
        ex = e.inner.as_deref();
    }
    false
}

fn binary(op: BinOp, l: &Value, r: &Value, at: Pos) -> Eval<Value> {
    match op {
        BinOp::Add => add(l, r, at),
        BinOp::Sub => {
            let a = number(l, at)?;
            let b = number(r, at)?;
            match a.checked_sub(b) {
                Some(n) => Ok(Value::Int(n)),
                None => unsupported("integer overflow", at),
            }
        }
        _ => compare(op, l, r, at).map(Value::Bool),
    }
}

/// `+`: the left operand's type decides (string: concatenation; number: addition).
fn add(l: &Value, r: &Value, at: Pos) -> Eval<Value> {
    match l {
        Value::Str(a) => Ok(Value::Str(format!("{a}{}", r.to_text(at)?))),
        Value::Null => match r {
            Value::Null | Value::Str(_) | Value::Int(_) => Ok(r.clone()),
            other => unsupported(format!("$null + a {}", other.type_name()), at),
        },
        Value::Int(a) => {
            let b = number(r, at)?;
            match a.checked_add(b) {
                Some(n) => Ok(Value::Int(n)),
                None => unsupported("integer overflow", at),
            }
        }
        other => unsupported(format!("`+` on a {}", other.type_name()), at),
    }
}

/// An arithmetic operand: a string is converted as PowerShell converts it to a number.
fn number(v: &Value, at: Pos) -> Eval<i64> {
    match v {
        Value::Null | Value::Int(_) | Value::Str(_) | Value::Bool(_) => {
            v.to_int("System.Int32", at)
        }
        other => unsupported(format!("arithmetic on a {}", other.type_name()), at),
    }
}

/// `-eq` and the rest: the right operand is converted to the left one's type; strings compare
/// without regard to case (the lab compares lower-cased text ordinally where PowerShell uses
/// the current culture).
fn compare(op: BinOp, l: &Value, r: &Value, at: Pos) -> Eval<bool> {
    let ord = match l {
        Value::List(_) | Value::Bytes(_) => {
            return unsupported(
                "comparing a collection (PowerShell filters the collection; compare its .Length or an element)",
                at,
            )
        }
        Value::Null => return equality_only(op, matches!(r, Value::Null), at),
        Value::Str(a) => {
            let b = match r {
                Value::Null | Value::Str(_) | Value::Int(_) | Value::Bool(_) => r.to_text(at)?,
                other => return equality_only(op, false, at).or_else(|_| {
                    unsupported(format!("comparing a string with a {}", other.type_name()), at)
                }),
            };
            a.to_lowercase().cmp(&b.to_lowercase())
        }
        Value::Int(a) => {
            let b = match r {
                Value::Int(b) => *b,
                Value::Bool(b) => i64::from(*b),
                Value::Str(s) => match s.trim().parse::<i64>() {
                    Ok(b) => b,
                    Err(_) => return equality_only(op, false, at),
                },
                Value::Null => return equality_only(op, false, at),
                other => {
                    return unsupported(
                        format!("comparing a number with a {}", other.type_name()),
                        at,
                    )
                }
            };
            a.cmp(&b)
        }
        Value::Bool(a) => return equality_only(op, *a == r.truthy(), at),
        other => {
            let same = match (other, r) {
                (Value::Item(a), Value::Item(b)) => Rc::ptr_eq(a, b),
                (Value::Stream(a), Value::Stream(b)) => Rc::ptr_eq(a, b),
                (Value::Sha256(a), Value::Sha256(b)) => Rc::ptr_eq(a, b),
                _ => false,
            };
            return equality_only(op, same, at);
        }
    };
    Ok(match op {
        BinOp::Eq => ord == Ordering::Equal,
        BinOp::Ne => ord != Ordering::Equal,
        BinOp::Gt => ord == Ordering::Greater,
        BinOp::Ge => ord != Ordering::Less,
        BinOp::Lt => ord == Ordering::Less,
        BinOp::Le => ord != Ordering::Greater,
        _ => return unsupported("this operator", at),
    })
}

/// `-eq` / `-ne` given whether the operands are equal; an ordering the lab does not vouch for
/// is refused.
fn equality_only(op: BinOp, equal: bool, at: Pos) -> Eval<bool> {
    match op {
        BinOp::Eq => Ok(equal),
        BinOp::Ne => Ok(!equal),
        _ => unsupported("ordering comparisons of these operands", at),
    }
}

/// `$a[i]`: a negative index counts from the end; one past either end is `$null`.
fn index_into(t: &Value, i: i64, at: Pos) -> Eval<Value> {
    let pick = |len: usize| -> Option<usize> {
        let len = i64::try_from(len).ok()?;
        let i = if i < 0 { len + i } else { i };
        (0..len).contains(&i).then_some(i as usize)
    };
    match t {
        Value::List(l) => Ok(pick(l.len()).map_or(Value::Null, |i| l[i].clone())),
        Value::Bytes(b) => {
            let b = b.borrow();
            Ok(pick(b.len()).map_or(Value::Null, |i| Value::Int(i64::from(b[i]))))
        }
        Value::Null => value::runtime_error(value::RUNTIME, "Cannot index into a null array.", at),
        other => unsupported(format!("indexing a {}", other.type_name()), at),
    }
}
