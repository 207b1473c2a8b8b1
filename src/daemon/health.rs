//! What the running daemon tells the outside about itself: readiness, reloads, the watchdog and a status
//! line to systemd ([`crate::notify`]), and the pipeline's figures to Prometheus ([`crate::metrics`]).
//! Kept out of `daemon.rs` so the wiring stays readable: the pipeline calls in at a few points (per record,
//! per source poll, after each round of polls, after a reload, after a checkpoint) and nothing here
//! changes what the pipeline does.
//!
//! Readiness: `READY=1` goes out after the first round of polls, i.e. once the config is loaded, the
//! checkpoint restored, the tailers made, the file watches set (before the pipeline thread starts), and the
//! first poll has opened (or found missing) every source and read what they already held. A first poll
//! over a large backlog extends systemd's start timeout (`EXTEND_TIMEOUT_USEC`) while it makes progress.
//! The watchdog is fed from the pipeline loop and, during a long backlog, from inside the record sink, so
//! it stops only if the pipeline stops moving.
//! Lag per source: bytes between our position and the end of each file we have open (and of a new file
//! already at the path), and how long the source has not been read to its end.

use super::{Episode, Pipeline};
use crate::detector::DetectorStats;
use crate::metrics::{self, SourceMetrics};
use crate::notify::Notifier;
use crate::tail::config::Source;
use crate::tail::{FileId, Tailer};
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How often gauges and the lag are refreshed.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How often `STATUS=` is sent.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// Records between two watchdog checks inside a poll.
const WATCHDOG_RECORDS: u64 = 4096;

/// What a source looked like at its last poll: logged once per change, with a slow reminder while it
/// cannot be read (an unreadable directory must not write a line every 250 ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SourceState {
    /// Not polled yet.
    Unknown,
    /// Being read.
    Up,
    /// Nothing at the configured path, nothing open (Zeek not started yet, the directory gone).
    Missing,
    /// Looking at it fails; the message of the error.
    Unreadable(String),
}

/// How often "still unreadable" is repeated.
const UNREADABLE_REMINDER: Duration = Duration::from_secs(300);

struct SourceHealth {
    path: String,
    state: SourceState,
    /// The current unreadable spell, logged when it starts and every [`UNREADABLE_REMINDER`].
    unreadable: Episode,
    /// "No file at the source path" was logged (its end is logged too).
    missing_logged: bool,
    metrics: SourceMetrics,
    /// When the source was last read to the end of everything there was.
    caught_up_at: Instant,
    lag_bytes: u64,
}

pub(super) struct Health {
    notifier: Notifier,
    sources: Vec<SourceHealth>,
    ready: bool,
    records_in_poll: u64,
    last_report: Option<Instant>,
    last_status: Instant,
    records_at_status: u64,
    /// A source changed state: send the status line now.
    status_due: bool,
}

impl Health {
    pub(super) fn new(sources: &[Source]) -> Health {
        let now = Instant::now();
        Health {
            notifier: Notifier::from_env(),
            sources: sources
                .iter()
                .map(|s| SourceHealth {
                    path: s.path.display().to_string(),
                    state: SourceState::Unknown,
                    unreadable: Episode::every(UNREADABLE_REMINDER),
                    missing_logged: false,
                    metrics: SourceMetrics::new(&s.path.display().to_string()),
                    caught_up_at: now,
                    lag_bytes: 0,
                })
                .collect(),
            ready: false,
            records_in_poll: 0,
            last_report: None,
            last_status: now,
            records_at_status: 0,
            status_due: false,
        }
    }

    /// The longest the loop may block waiting for work, so the watchdog is fed in time.
    pub(super) fn max_wait(&self, wait: Duration) -> Duration {
        match self.notifier.watchdog_interval() {
            Some(every) => wait.min(every),
            None => wait,
        }
    }

