//! Training progress on stderr: an indicatif bar (loss, lr, images/s, ETA)
//! when stderr is a terminal, plain periodic lines otherwise (logs, CI), or
//! nothing with `quiet`. stdout is never touched: it carries results.
//!
//! Plain lines look like
//! `iter 120/1000  loss 0.8123  lr 1.200e-3  412.5 img/s  eta 2m13s`
//! and are printed every `every_iters` iterations, at least every
//! `every_secs` seconds when iterations are slow, and at the last iteration.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is reported.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressConfig {
    /// Print nothing.
    pub quiet: bool,
    /// Plain mode: print a line every this many iterations.
    pub every_iters: usize,
    /// Plain mode: also print when this many seconds passed since the last line.
    pub every_secs: f64,
}

impl Default for ProgressConfig {
    fn default() -> Self {
        Self {
            quiet: false,
            every_iters: 20,
            every_secs: 10.0,
        }
    }
}

/// The numbers shown for one iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Total loss.
    pub loss: f64,
    /// Base learning rate.
    pub lr: f64,
    /// Images per second.
    pub img_s: f64,
}

enum Sink {
    Bar(ProgressBar),
    Lines(Box<dyn Write + Send>),
    Quiet,
}

/// Reports progress of a run of `total` iterations.
pub struct Progress {
    sink: Sink,
    cfg: ProgressConfig,
    total: usize,
    start_iter: usize,
    started: Instant,
    last_line: Instant,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.sink {
            Sink::Bar(_) => "bar",
            Sink::Lines(_) => "lines",
            Sink::Quiet => "quiet",
        };
        f.debug_struct("Progress")
            .field("mode", &mode)
            .field("total", &self.total)
            .finish()
    }
}

impl Progress {
    /// Progress for iterations `start_iter..total` (`start_iter > 0` when
    /// resuming) on stderr: a bar on a terminal, plain lines otherwise.
    pub fn new(total: usize, start_iter: usize, cfg: ProgressConfig) -> Self {
        let sink = if cfg.quiet {
            Sink::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            // The template is a constant; fall back to the default style if
            // indicatif ever rejects it rather than failing a training run.
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed_precise}, eta {eta}]",
            ) {
                bar.set_style(style);
            }
            bar.set_position(start_iter as u64);
            Sink::Bar(bar)
        } else {
            Sink::Lines(Box::new(std::io::stderr()))
        };
        Self::with_sink(sink, total, start_iter, cfg)
    }

    /// Plain-line progress written to `out` (log files, tests).
    pub fn to_writer(
        total: usize,
        start_iter: usize,
        cfg: ProgressConfig,
        out: Box<dyn Write + Send>,
    ) -> Self {
        let sink = if cfg.quiet {
            Sink::Quiet
        } else {
            Sink::Lines(out)
        };
        Self::with_sink(sink, total, start_iter, cfg)
    }

    fn with_sink(sink: Sink, total: usize, start_iter: usize, cfg: ProgressConfig) -> Self {
        let now = Instant::now();
        Self {
            sink,
            cfg,
            total,
            start_iter,
            started: now,
            last_line: now,
        }
    }

    /// Reports that iteration `iter` (0-based) finished with `stats`.
    /// Write errors on stderr are ignored: progress must never stop a run.
    pub fn update(&mut self, iter: usize, stats: StepStats) {
        let done = iter + 1;
        match &mut self.sink {
            Sink::Quiet => {}
            Sink::Bar(bar) => {
                bar.set_position(done as u64);
                bar.set_message(format!(
                    "loss {:.4}  lr {:.3e}  {:.1} img/s",
                    stats.loss, stats.lr, stats.img_s
                ));
            }
            Sink::Lines(out) => {
                let now = Instant::now();
                // is_multiple_of needs Rust 1.87; the workspace supports 1.85.
                #[allow(clippy::manual_is_multiple_of)]
                let due = done % self.cfg.every_iters.max(1) == 0
                    || done >= self.total
                    || now.duration_since(self.last_line).as_secs_f64() >= self.cfg.every_secs;
                if due {
                    let eta = eta(
                        now.duration_since(self.started),
                        done - self.start_iter.min(done),
                        self.total - done.min(self.total),
                    );
                    let _ = writeln!(out, "{}", format_line(done, self.total, stats, eta));
                    let _ = out.flush();
                    self.last_line = now;
                }
            }
        }
    }

    /// Ends the bar (leaving its last state on screen).
    pub fn finish(&mut self) {
        if let Sink::Bar(bar) = &self.sink {
            bar.finish();
        }
    }
}

/// Progress over a known number of items (images evaluated, embedded or
/// predicted): a bar on a terminal; otherwise a line at most every
/// `every_secs` seconds (the first one after `every_secs`), so short passes
/// print nothing in logs and long ones say how far they are.
pub struct ItemProgress {
    sink: Sink,
    label: String,
    total: usize,
    done: usize,
    every_secs: f64,
    started: Instant,
    last_line: Instant,
}

impl std::fmt::Debug for ItemProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemProgress").field("label", &self.label).field("done", &self.done).field("total", &self.total).finish()
    }
}

