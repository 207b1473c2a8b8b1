//! The alert document and its one JSON wire format: ECS-compatible nested objects, one per line.
//!
//! Every output (stdout, file, spool, SIEM) writes [`Alert`] through serde_json and nothing else, so this is
//! the only place the format is defined: [`Context`] builds the documents the detector raises (rule names,
//! messages, `event.id`), and what reads a stored document back ([`Head`] for the spool, [`observer_name`]
//! and [`epoch_seconds`] for Splunk) reads it through this module. Times are RFC 3339 UTC with microseconds; all times are event
//! time taken from records, never the wall clock. Fields:
//!
//! | field | meaning |
//! |---|---|
//! | `@timestamp` | the watermark when the alert was raised (largest `ts + duration` seen) |
//! | `message` | the plain-words sentence (the same as `longconn.message`) |
//! | `ecs.version` | the ECS version these fields follow, `8.11.0` |
//! | `event.kind` | always `"alert"` |
//! | `event.category` | always `["network"]` |
//! | `event.type` | always `["connection"]` |
//! | `event.dataset` | always `"longconn.alert"` |
//! | `event.id` | first 32 hex digits of SHA-256 over trigger, group key (`orig>resp`, `orig>resp:port/proto`, or `orig>name` for a group of `group_by = "name"`), level, the uid and ts (µs) of the episode's first record (single: the record itself) and, for a `realert_after` repeat, its number; the same records always give the same id, however they were read |
//! | `event.severity` | 1 (low) to 4 (critical) |
//! | `event.duration` | `event.end - event.start` in nanoseconds |
//! | `event.start` / `event.end` | single: the connection's start and end; cumulative: `longconn.first_seen` and `longconn.last_seen` |
//! | `rule.name` | `"longconn single connection <level>"` or `"longconn cumulative <level>"` |
//! | `source.ip` / `destination.ip` | the originator and responder addresses (for a group of `group_by = "name"`: the responder of the record that raised the alert) |
//! | `source.port` | single alerts: the originator port (not for ICMP, whose "ports" are type and code) |
//! | `destination.port` | the responder port (single alerts, not for ICMP; and `group_by = "pair_port"`) |
//! | `destination.domain` | the server's name when ssl.log (SNI), http.log (Host) or dns.log (an answer to this host) gave one; see `detector::context` |
//! | `tls.client.server_name` | the name, when it came from the TLS SNI |
//! | `network.transport` | `tcp`, `udp`, `icmp`...: the record's (single) or the group's (pair_port); absent for cumulative alerts by pair |
//! | `network.direction` | `outbound`, `inbound`, `internal` or `external`, from `[filter] internal` |
//! | `network.protocol` | single alerts: Zeek's `service` when it identified the protocol |
//! | `network.community_id` | single alerts: the record's `community_id`, else Community ID v1 computed from its 5-tuple |
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
//! | `longconn.domain_source` | where `destination.domain` came from: `sni`, `http_host` or `dns` |
//! | `longconn.domains` | cumulative: the server names seen for the group's connections (at most 10) |
//! | `longconn.reasons` | the context modifiers applied, by stable name (`named_tls_usual_port`, `common_destination`, `unidentified_protocol`, `no_dns_answer`, `rare_destination`); absent when none |
//! | `longconn.duration_level` | with `reasons`: the level the duration (single) or measure (cumulative) reached before them; `longconn.level` is the level after |
//! | `longconn.message` | one sentence in plain words; names the server when known and says which modifiers moved the level |
//!
//! `event.id` does not depend on the wall clock or on the order records were read in; no field does.

