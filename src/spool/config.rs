//! The `[spool]` section: how large the spool may grow before reading pauses.

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
