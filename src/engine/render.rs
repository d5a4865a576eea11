//! Rendering for people and for config-management tools: the plan (one line per step with its
//! mark, reason and operations), apply progress (the text; `progress` draws it), and the
//! `--json` documents. Pure: takes data, returns text; never reads the world or prints by
//! itself. Text for people comes out terminal-safe (secrets masked, control characters escaped)
//! and, when `Display::colour` says so, coloured.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::adapters::secrets::Redactor;
use crate::engine::fit;
use crate::plan::source::escape_for_terminal;
use crate::steps::progress::Update;
use crate::steps::record::{RunRecord, StepRecord, StepStatus};
use crate::steps::{Diff, Op};

/// Text as a terminal is given it: secrets replaced first, then every character that could move
/// the cursor, clear the screen or reorder text escaped. Names and messages from the plan, the
/// server and the tools all pass through here. (Escaping first would hide a secret that holds
/// such a character from the redactor.)
pub fn for_terminal(redactor: &Redactor, text: &str) -> String {
    escape_for_terminal(&redactor.redact(text)).into_owned()
}

/// How text for people is shown: colour only where the command line found a terminal that
/// allows it (never in `--json`, off a terminal, with `NO_COLOR` or `--no-color`); quiet keeps
/// only the summary and errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Display {
    /// Colour on standard output.
    pub colour: bool,
    /// Colour on standard error (error lines).
    pub colour_errors: bool,
    /// `-q`: only the summary and errors.
    pub quiet: bool,
    /// The width of the terminal standard output is (in columns); `None` off a terminal and
    /// with `--json`. Apply draws a spinner only on a terminal.
    pub width: Option<usize>,
    /// `-v`: each step's detail (what the server said) under its result.
    pub verbose: bool,
}

/// The colours of marks and results, as Terraform uses them.
#[derive(Debug, Clone, Copy)]
enum Paint {
    /// `+`, a successful end.
    Green,
    /// `!`, failures, errors.
    Red,
    /// `=`: nothing to do, not run.
    Dim,
    /// `~` (redone), a restart to attend to.
    Yellow,
}

impl Paint {
    fn style(self) -> anstyle::Style {
        use anstyle::AnsiColor;
        match self {
            Paint::Green => AnsiColor::Green.on_default(),
            Paint::Red => AnsiColor::Red.on_default().bold(),
            Paint::Dim => anstyle::Style::new().dimmed(),
            Paint::Yellow => AnsiColor::Yellow.on_default(),
        }
    }
}

/// `text` in `paint` when `on`; `text` is already terminal-safe.
fn paint(on: bool, paint: Paint, text: &str) -> String {
    if on {
        let style = paint.style();
        format!("{style}{text}{style:#}")
    } else {
        text.to_string()
    }
}

/// How a line of people's output is coloured.
#[derive(Debug, Clone, Copy)]
enum Painted {
    /// Its mark (the first word) only.
    Mark(Paint),
    /// All of it.
    Line(Paint),
    Plain,
}

