//! The `[state]` section: where the checkpoint (and the spool) live and how often the checkpoint is saved.

use crate::config::diag::Reader;
use crate::config::values::{at_most, format_duration, parse_duration, DAY};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    pub dir: PathBuf,
    pub checkpoint_interval: Duration,
}

const DEFAULT_STATE_DIR: &str = "/var/lib/longconn";
const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
/// `state.checkpoint_interval`: a day; more would mean a day of logs read again after a crash.
pub const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(DAY);

impl StateConfig {
    /// Reads `[state]` from the file's top level, every default filled in.
    pub fn from_toml(r: &mut Reader<'_, '_>) -> StateConfig {
        r.section("state", |s| {
            let dir = s.str("dir");
            let interval = s.str("checkpoint_interval");
            StateConfig {
                dir: match dir {
                    Some(d) if d.trim().is_empty() => {
                        s.push("dir", "is empty");
                        PathBuf::new()
                    }
                    Some(d) => PathBuf::from(d),
                    None => PathBuf::from(DEFAULT_STATE_DIR),
                },
                checkpoint_interval: interval
                    .and_then(|t| s.parse("checkpoint_interval", parse_duration(t)))
                    .and_then(|d| {
                        s.parse("checkpoint_interval", at_most(d, MAX_CHECKPOINT_INTERVAL))
                    })
                    .unwrap_or(DEFAULT_CHECKPOINT_INTERVAL),
            }
        })
        .unwrap_or_else(|| StateConfig {
            dir: PathBuf::from(DEFAULT_STATE_DIR),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        })
    }

    /// `[state]` as `to_effective_toml` prints it.
    pub fn to_toml(&self) -> toml::Table {
        let mut t = toml::Table::new();
        t.insert("dir".into(), self.dir.display().to_string().into());
        t.insert(
            "checkpoint_interval".into(),
            format_duration(self.checkpoint_interval).into(),
        );
        t
    }
}
