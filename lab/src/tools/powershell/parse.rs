//! Parsing a script: tree-sitter-powershell (the airbus-cert grammar from crates.io, nobody here
//! wrote it) builds the concrete tree; a tree with an ERROR or MISSING node is a ParserError and
//! nothing runs. The tree is then lowered to `ast`, and anything outside the contract's subset
//! (double-quoted strings, pipelines, functions, other operators, ...) is refused here, also
//! before anything runs. Cmdlet names and parameters are bound by `cmdlets::bind`.

use tree_sitter::{Node, Parser};

use super::ast::{
    BinOp, Block, Cast, Catch, Expr, ExprKind, Pipeline, Pos, RawElement, Stmt, Unsupported,
};
use super::{cmdlets, dotnet};

/// Why a script does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseFailure {
    /// The grammar rejects it (an ERROR or MISSING node).
    Syntax { at: Pos, message: String },
    /// Valid PowerShell the lab does not implement.
    Unsupported(Unsupported),
}

impl From<Unsupported> for ParseFailure {
    fn from(u: Unsupported) -> Self {
        ParseFailure::Unsupported(u)
    }
}

/// Parses and lowers `source`.
pub fn parse(source: &str) -> Result<Block, ParseFailure> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .map_err(|e| ParseFailure::Syntax {
            at: Pos::default(),
            message: format!("the PowerShell grammar does not load: {e}"),
        })?;
    let tree = parser.parse(source, None).ok_or(ParseFailure::Syntax {
        at: Pos::default(),
        message: "the parser gave no tree".into(),
    })?;
    let lower = Lower { src: source };
    let root = tree.root_node();
    if let Some(bad) = first_error(root) {
        let at = lower.pos(bad);
        let message = if bad.is_missing() {
            format!("Missing `{}`.", bad.kind())
        } else {
            // The region the parser could not place, shown from its start on its first line.
            let first_line = lower.text(bad).lines().next().unwrap_or_default();
            let text: String = first_line.trim().chars().take(40).collect();
            format!("Unexpected token `{text}`.")
        };
        return Err(ParseFailure::Syntax { at, message });
    }
    let mut block = Vec::new();
    for child in named_children(root) {
        match child.kind() {
            "statement_list" => block.extend(lower.statements(child)?),
            "comment" => {}
            _ => return Err(lower.unsupported(child, "a param() block").into()),
        }
    }
    Ok(block)
}

/// The first ERROR or MISSING node in document order.
fn first_error(node: Node) -> Option<Node> {
    if node.is_error() || node.is_missing() {
        return Some(node);
    }
    if !node.has_error() {
        return None;
    }
    let mut cursor = node.walk();
    let children: Vec<Node> = node.children(&mut cursor).collect();
    children.into_iter().find_map(first_error)
}

fn named_children(node: Node) -> Vec<Node> {
    let mut cursor = node.walk();
    node.named_children(&mut cursor)
        .filter(|c| c.kind() != "comment")
        .collect()
}

fn children(node: Node) -> Vec<Node> {
    let mut cursor = node.walk();
    node.children(&mut cursor)
        .filter(|c| c.kind() != "comment")
        .collect()
}

struct Lower<'s> {
    src: &'s str,
}

type Lowered<T> = Result<T, Unsupported>;