/// `  MARK rest` as people see it: on a terminal of known width, fitted to it (paths shortened
/// in the middle, then wrapped with the lines after the first indented by `indent`); then
/// painted. `rest` is terminal-safe already. No final newline.
fn marked(display: Display, mark: &str, rest: &str, indent: usize, painted: Painted) -> String {
    let line = format!("  {mark} {rest}");
    let lines = match display.width {
        Some(columns) => fit::fit(&line, columns, indent),
        None => vec![line],
    };
    let c = display.colour;
    lines
        .iter()
        .enumerate()
        .map(|(n, l)| match painted {
            Painted::Mark(p) if n == 0 => match l.strip_prefix(&format!("  {mark}")) {
                Some(after) => format!("  {}{after}", paint(c, p, mark)),
                None => l.clone(),
            },
            Painted::Line(p) => paint(c, p, l),
            _ => l.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An operation as the plan shows it. A file written into the folder that a copy of the same
/// step fills is named by its place in the copy (`write: SHA256SUMS in the copy`), not by the
/// copy's whole path a second time; `--json` has the full path.
fn op_text(op: &Op, ops: &[Op]) -> String {
    if let Op::Write { path } = op {
        let inside = ops.iter().find_map(|o| match o {
            Op::Copy { to, .. } => path
                .strip_prefix(to.as_str())
                .and_then(|rest| rest.strip_prefix(['/', '\\']))
                .filter(|rest| !rest.is_empty()),
            _ => None,
        });
        if let Some(name) = inside {
            return format!("write: {name} in the copy");
        }
    }
    op.to_string()
}

/// An error line for standard error: `error: MESSAGE`, terminal-safe, `error:` red when allowed.
pub fn error_line(redactor: &Redactor, message: &str, display: Display) -> String {
    format!(
        "{} {}",
        paint(display.colour_errors, Paint::Red, "error:"),
        for_terminal(redactor, message)
    )
}

/// What a plan says of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `+`: will be done.
    Create,
    /// `=`: already done.
    Noop,
    /// `?`: checks that run at apply.
    Check,
    /// `!`: cannot converge.
    Blocked,
}

impl Action {
    pub fn of(diff: &Diff) -> Action {
        match diff {
            Diff::Done { .. } => Action::Noop,
            Diff::Change { .. } => Action::Create,
            Diff::Check { .. } => Action::Check,
            Diff::Blocked { .. } => Action::Blocked,
        }
    }

    /// The name as the JSON documents and saved plans spell it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Noop => "noop",
            Action::Check => "check",
            Action::Blocked => "blocked",
        }
    }

    /// The one-character mark of rendered plans.
    pub fn mark(self) -> char {
        match self {
            Action::Create => '+',
            Action::Noop => '=',
            Action::Check => '?',
            Action::Blocked => '!',
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a step ended in an apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    /// Done, but the journal could not record it.
    AppliedNotRecorded,
    AlreadyDone,
    Failed,
    NotRun,
}

impl Outcome {
    /// Whether the step was carried out in this run.
    pub fn applied(self) -> bool {
        matches!(self, Outcome::Applied | Outcome::AppliedNotRecorded)
    }
}

/// One step as planned.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlannedStep {
    /// The step's `id` in the plan.
    pub id: String,
    /// Its kind: `backup_database`, `export_keys`, `backup_files`, `service`,
    /// `snapshot_connector_space`, `uninstall`, `install`, `verify`.
    pub kind: String,
    /// `+`, `=`, `?` or `!`, as the text output shows it.
    pub mark: char,
    /// `create` (+), `noop` (=), `check` (?), `blocked` (!).
    pub action: Action,
    /// Why (for `noop`: the evidence that it is done; for `blocked`: why it cannot converge).
    pub reason: String,
    /// The exact operations apply would perform, secrets shown as `***`.
    pub ops: Vec<Op>,
    /// sha256 of what was observed; a saved plan is refused when it no longer matches.
    pub fingerprint: String,
}

impl PlannedStep {
    pub fn new(id: &str, kind: &str, diff: &Diff, fingerprint: String) -> PlannedStep {
        let (reason, ops) = match diff {
            Diff::Done { evidence, .. } => (evidence.clone(), Vec::new()),
            Diff::Change { reason, ops, .. } | Diff::Check { reason, ops, .. } => {
                (reason.clone(), ops.clone())
            }
            Diff::Blocked { why } => (why.clone(), Vec::new()),
        };
        let action = Action::of(diff);
        PlannedStep {
            id: id.to_string(),
            kind: kind.to_string(),
            mark: action.mark(),
            action,
            reason,
            ops,
            fingerprint,
        }
    }
}

/// Counts per action.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, JsonSchema)]
pub struct Summary {
    /// Steps with action `create`.
    pub to_do: usize,
    /// Steps with action `noop`.
    pub done: usize,
    /// Steps with action `check`.
    pub to_check: usize,
    /// Steps with action `blocked`; apply refuses while any is.
    pub blocked: usize,
}

impl Summary {
    pub fn of(steps: &[PlannedStep]) -> Summary {
        let mut s = Summary::default();
        for p in steps {
            match p.action {
                Action::Create => s.to_do += 1,
                Action::Noop => s.done += 1,
                Action::Check => s.to_check += 1,
                Action::Blocked => s.blocked += 1,
            }
        }
        s
    }

    /// Anything `apply` would do (changes or checks).
    pub fn pending(&self) -> bool {
        self.to_do + self.to_check > 0
    }
}

/// The format version of the `--json` documents: fields may be added within a version; a
/// field renamed, removed or given another meaning raises it.
pub const FORMAT_VERSION: u32 = 1;

/// The document `upgrade plan --json` prints: what apply would do, per step in plan order.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlanDocument {
    /// The version of this format, now 1: fields may be added within a version; renaming,
    /// removing or changing the meaning of one raises it.
    pub format_version: u32,
    /// The plan's `name`.
    pub plan: String,
    /// The plan file as given on the command line.
    pub plan_file: String,
    /// sha256 of the plan file's bytes, lowercase hex.
    pub plan_sha256: String,
    pub steps: Vec<PlannedStep>,
    pub summary: Summary,
}

