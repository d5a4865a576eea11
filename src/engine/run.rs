//! `upgrade plan` and `upgrade apply`: load and validate, resolve secrets, observe every step
//! concurrently, diff, render; then (apply) lock, confirm, and run the pending steps in order,
//! rechecking prerequisites before the destructive one, journaling after every step, stopping at
//! the first failure. Knows nothing about MIIS: every step is a `dyn Step`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;

use crate::adapters::secrets::{self, Redactor, SecretString};
use crate::engine::connect;
use crate::engine::journal::{self, Journal, RunRecord, StepRecord, StepStatus};
use crate::engine::lock::ApplyLock;
use crate::engine::progress::{self, Reporter};
use crate::engine::render::{
    self, Action, AppliedStep, ApplyDocument, Outcome, PlanDocument, PlannedStep, Summary,
};
use crate::engine::saved::{self, SavedError, SavedPlan};
use crate::engine::{ApplyOptions, EngineError, PlanOptions};
use crate::plan::{self, graph, LoadedPlan};
use crate::steps::context::plan_secrets;
use crate::steps::{self, Change, Diff, Evidence, Observation, Role, Step, StepContext, World};

/// A plan opened against the live server: everything plan and apply share.
struct Session {
    loaded: LoadedPlan,
    world: World,
    steps: Vec<Box<dyn Step>>,
    kinds: Vec<String>,
    order: Vec<usize>,
    journal_path: PathBuf,
    journal: Journal,
    /// How people's output is shown (apply's progress lines).
    display: render::Display,
    /// Where apply's lines and the running step's progress go.
    reporter: Arc<Reporter>,
}

impl Session {
    fn open(
        loaded: LoadedPlan,
        plan_file: &Path,
        state: Option<&Path>,
    ) -> Result<Session, EngineError> {
        let plan = loaded.plan.clone();
        let (journal_path, state_dir) = journal::locate(&plan, plan_file, state);
        let mut resolved: BTreeMap<String, SecretString> = BTreeMap::new();
        for (secret, place) in plan_secrets(&plan) {
            let key = World::secret_key(secret, &place);
            if let std::collections::btree_map::Entry::Vacant(slot) = resolved.entry(key) {
                let value = secrets::resolve_for(secret, &place)
                    .map_err(|e| EngineError::Secret(e.to_string()))?;
                slot.insert(value);
            }
        }
        let order = graph::order(&plan).map_err(|cycle| {
            EngineError::Invalid(format!(
                "steps depend on each other in a cycle: {}",
                cycle
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ))
        })?;
        let steps: Vec<Box<dyn Step>> = plan.steps.iter().map(steps::build).collect();
        let kinds = plan
            .steps
            .iter()
            .map(|s| s.kind.name().to_string())
            .collect();
        let journal = Journal::load(&journal_path, &plan.name)?;
        let world = World::new(plan, state_dir, resolved);
        Ok(Session {
            loaded,
            world,
            steps,
            kinds,
            order,
            journal_path,
            journal,
            display: render::Display::default(),
            reporter: Arc::new(Reporter::silent()),
        })
    }

    /// Logs on to the sync server the plan names (nothing to do for `server.connect: local`) and
    /// reads where its Windows is (`%SystemRoot%`, for the tools the plan does not name): once per
    /// command, before anything is observed.
    async fn connect(&mut self) -> Result<(), EngineError> {
        let host = connect::host(&self.world).await?;
        let root = connect::system_root(host.as_ref()).await?;
        self.world.set_host(host);
        self.world.set_system_root(root);
        Ok(())
    }

    fn cx<'a>(&'a self, i: usize, journal: &'a Journal) -> StepContext<'a> {
        StepContext {
            world: &self.world,
            id: &self.world.plan.steps[i].id,
            journal,
            plan_sha256: &self.loaded.sha256,
            quick: true,
            progress: self.reporter.as_ref(),
        }
    }

    /// The destructive step, recorded as begun or done, that step `i` was a prerequisite of. Such a
    /// step is sealed: it describes the server before the destruction (the old Extensions folder, the old
    /// key set), so it is never compared with the live server again, only rechecked.
    fn sealed_by(&self, i: usize, journal: &Journal) -> Option<usize> {
        let roles: Vec<Role> = self.steps.iter().map(|s| s.role()).collect();
        journal::sealed_by(&self.world.plan, &roles, journal, i)
    }

