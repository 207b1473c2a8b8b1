//! `longconn replay`: the daemon's detector over archived logs, in the order given, in event time. Alerts go
//! to stdout as JSON lines, a summary table to stderr. No state is read or written: this is how thresholds are
//! tuned before they are deployed. It uses the same parser options and the same [`Detector`] as `run`, so
//! the same records give the same alerts, with the same `event.id`.
//!
//! Each file's [`SourceKind`] (conn, or an interim log: open_conn, conn_long) comes from its name as for a
//! `[[source]]` (`SourceKind::from_path`; stdin is conn), unless `kind` overrides it for every file. Give
//! conn and interim files in event order (e.g. hour by hour) to see the alert timing the daemon would have.

use crate::config::Config;
use crate::detector::{Detector, DetectorStats};
use crate::input::{self, InputPath};
use crate::rules::Level;
use crate::zeek::SourceKind;
use crate::zeek::{Line, LogParser, Show, SkipReason, SkippedLines};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};

/// Counts for the summary.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    pub files: usize,
    pub lines_skipped: BTreeMap<&'static str, u64>,
    pub file_errors: Vec<String>,
    pub stats: DetectorStats,
}

/// Replays `inputs` through a fresh detector, writing alert JSON lines to `out` and skipped-line messages
/// (the first 20 per file) to `err`.
pub fn replay(
    config: &Config,
    inputs: &[InputPath],
    kind: Option<SourceKind>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ReplaySummary> {
    let mut detector = Detector::new(&config.detector());
    if inputs
        .iter()
        .any(|i| kind.unwrap_or_else(|| i.kind()) != SourceKind::Conn)
    {
        detector.expect_interim();
    }
    let mut summary = ReplaySummary::default();
    let mut alerts = Vec::new();
    let mut shown = SkippedLines::default();
    for (file, input) in inputs.iter().enumerate() {
        summary.files += 1;
        let name = input.display();
        let file_kind = kind.unwrap_or_else(|| input.kind());
        let reader = match input::open(input, Default::default()) {
            Ok(r) => r,
            Err(e) => {
                writeln!(err, "longconn replay: {name}: {e}")?;
                summary.file_errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mut reader = BufReader::with_capacity(256 * 1024, reader);
        let mut parser = LogParser::new(crate::detector::parse_options());
        let mut buf = Vec::with_capacity(1024);
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let n = match reader.read_until(b'\n', &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    writeln!(err, "longconn replay: {name}: line {}: {e}", line_no + 1)?;
                    summary.file_errors.push(format!("{name}: {e}"));
                    if !buf.is_empty() {
                        // The line the error cut off (as scan does): counted, never parsed.
                        line_no += 1;
                        let at = (file, name.as_str(), line_no);
                        skipped_line(&mut summary, &mut shown, err, at, SkipReason::Truncated)?;
                    }
                    break;
                }
            };
            if n == 0 {
                break;
            }
            line_no += 1;
            let terminated = buf.last() == Some(&b'\n');
            let line = if terminated {
                &buf[..buf.len() - 1]
            } else {
                &buf[..]
            };
            match parser.parse_line(line) {
                Line::Record(rec, _) => {
                    detector.process(&rec, file_kind, &mut alerts);
                    for a in alerts.drain(..) {
                        writeln!(out, "{}", a.to_json())?;
                    }
                }
                Line::Meta => {}
                Line::Skipped(reason) => {
                    let reason = if terminated {
                        reason
                    } else {
                        SkipReason::Truncated
                    };
                    let at = (file, name.as_str(), line_no);
                    skipped_line(&mut summary, &mut shown, err, at, reason)?;
                }
            }
        }
    }
    summary.stats = detector.stats();
    Ok(summary)
}

/// Counts a skipped line at `(file index, name, line number)`; the first ones of each file go to `err`.
fn skipped_line(
    summary: &mut ReplaySummary,
    shown: &mut SkippedLines<usize>,
    err: &mut dyn Write,
    (file, name, line_no): (usize, &str, u64),
    reason: SkipReason,
) -> io::Result<()> {
    *summary.lines_skipped.entry(reason.kind()).or_default() += 1;
    if shown.count(file) == Show::Line {
        writeln!(err, "{name}:{line_no}: skipped: {reason}")?;
    }
    Ok(())
}

/// The summary table for stderr.
pub fn summary_table(s: &ReplaySummary) -> String {
    let st = &s.stats;
    let mut t = String::from("longconn replay summary\n");
    let mut row = |label: &str, value: String| t.push_str(&format!("  {label:<22}{value}\n"));
    row("files", s.files.to_string());
    row("records seen", st.records_seen.to_string());
    row("records used", st.records_used.to_string());
    let filtered =
        st.filtered_never + st.filtered_direction + st.filtered_state + st.filtered_allow;
    row(
        "records filtered",
        format!(
            "{filtered} (never {}, direction {}, state {}, allow {})",
            st.filtered_never, st.filtered_direction, st.filtered_state, st.filtered_allow
        ),
    );
    row(
        "records ignored",
        format!(
            "{} without ts, {} without addresses",
            st.skipped_no_ts, st.skipped_no_addr
        ),
    );
    let skipped: u64 = s.lines_skipped.values().sum();
    let reasons: Vec<String> = s
        .lines_skipped
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let reasons = if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join(", "))
    };
    row("lines skipped", format!("{skipped}{reasons}"));
    row(
        "interim records",
        format!(
            "{} used, {} ignored (closed or not newer), {} open, {} forgotten",
            st.interim_records, st.interim_ignored, st.interim_open, st.interim_expired
        ),
    );
    row(
        "groups tracked",
        format!("{} (evicted {})", st.groups_tracked, st.evictions),
    );
    row("alerts", "low  medium  high  critical  total".into());
    for (name, counts) in [
        ("single", &st.alerts_single),
        ("cumulative", &st.alerts_cumulative),
    ] {
        let total: u64 = counts.iter().sum();
        t.push_str(&format!(
            "    {name:<19} {:>3}  {:>6}  {:>4}  {:>8}  {:>5}\n",
            counts[Level::Low as usize],
            counts[Level::Medium as usize],
            counts[Level::High as usize],
            counts[Level::Critical as usize],
            total
        ));
    }
    t
}
