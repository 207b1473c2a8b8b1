//! The `[spool]` section: how large the spool may grow before reading pauses.

use crate::config::diag::Reader;

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

impl SpoolConfig {
    /// Reads `[spool]` from the file's top level, the default filled in.
    pub fn from_toml(r: &mut Reader<'_, '_>) -> SpoolConfig {
        let max_bytes = r
            .section("spool", |s| {
                let v = s.int("max_bytes")?;
                if v < MIN_SPOOL_MAX_BYTES as i64 {
                    s.push(
                        "max_bytes",
                        format!("{v} is too small; give at least {MIN_SPOOL_MAX_BYTES} (64 KiB)"),
                    );
                    None
                } else if v as u64 > MAX_SPOOL_MAX_BYTES {
                    s.push(
                        "max_bytes",
                        format!("{v} is too large; give at most {MAX_SPOOL_MAX_BYTES} (1 TiB)"),
                    );
                    None
                } else {
                    Some(v as u64)
                }
            })
            .flatten()
            .unwrap_or(DEFAULT_SPOOL_MAX_BYTES);
        SpoolConfig { max_bytes }
    }

    /// `[spool]` as `to_effective_toml` prints it.
    pub fn to_toml(&self) -> toml::Table {
        let mut t = toml::Table::new();
        let max = i64::try_from(self.max_bytes).unwrap_or(i64::MAX);
        t.insert("max_bytes".into(), max.into());
        t
    }
}
