//! The command line: argument parsing, help, logging set-up, and dispatch to validation, the
//! schema and the engine. It decides exit codes and what goes to stdout/stderr; it does no
//! planning or applying itself (that is `crate::engine`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser, Subcommand};

use crate::adapters::secrets::Redactor;
use crate::engine::progress::LogWriter;
use crate::engine::render::{self, Display, JsonDocument};
use crate::engine::{self, ApplyOptions, PlanOptions};
use crate::plan;

const EXAMPLES: &str = "\
Examples:
  upgrade validate plans/iifp-to-miis2003.yaml
      Check a plan; every problem is listed as FILE:LINE:COLUMN: FIELD: message.
  upgrade plan plans/iifp-to-miis2003.yaml
      Show what apply would do (+ will do, = already done, ! cannot converge, ? will check).
      Changes nothing anywhere.
  upgrade plan plans/iifp-to-miis2003.yaml --out upgrade.tfplan --detailed-exitcode
      Save the plan for review; exit 2 when changes are pending, 0 when there is nothing to do.
  upgrade apply upgrade.tfplan
      Apply exactly the saved plan (refused if the server changed since).
  upgrade apply plans/iifp-to-miis2003.yaml --auto-approve
      Plan and apply without asking (for scheduled or scripted runs).
  upgrade graph plans/iifp-to-miis2003.yaml | dot -Tsvg > plan.svg
      Draw the step graph (destructive steps red, sealed steps grey).
  upgrade show plans/iifp-to-miis2003.yaml
      What the journal recorded: results, times, evidence, exit codes, restarts.
  upgrade schema > schemas/plan.schema.json
      Print the plan format's JSON Schema.
  upgrade schema --output apply
      Print the JSON Schema of `upgrade apply --json` (or `--output plan`).

Exit codes: 0 success (plan: nothing to do), 1 error or invalid plan,
            2 changes pending (plan --detailed-exitcode only).
Logging: -v/-vv/-vvv for more, -q/-qq for less; RUST_LOG (e.g. RUST_LOG=upgrade=debug) overrides both.";

