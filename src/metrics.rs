//! Prometheus metrics: the names, the handles the pipeline updates, and the optional HTTP endpoint
//! (`[metrics] listen = "127.0.0.1:9787"`, off by default).
//!
//! Recording goes through the `metrics` facade crate; [`serve`] installs the Prometheus recorder from
//! `metrics-exporter-prometheus` and answers `GET /metrics` with a small tokio handler (no web framework).
//! Without `[metrics]` no recorder is installed and every handle is a no-op, so the hot path costs nothing.
//! Handles are resolved once per source ([`SourceMetrics`]) and incremented per poll, never per record
//! with a label lookup. Process figures (`process_*`) and the checkpoint age are read at scrape time.
//!
//! Every series, with its labels (`source` is the configured path):
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `longconn_records_read_total` | counter | source | rows parsed into records |
//! | `longconn_records_used_total` | counter | source | records that reached the window (not filtered) |
//! | `longconn_records_skipped_total` | counter | source, reason | lines or records not used; parse reasons (`column_count`, `bad_value`, `truncated`, ...) and detector reasons (`no_timestamp`, `no_address`, `filter_never`, `filter_direction`, `filter_state`, `filter_allow`) |
//! | `longconn_source_lag_bytes` | gauge | source | bytes written to the source's files and not read yet |
//! | `longconn_source_lag_seconds` | gauge | source | for how long the source has not been read to its end (0 when caught up) |
//! | `longconn_source_up` | gauge | source | 1 while the source's directory and files can be read (also while its file does not exist yet), 0 while they cannot (permission denied, I/O error, symlink loop) |
//! | `longconn_nul_bytes_skipped_total` | counter | source | NUL bytes skipped at line starts (a writer without O_APPEND after a copytruncate) |
//! | `longconn_groups_tracked` | gauge | | groups in the window |
//! | `longconn_groups_expired_total` | counter | | groups that left the window |
//! | `longconn_groups_evicted_total` | counter | | groups evicted by `window.max_groups` |
//! | `longconn_alerts_total` | counter | trigger, level | alerts raised (`single`/`cumulative`, `low`..`critical`) |
//! | `longconn_checkpoint_age_seconds` | gauge | | time since the last successful checkpoint |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds` | | | from `/proc/self` |
//!
//! | `longconn_output_deliveries_total` | counter | output | alerts the output accepted |
//! | `longconn_output_failures_total` | counter | output, kind | `transient`: failed attempts (retried with backoff); `permanent`: alerts set aside |
//! | `longconn_spool_bytes` | gauge | | bytes the spool's segments take |
//! | `longconn_spool_records_lost_total` | counter | output | spooled alerts the output will never deliver: damaged in the spool (checksum or shape wrong) and skipped |
//!
//! The output figures are copied every second from each delivery task's `OutputStats` ([`outputs`]); new
//! figures elsewhere use the `metrics` macros (`::metrics::counter!(NAME, "label" => value)`) and a line in
//! [`describe`]. A series appears on the endpoint the first time it is touched, so nothing is reported that
//! was not counted.

use crate::detector::DetectorStats;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

pub const RECORDS_READ: &str = "longconn_records_read_total";
pub const RECORDS_USED: &str = "longconn_records_used_total";
pub const RECORDS_SKIPPED: &str = "longconn_records_skipped_total";
pub const SOURCE_LAG_BYTES: &str = "longconn_source_lag_bytes";
pub const SOURCE_LAG_SECONDS: &str = "longconn_source_lag_seconds";
pub const SOURCE_UP: &str = "longconn_source_up";
pub const NUL_BYTES: &str = "longconn_nul_bytes_skipped_total";
pub const GROUPS_TRACKED: &str = "longconn_groups_tracked";
pub const GROUPS_EXPIRED: &str = "longconn_groups_expired_total";
pub const GROUPS_EVICTED: &str = "longconn_groups_evicted_total";
pub const ALERTS: &str = "longconn_alerts_total";
pub const CHECKPOINT_AGE: &str = "longconn_checkpoint_age_seconds";
/// Alerts an output accepted (label `output`), from the delivery task's `OutputStats`.
pub const OUTPUT_DELIVERIES: &str = "longconn_output_deliveries_total";
/// Failed deliveries (labels `output`, `kind`): `transient` attempts are retried with backoff, `permanent`
/// counts alerts set aside after a permanent refusal.
pub const OUTPUT_FAILURES: &str = "longconn_output_failures_total";
/// Bytes the spool's segments take (alerts not yet delivered to every output, until a segment is freed).
pub const SPOOL_BYTES: &str = "longconn_spool_bytes";
/// Spooled alerts an output will never deliver (label `output`): damaged records skipped by its reader.
pub const SPOOL_RECORDS_LOST: &str = "longconn_spool_records_lost_total";