    /// Observes one step (or rechecks it when sealed) and diffs it. Read-only. Not `quick`: nothing
    /// the step's record vouches for is taken on trust (a prerequisite that just failed its full
    /// re-check is looked at in full).
    async fn survey_one(
        &self,
        i: usize,
        journal: &Journal,
        quick: bool,
    ) -> (Diff, Option<Observation>) {
        let cx = StepContext {
            quick,
            ..self.cx(i, journal)
        };
        let redact = |e: &dyn std::fmt::Display| self.world.redactor.redact(&e.to_string());
        let Some(d) = self.sealed_by(i, journal) else {
            return match self.steps[i].observe(&cx).await {
                Ok(obs) => (self.steps[i].diff(&obs, &cx), Some(obs)),
                Err(e) => (
                    Diff::Blocked {
                        why: format!("cannot observe: {}", redact(&e)),
                    },
                    None,
                ),
            };
        };
        let by = &self.world.plan.steps[d].id;
        match self.steps[i].recheck(&cx).await {
            Ok(line) => (
                Diff::Done {
                    evidence: format!("{line} (kept from before `{by}`)"),
                    details: serde_json::Value::Null,
                },
                Some(Observation::data(
                    serde_json::json!({ "sealed_by": by.as_str(), "recheck": line }),
                )),
            ),
            Err(e) => (
                Diff::Blocked {
                    why: format!(
                        "{}; `{by}` has already run, so it cannot be redone",
                        redact(&e)
                    ),
                },
                None,
            ),
        }
    }

    /// Observes every step concurrently (read-only) and diffs each, in plan order.
    async fn survey(&self) -> Vec<(Diff, Option<Observation>)> {
        let surveyed =
            join_all((0..self.steps.len()).map(|i| self.survey_one(i, &self.journal, true))).await;
        let mut out: Vec<(Diff, Option<Observation>)> = surveyed;
        self.refuse_undone_destruction(&mut out);
        self.refuse_late_before_steps(&mut out);
        // A check that passed before counts as done only while nothing else is pending.
        let other_pending = out
            .iter()
            .any(|(d, _)| matches!(d, Diff::Change { .. } | Diff::Blocked { .. }));
        if other_pending {
            for (i, (d, _)) in out.iter_mut().enumerate() {
                let sealed = self.sealed_by(i, &self.journal).is_some();
                if !sealed && matches!(d, Diff::Done { .. }) {
                    if let Some(again) =
                        self.check_again(i, "checks run again after the pending steps")
                    {
                        *d = again;
                    }
                }
            }
        }
        out
    }

    /// A check step (verify) that passed before, planned to run again: its checks count only
    /// while nothing else changes the server. `None` for other kinds.
    fn check_again(&self, i: usize, reason: &str) -> Option<Diff> {
        if self.steps[i].role() != Role::Check {
            return None;
        }
        self.steps[i].again().map(|change| Diff::Check {
            reason: reason.into(),
            ops: Vec::new(),
            change,
        })
    }

    /// A destructive step this journal records as done, which the live server shows pending again
    /// (the old product installed again and used since): the steps before it are sealed with what
    /// they held back then, so running it again would rest on a backup, keys and a snapshot older
    /// than the server. It cannot converge, and says how to start over.
    fn refuse_undone_destruction(&self, survey: &mut [(Diff, Option<Observation>)]) {
        for (d, (diff, _)) in survey.iter_mut().enumerate() {
            let id = &self.world.plan.steps[d].id;
            if self.steps[d].role() == Role::Destructive
                && matches!(diff, Diff::Change { .. })
                && self.journal.done(id.as_str()).is_some()
            {
                let at = self
                    .journal
                    .record(id.as_str())
                    .map(|r| r.at.to_rfc3339())
                    .unwrap_or_default();
                *diff = Diff::Blocked {
                    why: format!(
                        "the journal records `{id}` done ({at}), but the server shows it undone; the \
                         backups and snapshot before it are from back then. To upgrade this server \
                         as it is now, move the journal {} aside and run the plan from the start",
                        self.journal_path.display()
                    ),
                };
            }
        }
    }

