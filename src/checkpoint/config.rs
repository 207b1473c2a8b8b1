//! The `[state]` section: where the checkpoint (and the spool) live and how often the checkpoint is saved.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    pub dir: PathBuf,
    pub checkpoint_interval: Duration,
}