impl<'s> Lower<'s> {
    fn text(&self, node: Node) -> &'s str {
        &self.src[node.byte_range()]
    }

    /// tree-sitter counts bytes from 0; PowerShell counts characters from 1.
    fn pos(&self, node: Node) -> Pos {
        let start = node.start_byte();
        let line_start = self.src[..start].rfind('\n').map_or(0, |i| i + 1);
        Pos {
            line: node.start_position().row + 1,
            col: self.src[line_start..start].chars().count() + 1,
        }
    }

    fn unsupported(&self, node: Node, what: &str) -> Unsupported {
        Unsupported {
            what: what.to_string(),
            at: self.pos(node),
        }
    }

    fn statements(&self, list: Node) -> Lowered<Block> {
        let mut out = Vec::new();
        for s in named_children(list) {
            if let Some(stmt) = self.statement(s)? {
                out.push(stmt);
            }
        }
        Ok(out)
    }

    /// A `statement_block` (`{ ... }`).
    fn block(&self, node: Node) -> Lowered<Block> {
        match node.child_by_field_name("statement_list") {
            Some(list) => self.statements(list),
            None => Ok(Vec::new()),
        }
    }

    fn statement(&self, node: Node) -> Lowered<Option<Stmt>> {
        let stmt = match node.kind() {
            "empty_statement" => return Ok(None),
            "pipeline" => self.pipeline_statement(node)?,
            "if_statement" => self.if_statement(node)?,
            "while_statement" => {
                let cond = node
                    .child_by_field_name("condition")
                    .and_then(|c| c.named_child(0))
                    .ok_or_else(|| self.unsupported(node, "a while without a condition"))?;
                Stmt::While {
                    cond: self.pipeline(cond)?,
                    body: self.block(self.child_of_kind(node, "statement_block")?)?,
                }
            }
            "foreach_statement" => {
                if let Some(p) = children(node)
                    .into_iter()
                    .find(|c| c.kind() == "foreach_parameter")
                {
                    return Err(self.unsupported(p, "foreach -parallel"));
                }
                let var = self.child_of_kind(node, "variable")?;
                Stmt::Foreach {
                    var: self.variable_name(var)?,
                    source: self.pipeline(self.child_of_kind(node, "pipeline")?)?,
                    body: self.block(self.child_of_kind(node, "statement_block")?)?,
                }
            }
            "try_statement" => self.try_statement(node)?,
            "flow_control_statement" => self.flow_control(node)?,
            "label" => return Err(self.unsupported(node, "loop labels")),
            "for_statement" => return Err(self.unsupported(node, "the for statement")),
            "do_statement" => return Err(self.unsupported(node, "the do statement")),
            "switch_statement" => return Err(self.unsupported(node, "the switch statement")),
            "function_statement" => return Err(self.unsupported(node, "functions")),
            "trap_statement" => return Err(self.unsupported(node, "trap")),
            other => {
                return Err(self.unsupported(node, &format!("the statement `{other}`")));
            }
        };
        Ok(Some(stmt))
    }

    fn child_of_kind(&self, node: Node<'s>, kind: &str) -> Lowered<Node<'s>> {
        children(node)
            .into_iter()
            .find(|c| c.kind() == kind)
            .ok_or_else(|| self.unsupported(node, &format!("a {} without {kind}", node.kind())))
    }

    fn pipeline_statement(&self, node: Node) -> Lowered<Stmt> {
        let parts = named_children(node);
        if let [only] = parts.as_slice() {
            if only.kind() == "assignment_expression" {
                return self.assignment(*only);
            }
        }
        Ok(Stmt::Output(self.pipeline(node)?))
    }

    fn assignment(&self, node: Node) -> Lowered<Stmt> {
        let op = self.child_of_kind(node, "assignement_operator")?;
        if self.text(op) != "=" {
            return Err(self.unsupported(op, &format!("the operator `{}`", self.text(op))));
        }
        let left = self.child_of_kind(node, "left_assignment_expression")?;
        let target = self.expr(left.named_child(0).unwrap_or(left))?;
        let ExprKind::Var(var) = target.kind else {
            return Err(self.unsupported(left, "assigning to anything but a variable"));
        };
        let value = node
            .child_by_field_name("value")
            .ok_or_else(|| self.unsupported(node, "an assignment without a value"))?;
        if value.kind() != "pipeline" {
            return Err(self.unsupported(value, "assigning the value of a statement"));
        }
        Ok(Stmt::Assign {
            var,
            value: self.pipeline(value)?,
        })
    }

    /// A `pipeline` node: one `pipeline_chain` with one element.
    fn pipeline(&self, node: Node) -> Lowered<Pipeline> {
        let parts = named_children(node);
        let chain = match parts.as_slice() {
            [chain] if chain.kind() == "pipeline_chain" => *chain,
            [one] if one.kind() == "assignment_expression" => {
                return Err(self.unsupported(*one, "an assignment used as a value"));
            }
            _ => {
                return Err(self.unsupported(node, "pipeline chains (`&&`, `||`)"));
            }
        };
        let elements = children(chain);
        if let Some(bar) = elements.iter().find(|c| c.kind() == "|") {
            return Err(self.unsupported(*bar, "pipelines (`|`)"));
        }
        let named: Vec<Node> = elements.into_iter().filter(|c| c.is_named()).collect();
        match named.as_slice() {
            [command] if command.kind() == "command" => {
                Ok(Pipeline::Command(self.command(*command)?))
            }
            [expr] => Ok(Pipeline::Expr(self.expr(*expr)?)),
            [_, extra, ..] => Err(self.unsupported(
                *extra,
                match extra.kind() {
                    "redirections" => "redirections",
                    "verbatim_command_argument" => "--%",
                    _ => "this pipeline",
                },
            )),
            [] => Err(self.unsupported(node, "an empty pipeline")),
        }
    }

    fn command(&self, node: Node) -> Lowered<super::ast::Command> {
        if let Some(op) = children(node)
            .into_iter()
            .find(|c| c.kind() == "command_invokation_operator")
        {
            return Err(self.unsupported(op, "the call operators `&` and `.`"));
        }
        let name_node = node
            .child_by_field_name("command_name")
            .ok_or_else(|| self.unsupported(node, "a command without a name"))?;
        let name = self.text(name_node);
        let mut raw = Vec::new();
        if let Some(elements) = node.child_by_field_name("command_elements") {
            let mut colon = false;
            let mut after_word = false;
            for e in children(elements) {
                let word = e.kind() == "generic_token";
                match e.kind() {
                    "command_argument_sep" => {
                        colon = self.text(e) == ":";
                        continue;
                    }
                    "command_parameter" => raw.push(RawElement::Param {
                        name: self.text(e).trim_start_matches('-').to_string(),
                        value: None,
                        at: self.pos(e),
                    }),
                    "generic_token" => {
                        let arg = Expr {
                            kind: ExprKind::Str(self.text(e).to_string()),
                            at: self.pos(e),
                        };
                        push_argument(&mut raw, arg, colon);
                    }
                    "redirection" => return Err(self.unsupported(e, "redirections")),
                    "stop_parsing" => return Err(self.unsupported(e, "--%")),
                    // `New-Object T(a, b)`: PowerShell takes the parenthesised list after a bare
                    // word as one more argument, the array of its elements (one element: itself),
                    // which New-Object binds to -ArgumentList by position.
                    "argument_list" if after_word && !colon => {
                        let mut items = self.arguments(e)?;
                        let arg = match items.len() {
                            0 => return Err(self.unsupported(e, "an empty `()` after an argument")),
                            1 => items.remove(0),
                            _ => Expr {
                                kind: ExprKind::Array(items),
                                at: self.pos(e),
                            },
                        };
                        raw.push(RawElement::Arg(arg));
                    }
                    "argument_list" => {
                        return Err(self.unsupported(e, "a parenthesised list after an argument"))
                    }
                    "," => return Err(self.unsupported(e, "array arguments (`,`)")),
                    _ if e.is_named() => {
                        let arg = self.expr(e)?;
                        push_argument(&mut raw, arg, colon);
                    }
                    _ => return Err(self.unsupported(e, &format!("`{}` here", self.text(e)))),
                }
                colon = false;
                after_word = word;
            }
        }
        cmdlets::bind(name, raw, self.pos(name_node))
    }

    fn if_statement(&self, node: Node) -> Lowered<Stmt> {
        let cond = node
            .child_by_field_name("condition")
            .ok_or_else(|| self.unsupported(node, "an if without a condition"))?;
        let mut branches = vec![(
            self.pipeline(cond)?,
            self.block(self.child_of_kind(node, "statement_block")?)?,
        )];
        if let Some(list) = node.child_by_field_name("elseif_clauses") {
            for clause in named_children(list) {
                let cond = clause
                    .child_by_field_name("condition")
                    .ok_or_else(|| self.unsupported(clause, "an elseif without a condition"))?;
                branches.push((
                    self.pipeline(cond)?,
                    self.block(self.child_of_kind(clause, "statement_block")?)?,
                ));
            }
        }
        let otherwise = match node.child_by_field_name("else_clause") {
            Some(e) => Some(self.block(self.child_of_kind(e, "statement_block")?)?),
            None => None,
        };
        Ok(Stmt::If {
            branches,
            otherwise,
        })
    }

    fn try_statement(&self, node: Node) -> Lowered<Stmt> {
        let body = self.block(self.child_of_kind(node, "statement_block")?)?;
        let mut catches = Vec::new();
        let mut finally = None;
        for part in named_children(node) {
            match part.kind() {
                "catch_clauses" => {
                    for clause in named_children(part) {
                        let mut types = Vec::new();
                        if let Some(list) = children(clause)
                            .into_iter()
                            .find(|c| c.kind() == "catch_type_list")
                        {
                            for t in named_children(list) {
                                let name = self.type_name(t)?;
                                let full =
                                    super::value::exception_type(&name).ok_or_else(|| {
                                        self.unsupported(t, &format!("the exception type [{name}]"))
                                    })?;
                                types.push(full);
                            }
                        }
                        catches.push(Catch {
                            types,
                            body: self.block(self.child_of_kind(clause, "statement_block")?)?,
                        });
                    }
                }
                "finally_clause" => {
                    finally = Some(self.block(self.child_of_kind(part, "statement_block")?)?)
                }
                _ => {}
            }
        }
        // Two rules of PowerShell's own parser that the grammar does not enforce.
        if catches.is_empty() && finally.is_none() {
            return Err(self.unsupported(
                node,
                "a try without catch or finally (PowerShell's parser says: The Try statement is missing its Catch or Finally block.)",
            ));
        }
        if let Some(i) = catches.iter().position(|c| c.types.is_empty()) {
            if i + 1 < catches.len() {
                return Err(self.unsupported(
                    node,
                    "a catch after an untyped catch (PowerShell's parser says: Catch block must be the last catch block.)",
                ));
            }
        }
        Ok(Stmt::Try {
            body,
            catches,
            finally,
        })
    }

    fn flow_control(&self, node: Node) -> Lowered<Stmt> {
        let keyword = node
            .child(0)
            .map(|k| self.text(k).to_ascii_lowercase())
            .unwrap_or_default();
        let arg = named_children(node).into_iter().next();
        match keyword.as_str() {
            "break" => match arg {
                None => Ok(Stmt::Break(self.pos(node))),
                Some(a) => Err(self.unsupported(a, "break with a label")),
            },
            "exit" => Ok(Stmt::Exit(match arg {
                Some(p) => Some(self.pipeline(p)?),
                None => None,
            })),
            other => Err(self.unsupported(node, &format!("`{other}`"))),
        }
    }

    fn variable_name(&self, node: Node) -> Lowered<String> {
        match self.expr(node)?.kind {
            ExprKind::Var(v) => Ok(v),
            _ => Err(self.unsupported(node, "this variable")),
        }
    }

    /// `[Type]` -> the type's name as written.
    fn type_name(&self, type_literal: Node) -> Lowered<String> {
        let spec = self.child_of_kind(type_literal, "type_spec")?;
        match named_children(spec).as_slice() {
            [name] if name.kind() == "type_name" => Ok(self.text(*name).to_string()),
            _ => Err(self.unsupported(
                type_literal,
                &format!("the type {}", self.text(type_literal)),
            )),
        }
    }

    fn expr(&self, node: Node) -> Lowered<Expr> {
        let at = self.pos(node);
        let mk = |kind| Ok(Expr { kind, at });
        let kids = named_children(node);
        match node.kind() {
            "logical_expression"
            | "bitwise_expression"
            | "comparison_expression"
            | "additive_expression"
            | "multiplicative_expression"
            | "format_expression"
            | "range_expression"
            | "logical_argument_expression"
            | "bitwise_argument_expression"
            | "comparison_argument_expression"
            | "additive_argument_expression"
            | "multiplicative_argument_expression"
            | "format_argument_expression"
            | "range_argument_expression" => {
                let all = children(node);
                match all.as_slice() {
                    [one] => self.expr(*one),
                    [left, op, right] => {
                        let op_text = self.text(*op).to_ascii_lowercase();
                        let op = match op_text.as_str() {
                            "+" => BinOp::Add,
                            "-" => BinOp::Sub,
                            "-eq" | "-ieq" => BinOp::Eq,
                            "-ne" | "-ine" => BinOp::Ne,
                            "-gt" | "-igt" => BinOp::Gt,
                            "-ge" | "-ige" => BinOp::Ge,
                            "-lt" | "-ilt" => BinOp::Lt,
                            "-le" | "-ile" => BinOp::Le,
                            "-and" => BinOp::And,
                            "-or" => BinOp::Or,
                            _ => {
                                return Err(
                                    self.unsupported(*op, &format!("the operator `{op_text}`"))
                                )
                            }
                        };
                        mk(ExprKind::Binary(
                            op,
                            Box::new(self.expr(*left)?),
                            Box::new(self.expr(*right)?),
                        ))
                    }
                    _ => Err(self.unsupported(node, "this expression")),
                }
            }
            "array_literal_expression" => match kids.as_slice() {
                [one] => self.expr(*one),
                _ => Err(self.unsupported(node, "array literals (`,`)")),
            },
            "unary_expression" | "argument_expression" | "left_assignment_expression" => {
                match kids.as_slice() {
                    [one] => self.expr(*one),
                    _ => Err(self.unsupported(node, "this expression")),
                }
            }
            "expression_with_unary_operator" => {
                let all = children(node);
                match all.as_slice() {
                    [cast] if cast.kind() == "cast_expression" => self.expr(*cast),
                    [op, operand] => {
                        let op_text = self.text(*op).to_ascii_lowercase();
                        let inner = Box::new(self.expr(*operand)?);
                        match op_text.as_str() {
                            "-not" | "!" => mk(ExprKind::Not(inner)),
                            "-" => mk(ExprKind::Negate(inner)),
                            _ => {
                                Err(self
                                    .unsupported(*op, &format!("the unary operator `{op_text}`")))
                            }
                        }
                    }
                    _ => Err(self.unsupported(node, "this unary expression")),
                }
            }
            "cast_expression" => {
                let ty = self.child_of_kind(node, "type_literal")?;
                let name = self.type_name(ty)?;
                let cast = match name.to_ascii_lowercase().as_str() {
                    "void" | "system.void" => Cast::Void,
                    "int" | "int32" | "system.int32" => Cast::Int32,
                    "long" | "int64" | "system.int64" => Cast::Int64,
                    "string" | "system.string" => Cast::Str,
                    _ => return Err(self.unsupported(ty, &format!("the cast [{name}]"))),
                };
                let operand = self.child_of_kind(node, "unary_expression")?;
                mk(ExprKind::Cast(cast, Box::new(self.expr(operand)?)))
            }
            "parenthesized_expression" => {
                let p = self.child_of_kind(node, "pipeline")?;
                mk(ExprKind::Paren(Box::new(self.pipeline(p)?)))
            }
            "string_literal" => match kids.as_slice() {
                [s] if s.kind() == "verbatim_string_characters" => {
                    let raw = self.text(*s);
                    // The grammar's token is `'...'`: a quote at each end (an invariant).
                    let inner = &raw[1..raw.len() - 1];
                    mk(ExprKind::Str(inner.replace("''", "'")))
                }
                [s] if s.kind() == "expandable_string_literal" => {
                    Err(self.unsupported(*s, "double-quoted strings"))
                }
                _ => Err(self.unsupported(node, "here-strings")),
            },
            "integer_literal" => match kids.as_slice() {
                [d] if d.kind() == "decimal_integer_literal" => {
                    let t = self.text(*d);
                    match t.parse::<i64>() {
                        Ok(n) => mk(ExprKind::Int(n)),
                        Err(_) => Err(self.unsupported(
                            *d,
                            &format!("the number `{t}` (decimal integers that fit in Int64 only)"),
                        )),
                    }
                }
                _ => Err(self.unsupported(node, "hexadecimal numbers")),
            },
            "real_literal" => Err(self.unsupported(node, "real numbers")),
            "variable" => {
                let t = self.text(node);
                let Some(name) = t.strip_prefix('$') else {
                    return Err(self.unsupported(node, "splatting (`@name`)"));
                };
                if let Some(var) = name
                    .get(..4)
                    .filter(|p| p.eq_ignore_ascii_case("env:"))
                    .map(|_| &name[4..])
                    .filter(|v| !v.is_empty() && !v.contains(':'))
                {
                    return mk(ExprKind::Env(var.to_ascii_lowercase()));
                }
                if name.starts_with('{')
                    || name.contains(':')
                    || name == "$"
                    || name == "^"
                    || name == "?"
                {
                    return Err(self.unsupported(node, &format!("the variable `{t}`")));
                }
                match name.to_ascii_lowercase().as_str() {
                    "true" => mk(ExprKind::Bool(true)),
                    "false" => mk(ExprKind::Bool(false)),
                    "null" => mk(ExprKind::Null),
                    lower => mk(ExprKind::Var(lower.to_string())),
                }
            }
            "member_access" | "invokation_expression" => self.member(node),
            "element_access" => {
                let all = named_children(node);
                match all.as_slice() {
                    [target, index] => mk(ExprKind::Index(
                        Box::new(self.expr(*target)?),
                        Box::new(self.expr(*index)?),
                    )),
                    _ => Err(self.unsupported(node, "this index")),
                }
            }
            "type_literal" => Err(self.unsupported(
                node,
                &format!("a type literal {} used as a value", self.text(node)),
            )),
            "sub_expression" => Err(self.unsupported(node, "subexpressions `$( )`")),
            "array_expression" => Err(self.unsupported(node, "array subexpressions `@( )`")),
            "script_block_expression" => Err(self.unsupported(node, "script blocks")),
            "hash_literal_expression" => Err(self.unsupported(node, "hash tables")),
            "command" => Err(self.unsupported(node, "a command here")),
            other => Err(self.unsupported(node, &format!("the construct `{other}`"))),
        }
    }

    /// The expressions of an `argument_list` (`(a, b)`).
    fn arguments(&self, list: Node) -> Lowered<Vec<Expr>> {
        match list.child_by_field_name("argument_expression_list") {
            Some(l) => named_children(l)
                .into_iter()
                .map(|a| self.expr(a))
                .collect(),
            None => Ok(Vec::new()),
        }
    }

    /// `x.Name`, `x.Name(args)`, `[T]::Name`, `[T]::Name(args)`.
    fn member(&self, node: Node) -> Lowered<Expr> {
        let at = self.pos(node);
        let all = children(node);
        let (target, op, name, args) = match all.as_slice() {
            [t, op, name] => (*t, *op, *name, None),
            [t, op, name, args] if args.kind() == "argument_list" => (*t, *op, *name, Some(*args)),
            _ => return Err(self.unsupported(node, "this member access")),
        };
        let member = match named_children(name).as_slice() {
            [simple] if simple.kind() == "simple_name" => self.text(*simple).to_string(),
            _ => {
                return Err(self.unsupported(
                    name,
                    &format!("the computed member name `{}`", self.text(name)),
                ))
            }
        };
        let args = match args {
            Some(list) => self.arguments(list)?,
            None => Vec::new(),
        };
        let is_call = all.len() == 4;
        let kind = if self.text(op) == "::" {
            if target.kind() != "type_literal" {
                return Err(self.unsupported(op, "`::` on anything but a type literal"));
            }
            let type_name = self.type_name(target)?;
            let ty = dotnet::StaticType::resolve(&type_name)
                .ok_or_else(|| self.unsupported(target, &format!("the type [{type_name}]")))?;
            if is_call {
                ExprKind::StaticInvoke(ty, member, args)
            } else {
                ExprKind::StaticMember(ty, member)
            }
        } else {
            let target = Box::new(self.expr(target)?);
            if is_call {
                ExprKind::Invoke(target, member, args)
            } else {
                ExprKind::Member(target, member)
            }
        };
        Ok(Expr { kind, at })
    }
}

/// An argument after `-Name:` belongs to that parameter; any other stands on its own.
fn push_argument(raw: &mut Vec<RawElement>, arg: Expr, colon: bool) {
    if colon {
        if let Some(RawElement::Param { value, .. }) = raw.last_mut() {
            if value.is_none() {
                *value = Some(arg);
                return;
            }
        }
    }
    raw.push(RawElement::Arg(arg));
}