    /// A step that records the old server (a snapshot, the key export) and would be carried out
    /// now, while the live server already shows a destructive step after it done (the old product
    /// gone, the new one installed: a journal deleted after the upgrade), would record the new
    /// server as if it were the old one. It cannot converge, and says why.
    fn refuse_late_before_steps(&self, survey: &mut [(Diff, Option<Observation>)]) {
        for i in 0..self.steps.len() {
            // Only what would be carried out; a step that already cannot converge says why itself.
            if self.steps[i].role() != Role::RecordsOldServer
                || !matches!(survey[i].0, Diff::Change { .. })
            {
                continue;
            }
            let done_after = (0..self.steps.len()).find(|&d| {
                self.steps[d].role() == Role::Destructive
                    && matches!(survey[d].0, Diff::Done { .. })
                    && graph::prerequisites(&self.world.plan, d).contains(&i)
            });
            if let Some(d) = done_after {
                let Diff::Done { evidence, .. } = &survey[d].0 else {
                    continue;
                };
                survey[i].0 = Diff::Blocked {
                    why: format!(
                        "`{by}` is already done on the server ({evidence}), so `{id}` taken now would \
                         describe the server after it, not the one before; restore the journal that \
                         recorded `{id}`, or take `{id}` (and what uses it) out of the plan",
                        by = self.world.plan.steps[d].id,
                        id = self.world.plan.steps[i].id,
                    ),
                };
            }
        }
    }

    fn planned(&self, survey: &[(Diff, Option<Observation>)]) -> Vec<PlannedStep> {
        self.order
            .iter()
            .map(|&i| {
                let (diff, obs) = &survey[i];
                let fingerprint = Observation::fingerprint_of(obs.as_ref());
                PlannedStep::new(
                    self.world.plan.steps[i].id.as_str(),
                    &self.kinds[i],
                    diff,
                    fingerprint,
                )
            })
            .collect()
    }

    fn document(&self, planned: Vec<PlannedStep>) -> PlanDocument {
        PlanDocument {
            format_version: render::FORMAT_VERSION,
            plan: self.world.plan.name.clone(),
            plan_file: self.loaded.path.display().to_string(),
            plan_sha256: self.loaded.sha256.clone(),
            summary: Summary::of(&planned),
            steps: planned,
        }
    }
}

fn load(path: &Path) -> Result<LoadedPlan, EngineError> {
    plan::load(path).map_err(|d| EngineError::Invalid(d.to_string()))
}

/// `upgrade plan`.
pub async fn plan(opts: PlanOptions) -> Result<u8, EngineError> {
    let loaded = load(&opts.plan_file)?;
    let mut session = Session::open(loaded, &opts.plan_file, opts.state.as_deref())?;
    session.connect().await?;
    let survey = session.survey().await;
    let doc = session.document(session.planned(&survey));
    // Like Terraform with errors: a plan that cannot converge is shown but never saved.
    let blocked: Vec<&str> = doc
        .steps
        .iter()
        .filter(|s| s.action == Action::Blocked)
        .map(|s| s.id.as_str())
        .collect();
    if let Some(out) = opts.out.as_ref().filter(|_| blocked.is_empty()) {
        SavedPlan::new(
            &opts.plan_file,
            &session.journal_path,
            &session.loaded.sha256,
            &session.loaded.source,
            &doc.steps,
        )
        .save(out)?;
    }
    let mut stdout = std::io::stdout().lock();
    // JSON escapes control characters itself (and `\u{..}` would not be JSON).
    let text = if opts.json {
        session.world.redactor.redact(&json(&doc)?)
    } else {
        render::plan_text(&doc, &session.world.redactor, opts.display)
    };
    let _ = stdout.write_all(text.as_bytes());
    if let Some(out) = &opts.out {
        if !blocked.is_empty() {
            return Err(EngineError::NotSaved {
                path: out.display().to_string(),
                steps: blocked.join(", "),
            });
        }
        if !opts.json {
            let _ = writeln!(
                stdout,
                "Saved the plan to {}; apply exactly it with `upgrade apply {}`.",
                out.display(),
                out.display()
            );
        }
    }
    Ok(if doc.summary.blocked > 0 {
        1
    } else if opts.detailed_exitcode && doc.summary.pending() {
        2
    } else {
        0
    })
}

