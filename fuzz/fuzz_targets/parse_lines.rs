//! Fuzz the Zeek reader: any bytes, split into lines, through one parser (headers, TSV rows, JSON) must never
//! panic, and a header block saved and rebuilt must parse the same. The check is `checks::parse_lines`,
//! replayed over the corpus by `tests/fuzz_regressions.rs`. Run: `cargo +nightly fuzz run parse_lines`.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod checks;

fuzz_target!(|data: &[u8]| checks::parse_lines(data));
