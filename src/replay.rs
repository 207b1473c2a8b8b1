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
//!
//! Tuning help ([`ReplayOptions`]): a summary per group that alerted ([`GroupSummary`]: names, highest
//! level, longest duration, largest measure, reasons), optionally with the groups that came within a
//! fraction of a level they did not reach (`near`), and the alerts only one of two configs raises
//! (`compare`: the same records through a second detector, alerts told apart by `event.id`).
//!
//! The files are read and parsed on threads of their own (`replay/pipeline.rs`) while this one runs the detector:
//! it takes the parsed lines in file order and reports everything (skipped lines, files that do not open,
//! read errors) where it reaches them, so the output is the same as if it read the lines itself.

use crate::alert::{self, Alert, Trigger};
use crate::config::Config;
use crate::detector::{Detector, DetectorStats, GroupFigure};
use crate::input::{self, InputPath};
use crate::rules::{Level, Thresholds};
use crate::window::GroupKey;
use crate::zeek::context::{ContextKind, ContextRecord};
use crate::zeek::SourceKind;
use crate::zeek::{Show, SkipReason, SkippedLines};
use pipeline::{Batches, ConnItem, ContextItem};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::io::{self, BufRead, BufReader, Write};

mod pipeline;

/// Counts for the summary.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    pub files: usize,
    pub lines_skipped: BTreeMap<&'static str, u64>,
    pub file_errors: Vec<String>,
    pub stats: DetectorStats,
    pub context: crate::detector::context::ContextStats,
    /// The groups that alerted, and with `near` those that came near a level; highest level first.
    pub groups: Vec<GroupSummary>,
    /// With `compare`: the alerts only one of the two configs raised, in the order they were raised.
    pub differences: Vec<Difference>,
}

/// What `replay` computes besides the alerts.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayOptions<'a> {
    /// Also list the groups whose longest duration or largest measure reached at least this fraction
    /// (0 < F <= 1) of the lowest threshold they did not reach.
    pub near: Option<f64>,
    /// A second config: the same records go through a detector built from it too.
    pub compare: Option<&'a Config>,
}

/// One group in the tuning summary. Figures cover the whole replay, from the group's first record that
/// reached the listing bound on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupSummary {
    pub source: std::net::IpAddr,
    /// The responder address, with `:port/proto` when grouped by pair and port.
    pub destination: String,
    /// The server names seen (`destination.domain`, `longconn.domains`, and names of its records).
    pub names: Vec<String>,
    /// The highest level alerted (None: listed as near only).
    pub level: Option<Level>,
    pub alerts: u64,
    /// The longest single connection.
    pub longest_seconds: f64,
    /// The largest cumulative measure inside the window.
    pub measure_seconds: f64,
    /// The context modifiers applied to its alerts.
    pub reasons: Vec<String>,
    /// With `near`: the closest level not reached, when within the fraction.
    pub near: Option<Near>,
}

/// A level a group came near without reaching it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Near {
    pub trigger: Trigger,
    pub level: Level,
    /// The figure over that level's threshold, below 1.
    pub fraction: f64,
}

/// Which config raised an alert the other did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RaisedBy {
    /// `--config`.
    Config,
    /// `--compare`.
    Compare,
}

/// An alert only one config raised.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Difference {
    pub raised_by: RaisedBy,
    pub event_id: String,
    /// `orig>resp` or `orig>resp:port/proto`.
    pub group: String,
    pub trigger: Trigger,
    pub level: Level,
    pub measure_seconds: f64,
    pub threshold_seconds: f64,
}

impl Difference {
    fn of(a: &Alert, group: String, raised_by: RaisedBy) -> Difference {
        Difference {
            raised_by,
            event_id: a.event.id.clone(),
            group,
            trigger: a.longconn.trigger,
            level: a.longconn.level,
            measure_seconds: a.longconn.measure_seconds,
            threshold_seconds: a.longconn.threshold_seconds,
        }
    }
}

/// A group while the replay runs.
#[derive(Debug, Clone)]
struct GroupTally {
    group: String,
    names: BTreeSet<String>,
    level: Option<Level>,
    alerts: u64,
    longest_us: i64,
    single: Thresholds,
    measure_us: i64,
    cumulative: Thresholds,
    reasons: BTreeSet<String>,
}

