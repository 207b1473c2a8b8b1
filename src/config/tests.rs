//! The loader's tests: defaults, the effective config, unknown keys and wrong types, bounds, and every
//! error at once in its order.

use super::testing::*;
use super::*;
use crate::rules::{Direction, DEFAULT_NEVER};
use crate::window::GroupBy;
use crate::zeek::SourceKind;
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn defaults() {
    let c = load(MINIMAL);
    assert!(!c.sensor_name.is_empty());
    assert_eq!(
        c.sources,
        vec![Source {
            path: PathBuf::from("/opt/zeek/logs/current/conn.log"),
            start_at: StartAt::Beginning,
            kind: SourceKind::Conn,
        }]
    );
    assert_eq!(c.state.dir, PathBuf::from("/var/lib/longconn"));
    assert_eq!(c.state.checkpoint_interval, Duration::from_secs(5));
    assert_eq!(c.window.length, h(24));
    assert_eq!(c.window.group_by, GroupBy::Pair);
    assert_eq!(c.window.max_groups, 1_000_000);
    let levels = [Some(h(1)), Some(h(8)), Some(h(12)), Some(h(24))];
    assert_eq!(c.single.thresholds, levels);
    assert_eq!(c.cumulative.levels.thresholds, levels);
    assert_eq!(c.cumulative.realert_after, None);
    assert_eq!(
        c.filter.internal,
        nets(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"])
    );
    assert_eq!(
        c.filter.directions,
        vec![
            Direction::Outbound,
            Direction::Inbound,
            Direction::Internal,
            Direction::External
        ]
    );
    assert_eq!(c.filter.never, nets(DEFAULT_NEVER));
    assert_eq!(c.filter.never.len(), 8);
    assert!(c.filter.always.is_empty());
    assert!(c.filter.ignore_states.is_empty());
    assert!(c.allow.is_empty());
    assert!(c.overrides.is_empty());
    assert_eq!(
        c.outputs,
        vec![Output::Stdout {
            name: "stdout".into(),
            batch: DEFAULT_BATCHING
        }]
    );
    assert_eq!(c.spool.max_bytes, 1 << 30);
}

#[test]
fn sensor_name_defaults_to_host_name() {
    let c = load(MINIMAL);
    assert_eq!(c.sensor_name, host_name());
    let c = load(&format!("[sensor]\nname = \"s7\"\n{MINIMAL}"));
    assert_eq!(c.sensor_name, "s7");
}

#[test]
fn production_example_loads() {
    let c = load(include_str!("../../config/longconn.toml"));
    assert_eq!(c.sensor_name, "sensor01");
    assert_eq!(c.sources.len(), 1);
    assert_eq!(c.allow.len(), 2);
    assert_eq!(
        c.allow[1].domain.as_ref().map(|d| d.name.as_str()),
        Some("slack.com")
    );
    assert_eq!(c.overrides.len(), 1);
    // stdout and file; the TLS syslog output is documented but commented out (its CA file is not
    // installed by the package, and the preflight refuses it).
    assert_eq!(c.outputs.len(), 2);
}

#[test]
fn issue_example_loads() {
    // The example of issue 3, verbatim apart from the comments.
    load(
        r#"
        [sensor]
        name = "sensor01"
        [[source]]
        path = "/opt/zeek/logs/current/conn.log"
        start_at = "beginning"
        [state]
        dir = "/var/lib/longconn"
        checkpoint_interval = "5s"
        [window]
        length = "24h"
        group_by = "pair"
        max_groups = 1000000
        [single]
        levels = { low = "1h", medium = "4h", high = "8h", critical = "12h" }
        [cumulative]
        levels = { low = "1h", medium = "4h", high = "8h", critical = "12h" }
        realert_after = "24h"
        [filter]
        internal = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]
        directions = ["outbound", "inbound", "internal", "external"]
        never = ["127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10", "224.0.0.0/4", "ff00::/8", "255.255.255.255/32", "0.0.0.0/32"]
        always = []
        ignore_states = []
        [[allow]]
        dst = "203.0.113.10/32"
        port = 443
        comment = "backup service"
        [[override]]
        src = "10.9.0.0/16"
        single = { high = "24h" }
        [[output]]
        type = "stdout"
        [[output]]
        type = "file"
        path = "/var/log/longconn/alerts.json"
        "#,
    );
}

