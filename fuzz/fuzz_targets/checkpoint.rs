//! Fuzz the checkpoint restore: bytes as `checkpoint.json`, loaded (version, checksum, parse) and restored
//! as `Pipeline::start` does (detector from its state, tailer from the source checkpoint, polled against a
//! real conn.log), then saved and loaded again: never a panic. The check is `Workspace::checkpoint` in
//! `checks.rs` (one temp dir per process), replayed over the corpus by `tests/fuzz_regressions.rs`.
//! Run: `cargo +nightly fuzz run checkpoint`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

mod checks;

static WORKSPACE: OnceLock<checks::Workspace> = OnceLock::new();

fuzz_target!(|data: &[u8]| WORKSPACE.get_or_init(checks::Workspace::new).checkpoint(data));
