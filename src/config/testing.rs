//! Helpers for the tests of every section: load a config from text, or assert the error it gives.

use super::{Config, ConfigErrors};
use ipnet::IpNet;
use std::time::Duration;

pub const MINIMAL: &str = "[[source]]\npath = \"/opt/zeek/logs/current/conn.log\"\n";

pub fn h(hours: u64) -> Duration {
    Duration::from_secs(hours * 3600)
}

pub fn load(text: &str) -> Config {
    match Config::from_toml_str(text) {
        Ok(c) => c,
        Err(e) => panic!("config did not load:\n{e}"),
    }
}

pub fn errors(text: &str) -> ConfigErrors {
    match Config::from_toml_str(text) {
        Ok(c) => panic!("config loaded but should not: {c:?}"),
        Err(e) => e,
    }
}

/// Asserts that loading `text` fails with an error at `key` whose reason contains `needle`.
pub fn assert_error(text: &str, key: &str, needle: &str) {
    let e = errors(text);
    assert!(
        e.errors
            .iter()
            .any(|x| x.key == key && x.reason.contains(needle)),
        "expected `{key}: ...{needle}...`, got:\n{e}"
    );
}

pub fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}
