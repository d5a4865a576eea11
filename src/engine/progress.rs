//! What people see of an apply while it runs. On a terminal, the running step's line is a
//! spinner with its id, what it has done so far and the time it has taken, replaced by its
//! result when it ends; off a terminal, one line when a step starts and one when it ends;
//! nothing with `--json` or `-q`. Steps send `steps::progress::Update`s; the text is
//! `render`'s. It also keeps what the server said to the running step (its detail), in every
//! mode, for the step's result. The only module that draws on the terminal while a step runs.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::adapters::secrets::Redactor;
use crate::engine::render::{self, Display};
use crate::steps::progress::{Progress, Update};

/// The spinner being drawn, if any: log lines (on standard error, the same terminal) are
/// written around it, not through it.
static DRAWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// How the apply is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A terminal that can be drawn on: a spinner per running step.
    Live,
    /// Not a terminal (a log file, a pipe, CI), or a dumb one: a line when a step starts and one
    /// when it ends.
    Lines,
    /// `--json` or `-q`: nothing while the steps run.
    Silent,
}

impl Mode {
    /// The mode for this display: `--json` and `-q` say nothing; a terminal of known width
    /// draws, unless indicatif would not draw on it (`TERM=dumb`).
    pub fn of(display: Display, json: bool) -> Mode {
        if json || display.quiet {
            Mode::Silent
        } else if display.width.is_some() && !ProgressDrawTarget::stdout().is_hidden() {
            Mode::Live
        } else {
            Mode::Lines
        }
    }
}

/// The running step of one apply, and the lines around it, on standard output.
pub struct Reporter {
    mode: Mode,
    display: Display,
    redactor: Redactor,
    running: Mutex<Option<ProgressBar>>,
    /// What the server said to the steps since the last `take_detail`.
    detail: Mutex<Vec<String>>,
}

impl Reporter {
    pub fn new(mode: Mode, display: Display, redactor: Redactor) -> Reporter {
        Reporter {
            mode,
            display,
            redactor,
            running: Mutex::new(None),
            detail: Mutex::new(Vec::new()),
        }
    }

    /// Shows nothing (`upgrade plan`, which applies nothing).
    pub fn silent() -> Reporter {
        Reporter::new(Mode::Silent, Display::default(), Redactor::default())
    }

    /// Prints finished text (terminal-safe already) above the running step's spinner, if any.
    pub fn line(&self, text: &str) {
        if self.mode == Mode::Silent {
            return;
        }
        let print = || {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(text.as_bytes());
            let _ = o.flush();
        };
        match self.bar() {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Step `id` of kind `kind` starts to act.
    pub fn begin(&self, id: &str, kind: &str) {
        self.take_detail();
        match self.mode {
            Mode::Silent => {}
            Mode::Lines => self.line(&format!(
                "{}\n",
                render::start_line(id, kind, &self.redactor, self.display)
            )),
            Mode::Live => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout())
                    .with_style(spinner_style())
                    .with_prefix(render::for_terminal(&self.redactor, id))
                    .with_message(kind.to_string());
                bar.enable_steady_tick(Duration::from_millis(100));
                self.swap(Some(bar));
            }
        }
    }

    /// The step that was running (if any) ended: its spinner gives way to `line`, its result.
    pub fn end(&self, line: &str) {
        if let Some(bar) = self.swap(None) {
            bar.finish_and_clear();
        }
        self.line(line);
    }

    /// What the server said to the steps since the last call (the step just ended), in order.
    pub fn take_detail(&self) -> Vec<String> {
        self.detail
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }

    fn bar(&self) -> Option<ProgressBar> {
        self.running.lock().ok().and_then(|b| b.clone())
    }

    /// Puts `bar` in place of the running one (both here and for the log writer), returning it.
    fn swap(&self, bar: Option<ProgressBar>) -> Option<ProgressBar> {
        if let Ok(mut drawn) = DRAWN.lock() {
            drawn.clone_from(&bar);
        }
        match self.running.lock() {
            Ok(mut running) => std::mem::replace(&mut *running, bar),
            Err(_) => None,
        }
    }
}

impl Progress for Reporter {
    fn update(&self, update: Update) {
        if let Some(bar) = self.bar() {
            bar.set_message(render::progress_detail(&update));
        }
    }

    fn percent(&self, percent: u8) {
        if let Some(bar) = self.bar() {
            bar.set_message(render::percent_detail(percent));
        }
    }

    fn detail(&self, message: &str) {
        if let Ok(mut detail) = self.detail.lock() {
            detail.push(message.to_string());
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(bar) = self.swap(None) {
            bar.finish_and_clear();
        }
    }
}

/// `  ⠋ extensions: 2 of 3 files, 2.10 KiB of 3.16 KiB          4s`: the step, what it has done
/// (cut to the terminal's width, never wrapped, or the redraw would leave copies behind), and
/// the time it has run.
fn spinner_style() -> ProgressStyle {
    // Invariant: the template is a constant that indicatif parses.
    ProgressStyle::with_template("  {spinner} {prefix}: {wide_msg} {elapsed:>4}")
        .expect("the spinner template parses")
}

/// Standard error for log lines: written with the running spinner (on the same terminal)
/// cleared and redrawn after, so neither garbles the other.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = DRAWN.lock().ok().and_then(|b| b.clone());
        let write = || std::io::stderr().lock().write_all(buf);
        match bar {
            Some(bar) => bar.suspend(write)?,
            None => write()?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