fn json<T: serde::Serialize>(doc: &T) -> Result<String, EngineError> {
    serde_json::to_string_pretty(doc)
        .map(|s| s + "\n")
        .map_err(|e| EngineError::Output(e.to_string()))
}

/// `upgrade apply`.
pub async fn apply(opts: ApplyOptions) -> Result<u8, EngineError> {
    let saved = SavedPlan::read_if_saved(&opts.input)?;
    let (loaded, plan_file) = match &saved {
        Some(s) => {
            let file = PathBuf::from(&s.plan_file);
            let mut loaded = plan::load_str(&s.plan_file, &s.plan_source)
                .map_err(|d| EngineError::Invalid(d.to_string()))?;
            loaded.path = file.clone();
            (loaded, file)
        }
        None => (load(&opts.input)?, opts.input.clone()),
    };
    let state = match (&saved, &opts.state) {
        (Some(s), Some(given)) if saved::absolute(given).display().to_string() != s.journal => {
            return Err(SavedError::OtherJournal {
                saved: s.journal.clone(),
                given: given.display().to_string(),
            }
            .into());
        }
        (Some(s), _) => Some(PathBuf::from(&s.journal)),
        (None, given) => given.clone(),
    };
    let mut session = Session::open(loaded, &plan_file, state.as_deref())?;
    session.display = opts.display;
    session.reporter = Arc::new(Reporter::new(
        progress::Mode::of(opts.display, opts.json),
        opts.display,
        session.world.redactor.clone(),
    ));
    let _lock = ApplyLock::acquire(&journal::lock_path(
        session.journal_path.parent().unwrap_or(Path::new(".")),
        &session.world.plan.name,
    ))?;
    // Re-read under the lock: another apply may have finished in between.
    session.journal = Journal::load(&session.journal_path, &session.world.plan.name)?;
    // After the lock: a second apply refuses at once, without logging on to the server.
    session.connect().await?;
    let survey = session.survey().await;
    let planned = session.planned(&survey);
    if let Some(s) = &saved {
        let drift = s.drift(&planned);
        if !drift.is_empty() {
            return Err(EngineError::Stale(drift.join("\n  ")));
        }
    }
    let doc = session.document(planned);
    let redactor = session.world.redactor.clone();
    let display = opts.display;
    // People's output, already terminal-safe (render masks and escapes what it shows); `-q`
    // keeps only the summary and errors (the reporter is silent then, and with `--json`).
    let reporter = session.reporter.clone();
    let out = move |text: &str| reporter.line(text);
    let asks = doc.summary.pending() && !opts.auto_approve && saved.is_none();
    if asks && display.quiet && !opts.json && doc.summary.blocked == 0 {
        // Nobody is asked to approve a plan they were not shown, `-q` or not.
        let full = render::Display {
            quiet: false,
            ..display
        };
        let _ = std::io::stdout().write_all(render::plan_text(&doc, &redactor, full).as_bytes());
    } else {
        out(&render::plan_text(&doc, &redactor, display));
    }
    if doc.summary.blocked > 0 {
        return Err(EngineError::Blocked(
            doc.steps
                .iter()
                .filter(|s| s.action == Action::Blocked)
                .map(|s| format!("{}: {}", s.id, s.reason))
                .collect::<Vec<_>>()
                .join("\n  "),
        ));
    }
    if asks {
        confirm()?;
    }
    let started = Utc::now();
    let pid = std::process::id();
    session.journal.runs.push(RunRecord {
        started,
        finished: None,
        pid,
        outcome: None,
    });
    if doc.summary.pending() {
        // Before anything changes: the run is on record, and a journal that cannot be written
        // stops it here rather than after its first step. A converged run (nothing to do) writes
        // the journal once, at its end (with 2,000 copied files it weighs ~1 MB).
        session.journal.save(&session.journal_path)?;
        out("\nApplying:\n");
    }
    let (result, end_recorded) = execute(&mut session, &survey, &out, (pid, started)).await;
    // The run's end is recorded after every step's own record (with the last step's, when that
    // step was carried out: one write, not two); when it cannot be written, what the run did is
    // still reported (each step was journaled, or said it was not).
    let mut result = result;
    let ended = match end_recorded {
        true => Ok(()),
        false => {
            end_run(&mut session.journal, (pid, started), result.ok);
            session.journal.save(&session.journal_path)
        }
    };
    if let Err(e) = ended {
        let e = format!(
            "the end of this run could not be recorded: {e} (every step's result above was \
             recorded, or says it was not)"
        );
        result.ok = false;
        result.error = Some(match result.error.take() {
            Some(first) => format!("{first}\n{e}"),
            None => e,
        });
    }
    if opts.json {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(session.world.redactor.redact(&json(&result)?).as_bytes());
    } else {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(render::apply_summary(&result, display).as_bytes());
    }
    match &result.error {
        Some(e) if !opts.json => {
            eprintln!(
                "{}",
                render::error_line(&session.world.redactor, e, display)
            );
            Ok(1)
        }
        Some(_) => Ok(1),
        None => Ok(0),
    }
}