/// The groups worth listing: those that alerted, and those whose figures reached `bound` times their
/// lowest threshold (1 without `near`), so that a replay over many quiet pairs keeps few.
#[derive(Debug)]
struct Tally {
    bound: f64,
    /// Hashed (a lookup per record); ordered by key at the end.
    groups: rustc_hash::FxHashMap<GroupKey, GroupTally>,
}

/// `a` reached at least `f` times `t`.
fn reaches(a: i64, t: Option<i64>, f: f64) -> bool {
    t.is_some_and(|t| a as f64 >= t as f64 * f)
}

impl Tally {
    fn observe(&mut self, fig: &GroupFigure, alerts: &[Alert]) {
        let listed = self.groups.contains_key(&fig.key);
        if !listed
            && alerts.is_empty()
            && !reaches(fig.duration_us, fig.single.lowest(), self.bound)
            && !reaches(fig.measure_us, fig.cumulative.lowest(), self.bound)
        {
            return;
        }
        let g = self.groups.entry(fig.key).or_insert_with(|| GroupTally {
            group: alert::group_string(&fig.key, fig.group_by, fig.name.as_deref()),
            names: BTreeSet::new(),
            level: None,
            alerts: 0,
            longest_us: 0,
            single: fig.single,
            measure_us: 0,
            cumulative: fig.cumulative,
            reasons: BTreeSet::new(),
        });
        if fig.duration_us >= g.longest_us {
            g.longest_us = fig.duration_us;
            g.single = fig.single;
        }
        if fig.measure_us >= g.measure_us {
            g.measure_us = fig.measure_us;
            g.cumulative = fig.cumulative;
        }
        if let Some(n) = &fig.name {
            g.names.insert(n.to_string());
        }
        for a in alerts {
            g.alerts += 1;
            g.level = g.level.max(Some(a.longconn.level));
            g.names.extend(a.destination.domain.iter().cloned());
            g.names.extend(a.longconn.domains.iter().cloned());
            g.reasons.extend(a.longconn.reasons.iter().cloned());
        }
    }

