//! Progress of a long scan on stderr: a redrawn bar on a terminal, plain lines otherwise (so
//! logs and CI output stay readable).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a plain line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(2);
/// How often the bar is redrawn on a terminal.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
const BAR_WIDTH: usize = 30;

/// Reports `done/total <unit>` under a label, e.g. `fsck overlay: 1200/5000 snapshots`.
pub struct Progress {
    label: String,
    unit: &'static str,
    total: u64,
    done: u64,
    terminal: bool,
    last: Instant,
    printed: bool,
}

impl Progress {
    /// Progress over `total` items, drawn as a bar if stderr is a terminal.
    pub fn new(label: impl Into<String>, unit: &'static str, total: u64) -> Progress {
        Progress {
            label: label.into(),
            unit,
            total,
            done: 0,
            terminal: std::io::stderr().is_terminal(),
            last: Instant::now(),
            printed: false,
        }
    }

    /// One more item done.
    pub fn tick(&mut self) {
        self.done += 1;
        let now = Instant::now();
        let every = if self.terminal {
            REDRAW_EVERY
        } else {
            LINE_EVERY
        };
        // The first report waits a full interval: a quick scan prints nothing.
        if now.duration_since(self.last) >= every {
            self.last = now;
            self.draw();
        }
    }

    fn draw(&mut self) {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let filled = (self.done * BAR_WIDTH as u64)
                .checked_div(self.total)
                .unwrap_or(0) as usize;
            let _ = write!(
                err,
                "\r{}: [{}{}] {}/{} {}",
                self.label,
                "#".repeat(filled.min(BAR_WIDTH)),
                ".".repeat(BAR_WIDTH - filled.min(BAR_WIDTH)),
                self.done,
                self.total,
                self.unit
            );
        } else {
            let _ = writeln!(
                err,
                "{}: {}/{} {}",
                self.label, self.done, self.total, self.unit
            );
        }
        let _ = err.flush();
        self.printed = true;
    }

    /// The scan is over: the final count if anything was shown, and the bar's line ended.
    pub fn finish(mut self) {
        if self.printed {
            self.draw();
            if self.terminal {
                let _ = writeln!(std::io::stderr());
            }
        }
    }
}