/// Reads one counter of [`DetectorStats`].
type StatField = fn(&DetectorStats) -> u64;

/// Detector reasons for not using a record, in the `reason` label.
const DETECTOR_SKIPS: [(&str, StatField); 6] = [
    ("no_timestamp", |s| s.skipped_no_ts),
    ("no_address", |s| s.skipped_no_addr),
    ("filter_never", |s| s.filtered_never),
    ("filter_direction", |s| s.filtered_direction),
    ("filter_state", |s| s.filtered_state),
    ("filter_allow", |s| s.filtered_allow),
];

/// Milliseconds since the epoch of the last successful checkpoint; 0 before the first.
static LAST_CHECKPOINT_MS: AtomicU64 = AtomicU64::new(0);

/// When [`serve`] ran (the daemon's first step): the start time where /proc/stat is hidden (ProcSubset=pid).
static SERVE_START_MS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Gives every series its help text (harmless without a recorder).
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, Unit};
    describe_counter!(RECORDS_READ, "Rows parsed into records, per source.");
    describe_counter!(
        RECORDS_USED,
        "Records that reached the window (not filtered), per source."
    );
    describe_counter!(
        RECORDS_SKIPPED,
        "Lines or records not used, per source and reason."
    );
    describe_gauge!(
        SOURCE_LAG_BYTES,
        Unit::Bytes,
        "Bytes written to the source and not read yet."
    );
    describe_gauge!(
        SOURCE_LAG_SECONDS,
        Unit::Seconds,
        "For how long the source has not been read to its end (0 when caught up)."
    );
    describe_gauge!(
        SOURCE_UP,
        "1 while the source can be read (or its file does not exist yet), 0 while reading it fails."
    );
    describe_counter!(
        NUL_BYTES,
        Unit::Bytes,
        "NUL bytes skipped at line starts (a writer without O_APPEND after a truncation)."
    );
    describe_gauge!(GROUPS_TRACKED, "Groups in the window.");
    describe_counter!(GROUPS_EXPIRED, "Groups that left the window.");
    describe_counter!(
        GROUPS_EVICTED,
        "Groups evicted because window.max_groups was reached."
    );
    describe_counter!(ALERTS, "Alerts raised, per trigger and level.");
    describe_gauge!(
        CHECKPOINT_AGE,
        Unit::Seconds,
        "Time since the last successful checkpoint."
    );
    describe_counter!(OUTPUT_DELIVERIES, "Alerts an output accepted.");
    describe_counter!(
        OUTPUT_FAILURES,
        "Failed deliveries: transient (retried) attempts, permanent (set aside) alerts."
    );
    describe_gauge!(SPOOL_BYTES, Unit::Bytes, "Bytes the spool's segments take.");
    describe_counter!(
        SPOOL_RECORDS_LOST,
        "Spooled alerts an output will never deliver: damaged in the spool and skipped."
    );
    describe_gauge!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "User and system CPU time used."
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory."
    );
    describe_gauge!("process_open_fds", "Open file descriptors.");
    describe_gauge!("process_max_fds", "Limit on open file descriptors.");
    describe_gauge!(
        "process_start_time_seconds",
        Unit::Seconds,
        "Start time, seconds since the epoch."
    );
}

/// The handles of one source, resolved once.
pub struct SourceMetrics {
    label: String,
    read: ::metrics::Counter,
    used: ::metrics::Counter,
    lag_bytes: ::metrics::Gauge,
    lag_seconds: ::metrics::Gauge,
    up: ::metrics::Gauge,
}

