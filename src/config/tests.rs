//! The loader's tests: defaults, every section's messages, and every error at once.

use super::*;

const MINIMAL: &str = "[[source]]\npath = \"/opt/zeek/logs/current/conn.log\"\n";

fn h(hours: u64) -> Duration {
    Duration::from_secs(hours * 3600)
}

fn load(text: &str) -> Config {
    match Config::from_toml_str(text) {
        Ok(c) => c,
        Err(e) => panic!("config did not load:\n{e}"),
    }
}

fn errors(text: &str) -> ConfigErrors {
    match Config::from_toml_str(text) {
        Ok(c) => panic!("config loaded but should not: {c:?}"),
        Err(e) => e,
    }
}

/// Asserts that loading `text` fails with an error at `key` whose reason contains `needle`.
fn assert_error(text: &str, key: &str, needle: &str) {
    let e = errors(text);
    assert!(
        e.errors
            .iter()
            .any(|x| x.key == key && x.reason.contains(needle)),
        "expected `{key}: ...{needle}...`, got:\n{e}"
    );
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn cumulative_measure_and_interim_timeout() {
    let c = load(MINIMAL);
    assert_eq!(c.cumulative.measure, Measure::Sum);
    assert_eq!(c.cumulative.interim_timeout, DEFAULT_INTERIM_TIMEOUT);
    let c = load(&format!(
        "{MINIMAL}[cumulative]\nmeasure = \"covered\"\ninterim_timeout = \"2h\"\n"
    ));
    assert_eq!(c.cumulative.measure, Measure::Covered);
    assert_eq!(c.cumulative.interim_timeout, Duration::from_secs(7200));
    assert_eq!(load(&c.to_effective_toml()), c);
    assert_error(
        &format!("{MINIMAL}[cumulative]\nmeasure = \"union\"\n"),
        "cumulative.measure",
        "not one of",
    );
    assert_error(
        &format!("{MINIMAL}[cumulative]\ninterim_timeout = \"soon\"\n"),
        "cumulative.interim_timeout",
        "",
    );
}

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
    let levels = [Some(h(1)), Some(h(4)), Some(h(8)), Some(h(12))];
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
fn duration_forms() {
    for (text, secs) in [
        ("90m", 5400),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("86400s", 86400),
        ("24h", 86400),
        ("1d", 86400),
        ("5s", 5),
        (" 2h ", 7200),
    ] {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_secs(secs)),
            "{text}"
        );
    }
    for bad in ["", "abc", "10", "1x", "-5m", "0s", "0h"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
    }
    let c = load(&format!("{MINIMAL}[window]\nlength = \"1h30m\"\n"));
    assert_eq!(c.window.length, Duration::from_secs(5400));
}

#[test]
fn format_duration_parses_back() {
    for secs in [1, 5, 59, 3600, 5400, 86400, 90061, 200 * 86400] {
        let d = Duration::from_secs(secs);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
    for (d, text) in [
        (h(24), "24h"),
        (Duration::from_secs(5400), "1h 30m"),
        (Duration::from_secs(5), "5s"),
        (Duration::from_millis(1500), "1s 500ms"),
        (Duration::new(3661, 1_001_001), "1h 1m 1s 1ms 1us 1ns"),
    ] {
        assert_eq!(format_duration(d), text);
        assert_eq!(parse_duration(text), Ok(d));
    }
}

#[test]
fn cidrs_and_bare_addresses() {
    assert_eq!(parse_net("10.1.2.3"), Ok("10.1.2.3/32".parse().unwrap()));
    assert_eq!(
        parse_net("2001:db8::1"),
        Ok("2001:db8::1/128".parse().unwrap())
    );
    assert_eq!(parse_net("fd00::/8"), Ok("fd00::/8".parse().unwrap()));
    assert!(parse_net("10.0.0.0/33").is_err());
    assert!(parse_net("10.0.0").is_err());
    assert!(parse_net("10.1.2.3/8").unwrap_err().contains("10.0.0.0/8"));
}

#[test]
fn source_kind_from_file_name_or_key() {
    let c = load(
        r#"
        [[source]]
        path = "/logs/conn.log"
        [[source]]
        path = "/logs/open_conn.log"
        start_at = "end"
        [[source]]
        path = "/logs/conn_long.log"
        [[source]]
        path = "/logs/other.log"
        kind = "open_conn"
        "#,
    );
    let kinds: Vec<SourceKind> = c.sources.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![
            SourceKind::Conn,
            SourceKind::OpenConn,
            SourceKind::ConnLong,
            SourceKind::OpenConn
        ]
    );
    assert_eq!(c.sources[1].start_at, StartAt::End);
}