fn confirm() -> Result<(), EngineError> {
    if !std::io::stdin().is_terminal() {
        return Err(EngineError::NotConfirmed(
            "standard input is not a terminal, so nobody can confirm; pass --auto-approve to apply without asking".into(),
        ));
    }
    // On standard error, so that `--json` output on standard output stays one document.
    eprint!("\nDo you want to apply these steps? Only 'yes' will be accepted: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| EngineError::NotConfirmed(e.to_string()))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(EngineError::NotConfirmed("apply cancelled".into()))
    }
}

/// Where one apply stands: each step's outcome in order, what this run changed, and why it stopped.
struct Run<'o, F: Fn(&str)> {
    results: Vec<AppliedStep>,
    error: Option<String>,
    restart_started: bool,
    /// Per step (by plan index): done in this run or recorded, and changed by this run.
    finished: Vec<bool>,
    applied: Vec<bool>,
    out: &'o F,
    redactor: Redactor,
    display: render::Display,
    reporter: Arc<Reporter>,
    /// This run in the journal: its pid and start.
    this_run: RunId,
    /// The journal on disk records this run's end (written with the last step's record).
    end_recorded: bool,
}

/// How a step's turn ended.
enum Turn {
    /// On to the next step.
    Next,
    /// The run stops here; the steps after it are left out of the report.
    Halt(String),
    /// The step failed; the steps after it are reported as not run.
    Failed(String),
}

impl<'o, F: Fn(&str)> Run<'o, F> {
    fn new(session: &Session, out: &'o F, this_run: RunId) -> Self {
        let steps = session.steps.len();
        Run {
            redactor: session.world.redactor.clone(),
            display: session.display,
            results: Vec::new(),
            error: None,
            restart_started: false,
            finished: vec![false; steps],
            applied: vec![false; steps],
            out,
            reporter: session.reporter.clone(),
            this_run,
            end_recorded: false,
        }
    }

    /// Shows a step's outcome as it happens (in place of its spinner) and keeps it for the summary.
    fn report(&mut self, step: AppliedStep) {
        self.reporter.end(&format!(
            "{}\n",
            render::progress_line(&step, &self.redactor, self.display)
        ));
        self.results.push(step);
    }

    fn document(self, session: &Session) -> ApplyDocument {
        let reboot_required = self.results.iter().any(|r| r.reboot_required);
        ApplyDocument {
            format_version: render::FORMAT_VERSION,
            plan: session.world.plan.name.clone(),
            plan_sha256: session.loaded.sha256.clone(),
            ok: self.error.is_none(),
            steps: self.results,
            reboot_required,
            restart_started: self.restart_started,
            error: self.error.map(|e| session.world.redactor.redact(&e)),
        }
    }
}

/// A step's line in the apply report.
fn applied_step(
    session: &Session,
    i: usize,
    result: Outcome,
    summary: String,
    reboot_required: bool,
) -> AppliedStep {
    AppliedStep {
        id: session.world.plan.steps[i].id.to_string(),
        kind: session.kinds[i].clone(),
        result,
        summary,
        reboot_required,
        detail: Vec::new(),
    }
}

/// A run in the journal: the pid of its `upgrade` and when it started.
type RunId = (u32, DateTime<Utc>);

