//! The lab's PowerShell syntax tree: only the language subset of the contract
//! (/work/notes/ps-subset.md, lab/README.md). `parse` builds it from tree-sitter's concrete tree
//! and refuses everything else before anything runs; `eval` walks it. No behaviour lives here.

use std::fmt;

/// A place in the script, as PowerShell reports it: line and character, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line:{} char:{}", self.line, self.col)
    }
}

pub type Block = Vec<Stmt>;

#[derive(Debug, Clone)]
pub enum Stmt {
    /// A pipeline whose output goes to the enclosing output (stdout at top level).
    Output(Pipeline),
    /// `$name = pipeline` (`$null = ...` discards).
    Assign {
        var: String,
        value: Pipeline,
    },
    If {
        branches: Vec<(Pipeline, Block)>,
        otherwise: Option<Block>,
    },
    While {
        cond: Pipeline,
        body: Block,
    },
    Foreach {
        var: String,
        source: Pipeline,
        body: Block,
    },
    Try {
        body: Block,
        catches: Vec<Catch>,
        finally: Option<Block>,
    },
    Break(Pos),
    Exit(Option<Pipeline>),
}

#[derive(Debug, Clone)]
pub struct Catch {
    /// Full .NET names of the types listed (empty: catches everything).
    pub types: Vec<&'static str>,
    pub body: Block,
}

/// One element: the subset has no `|`.
#[derive(Debug, Clone)]
pub enum Pipeline {
    Expr(Expr),
    Command(Command),
}

/// A cmdlet call with its parameters bound by name (see `cmdlets::bind`).
#[derive(Debug, Clone)]
pub struct Command {
    pub cmdlet: super::cmdlets::Cmdlet,
    /// (canonical parameter name, its argument; `None` for a switch given without a value)
    pub params: Vec<(&'static str, Option<Expr>)>,
    pub at: Pos,
}

#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub at: Pos,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
    /// Lower-case name without `$`.
    Var(String),
    /// `$env:NAME`: the lower-case NAME of an environment variable.
    Env(String),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Cast(Cast, Box<Expr>),
    Member(Box<Expr>, String),
    Invoke(Box<Expr>, String, Vec<Expr>),
    StaticMember(super::dotnet::StaticType, String),
    StaticInvoke(super::dotnet::StaticType, String, Vec<Expr>),
    Index(Box<Expr>, Box<Expr>),
    /// The elements of `Cmd word(a, b)`'s list: an object[] (only as a command's argument).
    Array(Vec<Expr>),
    /// `( pipeline )`: a command's output as one value.
    Paren(Box<Pipeline>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cast {
    Void,
    Int32,
    Int64,
    Str,
}

/// Something outside the subset: the stand-in refuses the script (exit 1) rather than guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub what: String,
    pub at: Pos,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the lab's powershell does not implement {} (lab/README.md)\r\nAt {}",
            self.what, self.at
        )
    }
}

/// A command element before binding: `-Name`, `-Name:value`, or an argument.
#[derive(Debug, Clone)]
pub enum RawElement {
    Param {
        name: String,
        value: Option<Expr>,
        at: Pos,
    },
    Arg(Expr),
}