#[test]
fn given_levels_table_replaces_defaults() {
    let c = load(&format!(
        "{MINIMAL}[single]\nlevels = {{ high = \"2h\" }}\n[cumulative]\nlevels = {{}}\nrealert_after = \"12h\"\n"
    ));
    assert_eq!(c.single.thresholds, [None, None, Some(h(2)), None]);
    assert_eq!(c.cumulative.levels.thresholds, [None; 4]);
    assert_eq!(c.cumulative.realert_after, Some(h(12)));
}

#[test]
fn allow_override_and_outputs() {
    let c = load(&format!(
        r#"{MINIMAL}
        [[allow]]
        dst = "203.0.113.10"
        port = 443
        proto = "TCP"
        comment = "backup service"
        [[override]]
        src = "10.9.0.0/16"
        single = {{ high = "24h" }}
        [[output]]
        type = "file"
        path = "/var/log/longconn/alerts.json"
        "#
    ));
    assert_eq!(
        c.allow,
        vec![Allow {
            matches: Match {
                src: None,
                dst: Some("203.0.113.10/32".parse().unwrap()),
                port: Some(443),
                proto: Some("tcp".to_string()),
            },
            comment: Some("backup service".to_string()),
        }]
    );
    assert_eq!(c.overrides.len(), 1);
    assert_eq!(
        c.overrides[0].matches.src,
        Some("10.9.0.0/16".parse().unwrap())
    );
    assert_eq!(c.overrides[0].single, [None, None, Some(h(24)), None]);
    assert_eq!(c.overrides[0].cumulative, [None; 4]);
    assert_eq!(
        c.outputs,
        vec![Output::File {
            name: "file".into(),
            path: PathBuf::from("/var/log/longconn/alerts.json"),
            fsync: FsyncPolicy::Batch,
            batch: DEFAULT_BATCHING,
        }]
    );
}

#[test]
fn production_example_loads() {
    let c = load(include_str!("../../config/longconn.toml"));
    assert_eq!(c.sensor_name, "sensor01");
    assert_eq!(c.sources.len(), 1);
    assert_eq!(c.allow.len(), 1);
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
    ] {
        let c = load(&text);
        let printed = c.to_effective_toml();
        let back = match Config::from_toml_str(&printed) {
            Ok(b) => b,
            Err(e) => panic!("effective config does not load:\n{printed}\n{e}"),
        };
        assert_eq!(back, c, "{printed}");
    }
    let printed = load(MINIMAL).to_effective_toml();
    assert!(printed.contains("length = \"24h\""), "{printed}");
    assert!(printed.contains("max_groups = 1000000"), "{printed}");
}

