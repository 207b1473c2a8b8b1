//! Fuzz the config loader on TOML text (`Config::from_toml_str`, what `check` and `run` load before the
//! preflight looks at the machine): never a panic, and an accepted config's effective TOML (what `check`
//! prints) loads again to the same config. The check is `checks::config`, replayed over the corpus by
//! `tests/fuzz_regressions.rs`. Run: `cargo +nightly fuzz run config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod checks;

fuzz_target!(|data: &[u8]| checks::config(data));
