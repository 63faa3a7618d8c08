//! A one-line progress bar on standard error for backup, restore and key rotation.
//!
//! It draws only when standard error is a terminal, so logs and pipes never receive
//! carriage returns, and at most ten times a second.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use store::{Progress, Task};

const BAR_WIDTH: usize = 30;
const REDRAW_INTERVAL: Duration = Duration::from_millis(100);

/// The progress bar of one command.
pub struct ProgressBar {
    enabled: bool,
    task: Option<Task>,
    last_draw: Option<Instant>,
}

impl ProgressBar {
    /// Creates a bar that draws only when standard error is a terminal.
    pub fn for_stderr() -> Self {
        ProgressBar {
            enabled: std::io::stderr().is_terminal(),
            task: None,
            last_draw: None,
        }
    }

    /// Draws a report. A new task ends the line of the previous one.
    pub fn report(&mut self, progress: Progress) {
        if !self.enabled {
            return;
        }
        let new_task = self.task != Some(progress.task);
        let complete = progress.done_bytes >= progress.total_bytes;
        let due = self
            .last_draw
            .is_none_or(|last| last.elapsed() >= REDRAW_INTERVAL);
        if !(new_task || complete || due) {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        if new_task && self.task.is_some() {
            let _ = writeln!(stderr);
        }
        let _ = write!(stderr, "\r{}", render(progress));
        let _ = stderr.flush();
        self.task = Some(progress.task);
        self.last_draw = Some(Instant::now());
    }

    /// Ends the bar's line, if it drew one.
    pub fn finish(&mut self) {
        if self.task.take().is_some() {
            eprintln!();
        }
    }
}

/// Formats one state of the bar, such as
/// `copying [###############               ]  50%   12.0 / 24.0 MiB`.
fn render(progress: Progress) -> String {
    let label = match progress.task {
        Task::Copy => "copying",
        Task::Hash => "hashing",
        Task::Check => "checking",
    };
    let fraction = if progress.total_bytes == 0 {
        1.0
    } else {
        (progress.done_bytes as f64 / progress.total_bytes as f64).clamp(0.0, 1.0)
    };
    let filled = ((fraction * BAR_WIDTH as f64) as usize).min(BAR_WIDTH);
    let mebibytes = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    format!(
        "{label} [{}{}] {:>3.0}% {:>8.1} / {:.1} MiB",
        "#".repeat(filled),
        " ".repeat(BAR_WIDTH - filled),
        fraction * 100.0,
        mebibytes(progress.done_bytes),
        mebibytes(progress.total_bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_half_done() {
        let line = render(Progress {
            task: Task::Copy,
            done_bytes: 12 << 20,
            total_bytes: 24 << 20,
        });
        assert_eq!(
            line,
            "copying [###############               ]  50%     12.0 / 24.0 MiB"
        );
    }

    #[test]
    fn render_clamps_and_handles_empty() {
        let over = render(Progress {
            task: Task::Hash,
            done_bytes: 30,
            total_bytes: 20,
        });
        assert!(
            over.starts_with("hashing [##############################] 100%"),
            "{over}"
        );
        let empty = render(Progress {
            task: Task::Copy,
            done_bytes: 0,
            total_bytes: 0,
        });
        assert!(empty.contains("100%"), "{empty}");
    }
}
