//! The daemon's configuration: TOML in, a typed and validated [`Config`] out.
//!
//! Loading runs in three steps, so that a user sees every mistake in one go rather than one per restart.
//! The text is parsed as TOML. The tree is walked against a schema of every known key, which reports each
//! unknown key and each value of the wrong TOML type with its dotted path (`source[0].path`,
//! `filter.internal[2]`) and drops it. What is left is deserialized into `RawConfig` (serde,
//! `deny_unknown_fields` at every level, a mirror of the file) and converted into [`Config`]: durations,
//! CIDRs and enum strings are parsed and the cross-field rules checked (levels strictly increasing, at
//! least one source, ...). All problems land in one [`ConfigErrors`]. Defaults are what a SOC wants out of
//! the box; `config/longconn.toml` lists each with its reason. Downstream code uses these types and never
//! re-checks them; [`Config::to_effective_toml`] prints the effective configuration (`longconn check`).

pub mod preflight;

use crate::detector::DetectorConfig;
use crate::rules::{
    Allow, CumulativeConfig, Direction, FilterConfig, Level, Levels, Match, Measure, Override,
    DEFAULT_INTERIM_TIMEOUT, DEFAULT_INTERNAL, DEFAULT_NEVER,
};
use crate::window::{GroupBy, WindowConfig};
use crate::zeek::SourceKind;
use ipnet::IpNet;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    Beginning,
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub path: PathBuf,
    pub start_at: StartAt,
    pub kind: SourceKind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    pub dir: PathBuf,
    pub checkpoint_interval: Duration,
}

/// `[metrics]`: the optional Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsConfig {
    /// Where to serve `GET /metrics`; None (the default) serves nothing.
    pub listen: Option<std::net::SocketAddr>,
}

/// One `[[output]]`. Every output has a unique `name` (its cursor in the spool, and its label in logs).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Stdout {
        name: String,
        batch: Batching,
    },
    File {
        name: String,
        path: PathBuf,
        fsync: FsyncPolicy,
        batch: Batching,
    },
    Syslog {
        name: String,
        syslog: SyslogConfig,
        batch: Batching,
    },
    /// Splunk HEC, Elasticsearch bulk or an NDJSON webhook; see `crate::output::http`.
    Http {
        name: String,
        http: Box<crate::output::http::HttpConfig>,
    },
}

impl Output {
    /// The output's unique name.
    pub fn name(&self) -> &str {
        match self {
            Output::Stdout { name, .. }
            | Output::File { name, .. }
            | Output::Syslog { name, .. }
            | Output::Http { name, .. } => name,
        }
    }

    /// How alerts are grouped for delivery.
    pub fn batching(&self) -> Batching {
        match self {
            Output::Stdout { batch, .. }
            | Output::File { batch, .. }
            | Output::Syslog { batch, .. } => *batch,
            Output::Http { http, .. } => Batching {
                size: http.batch_size,
                flush_interval: http.flush_interval,
            },
        }
    }
}

/// Batching of one output: at most `size` alerts per delivery. With a non-zero `flush_interval`, while alerts
/// keep coming a smaller batch waits until `flush_interval` after the previous delivery (an alert after a
/// quiet spell goes at once). Zero (the default) delivers at once; alerts that arrive while a delivery is in
/// flight form the next batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batching {
    pub size: usize,
    pub flush_interval: Duration,
}

pub const DEFAULT_BATCHING: Batching = Batching {
    size: 500,
    flush_interval: Duration::ZERO,
};

/// When the file output calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every alert.
    Always,
    /// After every delivered batch (default).
    Batch,
    /// Never (the OS writes back when it likes).
    Never,
}

const FSYNC: &[(&str, FsyncPolicy)] = &[
    ("always", FsyncPolicy::Always),
    ("batch", FsyncPolicy::Batch),
    ("never", FsyncPolicy::Never),
];

/// A syslog output (RFC 5424).
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogConfig {
    pub transport: SyslogTransport,
    /// Facility number (local0 = 16).
    pub facility: u8,
    /// Framing for TCP and TLS.
    pub framing: Framing,
    pub app_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SyslogTransport {
    Udp { address: String },
    Tcp { address: String },
    Tls { address: String, tls: TlsConfig },
    Unix { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub ca_file: PathBuf,
    /// (certificate chain, private key) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub server_name: String,
    pub verify_server_name: bool,
}

/// RFC 6587 framing on stream transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `LEN SP MSG` (default).
    OctetCounting,
    /// `MSG LF`.
    Newline,
}

const FRAMING: &[(&str, Framing)] = &[
    ("octet-counting", Framing::OctetCounting),
    ("newline", Framing::Newline),
];

const TRANSPORTS: &[&str] = &["udp", "tcp", "tls", "unix"];

/// Syslog facilities by name (RFC 5424 section 6.2.1).
pub const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// The `[spool]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Reading pauses when the spool takes this many bytes.
    pub max_bytes: u64,
}

pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;
/// The smallest `spool.max_bytes` accepted.
pub const MIN_SPOOL_MAX_BYTES: u64 = 64 * 1024;
/// The largest `spool.max_bytes` accepted: 1 TiB, far beyond any sensor's alert backlog.
pub const MAX_SPOOL_MAX_BYTES: u64 = 1 << 40;

// Upper bounds of the other values, each documented next to its key in `config/longconn.toml`. A value
// beyond them is a typo (an extra zero, hours for seconds), and some would overflow a timer at run time.

const DAY: u64 = 24 * 3600;
/// `state.checkpoint_interval`: a day; more would mean a day of logs read again after a crash.
pub const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(DAY);
/// `window.length`: 30 days; the window's state grows with it.
pub const MAX_WINDOW_LENGTH: Duration = Duration::from_secs(30 * DAY);
/// `window.max_groups`: 100 million groups (some tens of GiB of memory).
pub const MAX_MAX_GROUPS: usize = 100_000_000;
/// Every level threshold (`single`, `cumulative`, `override`): a year.
pub const MAX_LEVEL: Duration = Duration::from_secs(365 * DAY);
/// `cumulative.realert_after`: a year.
pub const MAX_REALERT_AFTER: Duration = Duration::from_secs(365 * DAY);
/// `cumulative.interim_timeout`: 30 days (the interim log packages report at least every 3 days).
pub const MAX_INTERIM_TIMEOUT: Duration = Duration::from_secs(30 * DAY);
/// An output's `flush_interval`, `timeout` and `ack_timeout`: an hour.
pub const MAX_OUTPUT_WAIT: Duration = Duration::from_secs(3600);

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub sensor_name: String,
    pub sources: Vec<Source>,
    pub state: StateConfig,
    pub metrics: MetricsConfig,
    pub window: WindowConfig,
    pub single: Levels,
    pub cumulative: CumulativeConfig,
    pub filter: FilterConfig,
    pub allow: Vec<Allow>,
    pub overrides: Vec<Override>,
    pub outputs: Vec<Output>,
    pub spool: SpoolConfig,
}

impl Config {
    /// What the detector reads: the window, the rules, the sensor name and the kinds of the sources.
    pub fn detector(&self) -> DetectorConfig {
        DetectorConfig {
            sensor_name: self.sensor_name.clone(),
            window: self.window.clone(),
            single: self.single.clone(),
            cumulative: self.cumulative.clone(),
            filter: self.filter.clone(),
            allow: self.allow.clone(),
            overrides: self.overrides.clone(),
            source_kinds: self.sources.iter().map(|s| s.kind).collect(),
            context: Default::default(),
        }
    }
}

/// Where `run` and `check` look for the config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/longconn/longconn.toml";

/// One problem in a config file: the dotted key it concerns (`window.group_by`, `source[0].path`; empty
/// for problems with the file as a whole) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_error(.key, .reason))]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn display_error(key: &str, reason: &str) -> String {
    if key.is_empty() {
        reason.to_string()
    } else {
        format!("{key}: {reason}")
    }
}

/// Every problem found in a config, in file order as far as it is known. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_all(.errors))]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

fn display_all(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigErrors {
    /// Whether some error concerns exactly `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.errors.iter().any(|e| e.key == key)
    }
}

// ---------------------------------------------------------------------------------------------------------
// The schema: which keys exist where and which TOML type each one has. It mirrors `RawConfig` (a test
// checks that a file using every key deserializes), and exists so that all unknown or mistyped keys are
// reported at once, each with its path; serde alone stops at the first.

/// The TOML shape of one key.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Str,
    Int,
    Bool,
    StrList,
    Table(&'static [(&'static str, Shape)]),
    TableList(&'static [(&'static str, Shape)]),
}

const LEVEL_KEYS: &[(&str, Shape)] = &[
    ("low", Shape::Str),
    ("medium", Shape::Str),
    ("high", Shape::Str),
    ("critical", Shape::Str),
];
const LEVELS: Shape = Shape::Table(LEVEL_KEYS);