#[test]
fn every_schema_key_deserializes_into_raw_config() {
    // A file with every key of SCHEMA must pass the schema check and RawConfig's deny_unknown_fields.
    let c = load(include_str!("../../config/longconn.toml"));
    let printed = c.to_effective_toml();
    let table: toml::Table = toml::from_str(&printed).unwrap();
    let mut errs = Vec::new();
    let mut t = table.clone();
    check_table(&mut t, SCHEMA, "", &mut errs);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(t, table);
    fn keys(prefix: &str, fields: &[(&str, Shape)], out: &mut Vec<String>) {
        for (name, shape) in fields {
            let path = join_key(prefix, name);
            match shape {
                Shape::Table(f) | Shape::TableList(f) => keys(&path, f, out),
                _ => out.push(path),
            }
        }
    }
    let mut all = Vec::new();
    keys("", SCHEMA, &mut all);
    // Every leaf key is named in the production example, so it documents every key.
    let example = include_str!("../../config/longconn.toml");
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
fn metrics_listen_is_optional_and_checked() {
    assert_eq!(load(MINIMAL).metrics.listen, None);
    let c = load(&format!(
        "{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9787\"\n"
    ));
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9787".parse().unwrap()));
    let back = Config::from_toml_str(&c.to_effective_toml()).unwrap();
    assert_eq!(back, c);
    let c = load(&format!("{MINIMAL}[metrics]\nlisten = \"[::1]:9787\"\n"));
    assert_eq!(c.metrics.listen, Some("[::1]:9787".parse().unwrap()));
    for bad in ["localhost:9787", "127.0.0.1", "", "127.0.0.1:99999"] {
        let e = errors(&format!(
            "{MINIMAL}[metrics]\nlisten = \"{bad}\"\n[window]\nlength = \"x\"\n"
        ));
        assert!(e.has_key("metrics.listen"), "{bad}: {e}");
        assert!(e.has_key("window.length"), "every error at once: {e}");
    }
    let e = errors(&format!("{MINIMAL}[metrics]\nlisten = 9787\nport = 1\n"));
    assert!(
        e.has_key("metrics.listen") && e.has_key("metrics.port"),
        "{e}"
    );
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
fn bad_cidrs() {
    assert_error(
        &format!("{MINIMAL}[filter]\ninternal = [\"10.0.0.0/8\", \"x\", \"300.0.0.0/8\"]\n"),
        "filter.internal[2]",
        "not a CIDR",
    );
    assert_error(
        &format!("{MINIMAL}[filter]\nalways = [\"10.0.0.1/8\"]\n"),
        "filter.always[0]",
        "host bits",
    );
    assert_error(
        &format!("{MINIMAL}[[allow]]\nsrc = \"10.0.0.0/8\"\n[[allow]]\ndst = \"nope\"\n"),
        "allow[1].dst",
        "not a CIDR",
    );
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
fn levels_must_increase() {
    assert_error(
        &format!(
            "{MINIMAL}[single]\nlevels = {{ low = \"1h\", medium = \"10h\", high = \"8h\" }}\n"
        ),
        "single.levels.high",
        "greater than medium",
    );
    assert_error(
        &format!("{MINIMAL}[cumulative]\nlevels = {{ low = \"2h\", critical = \"2h\" }}\n"),
        "cumulative.levels.critical",
        "greater than low",
    );
    assert_error(
        &format!(
            "{MINIMAL}[[override]]\nport = 22\nsingle = {{ low = \"5h\", medium = \"1h\" }}\n"
        ),
        "override[0].single.medium",
        "greater than low",
    );
}

#[test]
fn sources_required() {
    assert_error("", "source", "no [[source]]");
    assert_error(
        "[[source]]\nstart_at = \"end\"\n",
        "source[0].path",
        "missing",
    );
    assert_error("[[source]]\npath = \"\"\n", "source[0].path", "empty");
    assert_error(
        "[[source]]\npath = \"/a\"\n[[source]]\npath = \"/a\"\n",
        "source[1].path",
        "already source[0]",
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
        "[[source]]\npath = \"/a\"\nkind = \"dns\"\n",
        "source[0].kind",
        "not one of",
    );
    assert_error(
        &format!("{MINIMAL}[window]\ngroup_by = \"host\"\n"),
        "window.group_by",
        "\"pair\", \"pair_port\"",
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
fn syslog_outputs_names_and_spool() {
    let c = load(&format!(
        r#"{MINIMAL}
        [spool]
        max_bytes = 1048576
        [[output]]
        type = "syslog"
        transport = "tcp"
        address = "siem.example.org:6514"
        [[output]]
        type = "syslog"
        transport = "tls"
        address = "[::1]:6514"
        ca_file = "/etc/ca.pem"
        client_cert = "/etc/c.pem"
        client_key = "/etc/k.pem"
        facility = "local3"
        framing = "newline"
        [[output]]
        type = "syslog"
        name = "syslog-2"
        transport = "unix"
        path = "/dev/log"
        [[output]]
        type = "file"
        path = "/a"
        fsync = "always"
        "#
    ));
    assert_eq!(c.spool.max_bytes, 1 << 20);
    let names: Vec<&str> = c.outputs.iter().map(Output::name).collect();
    assert_eq!(names, ["syslog", "syslog-3", "syslog-2", "file"]);
    let Output::Syslog { syslog, .. } = &c.outputs[1] else {
        panic!()
    };
    assert_eq!(syslog.facility, 19);
    assert_eq!(syslog.framing, Framing::Newline);
    assert_eq!(syslog.app_name, "longconn");
    assert_eq!(
        syslog.transport,
        SyslogTransport::Tls {
            address: "[::1]:6514".into(),
            tls: TlsConfig {
                ca_file: "/etc/ca.pem".into(),
                client_cert: Some(("/etc/c.pem".into(), "/etc/k.pem".into())),
                server_name: "::1".into(),
                verify_server_name: true,
            }
        }
    );
    let printed = c.to_effective_toml();
    assert_eq!(Config::from_toml_str(&printed).unwrap(), c, "{printed}");
}

#[test]
fn syslog_errors_at_once() {
    let e = errors(&format!(
        r#"{MINIMAL}
        [spool]
        max_bytes = 10
        [[output]]
        type = "syslog"
        [[output]]
        type = "syslog"
        transport = "tls"
        address = "nohost"
        facility = "local9"
        client_cert = "/c"
        [[output]]
        type = "syslog"
        transport = "udp"
        address = "h:1"
        framing = "newline"
        ca_file = "/x"
        name = "a/b"
        [[output]]
        type = "http"
        [[output]]
        type = "stdout"
        name = "dup"
        fsync = "never"
        [[output]]
        type = "stdout"
        name = "dup"
        verify_server_name = "yes"
        "#
    ));
    for key in [
        "spool.max_bytes",
        "output[0].transport",
        "output[1].address",
        "output[1].facility",
        "output[1].ca_file",
        "output[1].client_key",
        "output[2].framing",
        "output[2].ca_file",
        "output[2].name",
        "output[3].url",
        "output[4].fsync",
        "output[5].name",
        "output[5].verify_server_name",
    ] {
        assert!(e.has_key(key), "{key} not reported in:\n{e}");
    }
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
fn allow_and_override_need_match_keys() {
    assert_error(
        &format!("{MINIMAL}[[allow]]\ncomment = \"all\"\n"),
        "allow[0]",
        "no match key",
    );
    assert_error(
        &format!("{MINIMAL}[[override]]\nsingle = {{ low = \"2h\" }}\n"),
        "override[0]",
        "no match key",
    );
    assert_error(
        &format!("{MINIMAL}[[override]]\nport = 22\n"),
        "override[0]",
        "no thresholds",
    );
    assert_error(
        &format!("{MINIMAL}[[override]]\nport = 22\nsingle = {{}}\n"),
        "override[0]",
        "no thresholds",
    );
}

#[test]
fn outputs() {
    assert_error(
        &format!("{MINIMAL}[[output]]\ntype = \"file\"\n"),
        "output[0].path",
        "missing",
    );
    assert_error(
        &format!("{MINIMAL}[[output]]\npath = \"/x\"\n"),
        "output[0].type",
        "missing",
    );
    assert_error(
        &format!("{MINIMAL}[[output]]\ntype = \"stdout\"\npath = \"/x\"\n"),
        "output[0].path",
        "only a type",
    );
    assert_error(
        "[sensor]\nname = \" \"\n[[source]]\npath = \"/a\"\n",
        "sensor.name",
        "empty",
    );
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