    /// Called for each record read: during a long backlog, feeds the watchdog or, before `READY=1` (the
    /// first poll reads everything already in the files), extends systemd's start timeout.
    pub(super) fn record(&mut self) {
        self.records_in_poll += 1;
        if self.records_in_poll % WATCHDOG_RECORDS == 0 {
            if self.ready {
                self.notifier.watchdog();
            } else {
                let n = self.records_in_poll;
                self.notifier.starting(&format!(
                    "starting: reading the backlog, {n} records so far"
                ));
            }
        }
    }

    /// A line of source `i` the parser skipped.
    pub(super) fn skipped(&self, i: usize, reason: &'static str) {
        if let Some(s) = self.sources.get(i) {
            s.metrics.skipped(reason);
        }
    }

    /// Source `i` was polled: `records` read, with the detector's counters before and after.
    pub(super) fn polled(
        &mut self,
        i: usize,
        records: u64,
        before: &DetectorStats,
        after: &DetectorStats,
    ) {
        if let Some(s) = self.sources.get(i) {
            s.metrics.polled(records, before, after);
        }
    }

    /// NUL bytes skipped in source `i`.
    pub(super) fn nul_bytes(&self, i: usize, n: u64) {
        if let Some(s) = self.sources.get(i) {
            s.metrics.nul_bytes(n);
        }
    }

    /// The state of source `i` after a poll: one line per change, a reminder every
    /// [`UNREADABLE_REMINDER`] while it stays unreadable, and the `longconn_source_up` gauge.
    pub(super) fn source_state(&mut self, i: usize, state: SourceState) {
        let Some(s) = self.sources.get_mut(i) else {
            return;
        };
        s.metrics.up(!matches!(state, SourceState::Unreadable(_)));
        if let SourceState::Unreadable(e) = &state {
            // One episode, whatever the reason (the directory, then the file).
            match s.unreadable.hit() {
                Some(1) => {
                    warn!(source = %s.path, error = %e, "source unreadable; positions kept, retrying (reminder every 5 min)")
                }
                Some(_) => {
                    warn!(source = %s.path, error = %e, down_seconds = s.unreadable.elapsed().as_secs(), "source still unreadable; positions kept, retrying")
                }
                None => {}
            }
            if matches!(s.state, SourceState::Unreadable(_)) {
                return;
            }
        } else if state == s.state {
            // The file went first and its directory after (`rm -r` takes the file, then the directory):
            // a gap after a rotation became a directory that is gone, which is news.
            if state == SourceState::Missing && !s.missing_logged && dir_gone(&s.path) {
                s.missing_logged = true;
                warn!(source = %s.path, "no file at the source path: its directory is gone; waiting for it");
            }
            return;
        } else if let Some((_, down)) = s.unreadable.end() {
            let what = if state == SourceState::Missing {
                "source readable again; its file does not exist"
            } else {
                "source readable again"
            };
            info!(source = %s.path, down_seconds = down.as_secs(), "{what}");
        } else {
            let dir_gone = state == SourceState::Missing && dir_gone(&s.path);
            match (&s.state, &state) {
                // After a rotation Zeek opens the next file only at its next write: a gap, not news.
                (SourceState::Up, SourceState::Missing) if !dir_gone => {
                    debug!(source = %s.path, "no file at the source path until the next write");
                }
                (_, SourceState::Missing) => {
                    s.missing_logged = true;
                    if dir_gone {
                        warn!(source = %s.path, "no file at the source path: its directory is gone; waiting for it");
                    } else {
                        warn!(source = %s.path, "no file at the source path (Zeek not started?); waiting for it");
                    }
                }
                (SourceState::Missing, SourceState::Up) if s.missing_logged => {
                    s.missing_logged = false;
                    info!(source = %s.path, "source file present");
                }
                _ => {}
            }
        }
        s.state = state;
        // A change is shown in the status line at once, not at the next periodic update.
        self.status_due = true;
    }