    fn finish(self, near: Option<f64>) -> Vec<GroupSummary> {
        // Key order first: the sort below is stable, so groups that tie keep it.
        let mut groups: Vec<(GroupKey, GroupTally)> = self.groups.into_iter().collect();
        groups.sort_unstable_by_key(|(k, _)| *k);
        let mut out: Vec<GroupSummary> = groups
            .into_iter()
            .map(|(_, g)| g)
            .filter_map(|g| {
                let close = near.and_then(|f| {
                    let s =
                        next_level(g.longest_us, &g.single).map(|(l, x)| (Trigger::Single, l, x));
                    let c = next_level(g.measure_us, &g.cumulative)
                        .map(|(l, x)| (Trigger::Cumulative, l, x));
                    [s, c]
                        .into_iter()
                        .flatten()
                        .filter(|(_, _, x)| *x >= f)
                        .max_by(|a, b| a.2.total_cmp(&b.2))
                        .map(|(trigger, level, fraction)| Near {
                            trigger,
                            level,
                            fraction,
                        })
                });
                if g.alerts == 0 && close.is_none() {
                    return None;
                }
                let (source, destination) = g.group.split_once('>').unwrap_or(("", &g.group));
                Some(GroupSummary {
                    source: source.parse().ok()?,
                    destination: destination.to_string(),
                    names: g.names.into_iter().collect(),
                    level: g.level,
                    alerts: g.alerts,
                    longest_seconds: alert::secs(g.longest_us),
                    measure_seconds: alert::secs(g.measure_us),
                    reasons: g.reasons.into_iter().collect(),
                    near: close,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.level
                .cmp(&a.level)
                .then(b.measure_seconds.total_cmp(&a.measure_seconds))
                .then(b.longest_seconds.total_cmp(&a.longest_seconds))
        });
        out
    }
}

/// The lowest level whose threshold `us` did not reach, and `us` over that threshold.
fn next_level(us: i64, th: &Thresholds) -> Option<(Level, f64)> {
    Level::ALL.iter().find_map(|&l| {
        th.threshold(l)
            .filter(|&t| us < t && t > 0)
            .map(|t| (l, us as f64 / t as f64))
    })
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
    replay_with(config, inputs, kind, ReplayOptions::default(), out, err)
}

/// [`replay`] with the tuning help of `opts` (see the module doc); the alerts on `out` are the same.
pub fn replay_with(
    config: &Config,
    inputs: &[InputPath],
    kind: Option<SourceKind>,
    opts: ReplayOptions<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<ReplaySummary> {
    let mut detectors = vec![Detector::new(&config.detector())];
    if let Some(other) = opts.compare {
        detectors.push(Detector::new(&other.detector()));
    }
    if inputs
        .iter()
        .any(|i| kind.unwrap_or_else(|| i.kind()).is_interim())
    {
        detectors.iter_mut().for_each(Detector::expect_interim);
    }
    let mut tally = Tally {
        bound: opts.near.unwrap_or(1.0),
        groups: Default::default(),
    };
    // With `compare`: every alert of each config, as (raised by, alert, group).
    let mut raised: [Vec<Difference>; 2] = [Vec::new(), Vec::new()];
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
    let popts = crate::detector::parse_options();
    std::thread::scope(|scope| -> io::Result<()> {
        // Every reader starts now: the conn files are read and parsed while the context files open.
        let mut readers = Vec::with_capacity(contexts.len());
        for &(file, input, k) in &contexts {
            let (tx, rx) = pipeline::channel(pipeline::CONTEXT_BATCH);
            std::thread::Builder::new()
                .name("replay-context".into())
                .spawn_scoped(scope, move || pipeline::read_context(file, input, k, tx))?;
            readers.push((file, input, rx));
        }
        let (tx, conn_batches) = pipeline::channel(pipeline::CONN_BATCH);
        let conns = &conns;
        std::thread::Builder::new()
            .name("replay-conn".into())
            .spawn_scoped(scope, move || pipeline::read_conn(conns, popts, tx))?;
        let mut merge = Vec::new();
        for (file, input, batches) in readers {
            summary.files += 1;
            let name = input.display();
            let mut stream = ContextStream {
                file,
                name,
                batches,
                batch: VecDeque::new(),
                next: None,
            };
            match stream.pop() {
                Some(ContextItem::Start { opened: Err(e), .. }) => {
                    writeln!(err, "longconn replay: {}: {e}", stream.name)?;
                    summary.file_errors.push(format!("{}: {e}", stream.name));
                }
                // A reader always starts with `Start`; without it, it stopped (its panic ends the replay).
                _ => {
                    stream.advance(&mut summary, &mut shown, err)?;
                    merge.push(stream);
                }
            }
        }
        // The largest conn record end seen: context records up to it come first.
        let mut written = f64::NEG_INFINITY;
        // The current conn file: index, name, kind; None when it did not open.
        let mut current: Option<(usize, String, SourceKind)> = None;
        while let Some(batch) = conn_batches.next() {
            for (at, item) in batch.iter().enumerate() {
                prefetch(&detectors, &batch, at);
                match item {
                    ConnItem::Start { file, opened } => {
                        summary.files += 1;
                        let input = &inputs[*file];
                        let name = input.display();
                        current = None;
                        match opened {
                            Ok(()) => {
                                let file_kind = kind.unwrap_or_else(|| input.kind());
                                current = Some((*file, name, file_kind));
                            }
                            Err(e) => {
                                writeln!(err, "longconn replay: {name}: {e}")?;
                                summary.file_errors.push(format!("{name}: {e}"));
                            }
                        }
                    }
                    ConnItem::Record(rec) => {
                        let Some((_, _, file_kind)) = &current else {
                            continue;
                        };
                        if !merge.is_empty() {
                            if let Some(end) = rec.end() {
                                written = written.max(end);
                            }
                            feed_context(
                                &mut merge,
                                &mut detectors,
                                written,
                                &mut summary,
                                &mut shown,
                                err,
                            )?;
                        }
                        for (i, detector) in detectors.iter_mut().enumerate() {
                            detector.process(rec, *file_kind, &mut alerts);
                            let fig = detector.last_figure();
                            if i == 0 {
                                if let Some(fig) = fig {
                                    tally.observe(fig, &alerts);
                                }
                            }
                            if opts.compare.is_some() {
                                let by = [RaisedBy::Config, RaisedBy::Compare][i];
                                let group = fig.map_or_else(String::new, |f| {
                                    alert::group_string(&f.key, f.group_by, f.name.as_deref())
                                });
                                raised[i].extend(
                                    alerts.iter().map(|a| Difference::of(a, group.clone(), by)),
                                );
                            }
                            if i == 0 {
                                for a in &alerts {
                                    writeln!(out, "{}", a.to_json())?;
                                }
                            }
                            alerts.clear();
                        }
                    }
                    ConnItem::Skipped { line_no, reason } => {
                        if let Some((file, name, _)) = &current {
                            let at = (*file, name.as_str(), *line_no);
                            skipped_line(&mut summary, &mut shown, err, at, reason)?;
                        }
                    }
                    ConnItem::ReadError { line_no, error } => {
                        if let Some((_, name, _)) = &current {
                            writeln!(err, "longconn replay: {name}: line {line_no}: {error}")?;
                            summary.file_errors.push(format!("{name}: {error}"));
                        }
                    }
                }
            }
            conn_batches.recycle(batch);
        }
        Ok(())
    })?;
    summary.stats = detectors[0].stats();
    summary.context = detectors[0].context_stats();
    summary.groups = tally.finish(opts.near);
    // Freeing every group takes a tenth of a large replay's time and changes nothing: it is done on a
    // thread of its own, which the process does not wait for when it exits.
    let _ = std::thread::Builder::new()
        .name("replay-free".into())
        .spawn(move || drop(detectors));
    let [a, b] = raised;
    let ids =
        |v: &[Difference]| -> HashSet<String> { v.iter().map(|d| d.event_id.clone()).collect() };
    let (in_a, in_b) = (ids(&a), ids(&b));
    summary.differences = a
        .into_iter()
        .filter(|d| !in_b.contains(&d.event_id))
        .chain(b.into_iter().filter(|d| !in_a.contains(&d.event_id)))
        .collect();
    Ok(summary)
}

/// Before the detectors take `batch[at]`: prefetch hints for the records ahead
/// ([`crate::detector::PREFETCH_AHEAD`]), so that the cache misses of those records' groups overlap the
/// work on this one.
fn prefetch(detectors: &[Detector], batch: &VecDeque<ConnItem>, at: usize) {
    for (ahead, stage) in crate::detector::PREFETCH_AHEAD {
        if let Some(ConnItem::Record(rec)) = batch.get(at + ahead) {
            for d in detectors {
                d.prefetch(rec, stage);
            }
        }
    }
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

/// One context file being merged in, read by its own thread.
struct ContextStream {
    file: usize,
    name: String,
    batches: Batches<ContextItem>,
    /// The rest of the batch being read.
    batch: VecDeque<ContextItem>,
    /// The next record, None at the end.
    next: Option<ContextRecord>,
}

impl ContextStream {
    /// The next item of the file, None at its end.
    fn pop(&mut self) -> Option<ContextItem> {
        loop {
            if let Some(item) = self.batch.pop_front() {
                return Some(item);
            }
            let next = self.batches.next()?;
            let done = std::mem::replace(&mut self.batch, next);
            self.batches.recycle(done);
        }
    }

    /// Reads up to the next record, counting skipped lines as conn lines are.
    fn advance(
        &mut self,
        summary: &mut ReplaySummary,
        shown: &mut SkippedLines<usize>,
        err: &mut dyn Write,
    ) -> io::Result<()> {
        self.next = None;
        loop {
            match self.pop() {
                None | Some(ContextItem::Start { .. }) => return Ok(()),
                Some(ContextItem::ReadError { line_no, error }) => {
                    writeln!(
                        err,
                        "longconn replay: {}: line {line_no}: {error}",
                        self.name
                    )?;
                    summary.file_errors.push(format!("{}: {error}", self.name));
                    return Ok(());
                }
                Some(ContextItem::Record(r)) => {
                    self.next = Some(r);
                    return Ok(());
                }
                Some(ContextItem::Skipped { line_no, reason }) => {
                    let at = (self.file, self.name.as_str(), line_no);
                    skipped_line(summary, shown, err, at, &reason)?;
                }
            }
        }
    }
}

/// Feeds the detector every context record written up to `until` (seconds), oldest first.
fn feed_context(
    streams: &mut [ContextStream],
    detectors: &mut [Detector],
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
            detectors.iter_mut().for_each(|d| d.process_context(&r));
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
    reason: &SkipReason,
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

/// Seconds as the tables show them: "4h 10m 0s".
fn human_secs(s: f64) -> String {
    alert::human((s * 1e6).round() as i64)
}

/// Rows padded to their columns' widths, two spaces apart, each line indented by two.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut t = String::new();
    for r in rows {
        let mut line = String::from(" ");
        for (v, w) in r.iter().zip(&widths) {
            line.push_str(&format!(" {v:<w$}"));
        }
        t.push_str(line.trim_end());
        t.push('\n');
    }
    t
}

fn or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// The per-group summary for stderr, after [`summary_table`]: one row per group of
/// [`ReplaySummary::groups`].
pub fn groups_table(s: &ReplaySummary, near: Option<f64>) -> String {
    let alerted = s.groups.iter().filter(|g| g.alerts > 0).count();
    let mut t = format!("longconn replay groups: {alerted} alerted");
    if let Some(f) = near {
        let close = s.groups.iter().filter(|g| g.alerts == 0).count();
        t.push_str(&format!(", {close} near only (at least {f} of a level)"));
    }
    t.push('\n');
    if s.groups.is_empty() {
        return t;
    }
    let mut rows = vec![[
        "source",
        "destination",
        "level",
        "alerts",
        "longest",
        "measure",
        "near",
        "reasons",
        "names",
    ]
    .map(String::from)
    .to_vec()];
    for g in &s.groups {
        rows.push(vec![
            g.source.to_string(),
            g.destination.clone(),
            g.level.map_or("-", Level::name).to_string(),
            g.alerts.to_string(),
            human_secs(g.longest_seconds),
            human_secs(g.measure_seconds),
            g.near.as_ref().map_or_else(
                || "-".to_string(),
                |n| format!("{} {:.2} {}", n.level.name(), n.fraction, n.trigger.name()),
            ),
            or_dash(&g.reasons),
            or_dash(&g.names),
        ]);
    }
    t.push_str(&columns(&rows));
    t
}

/// The alerts only one config raised, for stderr; `config` and `compare` name the two files.
pub fn differences_table(s: &ReplaySummary, config: &str, compare: &str) -> String {
    let count = |by| s.differences.iter().filter(|d| d.raised_by == by).count();
    let mut t = format!(
        "longconn replay compare: {} alerts only with {config}, {} only with {compare}\n",
        count(RaisedBy::Config),
        count(RaisedBy::Compare)
    );
    if s.differences.is_empty() {
        return t;
    }
    let mut rows = vec![[
        "only with",
        "event.id",
        "group",
        "trigger",
        "level",
        "measure",
        "threshold",
    ]
    .map(String::from)
    .to_vec()];
    for d in &s.differences {
        rows.push(vec![
            match d.raised_by {
                RaisedBy::Config => config.to_string(),
                RaisedBy::Compare => compare.to_string(),
            },
            d.event_id.clone(),
            d.group.clone(),
            d.trigger.name().to_string(),
            d.level.name().to_string(),
            human_secs(d.measure_seconds),
            human_secs(d.threshold_seconds),
        ]);
    }
    t.push_str(&columns(&rows));
    t
}

/// The groups and the differences as JSON lines: `{"kind":"group",...}` per [`GroupSummary`],
/// `{"kind":"difference",...}` per [`Difference`].
pub fn summary_json(s: &ReplaySummary) -> String {
    let mut t = String::new();
    let tagged = |kind: &str, v: serde_json::Value| {
        let mut m = serde_json::Map::new();
        m.insert("kind".into(), kind.into());
        if let serde_json::Value::Object(o) = v {
            m.extend(o);
        }
        serde_json::Value::Object(m).to_string()
    };
    for g in &s.groups {
        let v = serde_json::to_value(g).unwrap_or_default();
        t.push_str(&tagged("group", v));
        t.push('\n');
    }
    for d in &s.differences {
        let v = serde_json::to_value(d).unwrap_or_default();
        t.push_str(&tagged("difference", v));
        t.push('\n');
    }
    t
}
