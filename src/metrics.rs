//! Prometheus metrics: the names, the handles the pipeline updates, and the optional HTTP endpoint
//! (`[metrics] listen = "127.0.0.1:9787"`, off by default).
//!
//! Recording goes through the `metrics` facade crate; [`serve`] installs the Prometheus recorder from
//! `metrics-exporter-prometheus` and answers `GET /metrics` over HTTP/1 with `hyper` (no web framework).
//! The exporter's own `http-listener` is not used: it answers every path with the metrics and has no hook
//! to refresh the scrape-time figures below or bound the connections.
//! Without `[metrics]` no recorder is installed and every handle is a no-op, so the hot path costs nothing.
//! Handles are resolved once per source ([`SourceMetrics`]) and incremented per poll, never per record
//! with a label lookup. Process figures (`process_*`, read by the `metrics-process` crate) and the
//! checkpoint age are set at scrape time.
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
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds` | | | from `/proc/self`, read by `metrics-process` |
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

pub mod config;

use crate::detector::DetectorStats;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
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
    use crate::rules::Level;
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
pub fn outputs(outputs: Vec<(String, std::sync::Arc<crate::output::delivery::OutputStats>)>) {
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
                        answer(stream, handle).await;
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
/// Longest request head read; a scrape's is a few hundred bytes (8 KiB is also hyper's least).
const MAX_REQUEST: usize = 8 * 1024;
/// For the request head to arrive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// For the whole exchange, so that a client that does not read its answer does not keep a slot.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers one HTTP/1.x request and closes the connection.
async fn answer(stream: TcpStream, handle: PrometheusHandle) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let response = respond(req.method(), req.uri().path(), &handle);
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .max_buf_size(MAX_REQUEST)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!("metrics request failed: {e}"),
        Err(_) => debug!("metrics request timed out"),
    }
}

/// The answer to `method path`: the metrics at `/metrics`, a pointer to them at `/`.
fn respond(method: &Method, path: &str, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (method, path) {
        (&Method::GET, "/metrics") => {
            process_figures();
            handle.run_upkeep();
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                handle.render(),
            )
        }
        (&Method::GET, "/") => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "longconn: metrics at /metrics\n".to_string(),
        ),
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    response
}

/// Sets the scrape-time gauges: checkpoint age and the process figures (`metrics-process`).
fn process_figures() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let last = LAST_CHECKPOINT_MS.load(Ordering::Relaxed);
    if last > 0 {
        let age = now.as_millis().saturating_sub(u128::from(last)) as f64 / 1000.0;
        ::metrics::gauge!(CHECKPOINT_AGE).set(age);
    }
    // Each figure is None where the system does not tell (not Linux, /proc/stat hidden by ProcSubset=pid).
    let p = metrics_process::collector::collect();
    if let Some(cpu) = p.cpu_seconds_total {
        // A gauge, to keep the fraction of a second (the facade's counters are integers).
        ::metrics::gauge!("process_cpu_seconds_total").set(cpu);
    }
    if let Some(rss) = p.resident_memory_bytes {
        ::metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
    }
    if let Some(fds) = p.open_fds {
        ::metrics::gauge!("process_open_fds").set(fds as f64);
    }
    // 0 is the crate's "unlimited": no figure, as before.
    if let Some(max) = p.max_fds.filter(|m| *m > 0) {
        ::metrics::gauge!("process_max_fds").set(max as f64);
    }
    let served = SERVE_START_MS.load(Ordering::Relaxed);
    let start = p
        .start_time_seconds
        .map(|s| s as f64)
        .or_else(|| (served > 0).then(|| served as f64 / 1000.0));
    if let Some(start) = start {
        ::metrics::gauge!("process_start_time_seconds").set(start);
    }
}

#[cfg(test)]
mod tests {
    //! The answers by method and path; the endpoint itself is tested end to end in tests/metrics.rs.
    use super::*;

    #[test]
    fn routes() {
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let r = respond(&Method::GET, "/metrics", &handle);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(respond(&Method::GET, "/", &handle).status(), StatusCode::OK);
        assert_eq!(
            respond(&Method::GET, "/nope", &handle).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&Method::POST, "/metrics", &handle).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let p = metrics_process::collector::collect();
        assert!(p.resident_memory_bytes.is_some_and(|r| r > 0), "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
        assert!(p.cpu_seconds_total.is_some(), "{p:?}");
        assert!(p.max_fds.is_some(), "{p:?}");
        assert!(
            p.start_time_seconds.is_some_and(|t| t > 1_000_000_000),
            "{p:?}"
        );
    }
}