impl SourceMetrics {
    pub fn new(source: &str) -> SourceMetrics {
        let label = source.to_string();
        SourceMetrics {
            read: ::metrics::counter!(RECORDS_READ, "source" => label.clone()),
            used: ::metrics::counter!(RECORDS_USED, "source" => label.clone()),
            lag_bytes: ::metrics::gauge!(SOURCE_LAG_BYTES, "source" => label.clone()),
            lag_seconds: ::metrics::gauge!(SOURCE_LAG_SECONDS, "source" => label.clone()),
            up: ::metrics::gauge!(SOURCE_UP, "source" => label.clone()),
            label,
        }
    }

    /// A line the parser skipped (rare: resolved on the spot).
    pub fn skipped(&self, reason: &'static str) {
        ::metrics::counter!(RECORDS_SKIPPED, "source" => self.label.clone(), "reason" => reason)
            .increment(1);
    }

    /// After one poll of this source: `records` read, and the detector's counters before and after.
    pub fn polled(&self, records: u64, before: &DetectorStats, after: &DetectorStats) {
        if records == 0 {
            return;
        }
        self.read.increment(records);
        self.used
            .increment(after.records_used.saturating_sub(before.records_used));
        for (reason, get) in DETECTOR_SKIPS {
            let n = get(after).saturating_sub(get(before));
            if n > 0 {
                ::metrics::counter!(RECORDS_SKIPPED, "source" => self.label.clone(), "reason" => reason)
                    .increment(n);
            }
        }
    }

    /// Whether the source can be read.
    pub fn up(&self, up: bool) {
        self.up.set(if up { 1.0 } else { 0.0 });
    }

    /// NUL bytes skipped at line starts.
    pub fn nul_bytes(&self, n: u64) {
        ::metrics::counter!(NUL_BYTES, "source" => self.label.clone()).increment(n);
    }

    pub fn lag(&self, bytes: u64, behind: Duration) {
        self.lag_bytes.set(bytes as f64);
        self.lag_seconds.set(behind.as_secs_f64());
    }
}

/// Publishes the detector's window and alert figures (called every second or so).
pub fn detector(stats: &DetectorStats) {
    use crate::config::Level;
    ::metrics::gauge!(GROUPS_TRACKED).set(stats.groups_tracked as f64);
    ::metrics::counter!(GROUPS_EXPIRED).absolute(stats.groups_expired);
    ::metrics::counter!(GROUPS_EVICTED).absolute(stats.evictions);
    for level in Level::ALL {
        let i = level as usize;
        for (trigger, counts) in [
            ("single", &stats.alerts_single),
            ("cumulative", &stats.alerts_cumulative),
        ] {
            ::metrics::counter!(ALERTS, "trigger" => trigger, "level" => level.name())
                .absolute(counts[i]);
        }
    }
}

/// Copies each output's delivery counters (name, stats) into the metrics every second, for as long as the
/// runtime runs. Does nothing without a recorder.
pub fn outputs(outputs: Vec<(String, std::sync::Arc<crate::delivery::OutputStats>)>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            for (name, stats) in &outputs {
                let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
                ::metrics::counter!(OUTPUT_DELIVERIES, "output" => name.clone())
                    .absolute(get(&stats.delivered));
                ::metrics::counter!(OUTPUT_FAILURES, "output" => name.clone(), "kind" => "transient")
                    .absolute(get(&stats.transient_failures));
                ::metrics::counter!(OUTPUT_FAILURES, "output" => name.clone(), "kind" => "permanent")
                    .absolute(get(&stats.permanently_failed));
            }
        }
    });
}

/// Notes a successful checkpoint, for `longconn_checkpoint_age_seconds`.
pub fn checkpoint_saved() {
    LAST_CHECKPOINT_MS.store(now_ms(), Ordering::Relaxed);
}

/// The running endpoint; dropping it does not stop the server (it ends with the runtime).
pub struct Endpoint {
    pub addr: SocketAddr,
}