#[test]
fn effective_toml_round_trips() {
    for text in [
        MINIMAL.to_string(),
        include_str!("../../config/longconn.toml").to_string(),
        format!(
            "{MINIMAL}[single]\nlevels = {{}}\n[cumulative]\nlevels = {{ medium = \"1h30m\" }}\nrealert_after = \"6h\"\n[filter]\nignore_states = [\"s0\"]\ndirections = [\"outbound\"]\n"
        ),
        format!("{MINIMAL}[window]\ngroup_by = \"name\"\n"),
    ] {
        let c = load(&text);
        let printed = c.to_effective_toml();
        let back = match Config::from_toml_str(&printed) {
            Ok(b) => b,
            Err(e) => panic!("effective config does not load:\n{printed}\n{e}"),
        };
        assert_eq!(back, c, "{printed}");
    }
    let by_name = load(&format!("{MINIMAL}[window]\ngroup_by = \"name\"\n"));
    assert_eq!(by_name.window.group_by, GroupBy::Name);
    assert!(by_name.to_effective_toml().contains("group_by = \"name\""));
    let printed = load(MINIMAL).to_effective_toml();
    assert!(printed.contains("length = \"24h\""), "{printed}");
    assert!(printed.contains("max_groups = 1000000"), "{printed}");
}

#[test]
fn every_key_is_documented_in_the_example() {
    // Every key of the effective configuration (the HTTP outputs' aside) is named in the production
    // example, so it documents every key.
    let example = include_str!("../../config/longconn.toml");
    let c = load(&format!(
        "{example}\n[[output]]\ntype = \"syslog\"\ntransport = \"tls\"\naddress = \"h:1\"\nca_file = \"/ca\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\n[[output]]\ntype = \"syslog\"\ntransport = \"unix\"\npath = \"/dev/log\"\n"
    ));
    let printed: toml::Table = toml::from_str(&c.to_effective_toml()).unwrap();
    fn keys(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (name, value) in table {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                toml::Value::Table(t) => keys(&path, t, out),
                toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                    for item in items.iter().filter_map(toml::Value::as_table) {
                        keys(&path, item, out)
                    }
                }
                _ => out.push(path),
            }
        }
    }
    let mut all = Vec::new();
    keys("", &printed, &mut all);
    assert!(all.len() > 40, "{all:?}");
    for key in &all {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            example.contains(leaf),
            "config/longconn.toml does not mention {key}"
        );
    }
}

#[test]
fn syntax_error_is_one_error_with_line() {
    let e = errors("[[source]]\npath = \"x\"\n[window\n");
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].key, "");
    assert!(e.errors[0].reason.contains("line 3"), "{e}");
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn read_error_names_the_path() {
    let path = std::path::Path::new("/nonexistent/longconn.toml");
    let e = Config::load(path).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].key, "/nonexistent/longconn.toml");
    assert!(e.errors[0].reason.contains("cannot read"));
}

#[test]
fn load_reads_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("longconn.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    assert_eq!(Config::load(&path).unwrap(), load(MINIMAL));
}

#[test]
fn unknown_keys() {
    assert_error(&format!("{MINIMAL}[windw]\n"), "windw", "unknown key");
    assert_error(
        &format!("{MINIMAL}[window]\nlenght = \"1h\"\n"),
        "window.lenght",
        "expected one of: length",
    );
    assert_error(
        "[[source]]\npath = \"/a\"\nstart = \"end\"\n",
        "source[0].start",
        "unknown key",
    );
    assert_error(
        &format!("{MINIMAL}[single]\nlevels = {{ hihg = \"1h\" }}\n"),
        "single.levels.hihg",
        "unknown key",
    );
    assert_error(
        &format!(
            "{MINIMAL}[[override]]\nport = 22\ncumulative = {{ low = \"1h\", extra = \"2h\" }}\n"
        ),
        "override[0].cumulative.extra",
        "unknown key",
    );
}