    /// Sources that cannot be read now, for the status line.
    fn unreadable(&self) -> usize {
        self.sources
            .iter()
            .filter(|s| matches!(s.state, SourceState::Unreadable(_)))
            .count()
    }

    /// A reload was applied.
    pub(super) fn reloaded(&self) {
        self.notifier.ready();
    }

    /// A checkpoint was saved.
    pub(super) fn checkpoint_saved(&self) {
        metrics::checkpoint_saved();
    }
}

/// Whether the directory of `path` does not exist. An error other than "not found" (no search
/// permission, say) is not absence: that is reported as an unreadable source elsewhere.
fn dir_gone(path: &str) -> bool {
    Path::new(path).parent().is_some_and(
        |d| matches!(std::fs::metadata(d), Err(e) if e.kind() == std::io::ErrorKind::NotFound),
    )
}

impl Pipeline {
    /// After each round of polls: `READY=1` the first time, the watchdog, and every second the gauges
    /// (every few seconds the status line).
    pub(super) fn report(&mut self) {
        self.health.records_in_poll = 0;
        self.health.notifier.watchdog();
        let now = Instant::now();
        if !self.health.ready {
            self.health.ready = true;
            self.health.notifier.ready();
            self.health.notifier.status(&format!(
                "running: {} source(s), {} records read at start",
                self.tailers.len(),
                self.records
            ));
        }
        if !self.health.status_due
            && self
                .health
                .last_report
                .is_some_and(|t| now - t < REPORT_EVERY)
        {
            return;
        }
        self.health.last_report = Some(now);
        let stats = self.detector.stats();
        metrics::detector(&stats);
        ::metrics::gauge!(metrics::SPOOL_BYTES).set(self.spool.bytes() as f64);
        for (tailer, s) in self.tailers.iter().zip(self.health.sources.iter_mut()) {
            s.lag_bytes = lag_bytes(tailer);
            if s.lag_bytes == 0 {
                s.caught_up_at = now;
            }
            s.metrics.lag(s.lag_bytes, now - s.caught_up_at);
        }
        let since = now - self.health.last_status;
        if (since >= STATUS_EVERY || self.health.status_due) && self.health.notifier.enabled() {
            self.health.status_due = false;
            let per_sec = (self.records - self.health.records_at_status) as f64
                / since.as_secs_f64().max(0.001);
            let lag: u64 = self.health.sources.iter().map(|s| s.lag_bytes).sum();
            let down = match self.health.unreadable() {
                0 => String::new(),
                n => format!(", {n} source(s) UNREADABLE"),
            };
            self.health.notifier.status(&format!(
                "{per_sec:.0} records/s, {} groups, {} alerts, {} behind{down}",
                stats.groups_tracked,
                self.alerts_written,
                human_bytes(lag)
            ));
            self.health.last_status = now;
            self.health.records_at_status = self.records;
        }
    }
}

/// Bytes not read yet: the rest of each file we have open (found again by identity at its last path),
/// plus the whole of a different file now at the configured path.
fn lag_bytes(tailer: &Tailer) -> u64 {
    let cp = tailer.checkpoint();
    let behind = |path: &std::path::Path, id: FileId, offset: u64| -> Option<u64> {
        let meta = std::fs::metadata(path).ok()?;
        (FileId::of(&meta) == id).then(|| meta.len().saturating_sub(offset))
    };
    let mut total: u64 = cp
        .draining
        .iter()
        .filter_map(|f| behind(&f.path, f.id, f.offset))
        .sum();
    match &cp.live {
        Some(f) => match behind(&cp.path, f.id, f.offset) {
            Some(n) => total += n,
            // Rotated since the last poll: the new file is all unread.
            None => total += std::fs::metadata(&cp.path).map_or(0, |m| m.len()),
        },
        None => total += std::fs::metadata(&cp.path).map_or(0, |m| m.len()),
    }
    total
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    //! The status line's sizes; the rest is covered end to end (tests/sd_notify.rs, tests/metrics.rs).
    use super::human_bytes;

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