/// Declarative upgrade plans for Microsoft identity synchronization servers
/// (IIFP to MIIS 2003, FIM 2010 R2 to MIM 2016): validate, plan, apply.
#[derive(Debug, Parser)]
#[command(name = "upgrade", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// More log output on stderr (repeat for more).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output: only the summary and errors (repeat for fewer log lines too).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub quiet: u8,
    /// No colour, even on a terminal (so does a non-empty NO_COLOR variable).
    #[arg(long, global = true)]
    pub no_color: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a plan file and report every problem at once (exit 0 valid, 1 invalid).
    Validate {
        /// The plan file (YAML).
        plan: PathBuf,
        /// Print the result as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the plan format, or of a `--json` document.
    Schema {
        /// The JSON Schema of what `upgrade plan --json` or `upgrade apply --json` prints,
        /// instead of the plan file's.
        #[arg(long, value_enum, value_name = "COMMAND")]
        output: Option<SchemaOutput>,
    },
    /// Observe the server and show what apply would do; changes nothing.
    Plan {
        /// The plan file (YAML).
        plan: PathBuf,
        /// Save the plan with a fingerprint of the observed state, for `upgrade apply FILE`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Print one JSON document (steps with action and reason) instead of text.
        #[arg(long)]
        json: bool,
        /// Exit 2 when changes are pending, 0 when there is nothing to do.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Journal file to use instead of the plan's state folder.
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
    /// Print the step graph in Graphviz's DOT language (destructive and sealed steps marked).
    #[command(after_help = "Render it with Graphviz: upgrade graph PLAN | dot -Tsvg > plan.svg")]
    Graph {
        /// The plan file (YAML).
        plan: PathBuf,
        /// Journal file to use instead of the plan's state folder.
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
    /// Print what the plan's journal recorded: each step's result, time, evidence, exit code and
    /// restart flags, and the runs. Reads only the journal.
    Show {
        /// The plan file (YAML).
        plan: PathBuf,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Journal file to use instead of the plan's state folder.
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
    /// Print a shell completion script (e.g. `upgrade completions bash > /etc/bash_completion.d/upgrade`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page upgrade(1) in roff, or a command's own page (`upgrade man apply`:
    /// upgrade-apply(1)); e.g. `upgrade man > /usr/local/share/man/man1/upgrade.1`.
    Man {
        /// The command whose page to print (validate, plan, apply, ...).
        command: Option<String>,
    },
    /// Apply a plan file, or a plan saved by `upgrade plan --out`.
    Apply {
        /// A plan file (YAML) or a saved plan.
        input: PathBuf,
        /// Apply without asking for `yes` (required when stdin is not a terminal).
        #[arg(long)]
        auto_approve: bool,
        /// Print the results as one JSON document.
        #[arg(long)]
        json: bool,
        /// Journal file to use instead of the plan's state folder.
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
}

/// The commands whose `--json` document has a schema.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaOutput {
    Plan,
    Apply,
}

/// Parses the process arguments. Help and version print and give exit code 0; any other
/// argument error prints and gives 1 (2 is reserved for "changes pending").
pub fn parse_args() -> Result<Cli, u8> {
    Cli::try_parse().map_err(|e| {
        // Printing to a closed stdout/stderr is not worth a panic; the exit code still tells.
        let _ = e.print();
        if e.use_stderr() {
            1
        } else {
            0
        }
    })
}

/// The tracing filter for `-v`/`-q`, unless `RUST_LOG` is set.
pub fn log_filter(verbose: u8, quiet: u8) -> tracing_subscriber::EnvFilter {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        return filter;
    }
    let level = match i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=-2 => "off",
        // The SQL clients' own ERROR lines are the server's messages, which the steps report.
        -1 => "error,tiberius=off,odbc_api=off",
        // The SQL clients log every message the server sends (a RESTORE HEADERONLY of a backup
        // not taken yet is an error to tiberius) and their own notices; the steps report what
        // matters in their own words, so the libraries speak only from -v on.
        0 => "warn,tiberius=off,odbc_api=off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::EnvFilter::new(level)
}

/// Whether colour is allowed at all: not with `--no-color`, nor with a `NO_COLOR` variable that
/// is set and not empty (the convention of no-color.org).
pub fn colour_allowed(no_color: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// How people's output is shown: colour on a stream only where it is a terminal and colour is
/// allowed, never on standard output with `--json`; `-q` keeps the summary and errors; `-v`
/// adds each step's detail.
fn display(cli_no_color: bool, verbose: u8, quiet: u8, json: bool) -> Display {
    let allowed = colour_allowed(cli_no_color);
    let terminal = !json && std::io::stdout().is_terminal();
    Display {
        colour: allowed && terminal,
        colour_errors: allowed && std::io::stderr().is_terminal(),
        quiet: quiet > 0,
        width: terminal.then(terminal_width).flatten(),
        verbose: verbose > quiet,
    }
}

/// The width of the terminal on standard output, in columns, when it tells.
fn terminal_width() -> Option<usize> {
    console::Term::stdout()
        .size_checked()
        .map(|(_rows, columns)| usize::from(columns))
}

/// Sends logs to stderr (stdout carries the command's own output), with ANSI styling only when
/// stderr is a terminal and colour is allowed.
pub fn init_logging(verbose: u8, quiet: u8, no_color: bool) {
    let ansi = colour_allowed(no_color) && std::io::stderr().is_terminal();
    // A second initialisation (tests calling in-process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(log_filter(verbose, quiet))
        .with_writer(|| LogWriter)
        .with_ansi(ansi)
        .try_init();
}

/// Runs one command and returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    let errors = display(cli.no_color, cli.verbose, cli.quiet, true);
    let finish = |result| engine_result(result, errors);
    match cli.command {
        Command::Validate { plan, json } => validate(&plan, json, cli.quiet > 0),
        Command::Schema { output } => {
            print_stdout(&match output {
                None => plan::schema::plan_schema_json(),
                Some(SchemaOutput::Plan) => render::document_schema_json(JsonDocument::Plan),
                Some(SchemaOutput::Apply) => render::document_schema_json(JsonDocument::Apply),
            });
            0
        }
        Command::Graph { plan, state } => {
            finish(engine::inspect::graph(&plan, state.as_deref()).map(|doc| {
                print_stdout(&render::graph_dot(&doc));
                0
            }))
        }
        Command::Show { plan, json, state } => {
            finish(engine::inspect::show(&plan, state.as_deref()).map(|doc| {
                print_stdout(&if json {
                    format!("{:#}\n", serde_json::json!(doc))
                } else {
                    render::show_text(&doc)
                });
                0
            }))
        }
        Command::Man { command } => match manual_page(command.as_deref()) {
            Ok(page) => {
                print_stdout(&page);
                0
            }
            Err(e) => {
                eprintln!("{}", render::error_line(&Redactor::default(), &e, errors));
                1
            }
        },
        Command::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "upgrade", &mut text);
            print_stdout(&String::from_utf8_lossy(&text));
            0
        }
        Command::Plan {
            plan,
            out,
            json,
            detailed_exitcode,
            state,
        } => {
            let opts = PlanOptions {
                plan_file: plan,
                out,
                json,
                detailed_exitcode,
                state,
                display: display(cli.no_color, cli.verbose, cli.quiet, json),
            };
            finish(engine::run_plan(opts).await)
        }
        Command::Apply {
            input,
            auto_approve,
            json,
            state,
        } => {
            let opts = ApplyOptions {
                input,
                auto_approve,
                json,
                state,
                display: display(cli.no_color, cli.verbose, cli.quiet, json),
            };
            finish(engine::run_apply(opts).await)
        }
    }
}