/// Every key a config file may hold, top level first.
const SCHEMA: &[(&str, Shape)] = &[
    ("sensor", Shape::Table(&[("name", Shape::Str)])),
    (
        "source",
        Shape::TableList(&[
            ("path", Shape::Str),
            ("start_at", Shape::Str),
            ("kind", Shape::Str),
        ]),
    ),
    (
        "state",
        Shape::Table(&[("dir", Shape::Str), ("checkpoint_interval", Shape::Str)]),
    ),
    ("metrics", Shape::Table(&[("listen", Shape::Str)])),
    (
        "window",
        Shape::Table(&[
            ("length", Shape::Str),
            ("group_by", Shape::Str),
            ("max_groups", Shape::Int),
        ]),
    ),
    ("single", Shape::Table(&[("levels", LEVELS)])),
    (
        "cumulative",
        Shape::Table(&[
            ("levels", LEVELS),
            ("realert_after", Shape::Str),
            ("measure", Shape::Str),
            ("interim_timeout", Shape::Str),
        ]),
    ),
    (
        "filter",
        Shape::Table(&[
            ("internal", Shape::StrList),
            ("directions", Shape::StrList),
            ("never", Shape::StrList),
            ("always", Shape::StrList),
            ("ignore_states", Shape::StrList),
        ]),
    ),
    (
        "allow",
        Shape::TableList(&[
            ("src", Shape::Str),
            ("dst", Shape::Str),
            ("port", Shape::Int),
            ("proto", Shape::Str),
            ("comment", Shape::Str),
        ]),
    ),
    (
        "override",
        Shape::TableList(&[
            ("src", Shape::Str),
            ("dst", Shape::Str),
            ("port", Shape::Int),
            ("proto", Shape::Str),
            ("single", LEVELS),
            ("cumulative", LEVELS),
        ]),
    ),
    (
        "output",
        Shape::TableList(&[
            ("type", Shape::Str),
            ("name", Shape::Str),
            ("path", Shape::Str),
            ("fsync", Shape::Str),
            ("batch_size", Shape::Int),
            ("flush_interval", Shape::Str),
            ("transport", Shape::Str),
            ("address", Shape::Str),
            ("facility", Shape::Str),
            ("framing", Shape::Str),
            ("ca_file", Shape::Str),
            ("client_cert", Shape::Str),
            ("client_key", Shape::Str),
            ("server_name", Shape::Str),
            ("verify_server_name", Shape::Bool),
            ("app_name", Shape::Str),
        ]),
    ),
    ("spool", Shape::Table(&[("max_bytes", Shape::Int)])),
];

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Reports every key of `table` that `fields` does not know or whose value has the wrong type, and
/// removes it, so that what remains deserializes into `RawConfig`.
fn check_table(
    table: &mut toml::Table,
    fields: &[(&str, Shape)],
    prefix: &str,
    errs: &mut Vec<ConfigError>,
) {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let path = join_key(prefix, &key);
        let Some(shape) = fields.iter().find(|(name, _)| *name == key).map(|f| f.1) else {
            let known: Vec<&str> = fields.iter().map(|f| f.0).collect();
            errs.push(err(
                &path,
                format!("unknown key (expected one of: {})", known.join(", ")),
            ));
            table.remove(&key);
            continue;
        };
        let keep = match table.get_mut(&key) {
            Some(value) => check_value(value, shape, &path, errs),
            None => true,
        };
        if !keep {
            table.remove(&key);
        }
    }
}

/// Checks one value against its shape; false if it must be dropped (the problem is already reported).
fn check_value(
    value: &mut toml::Value,
    shape: Shape,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> bool {
    let found = value.type_str();
    match (shape, value) {
        (Shape::Str, toml::Value::String(_))
        | (Shape::Int, toml::Value::Integer(_))
        | (Shape::Bool, toml::Value::Boolean(_)) => true,
        (Shape::Bool, _) => {
            errs.push(err(path, format!("expected true or false, found {found}")));
            false
        }
        (Shape::Str, _) => {
            errs.push(err(path, format!("expected a string, found {found}")));
            false
        }
        (Shape::Int, _) => {
            errs.push(err(path, format!("expected an integer, found {found}")));
            false
        }
        (Shape::StrList, toml::Value::Array(items)) => {
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                if !item.is_str() {
                    let found = item.type_str();
                    errs.push(err(
                        &format!("{path}[{i}]"),
                        format!("expected a string, found {found}"),
                    ));
                    ok = false;
                }
            }
            ok
        }
        (Shape::StrList, _) => {
            errs.push(err(
                path,
                format!("expected an array of strings, found {found}"),
            ));
            false
        }
        (Shape::Table(fields), toml::Value::Table(table)) => {
            check_table(table, fields, path, errs);
            true
        }
        (Shape::Table(_), _) => {
            errs.push(err(path, format!("expected a table, found {found}")));
            false
        }
        (Shape::TableList(fields), toml::Value::Array(items)) => {
            let mut ok = true;
            for (i, item) in items.iter_mut().enumerate() {
                let item_path = format!("{path}[{i}]");
                match item {
                    toml::Value::Table(table) => check_table(table, fields, &item_path, errs),
                    other => {
                        let found = other.type_str();
                        errs.push(err(&item_path, format!("expected a table, found {found}")));
                        ok = false;
                    }
                }
            }
            ok
        }
        (Shape::TableList(_), _) => {
            let key = path.rsplit('.').next().unwrap_or(path);
            errs.push(err(
                path,
                format!("expected an array of tables ([[{key}]]), found {found}"),
            ));
            false
        }
    }
}

fn err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// RawConfig: the file as written, every key optional so that a missing one is reported with its path
// rather than as a serde error. Also serialized by `to_effective_toml`.

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sensor: Option<RawSensor>,
    #[serde(default, rename = "source", skip_serializing_if = "Vec::is_empty")]
    sources: Vec<RawSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<RawState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics: Option<RawMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window: Option<RawWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    single: Option<RawSingle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cumulative: Option<RawCumulative>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filter: Option<RawFilter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    allow: Vec<RawAllow>,
    #[serde(default, rename = "override", skip_serializing_if = "Vec::is_empty")]
    overrides: Vec<RawOverride>,
    #[serde(default, rename = "output", skip_serializing_if = "Vec::is_empty")]
    outputs: Vec<RawOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spool: Option<RawSpool>,
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_bytes: Option<i64>,
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawSensor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint_interval: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    length: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_groups: Option<i64>,
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawLevels {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    low: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    high: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    critical: Option<String>,
}

impl RawLevels {
    fn as_array(&self) -> [&Option<String>; 4] {
        [&self.low, &self.medium, &self.high, &self.critical]
    }

    fn from_thresholds(thresholds: &[Option<Duration>; 4]) -> RawLevels {
        let [low, medium, high, critical] = thresholds.map(|t| t.map(format_duration));
        RawLevels {
            low,
            medium,
            high,
            critical,
        }
    }
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawSingle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    levels: Option<RawLevels>,
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawCumulative {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    levels: Option<RawLevels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    realert_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    measure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interim_timeout: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    internal: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    directions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    never: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    always: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ignore_states: Option<Vec<String>>,
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dst: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dst: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    single: Option<RawLevels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cumulative: Option<RawLevels>,
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fsync: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    batch_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flush_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    facility: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    framing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify_server_name: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    app_name: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------
// Defaults. Each one is explained in config/longconn.toml.

const DEFAULT_STATE_DIR: &str = "/var/lib/longconn";
const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_WINDOW_LENGTH: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_MAX_GROUPS: usize = 1_000_000;
const DEFAULT_LEVELS: [Option<Duration>; 4] = [
    Some(Duration::from_secs(3600)),
    Some(Duration::from_secs(4 * 3600)),
    Some(Duration::from_secs(8 * 3600)),
    Some(Duration::from_secs(12 * 3600)),
];
/// Zeek's `conn_state` values, the only ones `filter.ignore_states` accepts.
const CONN_STATES: &[&str] = &[
    "S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH",
];
const PROTOS: &[&str] = &["tcp", "udp", "icmp"];

fn default_nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().filter_map(|s| s.parse().ok()).collect()
}

/// The host name, for `sensor.name`; "longconn" if it cannot be read.
pub fn host_name() -> String {
    // uname(2)'s nodename is what gethostname(3) returns on Linux.
    let uname = rustix::system::uname();
    if let Ok(name) = uname.nodename().to_str() {
        let name = name.trim();
        if !name.is_empty() {
            return name.to_string();
        }
    }
    "longconn".to_string()
}

// ---------------------------------------------------------------------------------------------------------
// Value parsers: each returns the reason on failure; the caller adds the key.

/// A human duration: "90m", "1h30m", "1h 30m", "86400s". Zero is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like \"90m\" or \"1h30m\" ({e})"))?;
    if d.is_zero() {
        return Err(format!("{text:?} is zero; give a positive duration"));
    }
    Ok(d)
}

/// Formats a duration so that [`parse_duration`] reads it back, in the units a SOC thinks in (hours,
/// never days): "24h", "1h 30m", "5s", "1s 500ms".
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        "0s".to_string()
    } else {
        text.join(" ")
    }
}

/// `metrics.listen`: an IP address and port ("127.0.0.1:9787", "[::1]:9787"); no host names, so that what
/// is checked is what gets bound.
pub fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("{text:?} is not an address and port like \"127.0.0.1:9787\" or \"[::1]:9787\"")
    })
}

/// A CIDR ("10.0.0.0/8") or a bare address (a /32 or /128). Host bits must be zero.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<std::net::IpAddr>() {
            Ok(addr) => IpNet::from(addr),
            Err(_) => {
                return Err(format!(
                    "{text:?} is not a CIDR (\"10.0.0.0/8\") or an IP address"
                ))
            }
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "{text:?} has host bits set; did you mean \"{}\"?",
            net.trunc()
        ));
    }
    Ok(net)
}

fn one_of<T: Copy>(text: &str, choices: &[(&str, T)]) -> Result<T, String> {
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|c| c.1)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|c| format!("{:?}", c.0)).collect();
            format!("{text:?} is not one of {}", names.join(", "))
        })
}

const START_AT: &[(&str, StartAt)] = &[("beginning", StartAt::Beginning), ("end", StartAt::End)];
const KINDS: &[(&str, SourceKind)] = &[
    ("conn", SourceKind::Conn),
    ("open_conn", SourceKind::OpenConn),
    ("conn_long", SourceKind::ConnLong),
    ("ssl", SourceKind::Ssl),
    ("http", SourceKind::Http),
    ("dns", SourceKind::Dns),
];
pub const MEASURES: &[(&str, Measure)] = &[("sum", Measure::Sum), ("covered", Measure::Covered)];
const GROUP_BY: &[(&str, GroupBy)] = &[("pair", GroupBy::Pair), ("pair_port", GroupBy::PairPort)];
const DIRECTIONS: &[(&str, Direction)] = &[
    ("outbound", Direction::Outbound),
    ("inbound", Direction::Inbound),
    ("internal", Direction::Internal),
    ("external", Direction::External),
];

