//! The rules: which records count (filters), which thresholds apply to them (overrides), and when a group
//! raises an alert (the single-connection rule and the cumulative episode rule). Pure: time is event time
//! in integer microseconds, handed in by the detector.
//!
//! Filters run in this order and the first that matches names the reason a record was left out:
//! 1. `never`: an address inside a `never` CIDR and not inside an `always` CIDR;
//! 2. `directions`: (orig internal?, resp internal?) gives outbound (internal -> external), inbound,
//!    internal or external; directions not listed are left out;
//! 3. `ignore_states`: the record's `conn_state` is listed (a record without `conn_state` passes);
//! 4. `allow`: some `[[allow]]` entry matches (every key it gives matches: `src` CIDR on `id.orig_h`,
//!    `dst` CIDR on `id.resp_h`, `port` on `id.resp_p`, `proto` case-insensitively). An entry with a
//!    `domain` also needs the connection's server name, which the context only gives once the record is
//!    admitted: such entries are checked by the detector after `name_for` ([`Rules::allowed_by_name`]),
//!    counted under the same reason; entries without a domain stay on this fast path.
//!
//! Overrides: the first matching `[[override]]` replaces the levels it gives, per record.
//!
//! Single rule: a record whose duration reaches a level raises one alert at the highest level reached,
//! unless the group had a single alert at that level or higher less than `window.length` of event time ago.
//! Keeping only the last single alert (level, time) is exact: a newer alert at a lower level is only raised
//! once the older one is out of reach.
//!
//! Cumulative rule: an *episode* starts with the group's first record after the previous episode ended.
//! After a record is added, if the measure reaches a level above the highest level alerted in this episode,
//! one alert is raised at the highest level reached. The episode ends when the measure, checked at the
//! watermark just before the group's next record is added, is below the lowest level. With
//! `realert_after`, a group that still holds a level repeats the alert (at its current level) once that much
//! event time has passed since its last alert.

pub mod allow_list;
pub mod config;

use crate::detector::DetectorConfig;
use crate::zeek::ConnRecord;
use compact_str::CompactString;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;

/// Default of `[cumulative] interim_timeout`: a day and an hour, so an hourly open_conn record or a daily
/// conn_long record always comes before its connection is forgotten.
pub const DEFAULT_INTERIM_TIMEOUT: Duration = Duration::from_secs(25 * 3600);

/// Default of `[filter] internal`: the private ranges (RFC 1918, IPv6 ULA).
pub const DEFAULT_INTERNAL: &[&str] =
    &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"];
/// Default of `[filter] never`: loopback, link-local, multicast, broadcast and the unspecified address.
pub const DEFAULT_NEVER: &[&str] = &[
    "127.0.0.0/8",
    "::1/128",
    "169.254.0.0/16",
    "fe80::/10",
    "224.0.0.0/4",
    "ff00::/8",
    "255.255.255.255/32",
    "0.0.0.0/32",
];

/// Alert severity levels, lowest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Low, Level::Medium, Level::High, Level::Critical];
    pub fn name(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
    /// ECS `event.severity`: 1 (low) to 4 (critical).
    pub fn severity(self) -> u8 {
        self as u8 + 1
    }
}

/// Thresholds per level; a level may be switched off (None). Set levels are strictly increasing.
#[derive(Debug, Clone, PartialEq)]
pub struct Levels {
    /// Indexed by `Level as usize`.
    pub thresholds: [Option<Duration>; 4],
}

