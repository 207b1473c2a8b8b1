//! `longconn replay`: the daemon's detector over archived logs, in the order given, in event time. Alerts go
//! to stdout as JSON lines, a summary table to stderr. No state is read or written: this is how thresholds are
//! tuned before they are deployed. It uses the same parser options and the same [`Detector`] as `run`, so
//! the same records give the same alerts, with the same `event.id`.
//!
//! Each file's [`SourceKind`] (conn, or an interim log: open_conn, conn_long) comes from its name as for a
//! `[[source]]` (`SourceKind::from_path`; stdin is conn), unless `kind` overrides it for every file. Give
//! conn and interim files in event order (e.g. hour by hour) to see the alert timing the daemon would have.
//!
//! Context logs (ssl.log, http.log, dns.log; told apart by their `#path`, JSON `_path` or file name) may be
//! given too, in any order among the others: they are merged by event time and each context record is fed
//! to the detector before the first conn record written after it (a conn record is written at its end,
//! `ts + duration`; a context record at its `ts`), which is the order a live run reads them in.

use crate::config::Config;
use crate::detector::{Detector, DetectorStats};
use crate::input::{self, InputPath};
use crate::rules::Level;
use crate::zeek::context::{ContextKind, ContextLine, ContextParser, ContextRecord};
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
    pub context: crate::detector::context::ContextStats,
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
        .any(|i| kind.unwrap_or_else(|| i.kind()).is_interim())
    {
        detector.expect_interim();
    }
    let mut summary = ReplaySummary::default();
    let mut alerts = Vec::new();
    let mut shown = SkippedLines::default();
    let mut contexts = Vec::new();
    let mut conns = Vec::new();
    for (file, input) in inputs.iter().enumerate() {
        match context_kind(input) {
            Some(k) => contexts.push((file, input, k)),
            None => conns.push((file, input)),
        }
    }
    let mut merge = Vec::new();
    for (file, input, k) in contexts {
        summary.files += 1;
        let name = input.display();
        match input::open(input, Default::default()) {
            Ok(r) => {
                let mut stream = ContextStream {
                    file,
                    name,
                    reader: BufReader::with_capacity(256 * 1024, r),
                    parser: ContextParser::new(k),
                    line_no: 0,
                    next: None,
                    buf: Vec::new(),
                };
                stream.advance(&mut summary, &mut shown, err)?;
                merge.push(stream);
            }
            Err(e) => {
                writeln!(err, "longconn replay: {name}: {e}")?;
                summary.file_errors.push(format!("{name}: {e}"));
            }
        }
    }
    // The largest conn record end seen: context records up to it come first.
    let mut written = f64::NEG_INFINITY;
    for (file, input) in conns {
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
                    if !merge.is_empty() {
                        if let Some(end) = rec.end() {
                            written = written.max(end);
                        }
                        feed_context(
                            &mut merge,
                            &mut detector,
                            written,
                            &mut summary,
                            &mut shown,
                            err,
                        )?;
                    }
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
    summary.context = detector.context_stats();
    Ok(summary)
}

/// The context kind of an input: its `#path` or JSON `_path` when it has one in its first lines, else its
/// file name. None for conn logs and stdin.
fn context_kind(input: &InputPath) -> Option<ContextKind> {
    let InputPath::File(path) = input else {
        return None;
    };
    let by_name = path
        .file_name()
        .and_then(|n| ContextKind::from_file_name(&n.to_string_lossy()));
    let Ok(r) = input::open(input, Default::default()) else {
        return by_name;
    };
    for line in BufReader::new(r).lines().take(16) {
        let Ok(line) = line else { break };
        if let Some(p) = line.strip_prefix("#path") {
            return ContextKind::from_log_path(p.trim());
        }
        if line.starts_with('{') {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(p) = v.get("_path").and_then(|p| p.as_str()) {
                    return ContextKind::from_log_path(p);
                }
            }
            break;
        }
        if !line.starts_with('#') {
            break;
        }
    }
    by_name
}

/// One context file being merged in.
struct ContextStream {
    file: usize,
    name: String,
    reader: BufReader<Box<dyn io::Read>>,
    parser: ContextParser,
    line_no: u64,
    /// The next record, None at the end.
    next: Option<ContextRecord>,
    buf: Vec<u8>,
}

impl ContextStream {
    /// Reads up to the next record, counting skipped lines as conn lines are.
    fn advance(
        &mut self,
        summary: &mut ReplaySummary,
        shown: &mut SkippedLines<usize>,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        self.next = None;
        loop {
            self.buf.clear();
            let n = match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(n) => n,
                Err(e) => {
                    writeln!(
                        err,
                        "longconn replay: {}: line {}: {e}",
                        self.name,
                        self.line_no + 1
                    )?;
                    summary.file_errors.push(format!("{}: {e}", self.name));
                    return Ok(());
                }
            };
            if n == 0 {
                return Ok(());
            }
            self.line_no += 1;
            let terminated = self.buf.last() == Some(&b'\n');
            let line = if terminated {
                &self.buf[..self.buf.len() - 1]
            } else {
                &self.buf[..]
            };
            match self.parser.parse_line(line) {
                ContextLine::Record(r) => {
                    self.next = Some(r);
                    return Ok(());
                }
                ContextLine::Meta => {}
                ContextLine::Skipped(reason) => {
                    let reason = if terminated {
                        reason
                    } else {
                        SkipReason::Truncated
                    };
                    let at = (self.file, self.name.as_str(), self.line_no);
                    skipped_line(summary, shown, err, at, reason)?;
                }
            }
        }
    }
}

/// Feeds the detector every context record written up to `until` (seconds), oldest first.
fn feed_context(
    streams: &mut [ContextStream],
    detector: &mut Detector,
    until: f64,
    summary: &mut ReplaySummary,
    shown: &mut SkippedLines<usize>,
    err: &mut dyn Write,
) -> io::Result<()> {
    loop {
        let oldest = streams
            .iter_mut()
            .filter(|s| s.next.as_ref().is_some_and(|r| r.ts <= until))
            .min_by(|a, b| {
                let (a, b) = (a.next.as_ref().map(|r| r.ts), b.next.as_ref().map(|r| r.ts));
                a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
            });
        let Some(s) = oldest else {
            return Ok(());
        };
        if let Some(r) = s.next.take() {
            detector.process_context(&r);
        }
        s.advance(summary, shown, err)?;
    }
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
    let c = &s.context;
    if c.records > 0 {
        row(
            "context records",
            format!(
                "{} (named by uid {}, by pair {}, by dns {}; evicted {})",
                c.records, c.named_uid, c.named_pair, c.named_dns, c.evictions
            ),
        );
    }
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
