//! Test fixtures: a [`DetectorConfig`] and [`ConnRecord`]s built in code, for the pure core's table tests
//! (the TOML loader is tested on its own).

use super::DetectorConfig;
use crate::rules::{
    CumulativeConfig, Direction, FilterConfig, Levels, Measure, DEFAULT_INTERIM_TIMEOUT,
    DEFAULT_INTERNAL, DEFAULT_NEVER,
};
use crate::window::{GroupBy, WindowConfig};
use crate::zeek::{ConnRecord, SourceKind};
use std::time::Duration;

pub const H: u64 = 3600;

pub fn hours(h: u64) -> Option<Duration> {
    Some(Duration::from_secs(h * H))
}

pub fn levels(low: u64, medium: u64, high: u64, critical: u64) -> Levels {
    Levels {
        thresholds: [hours(low), hours(medium), hours(high), hours(critical)],
    }
}

/// The first issue's defaults (the table tests were written for them): 24h window by pair, levels
/// 1h/4h/8h/12h for both rules (the shipped default is 1h/8h/12h/24h since issue 12), RFC 1918 internal,
/// every direction, the usual `never` list, one conn source.
pub fn config() -> DetectorConfig {
    let nets = |v: &[&str]| v.iter().filter_map(|s| s.parse().ok()).collect::<Vec<_>>();
    DetectorConfig {
        sensor_name: "sensor01".into(),
        window: WindowConfig {
            length: Duration::from_secs(24 * H),
            group_by: GroupBy::Pair,
            max_groups: 1_000_000,
        },
        single: levels(1, 4, 8, 12),
        cumulative: CumulativeConfig {
            levels: levels(1, 4, 8, 12),
            realert_after: None,
            measure: Measure::Sum,
            interim_timeout: DEFAULT_INTERIM_TIMEOUT,
        },
        filter: FilterConfig {
            internal: nets(DEFAULT_INTERNAL),
            directions: vec![
                Direction::Outbound,
                Direction::Inbound,
                Direction::Internal,
                Direction::External,
            ],
            never: nets(DEFAULT_NEVER),
            always: vec![],
            ignore_states: vec![],
            allow_files: vec![],
        },
        allow: vec![],
        overrides: vec![],
        source_kinds: vec![SourceKind::Conn],
        context: Default::default(),
    }
}

/// A TCP record `orig -> resp:443` starting at `ts` seconds, lasting `dur` seconds.
pub fn rec(uid: &str, orig: &str, resp: &str, ts: f64, dur: f64) -> ConnRecord {
    ConnRecord {
        ts: Some(ts),
        uid: uid.into(),
        orig_h: orig.parse().ok(),
        orig_p: Some(40000),
        resp_h: resp.parse().ok(),
        resp_p: Some(443),
        proto: "tcp".into(),
        duration: Some(dur),
        orig_bytes: Some(100),
        resp_bytes: Some(200),
        conn_state: Some("SF".into()),
        ..ConnRecord::default()
    }
}

/// The ssl.log record of `10.0.0.1 -> resp:443` with uid `uid` at `ts` seconds, naming its server `name`.
pub fn sni(uid: &str, resp: &str, name: &str, ts: f64) -> crate::zeek::context::ContextRecord {
    crate::zeek::context::ContextRecord {
        kind: crate::zeek::context::ContextKind::Ssl,
        ts,
        uid: uid.into(),
        orig_h: "10.0.0.1".parse().expect("addr"),
        resp_h: Some(resp.parse().expect("addr")),
        resp_p: Some(443),
        name: Some(name.into()),
        answers: Vec::new(),
    }
}