impl Levels {
    /// The highest level whose threshold `seconds` reaches, if any.
    pub fn level_for(&self, seconds: f64) -> Option<Level> {
        Level::ALL
            .iter()
            .rev()
            .copied()
            .find(|l| matches!(self.thresholds[*l as usize], Some(t) if seconds >= t.as_secs_f64()))
    }
    /// The lowest set threshold.
    pub fn lowest(&self) -> Option<Duration> {
        self.thresholds.iter().flatten().next().copied()
    }
    pub fn threshold(&self, level: Level) -> Option<Duration> {
        self.thresholds[level as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// internal orig -> external resp
    Outbound,
    /// external orig -> internal resp
    Inbound,
    /// internal -> internal
    Internal,
    /// external -> external
    External,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CumulativeConfig {
    pub levels: Levels,
    pub realert_after: Option<Duration>,
    /// What the cumulative levels are compared with (issue 6).
    pub measure: Measure,
    /// An open connection (seen only in interim logs) with no news for this long in event time is forgotten.
    pub interim_timeout: Duration,
}

/// The cumulative measure: `sum` of connection time inside the window, or `covered`, the length of the
/// union of the group's connection intervals inside the window (wall-clock time with a connection up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Sum,
    /// The default since issue 12: parallel connections count once.
    #[default]
    Covered,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfig {
    pub internal: Vec<IpNet>,
    pub directions: Vec<Direction>,
    pub never: Vec<IpNet>,
    pub always: Vec<IpNet>,
    pub ignore_states: Vec<String>,
    /// `allow_files`: globs of allow lists ([`allow_list`]), read where the config is used (the
    /// preflight), never by the loader.
    pub allow_files: Vec<String>,
}

/// Match keys shared by `[[allow]]` and `[[override]]`: every key given must match.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Match {
    pub src: Option<IpNet>,
    pub dst: Option<IpNet>,
    pub port: Option<u16>,
    /// Lower-case transport name: "tcp", "udp", "icmp".
    pub proto: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Allow {
    pub matches: Match,
    /// The server name (SNI, HTTP Host or DNS answer) must be this domain (or one under it).
    pub domain: Option<Domain>,
    /// As written in `[[allow]]`; `FILE:LINE` for an entry of an allow file.
    pub comment: Option<String>,
}

/// An allowlisted domain: `slack.com` matches `slack.com` and every name under it (`a.b.slack.com`),
/// `=slack.com` only `slack.com`; `*.slack.com` is read as `slack.com`. Names compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Lower case, without `=` or `*.`.
    pub name: String,
    /// `=`: the name itself only, no subdomain.
    pub exact: bool,
}

impl Domain {
    /// Reads `slack.com`, `=slack.com` or `*.slack.com`. A domain is dot-separated labels of letters,
    /// digits, `-` and `_` (a trailing dot is dropped); no scheme, path, port, space or other wildcard.
    pub fn parse(text: &str) -> Result<Domain, String> {
        let (rest, exact) = match text.strip_prefix('=') {
            Some(rest) => (rest, true),
            None => (text.strip_prefix("*.").unwrap_or(text), false),
        };
        let name = rest.strip_suffix('.').unwrap_or(rest).to_ascii_lowercase();
        let why = if name.is_empty() {
            Some("is empty")
        } else if name.contains("://") || name.contains('/') {
            Some("is a URL: give only the host name (\"slack.com\")")
        } else if name.chars().any(char::is_whitespace) {
            Some("contains a space")
        } else if name.contains('*') {
            Some("has a wildcard other than a leading \"*.\"")
        } else if name.contains(':') {
            Some("has a port: give only the host name")
        } else if name.split('.').any(str::is_empty) {
            Some("has an empty label (\"..\" or a leading dot)")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            Some("has a character other than letters, digits, '-', '_' and '.' (write IDNs in punycode)")
        } else {
            None
        };
        match why {
            Some(why) => Err(format!("{text:?} is not a domain: it {why}")),
            None => Ok(Domain { name, exact }),
        }
    }

    /// Whether the server name `name` is this domain or (unless exact) under it.
    pub fn matches(&self, name: &str) -> bool {
        let (n, d) = (name.as_bytes(), self.name.as_bytes());
        if n.eq_ignore_ascii_case(d) {
            return true;
        }
        !self.exact
            && n.len() > d.len()
            && n[n.len() - d.len()..].eq_ignore_ascii_case(d)
            && n[n.len() - d.len() - 1] == b'.'
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.exact {
            write!(f, "={}", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// Other thresholds for matching traffic; a level given here replaces that level of the main config.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub matches: Match,
    pub single: [Option<Duration>; 4],
    pub cumulative: [Option<Duration>; 4],
}

/// Why a record was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterReason {
    Never,
    Direction,
    State,
    Allow,
}

impl FilterReason {
    pub const ALL: [FilterReason; 4] = [
        FilterReason::Never,
        FilterReason::Direction,
        FilterReason::State,
        FilterReason::Allow,
    ];
    pub fn name(self) -> &'static str {
        match self {
            FilterReason::Never => "never",
            FilterReason::Direction => "direction",
            FilterReason::State => "state",
            FilterReason::Allow => "allow",
        }
    }
}

/// Thresholds in µs, indexed by `Level as usize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds(pub [Option<i64>; 4]);

impl Thresholds {
    pub fn from_levels(l: &Levels) -> Thresholds {
        Thresholds(l.thresholds.map(|d| d.map(duration_us)))
    }
    /// The highest level whose threshold `us` reaches.
    pub fn level_for(&self, us: i64) -> Option<Level> {
        Level::ALL
            .iter()
            .rev()
            .copied()
            .find(|l| matches!(self.0[*l as usize], Some(t) if us >= t))
    }
    pub fn lowest(&self) -> Option<i64> {
        self.0.iter().flatten().next().copied()
    }
    pub fn threshold(&self, l: Level) -> Option<i64> {
        self.0[l as usize]
    }
    fn with(&self, over: &[Option<std::time::Duration>; 4]) -> Thresholds {
        let mut t = *self;
        for (slot, o) in t.0.iter_mut().zip(over) {
            if let Some(d) = o {
                *slot = Some(duration_us(*d));
            }
        }
        t
    }
}

/// A `Duration` in µs, saturating.
pub fn duration_us(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone)]
struct Matcher {
    src: Option<IpNet>,
    dst: Option<IpNet>,
    port: Option<u16>,
    proto: Option<String>,
}

impl Matcher {
    fn new(m: &Match) -> Matcher {
        Matcher {
            src: m.src,
            dst: m.dst,
            port: m.port,
            proto: m.proto.clone(),
        }
    }
    fn matches(&self, orig: IpAddr, resp: IpAddr, rec: &ConnRecord) -> bool {
        self.src.map_or(true, |n| n.contains(&orig))
            && self.dst.map_or(true, |n| n.contains(&resp))
            && self.port.map_or(true, |p| rec.resp_p == Some(p))
            && self
                .proto
                .as_deref()
                .map_or(true, |p| rec.proto.eq_ignore_ascii_case(p))
    }
}

/// Levels an override replaces (indexed by `Level as usize`).
type LevelPatch = [Option<std::time::Duration>; 4];

/// The compiled filters and thresholds of one [`DetectorConfig`].
#[derive(Debug, Clone)]
pub struct Rules {
    internal: NetSet,
    directions: [bool; 4],
    never: NetSet,
    always: NetSet,
    ignore_states: Vec<CompactString>,
    allow: Vec<Matcher>,
    /// `[[allow]]` entries with a domain: checked once the server name is known.
    allow_named: Vec<(Matcher, Domain)>,
    overrides: Vec<(Matcher, LevelPatch, LevelPatch)>,
    pub single: Thresholds,
    pub cumulative: Thresholds,
    pub realert_after: Option<i64>,
    pub window_us: i64,
    /// What the cumulative levels compare with.
    pub measure: Measure,
    /// Open interim connections with no news for this long (µs, event time) are forgotten.
    pub interim_timeout_us: i64,
}

/// A list of networks asked about every record (`internal`, `never`, `always`): each kept as (network,
/// mask) bits by family, so a lookup is a mask and a compare per network. The same answers as
/// `nets.iter().any(|n| n.contains(&a))` (an IPv4 network holds only IPv4 addresses, and so on).
#[derive(Debug, Clone, Default)]
struct NetSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl NetSet {
    fn new(nets: &[IpNet]) -> NetSet {
        let mut set = NetSet::default();
        for n in nets {
            match n {
                IpNet::V4(n) => set
                    .v4
                    .push((u32::from(n.network()), u32::from(n.netmask()))),
                IpNet::V6(n) => set
                    .v6
                    .push((u128::from(n.network()), u128::from(n.netmask()))),
            }
        }
        set
    }

    #[inline]
    fn contains(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|(net, mask)| a & mask == *net)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().any(|(net, mask)| a & mask == *net)
            }
        }
    }
}

