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

pub mod diag;
pub mod preflight;
pub mod values;

pub use crate::checkpoint::config::StateConfig;
pub use crate::metrics::config::MetricsConfig;
use crate::output::config::FSYNC;
pub use crate::output::config::{Batching, FsyncPolicy, Output, DEFAULT_BATCHING};
pub use crate::output::syslog::config::{
    Framing, SyslogConfig, SyslogTransport, TlsConfig, FACILITIES,
};
use crate::output::syslog::config::{FRAMING, TRANSPORTS};
pub use crate::spool::config::{
    SpoolConfig, DEFAULT_SPOOL_MAX_BYTES, MAX_SPOOL_MAX_BYTES, MIN_SPOOL_MAX_BYTES,
};
pub use crate::tail::config::{Source, StartAt};
pub use diag::{err, ConfigError, ConfigErrors};
pub use values::{
    format_duration, name_of, one_of, parse_duration, parse_listen, parse_net, split_host_port,
};

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
        }
    }
}

/// Where `run` and `check` look for the config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/longconn/longconn.toml";

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

const START_AT: &[(&str, StartAt)] = &[("beginning", StartAt::Beginning), ("end", StartAt::End)];
const KINDS: &[(&str, SourceKind)] = &[
    ("conn", SourceKind::Conn),
    ("open_conn", SourceKind::OpenConn),
    ("conn_long", SourceKind::ConnLong),
];
pub const MEASURES: &[(&str, Measure)] = &[("sum", Measure::Sum), ("covered", Measure::Covered)];
const GROUP_BY: &[(&str, GroupBy)] = &[("pair", GroupBy::Pair), ("pair_port", GroupBy::PairPort)];
const DIRECTIONS: &[(&str, Direction)] = &[
    ("outbound", Direction::Outbound),
    ("inbound", Direction::Inbound),
    ("internal", Direction::Internal),
    ("external", Direction::External),
];

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
mod tests;