/// Installs the Prometheus recorder and serves `GET /metrics` on `listen`. Call before the pipeline makes
/// its handles, inside a tokio runtime. Fails if the address cannot be bound or a recorder is installed.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<Endpoint> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("metrics.listen {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    SERVE_START_MS.store(now_ms(), Ordering::Relaxed);
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("metrics recorder: {e}"))?;
    describe();
    info!(%addr, "metrics endpoint listening");
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    // Bounded: past MAX_CLIENTS at once, new connections are closed unanswered.
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        debug!(%peer, "metrics: too many clients, connection closed");
                        continue;
                    };
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, &handle).await {
                            debug!("metrics request failed: {e}");
                        }
                        drop(slot);
                    });
                }
                Err(e) => {
                    debug!("metrics accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(Endpoint { addr })
}

/// Connections served at once.
const MAX_CLIENTS: usize = 8;
/// Longest request head read; a scrape's is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers one HTTP/1.x request and closes the connection.
async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => {
            process_figures();
            handle.run_upkeep();
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                handle.render(),
            )
        }
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "longconn: metrics at /metrics\n".to_string(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Sets the scrape-time gauges: checkpoint age and the process figures from /proc/self.
fn process_figures() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let last = LAST_CHECKPOINT_MS.load(Ordering::Relaxed);
    if last > 0 {
        let age = now.as_millis().saturating_sub(u128::from(last)) as f64 / 1000.0;
        ::metrics::gauge!(CHECKPOINT_AGE).set(age);
    }
    let p = read_process();
    if let Some(cpu) = p.cpu_seconds {
        // A gauge, to keep the fraction of a second (the facade's counters are integers).
        ::metrics::gauge!("process_cpu_seconds_total").set(cpu);
    }
    if let Some(rss) = p.rss_bytes {
        ::metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
    }
    if let Some(fds) = p.open_fds {
        ::metrics::gauge!("process_open_fds").set(fds as f64);
    }
    if let Some(max) = p.max_fds {
        ::metrics::gauge!("process_max_fds").set(max as f64);
    }
    let served = SERVE_START_MS.load(Ordering::Relaxed);
    let start = p
        .start_time
        .or_else(|| (served > 0).then(|| served as f64 / 1000.0));
    if let Some(start) = start {
        ::metrics::gauge!("process_start_time_seconds").set(start);
    }
}

/// Figures of this process; each is None where /proc does not tell (not Linux, ProcSubset, ...).
#[derive(Debug, Default, PartialEq)]
pub struct ProcessFigures {
    pub cpu_seconds: Option<f64>,
    pub rss_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time: Option<f64>,
}

/// Reads [`ProcessFigures`] from /proc/self.
pub fn read_process() -> ProcessFigures {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields = stat.as_deref().and_then(stat_fields);
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    let field = |i: usize| -> Option<u64> { fields.as_ref()?.get(i)?.parse().ok() };
    let per_tick = |v: u64| (ticks > 0).then(|| v as f64 / ticks as f64);
    ProcessFigures {
        // After the command's closing parenthesis: utime is field 14, stime 15, starttime 22 (1-based),
        // i.e. indexes 11, 12 and 19 of what follows ") ".
        cpu_seconds: field(11).zip(field(12)).and_then(|(u, s)| per_tick(u + s)),
        rss_bytes: field(21)
            .zip(u64::try_from(page).ok())
            .map(|(pages, size)| pages * size),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
        max_fds: std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse().ok())
            }),
        start_time: field(19).and_then(per_tick).zip(boot).map(|(s, b)| b + s),
    }
}

/// The space-separated fields of /proc/self/stat after the command name (which may hold spaces).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

#[cfg(test)]
mod tests {
    //! /proc parsing; the endpoint itself is tested end to end in tests/metrics.rs.
    use super::*;

    #[test]
    fn stat_fields_skip_the_command() {
        let f = stat_fields("42 (a b) c) S 1 2 3").unwrap();
        assert_eq!(f, vec!["S", "1", "2", "3"]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let p = read_process();
        assert!(p.rss_bytes.is_some_and(|r| r > 0), "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
        assert!(p.cpu_seconds.is_some(), "{p:?}");
        assert!(p.max_fds.is_some(), "{p:?}");
        assert!(p.start_time.is_some_and(|t| t > 1e9), "{p:?}");
    }
}