fn direction_index(d: Direction) -> usize {
    match d {
        Direction::Outbound => 0,
        Direction::Inbound => 1,
        Direction::Internal => 2,
        Direction::External => 3,
    }
}

impl Rules {
    pub fn new(cfg: &DetectorConfig) -> Rules {
        let mut directions = [false; 4];
        for d in &cfg.filter.directions {
            directions[direction_index(*d)] = true;
        }
        Rules {
            internal: NetSet::new(&cfg.filter.internal),
            directions,
            never: NetSet::new(&cfg.filter.never),
            always: NetSet::new(&cfg.filter.always),
            ignore_states: cfg
                .filter
                .ignore_states
                .iter()
                .map(CompactString::from)
                .collect(),
            allow: cfg
                .allow
                .iter()
                .filter(|a| a.domain.is_none())
                .map(|a| Matcher::new(&a.matches))
                .collect(),
            allow_named: cfg
                .allow
                .iter()
                .filter_map(|a| Some((Matcher::new(&a.matches), a.domain.clone()?)))
                .collect(),
            overrides: cfg
                .overrides
                .iter()
                .map(|o| (Matcher::new(&o.matches), o.single, o.cumulative))
                .collect(),
            single: Thresholds::from_levels(&cfg.single),
            cumulative: Thresholds::from_levels(&cfg.cumulative.levels),
            realert_after: cfg.cumulative.realert_after.map(duration_us),
            window_us: duration_us(cfg.window.length),
            measure: cfg.cumulative.measure,
            interim_timeout_us: duration_us(cfg.cumulative.interim_timeout),
        }
    }