impl ItemProgress {
    /// Progress of `label` (`"evaluating val"`) over `total` images on
    /// stderr, with the training progress's line period.
    pub fn new(label: &str, total: usize) -> Self {
        let every_secs = ProgressConfig::default().every_secs;
        let sink = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            // A constant template; keep the default style if indicatif rejects it.
            if let Ok(style) = ProgressStyle::with_template("{msg} {bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}, eta {eta}]") {
                bar.set_style(style);
            }
            bar.set_message(label.to_string());
            Sink::Bar(bar)
        } else {
            Sink::Lines(Box::new(std::io::stderr()))
        };
        Self::with_sink(sink, label, total, every_secs)
    }

    /// Plain lines to `out`, at most every `every_secs` seconds (logs, tests).
    pub fn to_writer(label: &str, total: usize, every_secs: f64, out: Box<dyn Write + Send>) -> Self {
        Self::with_sink(Sink::Lines(out), label, total, every_secs)
    }

    fn with_sink(sink: Sink, label: &str, total: usize, every_secs: f64) -> Self {
        let now = Instant::now();
        Self { sink, label: label.to_string(), total, done: 0, every_secs, started: now, last_line: now }
    }

    /// Reports `n` more items done. Write errors are ignored: progress must
    /// never stop the work.
    pub fn advance(&mut self, n: usize) {
        self.done += n;
        match &mut self.sink {
            Sink::Quiet => {}
            Sink::Bar(bar) => bar.set_position(self.done as u64),
            Sink::Lines(out) => {
                let now = Instant::now();
                if now.duration_since(self.last_line).as_secs_f64() >= self.every_secs {
                    let eta = eta(now.duration_since(self.started), self.done, self.total.saturating_sub(self.done));
                    let eta = eta.map_or_else(|| "?".to_string(), format_duration);
                    let _ = writeln!(out, "{} {}/{} images  eta {eta}", self.label, self.done, self.total);
                    let _ = out.flush();
                    self.last_line = now;
                }
            }
        }
    }

    /// Removes the bar (the caller prints the result).
    pub fn finish(self) {
        if let Sink::Bar(bar) = &self.sink {
            bar.finish_and_clear();
        }
    }
}

/// Estimated time left: the mean time per iteration so far times the
/// iterations left; `None` before the first iteration.
pub fn eta(elapsed: Duration, done: usize, left: usize) -> Option<Duration> {
    if done == 0 {
        return None;
    }
    Some(elapsed.mul_f64(left as f64 / done as f64))
}

/// A plain progress line for `done` of `total` iterations.
pub fn format_line(done: usize, total: usize, stats: StepStats, eta: Option<Duration>) -> String {
    let eta = eta.map_or_else(|| "?".to_string(), format_duration);
    format!(
        "iter {done}/{total}  loss {:.4}  lr {:.3e}  {:.1} img/s  eta {eta}",
        stats.loss, stats.lr, stats.img_s
    )
}

/// `1h02m`, `2m13s`, `45s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const STATS: StepStats = StepStats {
        loss: 0.81234,
        lr: 1.2e-3,
        img_s: 412.46,
    };

    #[test]
    fn item_progress_prints_only_when_a_line_is_due() {
        let sink = Shared::default();
        let mut quiet = ItemProgress::to_writer("evaluating val", 100, 3600.0, Box::new(sink.clone()));
        quiet.advance(40);
        quiet.advance(60);
        quiet.finish();
        assert!(sink.0.lock().unwrap().is_empty(), "a short pass prints nothing");

        let sink = Shared::default();
        let mut every = ItemProgress::to_writer("evaluating val", 100, 0.0, Box::new(sink.clone()));
        every.advance(40);
        every.advance(60);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("evaluating val 40/100 images  eta "), "{text}");
        assert_eq!(lines[1], "evaluating val 100/100 images  eta 0s");
    }

    #[test]
    fn line_format_and_durations() {
        assert_eq!(
            format_line(120, 1000, STATS, Some(Duration::from_secs(133))),
            "iter 120/1000  loss 0.8123  lr 1.200e-3  412.5 img/s  eta 2m13s"
        );
        assert!(format_line(0, 10, STATS, None).ends_with("eta ?"));
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(
            eta(Duration::from_secs(10), 5, 15),
            Some(Duration::from_secs(30))
        );
        assert_eq!(eta(Duration::from_secs(10), 0, 15), None);
    }

    #[test]
    fn plain_mode_prints_every_n_iterations_and_at_the_end() {
        let buf = Shared::default();
        // every_secs is huge so only the iteration rule applies.
        let cfg = ProgressConfig {
            quiet: false,
            every_iters: 4,
            every_secs: 1e9,
        };
        let mut p = Progress::to_writer(10, 0, cfg, Box::new(buf.clone()));
        for i in 0..10 {
            p.update(i, STATS);
        }
        p.finish();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let iters: Vec<&str> = text
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(iters, vec!["4/10", "8/10", "10/10"]);
    }

    #[test]
    fn quiet_prints_nothing() {
        let buf = Shared::default();
        let cfg = ProgressConfig {
            quiet: true,
            every_iters: 1,
            every_secs: 0.0,
        };
        let mut p = Progress::to_writer(3, 0, cfg, Box::new(buf.clone()));
        for i in 0..3 {
            p.update(i, STATS);
        }
        assert!(buf.0.lock().unwrap().is_empty());
    }
}
