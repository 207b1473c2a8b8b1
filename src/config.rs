//! The daemon's configuration: TOML in, a typed and validated [`Config`] out.
//!
//! TYPES ONLY FOR NOW: the loader (RawConfig with deny_unknown_fields -> Config, every error at once)
//! is being written. Downstream code uses these types and never re-checks them.

use ipnet::IpNet;
use std::path::PathBuf;
use std::time::Duration;

/// Alert severity levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// (orig_h, resp_h)
    Pair,
    /// (orig_h, resp_h, resp_p, proto)
    PairPort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    Beginning,
    End,
}

/// Which kind of Zeek log a source is (issue 6 adds the interim kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Conn,
    OpenConn,
    ConnLong,
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

#[derive(Debug, Clone, PartialEq)]
pub struct WindowConfig {
    pub length: Duration,
    pub group_by: GroupBy,
    pub max_groups: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CumulativeConfig {
    pub levels: Levels,
    pub realert_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfig {
    pub internal: Vec<IpNet>,
    pub directions: Vec<Direction>,
    pub never: Vec<IpNet>,
    pub always: Vec<IpNet>,
    pub ignore_states: Vec<String>,
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
    pub comment: Option<String>,
}

/// Other thresholds for matching traffic; a level given here replaces that level of the main config.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub matches: Match,
    pub single: [Option<Duration>; 4],
    pub cumulative: [Option<Duration>; 4],
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Stdout,
    File { path: PathBuf },
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub sensor_name: String,
    pub sources: Vec<Source>,
    pub state: StateConfig,
    pub window: WindowConfig,
    pub single: Levels,
    pub cumulative: CumulativeConfig,
    pub filter: FilterConfig,
    pub allow: Vec<Allow>,
    pub overrides: Vec<Override>,
    pub outputs: Vec<Output>,
}