    /// The direction of a pair relative to `internal`.
    pub fn direction(&self, orig: IpAddr, resp: IpAddr) -> Direction {
        match (self.internal.contains(orig), self.internal.contains(resp)) {
            (true, false) => Direction::Outbound,
            (false, true) => Direction::Inbound,
            (true, true) => Direction::Internal,
            (false, false) => Direction::External,
        }
    }

    fn is_never(&self, a: IpAddr) -> bool {
        self.never.contains(a) && !self.always.contains(a)
    }

    /// `Err(reason)` if the record is left out.
    pub fn filter(&self, orig: IpAddr, resp: IpAddr, rec: &ConnRecord) -> Result<(), FilterReason> {
        if self.is_never(orig) || self.is_never(resp) {
            return Err(FilterReason::Never);
        }
        if !self.directions[direction_index(self.direction(orig, resp))] {
            return Err(FilterReason::Direction);
        }
        if let Some(st) = &rec.conn_state {
            if self.ignore_states.iter().any(|s| s == st) {
                return Err(FilterReason::State);
            }
        }
        if self.allow.iter().any(|m| m.matches(orig, resp, rec)) {
            return Err(FilterReason::Allow);
        }
        Ok(())
    }

    /// Whether an `[[allow]]` entry with a domain leaves the record out, given the connection's server
    /// name (`None`: not known, which no domain entry matches). The entry's other keys must match too.
    pub fn allowed_by_name(
        &self,
        orig: IpAddr,
        resp: IpAddr,
        rec: &ConnRecord,
        name: Option<&str>,
    ) -> bool {
        let Some(name) = name else { return false };
        self.allow_named
            .iter()
            .any(|(m, d)| d.matches(name) && m.matches(orig, resp, rec))
    }