/// The manual page of `upgrade` (upgrade(1)) or of one of its commands (upgrade-apply(1)), in
/// roff, from the same clap definitions as `--help`.
fn manual_page(command: Option<&str>) -> Result<String, String> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    // Gives each command its full name (`upgrade-apply`) as the page's title.
    cli.build();
    let page = match command {
        None => cli,
        Some(name) => match cli.find_subcommand(name) {
            Some(sub) => sub.clone().version(env!("CARGO_PKG_VERSION")),
            None => {
                let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
                return Err(format!(
                    "no manual page for `{name}`; there is one for each of: {}",
                    names.join(", ")
                ));
            }
        },
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .map_err(|e| format!("cannot write the manual page: {e}"))?;
    Ok(String::from_utf8_lossy(&roff).into_owned())
}

fn engine_result(result: Result<u8, engine::EngineError>, display: Display) -> u8 {
    match result {
        Ok(code) => code,
        Err(e) => {
            // Engine errors are masked where they arise; this only escapes and colours.
            let none = Redactor::default();
            eprintln!("{}", render::error_line(&none, &e.to_string(), display));
            1
        }
    }
}

fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`upgrade schema | head`) is not an error worth reporting.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// `upgrade validate`: diagnostics on stderr (or all in JSON on stdout), exit 0 or 1.
fn validate(path: &std::path::Path, json: bool, quiet: bool) -> u8 {
    let result = plan::load(path);
    if json {
        let doc = match &result {
            Ok(loaded) => serde_json::json!({
                "file": path.display().to_string(),
                "valid": true,
                "steps": loaded.plan.steps.len(),
                "sha256": loaded.sha256,
                "diagnostics": [],
            }),
            Err(diags) => serde_json::json!({
                "file": path.display().to_string(),
                "valid": false,
                "diagnostics": diags.0,
            }),
        };
        print_stdout(&format!("{doc:#}\n"));
        return if result.is_ok() { 0 } else { 1 };
    }
    match result {
        Ok(loaded) => {
            if !quiet {
                let n = loaded.plan.steps.len();
                print_stdout(&format!(
                    "{} is valid: {n} step{}\n",
                    path.display(),
                    if n == 1 { "" } else { "s" }
                ));
            }
            0
        }
        Err(diags) => {
            eprint!("{diags}");
            // A file that cannot be read is its one line; a count would only repeat it.
            if diags.iter().all(|d| d.line == 0) {
                return 1;
            }
            eprintln!(
                "{}: {} problem{}; nothing was run",
                path.display(),
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            );
            1
        }
    }
}
