//! The alert document and its one JSON wire format: ECS-compatible nested objects, one per line.
//!
//! Every output (stdout, file, spool, SIEM) writes [`Alert`] through serde_json and nothing else, so this is
//! the only place the format is defined. Times are RFC 3339 UTC with microseconds; all times are event
//! time taken from records, never the wall clock. Fields:
//!
//! | field | meaning |
//! |---|---|
//! | `@timestamp` | the watermark when the alert was raised (largest `ts + duration` seen) |
//! | `event.kind` | always `"alert"` |
//! | `event.category` | always `["network"]` |
//! | `event.id` | first 32 hex digits of SHA-256 over trigger, group key, level, the uid and ts (µs) of the episode's first record (single: the record itself) and, for a `realert_after` repeat, its number; the same records always give the same id, however they were read |
//! | `event.severity` | 1 (low) to 4 (critical) |
//! | `event.duration` | `event.end - event.start` in nanoseconds |
//! | `event.start` / `event.end` | single: the connection's start and end; cumulative: `longconn.first_seen` and `longconn.last_seen` |
//! | `rule.name` | `"longconn single connection <level>"` or `"longconn cumulative <level>"` |
//! | `source.ip` / `destination.ip` | the originator and responder addresses |
//! | `destination.port` | the responder port (single alerts and `group_by = "pair_port"` only) |
//! | `network.transport` | `tcp`, `udp`, `icmp`...: the record's (single) or the group's (pair_port); absent for cumulative alerts by pair |
//! | `related.ip` | both addresses |
//! | `observer.name` | the sensor name from the config |
//! | `zeek.session_id` | uids of contributing connections: single, the record; cumulative, the group's most recent (up to 50) |
//! | `longconn.trigger` | `"single"` or `"cumulative"` |
//! | `longconn.level` | `low`, `medium`, `high` or `critical` |
//! | `longconn.threshold_seconds` | the threshold of that level that was reached |
//! | `longconn.measure_seconds` | single: the duration; cumulative: the group's time inside the window by the configured `[cumulative] measure` |
//! | `longconn.sum_seconds` | cumulative: the summed connection time inside the window (single: the duration) |
//! | `longconn.covered_seconds` | cumulative: the length of the union of the group's connection intervals inside the window (single: the duration) |
//! | `longconn.open` | true when the record that raised the alert is an interim record (open_conn.log, conn_long.log): the connection was still open; the message says so too |
//! | `longconn.window_seconds` | the window length |
//! | `longconn.connection_count` | connections the group took in since it last had nothing inside the window (single: 1) |
//! | `longconn.longest_seconds` | the longest of those connections |
//! | `longconn.total_bytes` | their `orig_bytes + resp_bytes` |
//! | `longconn.first_seen` / `longconn.last_seen` | earliest start and latest end of those connections |
//! | `longconn.uids_total` | how many uids contributed (`zeek.session_id` holds at most 50) |
//! | `longconn.message` | one sentence in plain words |

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// At most this many uids go into `zeek.session_id`.
pub const MAX_UIDS: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub event: Event,
    pub rule: Rule,
    pub source: Source,
    pub destination: Destination,
    #[serde(default, skip_serializing_if = "Network::is_empty")]
    pub network: Network,
    pub related: Related,
    pub observer: Observer,
    pub zeek: Zeek,
    pub longconn: Longconn,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: String,
    pub category: Vec<String>,
    pub id: String,
    pub severity: u8,
    pub duration: i64,
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub ip: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    pub ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Network {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
}

impl Network {
    fn is_empty(&self) -> bool {
        self.transport.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Related {
    pub ip: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observer {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Zeek {
    pub session_id: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Longconn {
    pub trigger: Trigger,
    pub level: crate::config::Level,
    pub threshold_seconds: f64,
    pub measure_seconds: f64,
    #[serde(default)]
    pub sum_seconds: f64,
    #[serde(default)]
    pub covered_seconds: f64,
    #[serde(default)]
    pub open: bool,
    pub window_seconds: f64,
    pub connection_count: u64,
    pub longest_seconds: f64,
    pub total_bytes: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub uids_total: u64,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Single,
    Cumulative,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Single => "single",
            Trigger::Cumulative => "cumulative",
        }
    }
}

/// µs since the epoch as RFC 3339 UTC with microseconds (`1970-01-01T00:00:00.000000Z` if out of range).
pub fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// µs to seconds.
pub fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

/// The deterministic `event.id`: SHA-256 over the parts, joined by `|`, first 32 hex digits.
pub fn event_id(
    trigger: Trigger,
    group: &str,
    level: crate::config::Level,
    first_uid: &str,
    first_ts_us: i64,
    repeat: u32,
) -> String {
    let mut h = Sha256::new();
    h.update(trigger.name().as_bytes());
    h.update(b"|");
    h.update(group.as_bytes());
    h.update(b"|");
    h.update(level.name().as_bytes());
    h.update(b"|");
    h.update(first_uid.as_bytes());
    h.update(b"|");
    h.update(first_ts_us.to_string().as_bytes());
    if repeat > 0 {
        h.update(b"|repeat ");
        h.update(repeat.to_string().as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Human duration for messages: "8h 3m 20s".
pub fn human(us: i64) -> String {
    let s = us.max(0) / 1_000_000;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

impl Alert {
    /// One JSON line (no newline).
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail; NaN never occurs (all from µs).
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Level;

    #[test]
    fn event_id_is_stable() {
        let a = event_id(
            Trigger::Single,
            "10.0.0.1>1.2.3.4",
            Level::High,
            "CAbc",
            1,
            0,
        );
        let b = event_id(
            Trigger::Single,
            "10.0.0.1>1.2.3.4",
            Level::High,
            "CAbc",
            1,
            0,
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        assert_ne!(
            a,
            event_id(
                Trigger::Cumulative,
                "10.0.0.1>1.2.3.4",
                Level::High,
                "CAbc",
                1,
                0
            )
        );
        assert_ne!(
            a,
            event_id(
                Trigger::Single,
                "10.0.0.1>1.2.3.4",
                Level::High,
                "CAbc",
                1,
                1
            )
        );
        // Pinned so that a change of the id scheme is a conscious decision (SIEMs dedupe on it).
        assert_eq!(
            a, "1224bfc71d22f5c2bdba9e932e2bb2ae",
            "sha256(\"single|10.0.0.1>1.2.3.4|high|CAbc|1\")[..32]"
        );
    }

    #[test]
    fn rfc3339_has_micros() {
        assert_eq!(
            rfc3339(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(human(8 * 3600 * 1_000_000 + 61_000_000), "8h 1m 1s");
    }
}