#[test]
fn wrong_types() {
    assert_error(
        &format!("{MINIMAL}[window]\nmax_groups = \"many\"\n"),
        "window.max_groups",
        "expected an integer",
    );
    assert_error(
        &format!("{MINIMAL}[state]\ncheckpoint_interval = 5\n"),
        "state.checkpoint_interval",
        "expected a string",
    );
    assert_error(
        &format!("{MINIMAL}[filter]\ninternal = [\"10.0.0.0/8\", 7]\n"),
        "filter.internal[1]",
        "expected a string",
    );
    assert_error(
        &format!("{MINIMAL}[filter]\nnever = \"10.0.0.0/8\"\n"),
        "filter.never",
        "expected an array",
    );
    assert_error("[source]\npath = \"/a\"\n", "source", "[[source]]");
    assert_error(
        &format!("window = 3\n{MINIMAL}"),
        "window",
        "expected a table",
    );
    // A key dropped for its type is reported once, not again as missing.
    for text in [
        "[[source]]\npath = 3\n".to_string(),
        format!("{MINIMAL}[[allow]]\nsrc = 10\n"),
        format!("{MINIMAL}[[override]]\nport = 22\nsingle = \"24h\"\n"),
        format!("{MINIMAL}[[output]]\ntype = \"file\"\npath = 1\n"),
    ] {
        let e = errors(&text);
        assert_eq!(e.errors.len(), 1, "{text}\n{e}");
    }
}

#[test]
fn bad_durations() {
    assert_error(
        &format!("{MINIMAL}[window]\nlength = \"a day\"\n"),
        "window.length",
        "not a duration",
    );
    assert_error(
        &format!("{MINIMAL}[window]\nlength = \"0s\"\n"),
        "window.length",
        "zero",
    );
    assert_error(
        &format!("{MINIMAL}[state]\ncheckpoint_interval = \"0ms\"\n"),
        "state.checkpoint_interval",
        "zero",
    );
    assert_error(
        &format!("{MINIMAL}[cumulative]\nrealert_after = \"0h\"\n"),
        "cumulative.realert_after",
        "zero",
    );
    assert_error(
        &format!("{MINIMAL}[single]\nlevels = {{ low = \"0m\" }}\n"),
        "single.levels.low",
        "zero",
    );
}

#[test]
fn bad_enums() {
    assert_error(
        "[[source]]\npath = \"/a\"\nstart_at = \"now\"\n",
        "source[0].start_at",
        "\"beginning\", \"end\"",
    );
    assert_error(
        "[[source]]\npath = \"/a\"\nkind = \"dhcp\"\n",
        "source[0].kind",
        "not one of",
    );
    assert_error(
        &format!("{MINIMAL}[window]\ngroup_by = \"host\"\n"),
        "window.group_by",
        "\"pair\", \"pair_port\", \"name\"",
    );
    assert_error(
        &format!("{MINIMAL}[filter]\ndirections = [\"outbound\", \"sideways\"]\n"),
        "filter.directions[1]",
        "not one of",
    );
    assert_error(
        &format!("{MINIMAL}[filter]\ndirections = []\n"),
        "filter.directions",
        "empty",
    );
    assert_error(
        &format!("{MINIMAL}[filter]\nignore_states = [\"SF\", \"XX\"]\n"),
        "filter.ignore_states[1]",
        "conn_state",
    );
    assert_error(
        &format!("{MINIMAL}[[allow]]\nproto = \"sctp\"\n"),
        "allow[0].proto",
        "not one of",
    );
    assert_error(
        &format!("{MINIMAL}[[output]]\ntype = \"kafka\"\n"),
        "output[0].type",
        "not one of",
    );
}

#[test]
fn max_groups_and_ports() {
    assert_error(
        &format!("{MINIMAL}[window]\nmax_groups = 0\n"),
        "window.max_groups",
        "at least 1",
    );
    assert_error(
        &format!("{MINIMAL}[window]\nmax_groups = -3\n"),
        "window.max_groups",
        "at least 1",
    );
    assert_error(
        &format!("{MINIMAL}[[allow]]\nport = 70000\n"),
        "allow[0].port",
        "not a port",
    );
}