    /// Whether some allow entry needs the server name.
    pub fn has_domain_allow(&self) -> bool {
        !self.allow_named.is_empty()
    }

    /// (single, cumulative) thresholds for this record: the first matching override applied.
    pub fn thresholds(
        &self,
        orig: IpAddr,
        resp: IpAddr,
        rec: &ConnRecord,
    ) -> (Thresholds, Thresholds) {
        match self
            .overrides
            .iter()
            .find(|(m, _, _)| m.matches(orig, resp, rec))
        {
            Some((_, s, c)) => (self.single.with(s), self.cumulative.with(c)),
            None => (self.single, self.cumulative),
        }
    }
}

/// What the rules remember per group: 24 bytes, inline in the group (the two levels and the episode's
/// first record's whereabouts share the padding after `repeats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleState {
    /// Watermark (µs) when the last single alert was raised.
    pub single_at: i64,
    /// Watermark of the episode's last cumulative alert.
    pub last_alert_at: i64,
    /// Repeats raised by `realert_after` since the last escalation.
    pub repeats: u32,
    /// Level of the last single alert, if any.
    pub single_level: Option<Level>,
    /// Highest level alerted in the open episode (`None`: no alert yet in this episode).
    pub episode_level: Option<Level>,
    /// Where the episode's first record (uid and ts) is: the group keeps it (see
    /// [`crate::detector::GroupData::episode_first`]); `None` until the episode has one.
    pub episode_first: FirstRecord,
}

/// Where a group keeps its episode's first record (uid and ts, µs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FirstRecord {
    /// The episode has no record yet.
    #[default]
    None,
    /// The group's newest uid at its `first_seen` (a one-connection group's episode).
    Newest,
    /// In the group's cold part.
    Apart,
}

/// A decision of the cumulative rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CumulativeAlert {
    Escalation(Level),
    Repeat(Level, u32),
}

impl RuleState {
    /// Single rule for a record whose duration (after context modifiers) reached `level`, at watermark
    /// `t`: the level to alert at, if any; records the alert when there is one. One finding per group: a
    /// level the open episode already alerted at (by either rule) is not raised again.
    pub fn single(&mut self, level: Option<Level>, t: i64, window_us: i64) -> Option<Level> {
        let level = level?;
        if let Some(last) = self.single_level {
            if last >= level && t - self.single_at < window_us {
                return None;
            }
        }
        if self.episode_level.is_some_and(|e| e >= level) {
            return None;
        }
        self.single_level = Some(level);
        self.single_at = t;
        self.episode_level = self.episode_level.max(Some(level));
        Some(level)
    }

    /// Ends the episode if `measure_before` (at the current watermark, before the group's new record) is
    /// below the lowest level.
    pub fn check_episode_end(&mut self, th: &Thresholds, measure_before: i64) {
        let below = th.lowest().map_or(true, |low| measure_before < low);
        if below {
            self.episode_level = None;
            self.repeats = 0;
            self.episode_first = FirstRecord::None;
        }
    }

    /// Cumulative rule after a record was added: the group's measure (after context modifiers) reached
    /// `level` at watermark `t`. `episode_level` also holds the group's single alerts of this episode.
    pub fn cumulative(
        &mut self,
        level: Option<Level>,
        realert_after: Option<i64>,
        t: i64,
    ) -> Option<CumulativeAlert> {
        let level = level?;
        if self.episode_level.map_or(true, |e| level > e) {
            self.episode_level = Some(level);
            self.last_alert_at = t;
            self.repeats = 0;
            return Some(CumulativeAlert::Escalation(level));
        }
        match realert_after {
            Some(r) if t - self.last_alert_at >= r => {
                self.last_alert_at = t;
                self.repeats += 1;
                Some(CumulativeAlert::Repeat(level, self.repeats))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