use crate::detector::context::{Named, Reason};
use crate::rules::{Direction, Level};
use crate::window::GroupBy;
use crate::window::GroupKey;
use crate::zeek::{transport, ConnRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// At most this many uids go into `zeek.session_id`.
pub const MAX_UIDS: usize = 50;

/// The ECS version the documents follow (`ecs.version`).
pub const ECS_VERSION: &str = "8.11.0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    /// The plain-words sentence (also in `longconn.message`).
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub ecs: Ecs,
    pub event: Event,
    pub rule: Rule,
    pub source: Source,
    pub destination: Destination,
    #[serde(default, skip_serializing_if = "Network::is_empty")]
    pub network: Network,
    pub related: Related,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    pub observer: Observer,
    pub zeek: Zeek,
    pub longconn: Longconn,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ecs {
    pub version: String,
}

impl Default for Ecs {
    fn default() -> Self {
        Ecs {
            version: ECS_VERSION.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: String,
    pub category: Vec<String>,
    #[serde(default, rename = "type")]
    pub kind_type: Vec<String>,
    #[serde(default)]
    pub dataset: String,
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
    /// Single alerts of TCP, UDP and other ported transports (not ICMP, whose "ports" are type and code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    pub ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The server's name, when ssl.log, http.log or dns.log gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// ECS `tls`: only `tls.client.server_name`, when the name is the connection's TLS SNI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tls {
    pub client: TlsClient,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsClient {
    pub server_name: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Network {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// ECS values from `[filter] internal`: inbound, outbound, internal, external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Zeek's `service` (single alerts, when Zeek identified the protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Single alerts: the record's `community_id`, or Community ID v1 computed from its 5-tuple.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
}

impl Network {
    fn is_empty(&self) -> bool {
        self.transport.is_none()
            && self.direction.is_none()
            && self.protocol.is_none()
            && self.community_id.is_none()
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
    pub level: Level,
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
    /// Where `destination.domain` came from: `sni`, `http_host` or `dns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_source: Option<String>,
    /// Cumulative: the server names seen for the group's connections (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// The context modifiers applied (see `detector::context`), when any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The level the duration (single) or measure (cumulative) reached before the modifiers, when any applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_level: Option<Level>,
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
    level: Level,
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

/// The group's text in `event.id`: `orig>resp` by pair, `orig>resp:port/proto` by pair-port,
/// `orig>name` for a key of a server name (`group_by = "name"`, `name` being that server name).
pub fn group_string(k: &GroupKey, by: GroupBy, name: Option<&str>) -> String {
    if k.is_named() {
        return format!(
            "{}>{}",
            k.orig,
            name.unwrap_or_default().to_ascii_lowercase()
        );
    }
    match by {
        GroupBy::Pair | GroupBy::Name => format!("{}>{}", k.orig, k.resp),
        GroupBy::PairPort => format!(
            "{}>{}:{}/{}",
            k.orig,
            k.resp,
            k.port,
            transport::name(k.proto)
        ),
    }
}

/// What the context knew when a record raised alerts: its server's name and the modifiers applied.
pub struct Why<'a> {
    pub named: Option<&'a Named>,
    pub reasons: &'a [Reason],
}

impl Why<'_> {
    /// ` (name)` after the responder in a message, or nothing.
    fn name_text(&self) -> String {
        self.named
            .map(|n| format!(" ({})", n.name))
            .unwrap_or_default()
    }

    /// The modifiers' sentence for a message: empty when none applied.
    fn sentence(&self, reached: Level, level: Level) -> String {
        if self.reasons.is_empty() {
            return String::new();
        }
        let words: Vec<&str> = self.reasons.iter().map(|r| r.words()).collect();
        let moved = match level.cmp(&reached) {
            std::cmp::Ordering::Less => {
                format!("lowered from {} to {}", reached.name(), level.name())
            }
            std::cmp::Ordering::Greater => {
                format!("raised from {} to {}", reached.name(), level.name())
            }
            std::cmp::Ordering::Equal => "level unchanged".to_string(),
        };
        format!(" Context: {}; {moved}.", words.join("; "))
    }

    fn fill(&self, a: &mut Alert, reached: Level) {
        if let Some(n) = self.named {
            a.destination.domain = Some(n.name.to_string());
            a.longconn.domain_source = Some(n.source.name().to_string());
            if n.source == crate::detector::context::DomainSource::Sni {
                a.tls = Some(Tls {
                    client: TlsClient {
                        server_name: n.name.to_string(),
                    },
                });
            }
        }
        if !self.reasons.is_empty() {
            a.longconn.reasons = self.reasons.iter().map(|r| r.name().to_string()).collect();
            a.longconn.duration_level = Some(reached);
        }
    }
}

/// ` (a, b)` after the responder in a cumulative message, or nothing.
fn names_text(names: &[compact_str::CompactString], group_name: Option<&str>) -> String {
    let list: Vec<&str> = names
        .iter()
        .map(|n| n.as_str())
        .filter(|n| Some(*n) != group_name)
        .collect();
    if list.is_empty() {
        return String::new();
    }
    format!(" ({})", list.join(", "))
}

/// What every alert raised by one record shares.
pub struct Context<'a> {
    pub key: &'a GroupKey,
    /// The record's responder: `destination.ip` (the key holds a digest instead for a named group).
    pub resp: IpAddr,
    /// The server name a key of `group_by = "name"` stands for.
    pub group_name: Option<&'a str>,
    pub group_by: GroupBy,
    pub sensor: &'a str,
    /// The watermark (µs): `@timestamp`.
    pub t: i64,
    pub window_us: i64,
    /// The record is an interim record: its connection is still open.
    pub open: bool,
    /// The pair's direction relative to `[filter] internal`.
    pub direction: Direction,
}

/// A group at a cumulative alert: what the detector keeps for it since it last had nothing inside the
/// window, and the cumulative figures of this alert; times in µs.
pub struct GroupFigures<'a> {
    pub connections: u64,
    pub longest_us: i64,
    pub total_bytes: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    /// The uid and ts of the episode's first record (part of `event.id`).
    pub episode_first: Option<(&'a str, i64)>,
    /// The group's most recent uids, oldest first.
    pub uids: Vec<String>,
    /// Server names seen for the group's connections.
    pub names: &'a [compact_str::CompactString],
    pub measure: i64,
    pub sum: i64,
    pub covered: i64,
}

impl Context<'_> {
    #[allow(clippy::too_many_arguments)]
    fn base(
        &self,
        trigger: Trigger,
        level: Level,
        id: String,
        start: i64,
        end: i64,
        port: Option<u16>,
        transport: Option<String>,
        lc: Longconn,
        uids: Vec<String>,
    ) -> Alert {
        let rule = match trigger {
            Trigger::Single => format!("longconn single connection {}", level.name()),
            Trigger::Cumulative => format!("longconn cumulative {}", level.name()),
        };
        Alert {
            timestamp: rfc3339(self.t),
            message: lc.message.clone(),
            ecs: Ecs::default(),
            event: Event {
                kind: "alert".into(),
                category: vec!["network".into()],
                kind_type: vec!["connection".into()],
                dataset: "longconn.alert".into(),
                id,
                severity: level.severity(),
                duration: (end - start).saturating_mul(1000),
                start: rfc3339(start),
                end: rfc3339(end),
            },
            rule: Rule { name: rule },
            source: Source {
                ip: self.key.orig,
                port: None,
            },
            destination: Destination {
                ip: self.resp,
                port,
                domain: None,
            },
            network: Network {
                transport,
                direction: Some(self.direction),
                ..Network::default()
            },
            tls: None,
            related: Related {
                ip: if self.key.orig == self.resp {
                    vec![self.key.orig]
                } else {
                    vec![self.key.orig, self.resp]
                },
            },
            observer: Observer {
                name: self.sensor.to_string(),
            },
            zeek: Zeek { session_id: uids },
            longconn: lc,
        }
    }

    /// The alert of one connection `rec` (from `ts` to `end`, lasting `dur`) whose duration reached
    /// `reached` (threshold `threshold`, µs), alerted at `level` after the context modifiers in `why`.
    #[allow(clippy::too_many_arguments)]
    pub fn single(
        &self,
        rec: &ConnRecord,
        level: Level,
        reached: Level,
        threshold: i64,
        ts: i64,
        end: i64,
        dur: i64,
        why: &Why,
    ) -> Alert {
        let group = group_string(self.key, self.group_by, self.group_name);
        let id = event_id(Trigger::Single, &group, level, &rec.uid, ts, 0);
        let transport = (!rec.proto.is_empty()).then(|| rec.proto.as_str().to_lowercase());
        let port_text = rec.resp_p.map(|p| format!(":{p}")).unwrap_or_default();
        let how = if self.open {
            format!("has been up for {} and is still open", human(dur))
        } else {
            format!("lasted {}", human(dur))
        };
        let message = format!(
            "One connection from {} to {}{}{} {how}, reaching the {} level ({}).{}",
            self.key.orig,
            self.resp,
            port_text,
            why.name_text(),
            reached.name(),
            human(threshold),
            why.sentence(reached, level)
        );
        let lc = Longconn {
            trigger: Trigger::Single,
            level,
            threshold_seconds: secs(threshold),
            measure_seconds: secs(dur),
            sum_seconds: secs(dur),
            covered_seconds: secs(dur),
            open: self.open,
            window_seconds: secs(self.window_us),
            connection_count: 1,
            longest_seconds: secs(dur),
            total_bytes: rec.total_bytes(),
            first_seen: rfc3339(ts),
            last_seen: rfc3339(end),
            uids_total: 1,
            domain_source: None,
            domains: Vec::new(),
            reasons: Vec::new(),
            duration_level: None,
            message,
        };
        let mut a = self.base(
            Trigger::Single,
            level,
            id,
            ts,
            end,
            rec.resp_p,
            transport,
            lc,
            vec![rec.uid.to_string()],
        );
        why.fill(&mut a, reached);
        let icmp = matches!(rec.proto.as_str(), "icmp" | "icmp6" | "ipv6-icmp");
        if icmp {
            // Zeek logs ICMP type and code in the port fields: they are not ports.
            a.destination.port = None;
        } else {
            a.source.port = rec.orig_p;
        }
        a.network.protocol = rec
            .service
            .as_deref()
            .filter(|s| !s.is_empty() && *s != "-")
            .map(str::to_string);
        a.network.community_id = rec
            .community_id
            .as_ref()
            .map(ToString::to_string)
            .or_else(|| {
                // Zeek writes "icmp" for ICMPv6 as well.
                let proto = match (transport::number(&rec.proto), self.key.orig) {
                    (0, _) => return None,
                    (1, IpAddr::V6(_)) => 58,
                    (n, _) => n,
                };
                crate::zeek::community_id::v1(
                    self.key.orig,
                    self.resp,
                    proto,
                    rec.orig_p?,
                    rec.resp_p?,
                )
            });
        a
    }

    /// The alert of a group whose measure reached `reached` (threshold `threshold`, µs), alerted at
    /// `level` after the context modifiers in `why`, or still at it (`repeat` > 0, a `realert_after` repeat).
    pub fn cumulative(
        &self,
        g: GroupFigures,
        level: Level,
        reached: Level,
        repeat: u32,
        threshold: i64,
        why: &Why,
    ) -> Alert {
        let measure = g.measure;
        let group = group_string(self.key, self.group_by, self.group_name);
        let (first_uid, first_ts) = g.episode_first.unwrap_or(("", 0));
        let id = event_id(
            Trigger::Cumulative,
            &group,
            level,
            first_uid,
            first_ts,
            repeat,
        );
        let (port, transport) = match self.group_by {
            _ if self.key.is_named() => (None, None),
            GroupBy::Pair | GroupBy::Name => (None, None),
            GroupBy::PairPort => (
                Some(self.key.port),
                Some(transport::name(self.key.proto).to_string()),
            ),
        };
        let what = if repeat > 0 { "is still at" } else { "reached" };
        let port_text = port.map(|p| format!(":{p}")).unwrap_or_default();
        let still_open = if self.open {
            " (one of them still open)"
        } else {
            ""
        };
        let message = format!(
            "{} connections{} from {} to {}{} add up to {} in the last {} ({} covered): the group {} the {} level ({}).{}",
            g.connections,
            still_open,
            self.key.orig,
            self.group_name.map_or_else(
                || format!("{}{}", self.resp, port_text),
                |n| format!("{n} (last at {})", self.resp)
            ),
            names_text(g.names, self.group_name),
            human(g.sum),
            human(self.window_us),
            human(g.covered),
            what,
            reached.name(),
            human(threshold),
            why.sentence(reached, level)
        );
        let lc = Longconn {
            trigger: Trigger::Cumulative,
            level,
            threshold_seconds: secs(threshold),
            measure_seconds: secs(measure),
            sum_seconds: secs(g.sum),
            covered_seconds: secs(g.covered),
            open: self.open,
            window_seconds: secs(self.window_us),
            connection_count: g.connections,
            longest_seconds: secs(g.longest_us),
            total_bytes: g.total_bytes,
            first_seen: rfc3339(g.first_seen),
            last_seen: rfc3339(g.last_seen),
            uids_total: g.connections,
            domain_source: None,
            domains: g.names.iter().map(ToString::to_string).collect(),
            reasons: Vec::new(),
            duration_level: None,
            message,
        };
        let mut a = self.base(
            Trigger::Cumulative,
            level,
            id,
            g.first_seen,
            g.last_seen,
            port,
            transport,
            lc,
            g.uids,
        );
        why.fill(&mut a, reached);
        a
    }
}

impl Alert {
    /// One JSON line (no newline).
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail; NaN never occurs (all from µs).
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The fields the spool reads back from a stored document without parsing all of it: `@timestamp`,
/// `event.id` and `event.severity`. Any JSON object with them is taken (what older versions spooled too).
#[derive(Debug, Deserialize)]
pub struct Head {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub event: HeadEvent,
}

/// The part of `event` that [`Head`] reads.
#[derive(Debug, Deserialize)]
pub struct HeadEvent {
    pub id: String,
    pub severity: u8,
}

impl Head {
    pub fn parse(json: &str) -> serde_json::Result<Head> {
        serde_json::from_str(json)
    }
}

/// A document's `observer.name` (the sensor).
pub fn observer_name(json: &str) -> serde_json::Result<String> {
    #[derive(Deserialize)]
    struct Doc {
        observer: Observer,
    }
    Ok(serde_json::from_str::<Doc>(json)?.observer.name)
}

/// `@timestamp` (RFC 3339) as epoch seconds with microseconds; None if it does not parse.
pub fn epoch_seconds(timestamp: &str) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(timestamp).ok()?;
    Some(t.timestamp() as f64 + f64::from(t.timestamp_subsec_micros()) / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn readers_read_what_context_writes() {
        let (orig, resp) = ("10.0.0.1".parse().unwrap(), "1.2.3.4".parse().unwrap());
        let key = GroupKey::new(GroupBy::PairPort, orig, resp, 443, 6);
        let ctx = Context {
            key: &key,
            resp,
            group_name: None,
            group_by: GroupBy::PairPort,
            sensor: "s1",
            t: 1_700_000_000_123_456,
            window_us: 3_600_000_000,
            open: false,
            direction: Direction::Outbound,
        };
        let rec = ConnRecord {
            uid: "CAbc".into(),
            proto: "tcp".into(),
            resp_p: Some(443),
            ..ConnRecord::default()
        };
        let (ts, dur) = (1_699_990_000_000_000, 2_000_000_000);
        let why = Why {
            named: None,
            reasons: &[],
        };
        let a = ctx.single(
            &rec,
            Level::High,
            Level::High,
            60_000_000,
            ts,
            ts + dur,
            dur,
            &why,
        );
        let json = a.to_json();
        let head = Head::parse(&json).unwrap();
        assert_eq!(head.timestamp, a.timestamp);
        assert_eq!(head.event.id, a.event.id);
        assert_eq!(head.event.severity, a.event.severity);
        assert_eq!(observer_name(&json).unwrap(), "s1");
        let t = epoch_seconds(&head.timestamp).unwrap();
        assert!((t - 1_700_000_000.123_456).abs() < 1e-6, "{t}");
        assert_eq!(a.network.transport.as_deref(), Some("tcp"));
        assert_eq!(a.destination.port, Some(443));
    }

    /// Every field of a real alert (single and cumulative, with a name and reasons) is a row of the table
    /// in this module's doc, and has the JSON type the table's field implies.
    #[test]
    fn every_alert_field_is_documented() {
        let doc = include_str!("alert.rs");
        let documented: Vec<String> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("//! | `"))
            .flat_map(|l| {
                let cell = l.split(" |").next().unwrap_or("");
                cell.split(" / ")
                    .map(|f| f.trim_matches('`').trim_start_matches('`').to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        let alerts = crate::detector::context::tests_support::sample_alerts();
        assert!(alerts.len() >= 2);
        for a in &alerts {
            let v: serde_json::Value = serde_json::from_str(&a.to_json()).expect("json");
            let mut leaves = Vec::new();
            flatten("", &v, &mut leaves);
            for (key, value) in leaves {
                assert!(
                    documented.contains(&key),
                    "`{key}` is not in the field table"
                );
                let ok = match key.as_str() {
                    k if k.ends_with("_seconds") => value.is_f64(),
                    "event.severity"
                    | "event.duration"
                    | "longconn.connection_count"
                    | "longconn.total_bytes"
                    | "longconn.uids_total"
                    | "source.port"
                    | "destination.port" => value.is_u64() || value.is_i64(),
                    "longconn.open" => value.is_boolean(),
                    "event.category" | "event.type" | "related.ip" | "zeek.session_id"
                    | "longconn.domains" | "longconn.reasons" => value.is_array(),
                    _ => value.is_string(),
                };
                assert!(ok, "`{key}` has the wrong type: {value}");
            }
        }
    }

    /// Dotted keys of the object leaves (arrays count as leaves).
    fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
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
