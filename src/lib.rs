//! longconn
pub mod alert;
pub mod checkpoint;
pub mod config;
pub mod daemon;
pub mod detector;
#[cfg(test)]
mod fixtures;
pub mod input;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod replay;
pub mod rules;
pub mod scan;
pub mod signal;
pub mod spool;
pub mod tail;
pub mod window;
pub mod zeek;

/// The delivery loop lives in [`output::delivery`]; `metrics.rs` still names it here.
pub use output::delivery;
