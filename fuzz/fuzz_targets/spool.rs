//! Fuzz the spool's reading path: bytes as the one segment of a spool, opened by `Spool::open` (scan, torn
//! tail cut) and read by an output's reader, then an alert appended and read: never a panic; every record
//! read back is a valid line of the segment, in strictly increasing sequence order. The check is
//! `Workspace::spool` in `checks.rs` (one temp dir per process), replayed over the corpus by
//! `tests/fuzz_regressions.rs`. Run: `cargo +nightly fuzz run spool`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

mod checks;

static WORKSPACE: OnceLock<checks::Workspace> = OnceLock::new();

fuzz_target!(|data: &[u8]| WORKSPACE.get_or_init(checks::Workspace::new).spool(data));