/// Marks run `(pid, started)` of the journal ended now, `ok` or failed.
fn end_run(journal: &mut Journal, (pid, started): RunId, ok: bool) {
    if let Some(run) = journal
        .runs
        .iter_mut()
        .rev()
        .find(|r| r.pid == pid && r.started == started)
    {
        run.finished = Some(Utc::now());
        run.outcome = Some(if ok { "ok".into() } else { "failed".into() });
    }
}

/// Runs the pending steps in order; stops at the first failure. Also says whether the journal on
/// disk already records this run's end (`this_run`: its pid and start), written with the last
/// step's record.
async fn execute(
    session: &mut Session,
    survey: &[(Diff, Option<Observation>)],
    out: &impl Fn(&str),
    this_run: RunId,
) -> (ApplyDocument, bool) {
    let mut run = Run::new(session, out, this_run);
    let order = session.order.clone();
    for (pos, &i) in order.iter().enumerate() {
        if run.restart_started {
            let skipped = applied_step(
                session,
                i,
                Outcome::NotRun,
                "not run: the installer started a restart; run apply again after it".into(),
                false,
            );
            run.report(skipped);
            continue;
        }
        let last = pos + 1 == order.len();
        match turn(session, survey, &mut run, i, last).await {
            Turn::Next => run.finished[i] = true,
            Turn::Halt(e) => {
                run.error = Some(e);
                break;
            }
            Turn::Failed(e) => {
                run.error = Some(e);
                for &j in &order[pos + 1..] {
                    let skipped =
                        applied_step(session, j, Outcome::NotRun, "not run".into(), false);
                    run.report(skipped);
                }
                break;
            }
        }
    }
    let end_recorded = run.end_recorded;
    (run.document(session), end_recorded)
}

/// One step's turn: check its prerequisites, look at it again if this run changed them, then
/// record what is already done, refuse what cannot converge, or carry it out. The record of the
/// `last` step carried out also holds the run's end.
async fn turn<F: Fn(&str)>(
    session: &mut Session,
    survey: &[(Diff, Option<Observation>)],
    run: &mut Run<'_, F>,
    i: usize,
    last: bool,
) -> Turn {
    let id = session.world.plan.steps[i].id.to_string();
    // Never run a step whose prerequisite is not done in this run or recorded.
    let deps: Vec<usize> = graph::prerequisites(&session.world.plan, i)
        .into_iter()
        .collect();
    if let Some(&d) = deps.iter().find(|&&d| !run.finished[d]) {
        return Turn::Halt(format!(
            "{id}: prerequisite `{}` is not done",
            session.world.plan.steps[d].id
        ));
    }
    // What was observed before the run is stale once a prerequisite changed the server in this
    // run (an install detected by a name the old product also had): look again.
    let diff = if deps.iter().any(|&d| run.applied[d]) {
        match session.survey_one(i, &session.journal, true).await {
            (d @ Diff::Done { .. }, _) => session
                .check_again(i, "run again after this run's changes")
                .unwrap_or(d),
            (d, _) => d,
        }
    } else {
        survey[i].0.clone()
    };
    match diff {
        Diff::Done { evidence, details } => {
            if let Err(e) = adopt(session, i, &evidence, details) {
                return Turn::Halt(e);
            }
            let done = applied_step(session, i, Outcome::AlreadyDone, evidence, false);
            run.report(done);
            Turn::Next
        }
        Diff::Blocked { why } => Turn::Halt(format!("{id}: cannot converge: {why}")),
        Diff::Change { change, .. } | Diff::Check { change, .. } => {
            run.reporter.begin(&id, &session.kinds[i]);
            let res = run_one(session, i, &deps, &change, run.out).await;
            // What the server said while the step ran, success or not.
            let detail = run.reporter.take_detail();
            record(session, i, res.as_ref().map_err(|e| e.as_str()));
            // The run ends with this step, as it went: ok, or failed with it. A save that fails
            // leaves the end to the run's own last write.
            if last {
                end_run(&mut session.journal, run.this_run, res.is_ok());
            }
            let saved = session.journal.save(&session.journal_path);
            run.end_recorded = last && saved.is_ok();
            match (res, saved) {
                (Ok(ev), Ok(())) => {
                    run.applied[i] = true;
                    run.restart_started |= ev.restart_started;
                    let done = AppliedStep {
                        detail,
                        ..applied_step(session, i, Outcome::Applied, ev.summary, ev.reboot_required)
                    };
                    run.report(done);
                    Turn::Next
                }
                (Ok(ev), Err(e)) => {
                    let error = not_recorded(&id, &ev.summary, &e);
                    let done = AppliedStep {
                        detail,
                        ..applied_step(
                            session,
                            i,
                            Outcome::AppliedNotRecorded,
                            ev.summary,
                            ev.reboot_required,
                        )
                    };
                    run.report(done);
                    Turn::Halt(error)
                }
                (Err(e), _) => {
                    let failed = AppliedStep {
                        detail,
                        ..applied_step(session, i, Outcome::Failed, e.clone(), false)
                    };
                    run.report(failed);
                    Turn::Failed(format!("step `{id}` failed: {e}"))
                }
            }
        }
    }
}