#[test]
fn bounds_take_the_maximum_and_refuse_above_it() {
    // (the section and key as written, the largest value accepted, one above it, the error's key)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "[state]\ncheckpoint_interval",
            "\"24h\"",
            "\"24h 1s\"",
            "state.checkpoint_interval",
        ),
        ("[window]\nlength", "\"720h\"", "\"721h\"", "window.length"),
        (
            "[window]\nmax_groups",
            "100000000",
            "100000001",
            "window.max_groups",
        ),
        (
            "[single]\nlevels",
            "{ low = \"8760h\" }",
            "{ low = \"8761h\" }",
            "single.levels.low",
        ),
        (
            "[cumulative]\nrealert_after",
            "\"8760h\"",
            "\"8761h\"",
            "cumulative.realert_after",
        ),
        (
            "[cumulative]\ninterim_timeout",
            "\"720h\"",
            "\"721h\"",
            "cumulative.interim_timeout",
        ),
        (
            "[spool]\nmax_bytes",
            "1099511627776",
            "1099511627777",
            "spool.max_bytes",
        ),
        (
            "[[output]]\ntype = \"stdout\"\nflush_interval",
            "\"1h\"",
            "\"61m\"",
            "output[0].flush_interval",
        ),
        (
            "[[override]]\nport = 22\ncumulative",
            "{ high = \"8760h\" }",
            "{ high = \"8761h\" }",
            "override[0].cumulative.high",
        ),
    ];
    for (key, max, above, err_key) in cases {
        load(&format!("{MINIMAL}{key} = {max}\n"));
        assert_error(&format!("{MINIMAL}{key} = {above}\n"), err_key, "at most");
    }
}

#[test]
fn every_error_is_reported_at_once() {
    let e = errors(
        r#"
        [sensor]
        nmae = "x"
        [[source]]
        start_at = "later"
        [window]
        length = "forever"
        group_by = "triple"
        max_groups = 0
        colour = "blue"
        [single]
        levels = { low = "4h", medium = "2h" }
        [filter]
        internal = ["10.0.0.0/8", "192.168.0.0/16", "10.0.0.300/8"]
        [[allow]]
        comment = "nothing to match"
        [[allow]]
        dst = "not-an-ip"
        [[output]]
        type = "file"
        [extra]
        "#,
    );
    let want = [
        "sensor.nmae",
        "window.colour",
        "extra",
        "source[0].path",
        "source[0].start_at",
        "window.length",
        "window.group_by",
        "window.max_groups",
        "single.levels.medium",
        "filter.internal[2]",
        "allow[0]",
        "allow[1].dst",
        "output[0].path",
    ];
    for key in want {
        assert!(e.has_key(key), "{key} not reported in:\n{e}");
    }
    assert_eq!(e.errors.len(), want.len(), "{e}");
    // Display: one line per error, `KEY: REASON`.
    let text = e.to_string();
    assert_eq!(text.lines().count(), want.len());
    assert!(
        text.lines().any(|l| l.starts_with("window.group_by: ")),
        "{text}"
    );
    let _: &dyn std::error::Error = &e;
}

#[test]
fn errors_come_in_the_documented_order() {
    // The HTTP outputs' own problems, then unknown keys and wrong types in file order, then the value
    // checks in section order; a missing key under a reported one is not reported again.
    let e = errors(
        r#"
        [window]
        length = "forever"
        colour = "blue"
        [[source]]
        path = 3
        [[output]]
        type = "http"
        format = "xml"
        [sensor]
        nmae = "x"
        "#,
    );
    let keys: Vec<&str> = e.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "output[0].format",
            "output[0].url",
            "window.colour",
            "source[0].path",
            "sensor.nmae",
            "window.length",
        ],
        "{e}"
    );
}

#[test]
fn without_sources_drops_only_the_missing_source() {
    assert!(Config::from_toml_str("").is_err());
    let c = Config::from_toml_str_without_sources("").expect("no source is fine for replay");
    assert!(c.sources.is_empty());
    let e = Config::from_toml_str_without_sources("[window]\nlength = \"soon\"\n").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("window.length"), "{text}");
    assert!(!text.contains("[[source]]"), "{text}");
    let e = Config::from_toml_str_without_sources("[[source]]\npath = 3\n").unwrap_err();
    assert!(e.to_string().contains("source[0].path"), "{e}");
}