fn name_of<T: PartialEq + Copy>(value: T, choices: &[(&'static str, T)]) -> &'static str {
    choices
        .iter()
        .find(|c| c.1 == value)
        .map(|c| c.0)
        .unwrap_or("")
}

// ---------------------------------------------------------------------------------------------------------
// RawConfig -> Config, collecting every error.

/// Collects errors while converting; every method reports with the full key and returns None on error.
struct Check {
    errs: Vec<ConfigError>,
    /// `type = "http"` outputs by index, parsed from their raw tables before the schema check.
    http: Vec<(usize, crate::output::http::HttpConfig)>,
    /// The file index of each source and output kept, for the preflight's keys.
    origins: preflight::Origins,
}

impl Check {
    fn push(&mut self, key: &str, reason: impl Into<String>) {
        self.errs.push(err(key, reason));
    }

    /// Reports a missing required key, unless it or a key below it was already reported (e.g. dropped
    /// for its type), so that one mistake gives one error.
    fn missing(&mut self, key: &str, reason: &str) {
        let reported = self.errs.iter().any(|e| {
            e.key == key
                || e.key
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        });
        if !reported {
            self.push(key, reason);
        }
    }

    fn parse<T>(
        &mut self,
        key: &str,
        text: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match f(text) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.push(key, reason);
                None
            }
        }
    }

    fn duration(&mut self, key: &str, text: Option<&String>, default: Duration) -> Duration {
        text.and_then(|t| self.parse(key, t, parse_duration))
            .unwrap_or(default)
    }

    /// Reports `d` if it is above `max` (one of the documented bounds); true when it is within.
    fn at_most(&mut self, key: &str, d: Duration, max: Duration) -> bool {
        if d <= max {
            return true;
        }
        let days = match max.as_secs() / DAY {
            0 => String::new(),
            1 => " (a day)".to_string(),
            n => format!(" ({n} days)"),
        };
        self.push(
            key,
            format!(
                "{} is too long: at most {}{days}",
                format_duration(d),
                format_duration(max)
            ),
        );
        false
    }

    /// [`Check::duration`] with an upper bound; a value above it is reported and the default used.
    fn duration_at_most(
        &mut self,
        key: &str,
        text: Option<&String>,
        default: Duration,
        max: Duration,
    ) -> Duration {
        let d = self.duration(key, text, default);
        if self.at_most(key, d, max) {
            d
        } else {
            default
        }
    }

    fn nets(&mut self, key: &str, list: Option<&Vec<String>>, default: &[&str]) -> Vec<IpNet> {
        match list {
            None => default_nets(default),
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, s)| self.parse(&format!("{key}[{i}]"), s, parse_net))
                .collect(),
        }
    }

    /// Parses a levels table; set levels must be positive and strictly increasing.
    fn levels(&mut self, key: &str, raw: &RawLevels) -> [Option<Duration>; 4] {
        let mut out = [None; 4];
        let mut prev: Option<(Level, Duration)> = None;
        for (level, text) in Level::ALL.into_iter().zip(raw.as_array()) {
            let Some(text) = text else { continue };
            let level_key = join_key(key, level.name());
            let Some(d) = self.parse(&level_key, text, parse_duration) else {
                continue;
            };
            if !self.at_most(&level_key, d, MAX_LEVEL) {
                continue;
            }
            if let Some((prev_level, prev_d)) = prev {
                if d <= prev_d {
                    self.push(
                        &level_key,
                        format!(
                            "{} must be greater than {} ({}): levels must increase from low to critical",
                            format_duration(d),
                            prev_level.name(),
                            format_duration(prev_d)
                        ),
                    );
                }
            }
            prev = Some((level, d));
            out[level as usize] = Some(d);
        }
        out
    }

    fn port(&mut self, key: &str, port: Option<i64>) -> Option<u16> {
        let port = port?;
        match u16::try_from(port) {
            Ok(p) => Some(p),
            Err(_) => {
                self.push(key, format!("{port} is not a port (0 to 65535)"));
                None
            }
        }
    }

    fn proto(&mut self, key: &str, proto: Option<&String>) -> Option<String> {
        let proto = proto?.trim().to_ascii_lowercase();
        if PROTOS.contains(&proto.as_str()) {
            Some(proto)
        } else {
            self.push(
                key,
                format!("{proto:?} is not one of \"tcp\", \"udp\", \"icmp\""),
            );
            None
        }
    }

    fn matches(
        &mut self,
        key: &str,
        src: Option<&String>,
        dst: Option<&String>,
        port: Option<i64>,
        proto: Option<&String>,
    ) -> Match {
        if src.is_none() && dst.is_none() && port.is_none() && proto.is_none() {
            self.missing(
                key,
                "no match key: give at least one of src, dst, port, proto",
            );
        }
        Match {
            src: src.and_then(|s| self.parse(&format!("{key}.src"), s, parse_net)),
            dst: dst.and_then(|s| self.parse(&format!("{key}.dst"), s, parse_net)),
            port: self.port(&format!("{key}.port"), port),
            proto: self.proto(&format!("{key}.proto"), proto),
        }
    }

    fn convert(&mut self, raw: RawConfig) -> Config {
        let sensor_name = match raw.sensor.and_then(|s| s.name) {
            Some(name) if name.trim().is_empty() => {
                self.push("sensor.name", "is empty; leave it out to use the host name");
                String::new()
            }
            Some(name) => name,
            None => host_name(),
        };

        if raw.sources.is_empty() {
            self.missing(
                "source",
                "no [[source]]: give at least one, e.g. path = \"/opt/zeek/logs/current/conn.log\"",
            );
        }
        let mut sources: Vec<Source> = Vec::new();
        for (i, s) in raw.sources.iter().enumerate() {
            let key = format!("source[{i}]");
            let path = match &s.path {
                Some(p) if p.trim().is_empty() => {
                    self.push(&format!("{key}.path"), "is empty");
                    None
                }
                Some(p) => Some(PathBuf::from(p)),
                None => {
                    self.missing(&format!("{key}.path"), "missing: the conn.log to follow");
                    None
                }
            };
            let start_at = s
                .start_at
                .as_ref()
                .and_then(|t| self.parse(&format!("{key}.start_at"), t, |t| one_of(t, START_AT)))
                .unwrap_or(StartAt::Beginning);
            let kind = s
                .kind
                .as_ref()
                .and_then(|t| self.parse(&format!("{key}.kind"), t, |t| one_of(t, KINDS)));
            let Some(path) = path else { continue };
            if let Some(j) = sources.iter().position(|o| o.path == path) {
                self.push(
                    &format!("{key}.path"),
                    format!("{} is already source[{j}]", path.display()),
                );
            }
            let kind = kind.unwrap_or_else(|| SourceKind::from_path(&path));
            self.origins.sources.push(i);
            sources.push(Source {
                path,
                start_at,
                kind,
            });
        }

        let raw_state = raw.state.unwrap_or_default();
        let state = StateConfig {
            dir: match raw_state.dir {
                Some(d) if d.trim().is_empty() => {
                    self.push("state.dir", "is empty");
                    PathBuf::new()
                }
                Some(d) => PathBuf::from(d),
                None => PathBuf::from(DEFAULT_STATE_DIR),
            },
            checkpoint_interval: self.duration_at_most(
                "state.checkpoint_interval",
                raw_state.checkpoint_interval.as_ref(),
                DEFAULT_CHECKPOINT_INTERVAL,
                MAX_CHECKPOINT_INTERVAL,
            ),
        };

        let metrics = MetricsConfig {
            listen: raw
                .metrics
                .and_then(|m| m.listen)
                .and_then(|t| self.parse("metrics.listen", &t, parse_listen)),
        };

        let raw_window = raw.window.unwrap_or_default();
        let window = WindowConfig {
            length: self.duration_at_most(
                "window.length",
                raw_window.length.as_ref(),
                DEFAULT_WINDOW_LENGTH,
                MAX_WINDOW_LENGTH,
            ),
            group_by: raw_window
                .group_by
                .as_ref()
                .and_then(|t| self.parse("window.group_by", t, |t| one_of(t, GROUP_BY)))
                .unwrap_or(GroupBy::Pair),
            max_groups: match raw_window.max_groups {
                None => DEFAULT_MAX_GROUPS,
                Some(n) => match usize::try_from(n) {
                    Ok(n) if (1..=MAX_MAX_GROUPS).contains(&n) => n,
                    _ if n < 1 => {
                        self.push("window.max_groups", format!("{n} must be at least 1"));
                        DEFAULT_MAX_GROUPS
                    }
                    _ => {
                        self.push(
                            "window.max_groups",
                            format!("{n} is too many: at most {MAX_MAX_GROUPS} (100 million)"),
                        );
                        DEFAULT_MAX_GROUPS
                    }
                },
            },
        };

        let single = Levels {
            thresholds: match raw.single.and_then(|s| s.levels) {
                Some(l) => self.levels("single.levels", &l),
                None => DEFAULT_LEVELS,
            },
        };

        let raw_cum = raw.cumulative.unwrap_or_default();
        let cumulative = CumulativeConfig {
            levels: Levels {
                thresholds: match &raw_cum.levels {
                    Some(l) => self.levels("cumulative.levels", l),
                    None => DEFAULT_LEVELS,
                },
            },
            realert_after: raw_cum
                .realert_after
                .as_ref()
                .and_then(|t| self.parse("cumulative.realert_after", t, parse_duration))
                .filter(|d| self.at_most("cumulative.realert_after", *d, MAX_REALERT_AFTER)),
            measure: raw_cum
                .measure
                .as_ref()
                .and_then(|t| self.parse("cumulative.measure", t, |t| one_of(t, MEASURES)))
                .unwrap_or_default(),
            interim_timeout: raw_cum
                .interim_timeout
                .as_ref()
                .and_then(|t| self.parse("cumulative.interim_timeout", t, parse_duration))
                .filter(|d| self.at_most("cumulative.interim_timeout", *d, MAX_INTERIM_TIMEOUT))
                .unwrap_or(DEFAULT_INTERIM_TIMEOUT),
        };

        let raw_filter = raw.filter.unwrap_or_default();
        let directions = match &raw_filter.directions {
            None => DIRECTIONS.iter().map(|d| d.1).collect(),
            Some(list) => {
                if list.is_empty() {
                    self.push(
                        "filter.directions",
                        "is empty, so no connection would ever count; give at least one of \"outbound\", \"inbound\", \"internal\", \"external\"",
                    );
                }
                let mut out: Vec<Direction> = Vec::new();
                for (i, t) in list.iter().enumerate() {
                    let key = format!("filter.directions[{i}]");
                    if let Some(d) = self.parse(&key, t, |t| one_of(t, DIRECTIONS)) {
                        if !out.contains(&d) {
                            out.push(d);
                        }
                    }
                }
                out
            }
        };
        let mut ignore_states = Vec::new();
        for (i, t) in raw_filter.ignore_states.iter().flatten().enumerate() {
            let state = t.trim().to_ascii_uppercase();
            if CONN_STATES.contains(&state.as_str()) {
                if !ignore_states.contains(&state) {
                    ignore_states.push(state);
                }
            } else {
                self.push(
                    &format!("filter.ignore_states[{i}]"),
                    format!(
                        "{t:?} is not a Zeek conn_state ({})",
                        CONN_STATES.join(", ")
                    ),
                );
            }
        }
        let filter = FilterConfig {
            internal: self.nets(
                "filter.internal",
                raw_filter.internal.as_ref(),
                DEFAULT_INTERNAL,
            ),
            directions,
            never: self.nets("filter.never", raw_filter.never.as_ref(), DEFAULT_NEVER),
            always: self.nets("filter.always", raw_filter.always.as_ref(), &[]),
            ignore_states,
        };

        let allow = raw
            .allow
            .iter()
            .enumerate()
            .map(|(i, a)| Allow {
                matches: self.matches(
                    &format!("allow[{i}]"),
                    a.src.as_ref(),
                    a.dst.as_ref(),
                    a.port,
                    a.proto.as_ref(),
                ),
                comment: a.comment.clone(),
            })
            .collect();

        let overrides = raw
            .overrides
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let key = format!("override[{i}]");
                let matches = self.matches(
                    &key,
                    o.src.as_ref(),
                    o.dst.as_ref(),
                    o.port,
                    o.proto.as_ref(),
                );
                let single = o
                    .single
                    .as_ref()
                    .map(|l| self.levels(&format!("{key}.single"), l))
                    .unwrap_or_default();
                let cumulative = o
                    .cumulative
                    .as_ref()
                    .map(|l| self.levels(&format!("{key}.cumulative"), l))
                    .unwrap_or_default();
                let given = |l: &Option<RawLevels>| {
                    l.as_ref()
                        .is_some_and(|l| l.as_array().iter().any(|t| t.is_some()))
                };
                if !given(&o.single) && !given(&o.cumulative) {
                    self.missing(
                        &key,
                        "no thresholds: give single = { ... } and/or cumulative = { ... }",
                    );
                }
                Override {
                    matches,
                    single,
                    cumulative,
                }
            })
            .collect();

        let outputs = self.outputs(&raw.outputs);
        let spool = self.spool(raw.spool.as_ref());

        Config {
            sensor_name,
            sources,
            state,
            metrics,
            window,
            single,
            cumulative,
            filter,
            allow,
            overrides,
            outputs,
            spool,
        }
    }

    fn spool(&mut self, raw: Option<&RawSpool>) -> SpoolConfig {
        let max_bytes = match raw.and_then(|r| r.max_bytes) {
            None => DEFAULT_SPOOL_MAX_BYTES,
            Some(v) if v < MIN_SPOOL_MAX_BYTES as i64 => {
                self.push(
                    "spool.max_bytes",
                    format!("{v} is too small; give at least {MIN_SPOOL_MAX_BYTES} (64 KiB)"),
                );
                DEFAULT_SPOOL_MAX_BYTES
            }
            Some(v) if v as u64 > MAX_SPOOL_MAX_BYTES => {
                self.push(
                    "spool.max_bytes",
                    format!("{v} is too large; give at most {MAX_SPOOL_MAX_BYTES} (1 TiB)"),
                );
                DEFAULT_SPOOL_MAX_BYTES
            }
            Some(v) => v as u64,
        };
        SpoolConfig { max_bytes }
    }

    /// Converts every `[[output]]`; names are unique, defaulting to the type (`-2`, `-3`... on repeats).
    fn outputs(&mut self, raw: &[RawOutput]) -> Vec<Output> {
        let mut used: Vec<String> = Vec::new();
        for (i, o) in raw.iter().enumerate() {
            let Some(name) = &o.name else { continue };
            let key = format!("output[{i}].name");
            if name.is_empty()
                || name == "."
                || name == ".."
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                self.push(
                    &key,
                    format!("{name:?}: use letters, digits, '-', '_' and '.' only (it names a file in the spool)"),
                );
            } else if used.contains(name) {
                self.push(
                    &key,
                    format!("{name:?} is used by another output; names must be unique"),
                );
            } else {
                used.push(name.clone());
            }
        }
        let mut outputs = Vec::new();
        for (i, o) in raw.iter().enumerate() {
            let key = format!("output[{i}]");
            let k = |field: &str| format!("{key}.{field}");
            let Some(kind) = o.kind.as_deref() else {
                self.missing(&k("type"), "missing: \"stdout\", \"file\" or \"syslog\"");
                continue;
            };
            let name = match &o.name {
                Some(n) => n.clone(),
                None => {
                    let mut n = kind.to_string();
                    let mut i = 2;
                    while used.contains(&n) {
                        n = format!("{kind}-{i}");
                        i += 1;
                    }
                    used.push(n.clone());
                    n
                }
            };
            let batch = Batching {
                size: match o.batch_size {
                    None => DEFAULT_BATCHING.size,
                    Some(n) if (1..=100_000).contains(&n) => n as usize,
                    Some(n) => {
                        self.push(&k("batch_size"), format!("{n} is out of range 1..=100000"));
                        DEFAULT_BATCHING.size
                    }
                },
                flush_interval: match &o.flush_interval {
                    None => DEFAULT_BATCHING.flush_interval,
                    Some(t) if t.trim() == "0" => Duration::ZERO,
                    Some(t) => self
                        .parse(&k("flush_interval"), t, |t| {
                            humantime::parse_duration(t.trim()).map_err(|e| {
                                format!("{t:?} is not a duration like \"200ms\" or \"1s\" ({e})")
                            })
                        })
                        .filter(|d| self.at_most(&k("flush_interval"), *d, MAX_OUTPUT_WAIT))
                        .unwrap_or(DEFAULT_BATCHING.flush_interval),
                },
            };
            let kept = outputs.len();
            // Keys that only some types take.
            let file_keys: &[(&str, bool)] =
                &[("path", o.path.is_some()), ("fsync", o.fsync.is_some())];
            let syslog_keys: &[(&str, bool)] = &[
                ("transport", o.transport.is_some()),
                ("address", o.address.is_some()),
                ("facility", o.facility.is_some()),
                ("framing", o.framing.is_some()),
                ("ca_file", o.ca_file.is_some()),
                ("client_cert", o.client_cert.is_some()),
                ("client_key", o.client_key.is_some()),
                ("server_name", o.server_name.is_some()),
                ("verify_server_name", o.verify_server_name.is_some()),
                ("app_name", o.app_name.is_some()),
            ];
            let refuse = |check: &mut Check, keys: &[(&str, bool)], owner: &str| {
                for (field, given) in keys {
                    // A unix syslog output takes `path` too.
                    if *given && !(kind == "syslog" && *field == "path") {
                        check.push(
                            &k(field),
                            format!("only a type = \"{owner}\" output takes {field}"),
                        );
                    }
                }
            };
            match kind {
                "stdout" => {
                    refuse(self, file_keys, "file");
                    refuse(self, syslog_keys, "syslog");
                    outputs.push(Output::Stdout { name, batch });
                }
                "file" => {
                    refuse(self, syslog_keys, "syslog");
                    let fsync = o
                        .fsync
                        .as_ref()
                        .and_then(|f| self.parse(&k("fsync"), f, |t| one_of(t, FSYNC)))
                        .unwrap_or(FsyncPolicy::Batch);
                    match &o.path {
                        Some(p) if !p.trim().is_empty() => outputs.push(Output::File {
                            name,
                            path: PathBuf::from(p),
                            fsync,
                            batch,
                        }),
                        Some(_) => self.push(&k("path"), "is empty"),
                        None => self.missing(
                            &k("path"),
                            "missing: a type = \"file\" output needs the file to append alerts to",
                        ),
                    }
                }
                "syslog" => {
                    if o.fsync.is_some() {
                        self.push(&k("fsync"), "only a type = \"file\" output takes fsync");
                    }
                    if let Some(syslog) = self.syslog(o, &key) {
                        outputs.push(Output::Syslog {
                            name,
                            syslog,
                            batch,
                        });
                    }
                }
                "http" => {
                    // Parsed (and its errors reported) from the raw table before the schema check.
                    if let Some(pos) = self.http.iter().position(|(j, _)| *j == i) {
                        let (_, http) = self.http.swap_remove(pos);
                        // The HTTP output parses its own keys; the bounds shared by every output are here.
                        self.at_most(&k("flush_interval"), http.flush_interval, MAX_OUTPUT_WAIT);
                        self.at_most(&k("timeout"), http.timeout, MAX_OUTPUT_WAIT);
                        if let Some(ack) = http.splunk.as_ref().and_then(|s| s.ack.as_ref()) {
                            self.at_most(&k("ack_timeout"), ack.timeout, MAX_OUTPUT_WAIT);
                        }
                        outputs.push(Output::Http {
                            name,
                            http: Box::new(http),
                        });
                    }
                }
                other => self.push(
                    &k("type"),
                    format!("{other:?} is not one of \"stdout\", \"file\", \"syslog\", \"http\""),
                ),
            }
            if outputs.len() > kept {
                self.origins.outputs.push(i);
            }
        }
        if raw.is_empty() {
            outputs.push(Output::Stdout {
                name: "stdout".to_string(),
                batch: DEFAULT_BATCHING,
            });
        }
        outputs
    }

    fn syslog(&mut self, o: &RawOutput, key: &str) -> Option<SyslogConfig> {
        let k = |field: &str| format!("{key}.{field}");
        let facility = match &o.facility {
            None => 16,
            Some(f) => self
                .parse(&k("facility"), f, |t| one_of(t, FACILITIES))
                .unwrap_or(16),
        };
        let framing = o
            .framing
            .as_ref()
            .and_then(|f| self.parse(&k("framing"), f, |t| one_of(t, FRAMING)))
            .unwrap_or(Framing::OctetCounting);
        let app_name = match &o.app_name {
            None => "longconn".to_string(),
            Some(a)
                if a.is_empty() || a.len() > 48 || !a.bytes().all(|b| (33..=126).contains(&b)) =>
            {
                self.push(
                    &k("app_name"),
                    format!("{a:?}: 1 to 48 printable ASCII characters without spaces (RFC 5424)"),
                );
                "longconn".to_string()
            }
            Some(a) => a.clone(),
        };
        let transport = o.transport.as_deref();
        let stream = matches!(transport, Some("tcp" | "tls"));
        if o.framing.is_some() && !stream && transport.is_some() {
            self.push(&k("framing"), "only tcp and tls transports take framing");
        }
        let is_tls = transport == Some("tls");
        for (field, given) in [
            ("ca_file", o.ca_file.is_some()),
            ("client_cert", o.client_cert.is_some()),
            ("client_key", o.client_key.is_some()),
            ("server_name", o.server_name.is_some()),
            ("verify_server_name", o.verify_server_name.is_some()),
        ] {
            if given && !is_tls && transport.is_some() {
                self.push(&k(field), "only a transport = \"tls\" output takes it");
            }
        }
        let address = |check: &mut Check| -> Option<(String, String)> {
            match &o.address {
                None => {
                    check.missing(&k("address"), "missing: \"host:port\" of the syslog server");
                    None
                }
                Some(a) => check.parse(&k("address"), a, |t| {
                    split_host_port(t).map(|h| (t.to_string(), h))
                }),
            }
        };
        let transport = match transport {
            None => {
                self.missing(
                    &k("transport"),
                    "missing: \"udp\", \"tcp\", \"tls\" or \"unix\"",
                );
                None
            }
            Some("udp" | "tcp") => {
                if o.path.is_some() {
                    self.push(&k("path"), "only a transport = \"unix\" output takes path");
                }
                let a = address(self);
                a.map(|(address, _)| {
                    if transport == Some("udp") {
                        SyslogTransport::Udp { address }
                    } else {
                        SyslogTransport::Tcp { address }
                    }
                })
            }
            Some("tls") => {
                if o.path.is_some() {
                    self.push(&k("path"), "only a transport = \"unix\" output takes path");
                }
                let a = address(self);
                let ca_file = match &o.ca_file {
                    Some(c) if !c.trim().is_empty() => Some(PathBuf::from(c)),
                    Some(_) => {
                        self.push(&k("ca_file"), "is empty");
                        None
                    }
                    None => {
                        self.missing(
                            &k("ca_file"),
                            "missing: the PEM file of the CA that signed the server's certificate",
                        );
                        None
                    }
                };
                let client_cert = match (&o.client_cert, &o.client_key) {
                    (Some(c), Some(key)) => Some((PathBuf::from(c), PathBuf::from(key))),
                    (Some(_), None) => {
                        self.missing(
                            &k("client_key"),
                            "missing: client_cert needs its client_key",
                        );
                        None
                    }
                    (None, Some(_)) => {
                        self.missing(
                            &k("client_cert"),
                            "missing: client_key needs its client_cert",
                        );
                        None
                    }
                    (None, None) => None,
                };
                match (a, ca_file) {
                    (Some((address, host)), Some(ca_file)) => Some(SyslogTransport::Tls {
                        address,
                        tls: TlsConfig {
                            ca_file,
                            client_cert,
                            server_name: o.server_name.clone().unwrap_or(host),
                            verify_server_name: o.verify_server_name.unwrap_or(true),
                        },
                    }),
                    _ => None,
                }
            }
            Some("unix") => {
                if o.address.is_some() {
                    self.push(
                        &k("address"),
                        "a transport = \"unix\" output takes path, not address",
                    );
                }
                match &o.path {
                    Some(p) if !p.trim().is_empty() => Some(SyslogTransport::Unix {
                        path: PathBuf::from(p),
                    }),
                    Some(_) => {
                        self.push(&k("path"), "is empty");
                        None
                    }
                    None => {
                        self.missing(
                            &k("path"),
                            "missing: the unix datagram socket, e.g. /dev/log",
                        );
                        None
                    }
                }
            }
            Some(other) => {
                self.push(
                    &k("transport"),
                    format!(
                        "{other:?} is not one of {}",
                        TRANSPORTS
                            .iter()
                            .map(|t| format!("{t:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                None
            }
        }?;
        Some(SyslogConfig {
            transport,
            facility,
            framing,
            app_name,
        })
    }
}

/// Checks `host:port` (`[v6]:port` for IPv6) and returns the host (without brackets).
pub fn split_host_port(text: &str) -> Result<String, String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("{text:?} is not host:port"));
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(' ') {
        return Err(format!("{text:?}: the host is missing"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(host.to_string()),
        _ => Err(format!("{text:?}: {port:?} is not a port number (1-65535)")),
    }
}

/// Joins a multi-line message into one line, so that each error prints as one `KEY: REASON` line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// "line L, column C" of a byte offset in `text`, 1-based.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// One output as the file would say it, every default filled in.
fn raw_output(o: &Output) -> RawOutput {
    let batch = o.batching();
    let mut raw = RawOutput {
        name: Some(o.name().to_string()),
        batch_size: Some(batch.size as i64),
        flush_interval: Some(if batch.flush_interval.is_zero() {
            "0s".to_string()
        } else {
            format_duration(batch.flush_interval)
        }),
        ..RawOutput::default()
    };
    match o {
        Output::Stdout { .. } => raw.kind = Some("stdout".to_string()),
        Output::Http { .. } => raw.kind = Some("http".to_string()),
        Output::File { path, fsync, .. } => {
            raw.kind = Some("file".to_string());
            raw.path = Some(path.display().to_string());
            raw.fsync = Some(name_of(*fsync, FSYNC).to_string());
        }
        Output::Syslog { syslog, .. } => {
            raw.kind = Some("syslog".to_string());
            raw.facility = FACILITIES
                .iter()
                .find(|f| f.1 == syslog.facility)
                .map(|f| f.0.to_string());
            raw.app_name = Some(syslog.app_name.clone());
            match &syslog.transport {
                SyslogTransport::Udp { address } => {
                    raw.transport = Some("udp".to_string());
                    raw.address = Some(address.clone());
                }
                SyslogTransport::Tcp { address } => {
                    raw.transport = Some("tcp".to_string());
                    raw.address = Some(address.clone());
                    raw.framing = Some(name_of(syslog.framing, FRAMING).to_string());
                }
                SyslogTransport::Tls { address, tls } => {
                    raw.transport = Some("tls".to_string());
                    raw.address = Some(address.clone());
                    raw.framing = Some(name_of(syslog.framing, FRAMING).to_string());
                    raw.ca_file = Some(tls.ca_file.display().to_string());
                    if let Some((c, k)) = &tls.client_cert {
                        raw.client_cert = Some(c.display().to_string());
                        raw.client_key = Some(k.display().to_string());
                    }
                    raw.server_name = Some(tls.server_name.clone());
                    raw.verify_server_name = Some(tls.verify_server_name);
                }
                SyslogTransport::Unix { path } => {
                    raw.transport = Some("unix".to_string());
                    raw.path = Some(path.display().to_string());
                }
            }
        }
    }
    raw
}

impl Config {
    /// Reads and validates the config file at `path`. A file that cannot be read is one error keyed by
    /// the path.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            errors: vec![err(
                &path.display().to_string(),
                format!("cannot read: {e}"),
            )],
        })?;
        Config::from_toml_str(&text)
    }

    /// Parses and validates a config, reporting every problem at once.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let (config, errors, _) = Config::convert_text(text)?;
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors { errors })
        }
    }

    /// The config as far as it converts, with every error found, and where each source and output came
    /// from; Err only when there is nothing to convert (a TOML syntax error). The preflight checks what
    /// converted, so that its problems come with the file's in one report.
    fn convert_text(
        text: &str,
    ) -> Result<(Config, Vec<ConfigError>, preflight::Origins), ConfigErrors> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            let reason = match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    format!(
                        "TOML syntax error at line {line}, column {col}: {}",
                        one_line(e.message())
                    )
                }
                None => format!("TOML syntax error: {}", one_line(e.message())),
            };
            ConfigErrors {
                errors: vec![err("", reason)],
            }
        })?;
        let mut errs = Vec::new();
        // HTTP outputs have their own keys: parse them from the raw table, and leave only `type` and `name`
        // for the shared checks.
        let mut http = Vec::new();
        let mut unbuilt_http = Vec::new();
        if let Some(toml::Value::Array(outputs)) = table.get_mut("output") {
            for (i, o) in outputs.iter_mut().enumerate() {
                let Some(t) = o.as_table_mut() else { continue };
                if t.get("type").and_then(toml::Value::as_str) != Some("http") {
                    continue;
                }
                match crate::output::http::HttpConfig::from_raw(t, &format!("output[{i}]")) {
                    Ok(cfg) => http.push((i, cfg)),
                    Err((e, files)) => {
                        errs.extend(e);
                        unbuilt_http.push((i, files));
                    }
                }
                t.retain(|k, _| k == "type" || k == "name");
            }
        }
        check_table(&mut table, SCHEMA, "", &mut errs);
        // The schema check removed everything RawConfig cannot take, so this only fails if the two
        // disagree, which the tests rule out; report it rather than panic.
        let raw: RawConfig = match toml::Value::Table(table).try_into() {
            Ok(raw) => raw,
            Err(e) => {
                errs.push(err("", format!("internal: config schema mismatch: {e}")));
                return Err(ConfigErrors { errors: errs });
            }
        };
        let mut check = Check {
            errs,
            http,
            origins: preflight::Origins {
                unbuilt_http,
                ..Default::default()
            },
        };
        let config = check.convert(raw);
        Ok((config, check.errs, check.origins))
    }

    /// The effective config, every default filled in, as TOML with the file's key names; it loads back
    /// into an equal `Config`.
    pub fn to_effective_toml(&self) -> String {
        let nets = |list: &[IpNet]| Some(list.iter().map(ToString::to_string).collect());
        let raw = RawConfig {
            sensor: Some(RawSensor {
                name: Some(self.sensor_name.clone()),
            }),
            sources: self
                .sources
                .iter()
                .map(|s| RawSource {
                    path: Some(s.path.display().to_string()),
                    start_at: Some(name_of(s.start_at, START_AT).to_string()),
                    kind: Some(name_of(s.kind, KINDS).to_string()),
                })
                .collect(),
            state: Some(RawState {
                dir: Some(self.state.dir.display().to_string()),
                checkpoint_interval: Some(format_duration(self.state.checkpoint_interval)),
            }),
            metrics: self.metrics.listen.map(|a| RawMetrics {
                listen: Some(a.to_string()),
            }),
            window: Some(RawWindow {
                length: Some(format_duration(self.window.length)),
                group_by: Some(name_of(self.window.group_by, GROUP_BY).to_string()),
                max_groups: Some(i64::try_from(self.window.max_groups).unwrap_or(i64::MAX)),
            }),
            single: Some(RawSingle {
                levels: Some(RawLevels::from_thresholds(&self.single.thresholds)),
            }),
            cumulative: Some(RawCumulative {
                levels: Some(RawLevels::from_thresholds(
                    &self.cumulative.levels.thresholds,
                )),
                realert_after: self.cumulative.realert_after.map(format_duration),
                measure: Some(name_of(self.cumulative.measure, MEASURES).to_string()),
                interim_timeout: Some(format_duration(self.cumulative.interim_timeout)),
            }),
            filter: Some(RawFilter {
                internal: nets(&self.filter.internal),
                directions: Some(
                    self.filter
                        .directions
                        .iter()
                        .map(|d| name_of(*d, DIRECTIONS).to_string())
                        .collect(),
                ),
                never: nets(&self.filter.never),
                always: nets(&self.filter.always),
                ignore_states: Some(self.filter.ignore_states.clone()),
            }),
            allow: self
                .allow
                .iter()
                .map(|a| RawAllow {
                    src: a.matches.src.map(|n| n.to_string()),
                    dst: a.matches.dst.map(|n| n.to_string()),
                    port: a.matches.port.map(i64::from),
                    proto: a.matches.proto.clone(),
                    comment: a.comment.clone(),
                })
                .collect(),
            overrides: self
                .overrides
                .iter()
                .map(|o| {
                    let levels = |t: &[Option<Duration>; 4]| {
                        t.iter()
                            .any(Option::is_some)
                            .then(|| RawLevels::from_thresholds(t))
                    };
                    RawOverride {
                        src: o.matches.src.map(|n| n.to_string()),
                        dst: o.matches.dst.map(|n| n.to_string()),
                        port: o.matches.port.map(i64::from),
                        proto: o.matches.proto.clone(),
                        single: levels(&o.single),
                        cumulative: levels(&o.cumulative),
                    }
                })
                .collect(),
            outputs: self.outputs.iter().map(raw_output).collect(),
            spool: Some(RawSpool {
                max_bytes: Some(i64::try_from(self.spool.max_bytes).unwrap_or(i64::MAX)),
            }),
        };
        let mut value = match toml::Value::try_from(&raw) {
            Ok(v) => v,
            Err(e) => return format!("# cannot print the effective configuration: {e}\n"),
        };
        // HTTP outputs print their own settings.
        if let Some(toml::Value::Array(list)) = value.get_mut("output") {
            for (slot, o) in list.iter_mut().zip(&self.outputs) {
                if let (Output::Http { http, .. }, Some(t)) = (o, slot.as_table_mut()) {
                    t.retain(|k, _| k == "type" || k == "name");
                    t.extend(http.to_effective_toml());
                }
            }
        }
        match toml::to_string(&value) {
            Ok(text) => {
                format!("# longconn effective configuration (defaults filled in)\n\n{text}")
            }
            Err(e) => format!("# cannot print the effective configuration: {e}\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[[source]]\npath = \"/opt/zeek/logs/current/conn.log\"\n";

    fn h(hours: u64) -> Duration {
        Duration::from_secs(hours * 3600)
    }

    fn load(text: &str) -> Config {
        match Config::from_toml_str(text) {
            Ok(c) => c,
            Err(e) => panic!("config did not load:\n{e}"),
        }
    }

    fn errors(text: &str) -> ConfigErrors {
        match Config::from_toml_str(text) {
            Ok(c) => panic!("config loaded but should not: {c:?}"),
            Err(e) => e,
        }
    }

    /// Asserts that loading `text` fails with an error at `key` whose reason contains `needle`.
    fn assert_error(text: &str, key: &str, needle: &str) {
        let e = errors(text);
        assert!(
            e.errors
                .iter()
                .any(|x| x.key == key && x.reason.contains(needle)),
            "expected `{key}: ...{needle}...`, got:\n{e}"
        );
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn cumulative_measure_and_interim_timeout() {
        let c = load(MINIMAL);
        assert_eq!(c.cumulative.measure, Measure::Covered);
        assert_eq!(c.cumulative.interim_timeout, DEFAULT_INTERIM_TIMEOUT);
        let c = load(&format!(
            "{MINIMAL}[cumulative]\nmeasure = \"sum\"\ninterim_timeout = \"2h\"\n"
        ));
        assert_eq!(c.cumulative.measure, Measure::Sum);
        assert_eq!(c.cumulative.interim_timeout, Duration::from_secs(7200));
        assert_eq!(load(&c.to_effective_toml()), c);
        assert_error(
            &format!("{MINIMAL}[cumulative]\nmeasure = \"union\"\n"),
            "cumulative.measure",
            "not one of",
        );
        assert_error(
            &format!("{MINIMAL}[cumulative]\ninterim_timeout = \"soon\"\n"),
            "cumulative.interim_timeout",
            "",
        );
    }

    #[test]
    fn defaults() {
        let c = load(MINIMAL);
        assert!(!c.sensor_name.is_empty());
        assert_eq!(
            c.sources,
            vec![Source {
                path: PathBuf::from("/opt/zeek/logs/current/conn.log"),
                start_at: StartAt::Beginning,
                kind: SourceKind::Conn,
            }]
        );
        assert_eq!(c.state.dir, PathBuf::from("/var/lib/longconn"));
        assert_eq!(c.state.checkpoint_interval, Duration::from_secs(5));
        assert_eq!(c.window.length, h(24));
        assert_eq!(c.window.group_by, GroupBy::Pair);
        assert_eq!(c.window.max_groups, 1_000_000);
        let levels = [Some(h(1)), Some(h(4)), Some(h(8)), Some(h(12))];
        assert_eq!(c.single.thresholds, levels);
        assert_eq!(c.cumulative.levels.thresholds, levels);
        assert_eq!(c.cumulative.realert_after, None);
        assert_eq!(
            c.filter.internal,
            nets(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"])
        );
        assert_eq!(
            c.filter.directions,
            vec![
                Direction::Outbound,
                Direction::Inbound,
                Direction::Internal,
                Direction::External
            ]
        );
        assert_eq!(c.filter.never, nets(DEFAULT_NEVER));
        assert_eq!(c.filter.never.len(), 8);
        assert!(c.filter.always.is_empty());
        assert!(c.filter.ignore_states.is_empty());
        assert!(c.allow.is_empty());
        assert!(c.overrides.is_empty());
        assert_eq!(
            c.outputs,
            vec![Output::Stdout {
                name: "stdout".into(),
                batch: DEFAULT_BATCHING
            }]
        );
        assert_eq!(c.spool.max_bytes, 1 << 30);
    }

    #[test]
    fn sensor_name_defaults_to_host_name() {
        let c = load(MINIMAL);
        assert_eq!(c.sensor_name, host_name());
        let c = load(&format!("[sensor]\nname = \"s7\"\n{MINIMAL}"));
        assert_eq!(c.sensor_name, "s7");
    }

    #[test]
    fn duration_forms() {
        for (text, secs) in [
            ("90m", 5400),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("86400s", 86400),
            ("24h", 86400),
            ("1d", 86400),
            ("5s", 5),
            (" 2h ", 7200),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in ["", "abc", "10", "1x", "-5m", "0s", "0h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        let c = load(&format!("{MINIMAL}[window]\nlength = \"1h30m\"\n"));
        assert_eq!(c.window.length, Duration::from_secs(5400));
    }

    #[test]
    fn format_duration_parses_back() {
        for secs in [1, 5, 59, 3600, 5400, 86400, 90061, 200 * 86400] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        for (d, text) in [
            (h(24), "24h"),
            (Duration::from_secs(5400), "1h 30m"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::new(3661, 1_001_001), "1h 1m 1s 1ms 1us 1ns"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn cidrs_and_bare_addresses() {
        assert_eq!(parse_net("10.1.2.3"), Ok("10.1.2.3/32".parse().unwrap()));
        assert_eq!(
            parse_net("2001:db8::1"),
            Ok("2001:db8::1/128".parse().unwrap())
        );
        assert_eq!(parse_net("fd00::/8"), Ok("fd00::/8".parse().unwrap()));
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("10.0.0").is_err());
        assert!(parse_net("10.1.2.3/8").unwrap_err().contains("10.0.0.0/8"));
    }

    #[test]
    fn source_kind_from_file_name_or_key() {
        let c = load(
            r#"
            [[source]]
            path = "/logs/conn.log"
            [[source]]
            path = "/logs/open_conn.log"
            start_at = "end"
            [[source]]
            path = "/logs/conn_long.log"
            [[source]]
            path = "/logs/other.log"
            kind = "open_conn"
            "#,
        );
        let kinds: Vec<SourceKind> = c.sources.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                SourceKind::Conn,
                SourceKind::OpenConn,
                SourceKind::ConnLong,
                SourceKind::OpenConn
            ]
        );
        assert_eq!(c.sources[1].start_at, StartAt::End);
    }

    #[test]
    fn given_levels_table_replaces_defaults() {
        let c = load(&format!(
            "{MINIMAL}[single]\nlevels = {{ high = \"2h\" }}\n[cumulative]\nlevels = {{}}\nrealert_after = \"12h\"\n"
        ));
        assert_eq!(c.single.thresholds, [None, None, Some(h(2)), None]);
        assert_eq!(c.cumulative.levels.thresholds, [None; 4]);
        assert_eq!(c.cumulative.realert_after, Some(h(12)));
    }

    #[test]
    fn allow_override_and_outputs() {
        let c = load(&format!(
            r#"{MINIMAL}
            [[allow]]
            dst = "203.0.113.10"
            port = 443
            proto = "TCP"
            comment = "backup service"
            [[override]]
            src = "10.9.0.0/16"
            single = {{ high = "24h" }}
            [[output]]
            type = "file"
            path = "/var/log/longconn/alerts.json"
            "#
        ));
        assert_eq!(
            c.allow,
            vec![Allow {
                matches: Match {
                    src: None,
                    dst: Some("203.0.113.10/32".parse().unwrap()),
                    port: Some(443),
                    proto: Some("tcp".to_string()),
                },
                comment: Some("backup service".to_string()),
            }]
        );
        assert_eq!(c.overrides.len(), 1);
        assert_eq!(
            c.overrides[0].matches.src,
            Some("10.9.0.0/16".parse().unwrap())
        );
        assert_eq!(c.overrides[0].single, [None, None, Some(h(24)), None]);
        assert_eq!(c.overrides[0].cumulative, [None; 4]);
        assert_eq!(
            c.outputs,
            vec![Output::File {
                name: "file".into(),
                path: PathBuf::from("/var/log/longconn/alerts.json"),
                fsync: FsyncPolicy::Batch,
                batch: DEFAULT_BATCHING,
            }]
        );
    }

    #[test]
    fn production_example_loads() {
        let c = load(include_str!("../config/longconn.toml"));
        assert_eq!(c.sensor_name, "sensor01");
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.allow.len(), 1);
        assert_eq!(c.overrides.len(), 1);
        // stdout and file; the TLS syslog output is documented but commented out (its CA file is not
        // installed by the package, and the preflight refuses it).
        assert_eq!(c.outputs.len(), 2);
    }

    #[test]
    fn issue_example_loads() {
        // The example of issue 3, verbatim apart from the comments.
        load(
            r#"
            [sensor]
            name = "sensor01"
            [[source]]
            path = "/opt/zeek/logs/current/conn.log"
            start_at = "beginning"
            [state]
            dir = "/var/lib/longconn"
            checkpoint_interval = "5s"
            [window]
            length = "24h"
            group_by = "pair"
            max_groups = 1000000
            [single]
            levels = { low = "1h", medium = "4h", high = "8h", critical = "12h" }
            [cumulative]
            levels = { low = "1h", medium = "4h", high = "8h", critical = "12h" }
            realert_after = "24h"
            [filter]
            internal = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]
            directions = ["outbound", "inbound", "internal", "external"]
            never = ["127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10", "224.0.0.0/4", "ff00::/8", "255.255.255.255/32", "0.0.0.0/32"]
            always = []
            ignore_states = []
            [[allow]]
            dst = "203.0.113.10/32"
            port = 443
            comment = "backup service"
            [[override]]
            src = "10.9.0.0/16"
            single = { high = "24h" }
            [[output]]
            type = "stdout"
            [[output]]
            type = "file"
            path = "/var/log/longconn/alerts.json"
            "#,
        );
    }

    #[test]
    fn effective_toml_round_trips() {
        for text in [
            MINIMAL.to_string(),
            include_str!("../config/longconn.toml").to_string(),
            format!(
                "{MINIMAL}[single]\nlevels = {{}}\n[cumulative]\nlevels = {{ medium = \"1h30m\" }}\nrealert_after = \"6h\"\n[filter]\nignore_states = [\"s0\"]\ndirections = [\"outbound\"]\n"
            ),
        ] {
            let c = load(&text);
            let printed = c.to_effective_toml();
            let back = match Config::from_toml_str(&printed) {
                Ok(b) => b,
                Err(e) => panic!("effective config does not load:\n{printed}\n{e}"),
            };
            assert_eq!(back, c, "{printed}");
        }
        let printed = load(MINIMAL).to_effective_toml();
        assert!(printed.contains("length = \"24h\""), "{printed}");
        assert!(printed.contains("max_groups = 1000000"), "{printed}");
    }

    #[test]
    fn every_schema_key_deserializes_into_raw_config() {
        // A file with every key of SCHEMA must pass the schema check and RawConfig's deny_unknown_fields.
        let c = load(include_str!("../config/longconn.toml"));
        let printed = c.to_effective_toml();
        let table: toml::Table = toml::from_str(&printed).unwrap();
        let mut errs = Vec::new();
        let mut t = table.clone();
        check_table(&mut t, SCHEMA, "", &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(t, table);
        fn keys(prefix: &str, fields: &[(&str, Shape)], out: &mut Vec<String>) {
            for (name, shape) in fields {
                let path = join_key(prefix, name);
                match shape {
                    Shape::Table(f) | Shape::TableList(f) => keys(&path, f, out),
                    _ => out.push(path),
                }
            }
        }
        let mut all = Vec::new();
        keys("", SCHEMA, &mut all);
        // Every leaf key is named in the production example, so it documents every key.
        let example = include_str!("../config/longconn.toml");
        for key in &all {
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                example.contains(leaf),
                "config/longconn.toml does not mention {key}"
            );
        }
    }

    #[test]
    fn syntax_error_is_one_error_with_line() {
        let e = errors("[[source]]\npath = \"x\"\n[window\n");
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].key, "");
        assert!(e.errors[0].reason.contains("line 3"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn metrics_listen_is_optional_and_checked() {
        assert_eq!(load(MINIMAL).metrics.listen, None);
        let c = load(&format!(
            "{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9787\"\n"
        ));
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9787".parse().unwrap()));
        let back = Config::from_toml_str(&c.to_effective_toml()).unwrap();
        assert_eq!(back, c);
        let c = load(&format!("{MINIMAL}[metrics]\nlisten = \"[::1]:9787\"\n"));
        assert_eq!(c.metrics.listen, Some("[::1]:9787".parse().unwrap()));
        for bad in ["localhost:9787", "127.0.0.1", "", "127.0.0.1:99999"] {
            let e = errors(&format!(
                "{MINIMAL}[metrics]\nlisten = \"{bad}\"\n[window]\nlength = \"x\"\n"
            ));
            assert!(e.has_key("metrics.listen"), "{bad}: {e}");
            assert!(e.has_key("window.length"), "every error at once: {e}");
        }
        let e = errors(&format!("{MINIMAL}[metrics]\nlisten = 9787\nport = 1\n"));
        assert!(
            e.has_key("metrics.listen") && e.has_key("metrics.port"),
            "{e}"
        );
    }

    #[test]
    fn read_error_names_the_path() {
        let path = std::path::Path::new("/nonexistent/longconn.toml");
        let e = Config::load(path).unwrap_err();
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].key, "/nonexistent/longconn.toml");
        assert!(e.errors[0].reason.contains("cannot read"));
    }

    #[test]
    fn load_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("longconn.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        assert_eq!(Config::load(&path).unwrap(), load(MINIMAL));
    }

    #[test]
    fn unknown_keys() {
        assert_error(&format!("{MINIMAL}[windw]\n"), "windw", "unknown key");
        assert_error(
            &format!("{MINIMAL}[window]\nlenght = \"1h\"\n"),
            "window.lenght",
            "expected one of: length",
        );
        assert_error(
            "[[source]]\npath = \"/a\"\nstart = \"end\"\n",
            "source[0].start",
            "unknown key",
        );
        assert_error(
            &format!("{MINIMAL}[single]\nlevels = {{ hihg = \"1h\" }}\n"),
            "single.levels.hihg",
            "unknown key",
        );
        assert_error(
            &format!("{MINIMAL}[[override]]\nport = 22\ncumulative = {{ low = \"1h\", extra = \"2h\" }}\n"),
            "override[0].cumulative.extra",
            "unknown key",
        );
    }

    #[test]
    fn wrong_types() {
        assert_error(
            &format!("{MINIMAL}[window]\nmax_groups = \"many\"\n"),
            "window.max_groups",
            "expected an integer",
        );
        assert_error(
            &format!("{MINIMAL}[state]\ncheckpoint_interval = 5\n"),
            "state.checkpoint_interval",
            "expected a string",
        );
        assert_error(
            &format!("{MINIMAL}[filter]\ninternal = [\"10.0.0.0/8\", 7]\n"),
            "filter.internal[1]",
            "expected a string",
        );
        assert_error(
            &format!("{MINIMAL}[filter]\nnever = \"10.0.0.0/8\"\n"),
            "filter.never",
            "expected an array",
        );
        assert_error("[source]\npath = \"/a\"\n", "source", "[[source]]");
        assert_error(
            &format!("window = 3\n{MINIMAL}"),
            "window",
            "expected a table",
        );
        // A key dropped for its type is reported once, not again as missing.
        for text in [
            "[[source]]\npath = 3\n".to_string(),
            format!("{MINIMAL}[[allow]]\nsrc = 10\n"),
            format!("{MINIMAL}[[override]]\nport = 22\nsingle = \"24h\"\n"),
            format!("{MINIMAL}[[output]]\ntype = \"file\"\npath = 1\n"),
        ] {
            let e = errors(&text);
            assert_eq!(e.errors.len(), 1, "{text}\n{e}");
        }
    }

    #[test]
    fn bad_cidrs() {
        assert_error(
            &format!("{MINIMAL}[filter]\ninternal = [\"10.0.0.0/8\", \"x\", \"300.0.0.0/8\"]\n"),
            "filter.internal[2]",
            "not a CIDR",
        );
        assert_error(
            &format!("{MINIMAL}[filter]\nalways = [\"10.0.0.1/8\"]\n"),
            "filter.always[0]",
            "host bits",
        );
        assert_error(
            &format!("{MINIMAL}[[allow]]\nsrc = \"10.0.0.0/8\"\n[[allow]]\ndst = \"nope\"\n"),
            "allow[1].dst",
            "not a CIDR",
        );
    }

    #[test]
    fn bad_durations() {
        assert_error(
            &format!("{MINIMAL}[window]\nlength = \"a day\"\n"),
            "window.length",
            "not a duration",
        );
        assert_error(
            &format!("{MINIMAL}[window]\nlength = \"0s\"\n"),
            "window.length",
            "zero",
        );
        assert_error(
            &format!("{MINIMAL}[state]\ncheckpoint_interval = \"0ms\"\n"),
            "state.checkpoint_interval",
            "zero",
        );
        assert_error(
            &format!("{MINIMAL}[cumulative]\nrealert_after = \"0h\"\n"),
            "cumulative.realert_after",
            "zero",
        );
        assert_error(
            &format!("{MINIMAL}[single]\nlevels = {{ low = \"0m\" }}\n"),
            "single.levels.low",
            "zero",
        );
    }

    #[test]
    fn levels_must_increase() {
        assert_error(
            &format!(
                "{MINIMAL}[single]\nlevels = {{ low = \"1h\", medium = \"10h\", high = \"8h\" }}\n"
            ),
            "single.levels.high",
            "greater than medium",
        );
        assert_error(
            &format!("{MINIMAL}[cumulative]\nlevels = {{ low = \"2h\", critical = \"2h\" }}\n"),
            "cumulative.levels.critical",
            "greater than low",
        );
        assert_error(
            &format!(
                "{MINIMAL}[[override]]\nport = 22\nsingle = {{ low = \"5h\", medium = \"1h\" }}\n"
            ),
            "override[0].single.medium",
            "greater than low",
        );
    }

    #[test]
    fn sources_required() {
        assert_error("", "source", "no [[source]]");
        assert_error(
            "[[source]]\nstart_at = \"end\"\n",
            "source[0].path",
            "missing",
        );
        assert_error("[[source]]\npath = \"\"\n", "source[0].path", "empty");
        assert_error(
            "[[source]]\npath = \"/a\"\n[[source]]\npath = \"/a\"\n",
            "source[1].path",
            "already source[0]",
        );
    }

    #[test]
    fn bad_enums() {
        assert_error(
            "[[source]]\npath = \"/a\"\nstart_at = \"now\"\n",
            "source[0].start_at",
            "\"beginning\", \"end\"",
        );
        assert_error(
            "[[source]]\npath = \"/a\"\nkind = \"dhcp\"\n",
            "source[0].kind",
            "not one of",
        );
        assert_error(
            &format!("{MINIMAL}[window]\ngroup_by = \"host\"\n"),
            "window.group_by",
            "\"pair\", \"pair_port\"",
        );
        assert_error(
            &format!("{MINIMAL}[filter]\ndirections = [\"outbound\", \"sideways\"]\n"),
            "filter.directions[1]",
            "not one of",
        );
        assert_error(
            &format!("{MINIMAL}[filter]\ndirections = []\n"),
            "filter.directions",
            "empty",
        );
        assert_error(
            &format!("{MINIMAL}[filter]\nignore_states = [\"SF\", \"XX\"]\n"),
            "filter.ignore_states[1]",
            "conn_state",
        );
        assert_error(
            &format!("{MINIMAL}[[allow]]\nproto = \"sctp\"\n"),
            "allow[0].proto",
            "not one of",
        );
        assert_error(
            &format!("{MINIMAL}[[output]]\ntype = \"kafka\"\n"),
            "output[0].type",
            "not one of",
        );
    }

    #[test]
    fn syslog_outputs_names_and_spool() {
        let c = load(&format!(
            r#"{MINIMAL}
            [spool]
            max_bytes = 1048576
            [[output]]
            type = "syslog"
            transport = "tcp"
            address = "siem.example.org:6514"
            [[output]]
            type = "syslog"
            transport = "tls"
            address = "[::1]:6514"
            ca_file = "/etc/ca.pem"
            client_cert = "/etc/c.pem"
            client_key = "/etc/k.pem"
            facility = "local3"
            framing = "newline"
            [[output]]
            type = "syslog"
            name = "syslog-2"
            transport = "unix"
            path = "/dev/log"
            [[output]]
            type = "file"
            path = "/a"
            fsync = "always"
            "#
        ));
        assert_eq!(c.spool.max_bytes, 1 << 20);
        let names: Vec<&str> = c.outputs.iter().map(Output::name).collect();
        assert_eq!(names, ["syslog", "syslog-3", "syslog-2", "file"]);
        let Output::Syslog { syslog, .. } = &c.outputs[1] else {
            panic!()
        };
        assert_eq!(syslog.facility, 19);
        assert_eq!(syslog.framing, Framing::Newline);
        assert_eq!(syslog.app_name, "longconn");
        assert_eq!(
            syslog.transport,
            SyslogTransport::Tls {
                address: "[::1]:6514".into(),
                tls: TlsConfig {
                    ca_file: "/etc/ca.pem".into(),
                    client_cert: Some(("/etc/c.pem".into(), "/etc/k.pem".into())),
                    server_name: "::1".into(),
                    verify_server_name: true,
                }
            }
        );
        let printed = c.to_effective_toml();
        assert_eq!(Config::from_toml_str(&printed).unwrap(), c, "{printed}");
    }

    #[test]
    fn syslog_errors_at_once() {
        let e = errors(&format!(
            r#"{MINIMAL}
            [spool]
            max_bytes = 10
            [[output]]
            type = "syslog"
            [[output]]
            type = "syslog"
            transport = "tls"
            address = "nohost"
            facility = "local9"
            client_cert = "/c"
            [[output]]
            type = "syslog"
            transport = "udp"
            address = "h:1"
            framing = "newline"
            ca_file = "/x"
            name = "a/b"
            [[output]]
            type = "http"
            [[output]]
            type = "stdout"
            name = "dup"
            fsync = "never"
            [[output]]
            type = "stdout"
            name = "dup"
            verify_server_name = "yes"
            "#
        ));
        for key in [
            "spool.max_bytes",
            "output[0].transport",
            "output[1].address",
            "output[1].facility",
            "output[1].ca_file",
            "output[1].client_key",
            "output[2].framing",
            "output[2].ca_file",
            "output[2].name",
            "output[3].url",
            "output[4].fsync",
            "output[5].name",
            "output[5].verify_server_name",
        ] {
            assert!(e.has_key(key), "{key} not reported in:\n{e}");
        }
    }

    #[test]
    fn max_groups_and_ports() {
        assert_error(
            &format!("{MINIMAL}[window]\nmax_groups = 0\n"),
            "window.max_groups",
            "at least 1",
        );
        assert_error(
            &format!("{MINIMAL}[window]\nmax_groups = -3\n"),
            "window.max_groups",
            "at least 1",
        );
        assert_error(
            &format!("{MINIMAL}[[allow]]\nport = 70000\n"),
            "allow[0].port",
            "not a port",
        );
    }

    #[test]
    fn bounds_take_the_maximum_and_refuse_above_it() {
        // (the section and key as written, the largest value accepted, one above it, the error's key)
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "[state]\ncheckpoint_interval",
                "\"24h\"",
                "\"24h 1s\"",
                "state.checkpoint_interval",
            ),
            ("[window]\nlength", "\"720h\"", "\"721h\"", "window.length"),
            (
                "[window]\nmax_groups",
                "100000000",
                "100000001",
                "window.max_groups",
            ),
            (
                "[single]\nlevels",
                "{ low = \"8760h\" }",
                "{ low = \"8761h\" }",
                "single.levels.low",
            ),
            (
                "[cumulative]\nrealert_after",
                "\"8760h\"",
                "\"8761h\"",
                "cumulative.realert_after",
            ),
            (
                "[cumulative]\ninterim_timeout",
                "\"720h\"",
                "\"721h\"",
                "cumulative.interim_timeout",
            ),
            (
                "[spool]\nmax_bytes",
                "1099511627776",
                "1099511627777",
                "spool.max_bytes",
            ),
            (
                "[[output]]\ntype = \"stdout\"\nflush_interval",
                "\"1h\"",
                "\"61m\"",
                "output[0].flush_interval",
            ),
            (
                "[[override]]\nport = 22\ncumulative",
                "{ high = \"8760h\" }",
                "{ high = \"8761h\" }",
                "override[0].cumulative.high",
            ),
        ];
        for (key, max, above, err_key) in cases {
            load(&format!("{MINIMAL}{key} = {max}\n"));
            assert_error(&format!("{MINIMAL}{key} = {above}\n"), err_key, "at most");
        }
    }

    #[test]
    fn allow_and_override_need_match_keys() {
        assert_error(
            &format!("{MINIMAL}[[allow]]\ncomment = \"all\"\n"),
            "allow[0]",
            "no match key",
        );
        assert_error(
            &format!("{MINIMAL}[[override]]\nsingle = {{ low = \"2h\" }}\n"),
            "override[0]",
            "no match key",
        );
        assert_error(
            &format!("{MINIMAL}[[override]]\nport = 22\n"),
            "override[0]",
            "no thresholds",
        );
        assert_error(
            &format!("{MINIMAL}[[override]]\nport = 22\nsingle = {{}}\n"),
            "override[0]",
            "no thresholds",
        );
    }

    #[test]
    fn outputs() {
        assert_error(
            &format!("{MINIMAL}[[output]]\ntype = \"file\"\n"),
            "output[0].path",
            "missing",
        );
        assert_error(
            &format!("{MINIMAL}[[output]]\npath = \"/x\"\n"),
            "output[0].type",
            "missing",
        );
        assert_error(
            &format!("{MINIMAL}[[output]]\ntype = \"stdout\"\npath = \"/x\"\n"),
            "output[0].path",
            "only a type",
        );
        assert_error(
            "[sensor]\nname = \" \"\n[[source]]\npath = \"/a\"\n",
            "sensor.name",
            "empty",
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let e = errors(
            r#"
            [sensor]
            nmae = "x"
            [[source]]
            start_at = "later"
            [window]
            length = "forever"
            group_by = "triple"
            max_groups = 0
            colour = "blue"
            [single]
            levels = { low = "4h", medium = "2h" }
            [filter]
            internal = ["10.0.0.0/8", "192.168.0.0/16", "10.0.0.300/8"]
            [[allow]]
            comment = "nothing to match"
            [[allow]]
            dst = "not-an-ip"
            [[output]]
            type = "file"
            [extra]
            "#,
        );
        let want = [
            "sensor.nmae",
            "window.colour",
            "extra",
            "source[0].path",
            "source[0].start_at",
            "window.length",
            "window.group_by",
            "window.max_groups",
            "single.levels.medium",
            "filter.internal[2]",
            "allow[0]",
            "allow[1].dst",
            "output[0].path",
        ];
        for key in want {
            assert!(e.has_key(key), "{key} not reported in:\n{e}");
        }
        assert_eq!(e.errors.len(), want.len(), "{e}");
        // Display: one line per error, `KEY: REASON`.
        let text = e.to_string();
        assert_eq!(text.lines().count(), want.len());
        assert!(
            text.lines().any(|l| l.starts_with("window.group_by: ")),
            "{text}"
        );
        let _: &dyn std::error::Error = &e;
    }
}