/// Records a result found on the server that the journal does not hold (a backup taken by hand),
/// so that later rechecks have something to compare with.
fn adopt(
    session: &mut Session,
    i: usize,
    evidence: &str,
    details: serde_json::Value,
) -> Result<(), String> {
    let id = session.world.plan.steps[i].id.to_string();
    let recorded = session.journal.done(&id).map(|e| &e.details);
    let stale = recorded.is_none() || (!details.is_null() && recorded != Some(&details));
    if !stale {
        return Ok(());
    }
    let ev = Evidence {
        summary: evidence.to_string(),
        details,
        reboot_required: false,
        restart_started: false,
    };
    record(session, i, Ok(&ev));
    session
        .journal
        .save(&session.journal_path)
        .map_err(|e| not_recorded(&id, evidence, &e))
}

/// Applies the change planned for one step; a destructive one only after `gate` proved every
/// prerequisite.
async fn run_one(
    session: &mut Session,
    i: usize,
    deps: &[usize],
    change: &Change,
    out: &impl Fn(&str),
) -> Result<Evidence, String> {
    if session.steps[i].role() == Role::Destructive {
        gate(session, i, deps, out).await?;
        record_began(session, i)?;
    }
    let cx = session.cx(i, &session.journal);
    tracing::info!(step = %session.world.plan.steps[i].id, "applying");
    session.steps[i]
        .apply(change, &cx)
        .await
        .map_err(|e| session.world.redactor.redact(&e.to_string()))
}

/// Right before destructive step `i`, proves each prerequisite against the live server (the backup
/// reads and verifies, the key file is the exported one, the Extensions folder still matches its
/// copy). One that no longer holds is observed again and, when it can be, redone and recorded now
/// (Extensions edited after the copy are copied again), then proven again; otherwise the
/// destruction is refused with the reason.
async fn gate(
    session: &mut Session,
    i: usize,
    deps: &[usize],
    out: &impl Fn(&str),
) -> Result<(), String> {
    let by = session.world.plan.steps[i].id.to_string();
    let redactor = session.world.redactor.clone();
    let order: Vec<usize> = session
        .order
        .iter()
        .copied()
        .filter(|d| deps.contains(d))
        .collect();
    for d in order {
        let id = session.world.plan.steps[d].id.to_string();
        let refused = |e: &dyn std::fmt::Display| {
            format!(
                "prerequisite `{id}` does not hold: {}",
                redactor.redact(&e.to_string())
            )
        };
        let first = prove(session, d).await;
        let why = match first {
            Ok(line) => {
                tracing::info!(step = %id, "{line}");
                continue;
            }
            Err(e) => session.world.redactor.redact(&e.to_string()),
        };
        tracing::warn!(step = %id, "does not hold before `{by}`: {why}");
        let (diff, _) = session.survey_one(d, &session.journal, false).await;
        let evidence = match diff {
            Diff::Blocked { why: blocked } => {
                return Err(format!(
                    "prerequisite `{id}` does not hold ({why}) and cannot be redone: {blocked}"
                ))
            }
            Diff::Done { evidence, details } => Evidence {
                summary: evidence,
                details,
                reboot_required: false,
                restart_started: false,
            },
            Diff::Change { .. } | Diff::Check { .. }
                if session.steps[d].role() == Role::Destructive =>
            {
                // Another destruction is never carried out here, outside its own gate.
                return Err(format!(
                    "prerequisite `{id}` does not hold ({why}); it destroys, so it is not redone \
                     here: run apply again to carry it out through its own checks"
                ));
            }
            Diff::Change { change, .. } | Diff::Check { change, .. } => {
                let cx = session.cx(d, &session.journal);
                match session.steps[d].apply(&change, &cx).await {
                    Ok(ev) => ev,
                    Err(e) => {
                        let e = session.world.redactor.redact(&e.to_string());
                        record(session, d, Err(&e));
                        let _ = session.journal.save(&session.journal_path);
                        return Err(format!(
                            "prerequisite `{id}` does not hold ({why}) and redoing it failed: {e}"
                        ));
                    }
                }
            }
        };
        if !evidence.details.is_null() {
            record(session, d, Ok(&evidence));
            session
                .journal
                .save(&session.journal_path)
                .map_err(|e| not_recorded(&id, &evidence.summary, &e))?;
        }
        out(&format!(
            "{}\n",
            render::redone_line(
                &id,
                &why.to_string(),
                &by,
                &evidence.summary,
                &session.world.redactor,
                session.display
            )
        ));
        // What the server said while the prerequisite was redone is its detail, not `by`'s.
        let detail = session.reporter.take_detail();
        if session.display.verbose && !detail.is_empty() {
            out(&format!(
                "{}\n",
                render::detail_lines(&detail, &session.world.redactor, session.display)
            ));
        }
        match prove(session, d).await {
            Ok(line) => tracing::info!(step = %id, "{line}"),
            Err(e) => return Err(refused(&e)),
        }
    }
    Ok(())
}