/// The plan for people: a header, each step with its mark, id, kind and reason and the
/// operations under it, and the counts. Quiet: only the steps that cannot converge and the counts.
pub fn plan_text(doc: &PlanDocument, redactor: &Redactor, display: Display) -> String {
    let shown = |text: &str| for_terminal(redactor, text);
    let idw = doc.steps.iter().map(|s| s.id.len()).max().unwrap_or(2);
    let kw = doc.steps.iter().map(|s| s.kind.len()).max().unwrap_or(4);
    let mut out = String::new();
    if !display.quiet {
        let header = format!("Plan {} ({})", shown(&doc.plan), shown(&doc.plan_file));
        let header = match display.width {
            Some(columns) => fit::fit(&header, columns, 2).join("\n"),
            None => header,
        };
        out.push_str(&format!("{header}\n\n"));
    }
    for s in &doc.steps {
        if display.quiet && s.action != Action::Blocked {
            continue;
        }
        let rest = format!(
            "{:<idw$}  {:<kw$}  {}",
            shown(&s.id),
            s.kind,
            shown(&s.reason)
        );
        let painted = match s.action {
            Action::Create => Painted::Mark(Paint::Green),
            Action::Blocked => Painted::Mark(Paint::Red),
            Action::Noop => Painted::Line(Paint::Dim),
            Action::Check => Painted::Plain,
        };
        out.push_str(&marked(
            display,
            &s.action.mark().to_string(),
            &rest,
            6,
            painted,
        ));
        out.push('\n');
        for op in &s.ops {
            let op = shown(&op_text(op, &s.ops));
            let line = match display.width {
                Some(columns) => fit::fit(&format!("      {op}"), columns, 8).join("\n"),
                None => format!("      {op}"),
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    let m = &doc.summary;
    let blocked = format!("{} cannot converge", m.blocked);
    out.push_str(&format!(
        "{}{} to do, {} already done, {} to check, {}.\n",
        if display.quiet { "" } else { "\n" },
        m.to_do,
        m.done,
        m.to_check,
        if m.blocked > 0 {
            paint(display.colour, Paint::Red, &blocked)
        } else {
            blocked
        }
    ));
    if !m.pending() && m.blocked == 0 {
        out.push_str("Nothing to do: the server matches the plan.\n");
    }
    out
}

/// One step's outcome in an apply.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AppliedStep {
    /// The step's `id` in the plan.
    pub id: String,
    /// Its kind, as in the plan document.
    pub kind: String,
    pub result: Outcome,
    /// The evidence of a done step, or why it failed or did not run.
    pub summary: String,
    /// Windows Installer asked for a restart (3010 or 1641); upgrade never restarts by itself.
    pub reboot_required: bool,
    /// What the server said about the step's work while it ran, in order (SQL Server's messages:
    /// "Processed 138 pages for database ...", "BACKUP DATABASE successfully processed ...",
    /// "The backup set on file 1 is valid."); empty when it said nothing. The text output shows
    /// it under the step's line with `-v`.
    pub detail: Vec<String>,
}

/// The document `upgrade apply --json` prints: each step's outcome in the order they were taken.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ApplyDocument {
    /// The version of this format, now 1: fields may be added within a version; renaming,
    /// removing or changing the meaning of one raises it.
    pub format_version: u32,
    /// The plan's `name`.
    pub plan: String,
    /// sha256 of the plan file's bytes, lowercase hex.
    pub plan_sha256: String,
    /// Every step done or already done, and the journal recorded it.
    pub ok: bool,
    pub steps: Vec<AppliedStep>,
    /// Some step's installer asked for a restart.
    pub reboot_required: bool,
    /// An installer started a restart (1641); the steps after it were not run.
    pub restart_started: bool,
    /// Why the apply stopped (absent when `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `--json` documents with a published JSON Schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonDocument {
    /// `upgrade plan --json`.
    Plan,
    /// `upgrade apply --json`.
    Apply,
}

/// The JSON Schema of a `--json` document, pretty-printed with a final newline, derived from
/// the same types that print it (`schemas/plan-output.schema.json`,
/// `schemas/apply-output.schema.json` are checked-in copies a test keeps current).
pub fn document_schema_json(document: JsonDocument) -> String {
    let schema = match document {
        JsonDocument::Plan => schemars::schema_for!(PlanDocument),
        JsonDocument::Apply => schemars::schema_for!(ApplyDocument),
    };
    // Invariant: a schemars schema is plain JSON data and always serializes.
    let mut text = serde_json::to_string_pretty(&schema).expect("schema serializes");
    text.push('\n');
    text
}

/// A step's line as the apply goes. A failure's message is not repeated here: the error printed
/// at the end of the apply carries it (with the tool's log tail), once.
pub fn progress_line(step: &AppliedStep, redactor: &Redactor, display: Display) -> String {
    let line = result_line(step, redactor, display);
    if display.verbose && !step.detail.is_empty() {
        format!("{line}\n{}", detail_lines(&step.detail, redactor, display))
    } else {
        line
    }
}

/// A step's detail under its line (`-v`): each message indented, fitted to the terminal.
pub fn detail_lines(detail: &[String], redactor: &Redactor, display: Display) -> String {
    detail
        .iter()
        .map(|m| {
            let line = format!("      {}", for_terminal(redactor, m));
            let line = match display.width {
                Some(columns) => fit::fit(&line, columns, 8).join("\n"),
                None => line,
            };
            paint(display.colour, Paint::Dim, &line)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The step's own line: its mark, id and summary (or why it failed or did not run).
fn result_line(step: &AppliedStep, redactor: &Redactor, display: Display) -> String {
    let id = for_terminal(redactor, &step.id);
    let summary = for_terminal(redactor, &step.summary);
    match step.result {
        Outcome::Applied => marked(
            display,
            "+",
            &format!("{id}: {summary}"),
            4,
            Painted::Mark(Paint::Green),
        ),
        Outcome::AppliedNotRecorded => {
            const NOT_RECORDED: &str = "(done, but NOT recorded in the journal)";
            let line = marked(
                display,
                "+",
                &format!("{id}: {summary} {NOT_RECORDED}"),
                4,
                Painted::Mark(Paint::Green),
            );
            // Red where it stands whole on the last line (it may have been wrapped).
            match line.rfind(NOT_RECORDED) {
                Some(at) if display.colour => {
                    format!("{}{}", &line[..at], paint(true, Paint::Red, NOT_RECORDED))
                }
                _ => line,
            }
        }
        Outcome::AlreadyDone => marked(
            display,
            "=",
            &format!("{id}: {summary}"),
            4,
            Painted::Line(Paint::Dim),
        ),
        Outcome::Failed => marked(
            display,
            "\u{2717}",
            &format!("{id}: failed (the error is below)"),
            4,
            Painted::Line(Paint::Red),
        ),
        Outcome::NotRun => marked(
            display,
            "-",
            &format!("{id}: {summary}"),
            4,
            Painted::Line(Paint::Dim),
        ),
    }
}

/// A step starting to act, off a terminal (on one, its spinner says so): `  > keys: export_keys
/// started`. Its result line follows when it ends.
pub fn start_line(id: &str, kind: &str, redactor: &Redactor, display: Display) -> String {
    paint(
        display.colour,
        Paint::Dim,
        &format!("  > {}: {kind} started", for_terminal(redactor, id)),
    )
}

/// What a running step has done so far, beside its spinner: `2 of 3 files, 2.10 KiB of 3.16 KiB`.
pub fn progress_detail(update: &Update) -> String {
    match *update {
        Update::Copied {
            files,
            of_files,
            bytes,
            of_bytes,
        } => format!(
            "{files} of {of_files} files, {} of {}",
            indicatif::HumanBytes(bytes),
            indicatif::HumanBytes(of_bytes)
        ),
    }
}

/// How far a running database backup has got, beside its spinner: `40%`.
pub fn percent_detail(percent: u8) -> String {
    format!("{percent}%")
}

/// A prerequisite found changed right before a destructive step, and redone.
pub fn redone_line(
    id: &str,
    why: &str,
    by: &str,
    summary: &str,
    redactor: &Redactor,
    display: Display,
) -> String {
    let rest = format!(
        "{}: {}; redone before `{}`: {}",
        for_terminal(redactor, id),
        for_terminal(redactor, why),
        for_terminal(redactor, by),
        for_terminal(redactor, summary)
    );
    marked(display, "~", &rest, 4, Painted::Mark(Paint::Yellow))
}

/// The end of an apply: how many steps were done, and any restart the server needs.
pub fn apply_summary(doc: &ApplyDocument, display: Display) -> String {
    let c = display.colour;
    let applied = doc.steps.iter().filter(|s| s.result.applied()).count();
    let already = doc
        .steps
        .iter()
        .filter(|s| s.result == Outcome::AlreadyDone)
        .count();
    let mut out = if doc.restart_started {
        format!("\n{}: {applied} step(s) done; an installer started a restart of the server. Run `upgrade apply` again once it is back.\n", paint(c, Paint::Yellow, "Apply paused"))
    } else if doc.ok {
        format!(
            "\n{}: {applied} step(s) done, {already} already done.\n",
            paint(c, Paint::Green, "Apply complete")
        )
    } else {
        format!("\n{}: {applied} step(s) done before the failure; run `upgrade apply` again after fixing it.\n", paint(c, Paint::Red, "Apply stopped"))
    };
    if doc.reboot_required {
        let who: Vec<String> = doc
            .steps
            .iter()
            .filter(|s| s.reboot_required)
            .map(|s| escape_for_terminal(&s.id).into_owned())
            .collect();
        out.push_str(&paint(
            c,
            Paint::Yellow,
            &format!(
                "A restart is required ({}); upgrade does not restart the server itself.",
                who.join(", ")
            ),
        ));
        out.push('\n');
    }
    out
}

/// One step in `upgrade graph`.
#[derive(Debug, Clone, Serialize)]
pub struct GraphNode {
    pub id: String,
    pub kind: String,
    /// Uninstall, or an install that takes over the database: runs only after its prerequisites.
    pub destructive: bool,
    /// The destructive step (recorded as begun or done) that sealed this prerequisite.
    pub sealed_by: Option<String>,
    /// Its journal record's status, if any.
    pub status: Option<StepStatus>,
}

/// `from` must be done before `to`; `reference` names the field of `to` that refers to `from`
/// (otherwise it is an `after:` entry).
#[derive(Debug, Clone, Serialize)]
pub struct GraphEdge {
    pub from: String,
    pub to: String,
    pub reference: Option<String>,
}

/// The step graph of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct GraphDocument {
    pub plan: String,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

/// A DOT string literal (ids and kinds are plain names, but nothing is trusted to be).
fn dot_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The graph in Graphviz's DOT language (`upgrade graph PLAN | dot -Tsvg > plan.svg`): a box
/// per step with its id and kind; destructive steps red and bold; steps a destructive step has
/// sealed grey; an arrow from each step to each step that waits for it, dashed where the later
/// step refers to the earlier one's output.
pub fn graph_dot(doc: &GraphDocument) -> String {
    let mut out = format!("digraph {} {{\n", dot_quote(&doc.plan));
    out.push_str("  // upgrade graph: an arrow runs from a step to a step that waits for it.\n");
    out.push_str("  rankdir = \"TB\";\n");
    out.push_str("  node [shape = \"box\", style = \"rounded\", fontname = \"Helvetica\"];\n");
    out.push_str("  edge [fontname = \"Helvetica\", fontsize = 10];\n");
    for n in &doc.nodes {
        let mut label = format!("{}\n{}", n.id, n.kind);
        let mut attrs = Vec::new();
        if n.destructive {
            label.push_str("\ndestructive");
            attrs.push("color = \"red\", fontcolor = \"red\", penwidth = 2".to_string());
        }
        if let Some(by) = &n.sealed_by {
            label.push_str(&format!("\nsealed by {by}"));
            attrs.push("style = \"rounded,filled\", fillcolor = \"gray85\"".to_string());
        }
        attrs.insert(0, format!("label = {}", dot_quote(&label)));
        out.push_str(&format!("  {} [{}];\n", dot_quote(&n.id), attrs.join(", ")));
    }
    for e in &doc.edges {
        let attrs = match &e.reference {
            Some(field) => format!(" [label = {}, style = \"dashed\"]", dot_quote(field)),
            None => String::new(),
        };
        out.push_str(&format!(
            "  {} -> {}{attrs};\n",
            dot_quote(&e.from),
            dot_quote(&e.to)
        ));
    }
    out.push_str("}\n");
    out
}

/// One step in `upgrade show`: the plan's step and what the journal recorded of it.
#[derive(Debug, Clone, Serialize)]
pub struct ShownStep {
    pub id: String,
    pub kind: String,
    /// False for a record of a step the plan no longer has.
    pub in_plan: bool,
    /// `None`: never run (no record).
    pub status: Option<StepStatus>,
    pub at: Option<DateTime<Utc>>,
    pub summary: Option<String>,
    /// The tool's exit code (installers, the key tool), when the step ran one.
    pub exit_code: Option<i64>,
    pub reboot_required: bool,
    pub restart_started: bool,
    /// A destructive step that began to act.
    pub began: bool,
    pub error: Option<String>,
    /// The evidence as recorded (hashes, backup set ids, dates, ...).
    pub details: serde_json::Value,
}

impl ShownStep {
    pub fn of(id: &str, kind: &str, record: Option<&StepRecord>, in_plan: bool) -> ShownStep {
        let evidence = record.and_then(|r| r.evidence.as_ref());
        let details = evidence.map(|e| e.details.clone()).unwrap_or_default();
        ShownStep {
            id: id.to_string(),
            kind: kind.to_string(),
            in_plan,
            status: record.map(|r| r.status),
            at: record.map(|r| r.at),
            summary: evidence.map(|e| e.summary.clone()),
            exit_code: details.get("exit_code").and_then(serde_json::Value::as_i64),
            reboot_required: evidence.is_some_and(|e| e.reboot_required),
            restart_started: evidence.is_some_and(|e| e.restart_started),
            began: record.is_some_and(|r| r.began),
            error: record.and_then(|r| r.error.clone()),
            details,
        }
    }
}

/// The `upgrade show` document.
#[derive(Debug, Clone, Serialize)]
pub struct ShowDocument {
    pub plan: String,
    /// The journal file read.
    pub journal: String,
    /// False when nothing was applied yet (no journal file).
    pub journal_exists: bool,
    pub steps: Vec<ShownStep>,
    pub runs: Vec<RunRecord>,
}

fn when(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The journal for people: each step's status, time and evidence, then the runs.
pub fn show_text(doc: &ShowDocument) -> String {
    if !doc.journal_exists {
        return format!(
            "No journal for {} at {}: nothing was applied yet.\n",
            doc.plan, doc.journal
        );
    }
    let idw = doc.steps.iter().map(|s| s.id.len()).max().unwrap_or(2);
    let kw = doc.steps.iter().map(|s| s.kind.len()).max().unwrap_or(4);
    let mut out = format!("Journal of {} ({})\n\n", doc.plan, doc.journal);
    for s in &doc.steps {
        let status = match s.status {
            Some(StepStatus::Done) => "done",
            Some(StepStatus::Failed) => "failed",
            Some(StepStatus::Started) => "began",
            None => "not run",
        };
        let at = s.at.as_ref().map(when).unwrap_or_default();
        let gone = if s.in_plan {
            ""
        } else {
            "  (no longer in the plan)"
        };
        out.push_str(
            format!("  {status:<7}  {:<idw$}  {:<kw$}  {at}{gone}", s.id, s.kind).trim_end(),
        );
        out.push('\n');
        if let Some(summary) = &s.summary {
            out.push_str(&format!("           {summary}\n"));
        }
        let mut facts: Vec<String> = Vec::new();
        if let Some(code) = s.exit_code {
            facts.push(format!("exit code {code}"));
        }
        if s.restart_started {
            facts.push("the installer started a restart".to_string());
        } else if s.reboot_required {
            facts.push("restart required".to_string());
        }
        if s.began && s.status != Some(StepStatus::Done) {
            facts.push("it began to act".to_string());
        }
        if let Some(e) = &s.error {
            facts.push(format!("error: {e}"));
        }
        if !facts.is_empty() {
            out.push_str(&format!("           {}\n", facts.join("; ")));
        }
    }
    if !doc.runs.is_empty() {
        out.push_str("\nRuns:\n");
        for r in &doc.runs {
            let end = match (&r.finished, &r.outcome) {
                (Some(f), Some(o)) => format!(" to {}: {o}", when(f)),
                (Some(f), None) => format!(" to {}", when(f)),
                (None, _) => ": did not finish (killed or still running)".to_string(),
            };
            out.push_str(&format!("  {}{end} (pid {})\n", when(&r.started), r.pid));
        }
    }
    escape_for_terminal(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::secrets::SecretString;

    #[test]
    fn a_terminal_gets_no_raw_control_characters_and_no_secret() {
        let redactor = Redactor::new(vec![SecretString::new("pa\x1bss")]);
        let shown = for_terminal(
            &redactor,
            "agent Contoso\x1b[2J AD\r\nline two\n\u{202e}cba and pa\x1bss\n",
        );
        assert_eq!(
            shown,
            "agent Contoso\\u{1b}[2J AD\r\nline two\n\\u{202e}cba and ***\n"
        );
    }

    #[test]
    fn a_running_copy_is_shown_as_files_and_bytes_of_all() {
        let shown = progress_detail(&Update::Copied {
            files: 2,
            of_files: 3,
            bytes: 2150,
            of_bytes: 3234,
        });
        assert_eq!(shown, "2 of 3 files, 2.10 KiB of 3.16 KiB");
        let started = start_line(
            "keys\x1b[2J",
            "export_keys",
            &Redactor::default(),
            Display::default(),
        );
        assert_eq!(started, "  > keys\\u{1b}[2J: export_keys started");
    }

    #[test]
    fn dot_text_is_quoted_so_no_name_can_end_its_string() {
        assert_eq!(dot_quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        assert_eq!(dot_quote("x\u{1b}"), "\"x\\u{1b}\"");
    }

    #[test]
    fn a_plan_shows_each_step_with_its_mark_reason_and_operations() {
        let steps = vec![
            PlannedStep::new(
                "database",
                "backup_database",
                &Diff::Change {
                    reason: "no backup".into(),
                    ops: vec![Op::Sql {
                        statement: "BACKUP DATABASE [x]".into(),
                    }],
                    change: Default::default(),
                },
                "f".into(),
            ),
            PlannedStep::new(
                "keys",
                "export_keys",
                &Diff::Done {
                    evidence: "key file sha256 ab".into(),
                    details: serde_json::Value::Null,
                },
                "f".into(),
            ),
            PlannedStep::new(
                "verify",
                "verify",
                &Diff::Check {
                    reason: "later".into(),
                    ops: vec![],
                    change: Default::default(),
                },
                "f".into(),
            ),
        ];
        let doc = PlanDocument {
            format_version: FORMAT_VERSION,
            plan: "p".into(),
            plan_file: "p.yaml".into(),
            plan_sha256: "00".into(),
            summary: Summary::of(&steps),
            steps,
        };
        let text = plan_text(&doc, &Redactor::new(Vec::new()), Display::default());
        assert!(
            text.contains(
                "  + database  backup_database  no backup\n      sql: BACKUP DATABASE [x]\n"
            ),
            "{text}"
        );
        assert!(text.contains("  = keys"), "{text}");
        assert!(
            text.contains("1 to do, 1 already done, 1 to check, 0 cannot converge."),
            "{text}"
        );
        assert!(doc.summary.pending());
    }
}