/// One prerequisite's proof. A step sealed by an earlier destructive step describes the old server
/// and is held to its record alone: the live source it came from may now be the new product's.
async fn prove(session: &Session, d: usize) -> Result<String, crate::steps::StepError> {
    let cx = session.cx(d, &session.journal);
    if session.sealed_by(d, &session.journal).is_some() {
        session.steps[d].recheck(&cx).await
    } else {
        session.steps[d].recheck_before_destruction(&cx).await
    }
}

/// What a user needs when a step completed but the journal could not record it.
fn not_recorded(id: &str, summary: &str, e: &dyn std::fmt::Display) -> String {
    format!(
        "step `{id}` completed ({summary}) but is NOT recorded: {e}. Nothing after it was run. \
         Make room or fix the state folder, then run apply again: the next run observes the server \
         afresh, recognises what `{id}` did (or does it again) and records it"
    )
}

fn record(session: &mut Session, i: usize, res: Result<&Evidence, &str>) {
    let id = session.world.plan.steps[i].id.to_string();
    // Once begun, always begun: a later failure (or a gate that refuses) does not unseal.
    let began = session.journal.record(&id).is_some_and(|r| r.began);
    let rec = StepRecord {
        kind: session.kinds[i].clone(),
        status: if res.is_ok() {
            StepStatus::Done
        } else {
            StepStatus::Failed
        },
        at: Utc::now(),
        evidence: res.ok().cloned(),
        error: res.err().map(|e| session.world.redactor.redact(e)),
        plan_sha256: session.loaded.sha256.clone(),
        began,
    };
    session.journal.steps.insert(id, rec);
}

/// Records, before a destructive step acts, that it began: if it fails or the run is killed
/// halfway, the steps before it are sealed all the same (a backup is never retaken from a database
/// the installer may already have changed).
fn record_began(session: &mut Session, i: usize) -> Result<(), String> {
    let id = session.world.plan.steps[i].id.to_string();
    let previous = session.journal.record(&id).cloned();
    let rec = StepRecord {
        kind: session.kinds[i].clone(),
        status: StepStatus::Started,
        at: Utc::now(),
        evidence: previous.and_then(|r| r.evidence),
        error: None,
        plan_sha256: session.loaded.sha256.clone(),
        began: true,
    };
    session.journal.steps.insert(id.clone(), rec);
    session.journal.save(&session.journal_path).map_err(|e| {
        format!(
            "not started: `{id}` would destroy, and the journal cannot record that it began: {e}"
        )
    })
}
