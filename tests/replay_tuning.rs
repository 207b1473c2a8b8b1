//! `longconn replay`'s tuning help on small hand-written conn.logs: the per-group summary (table and
//! JSON lines), `--near`, `--compare`, and configs without `[[source]]` (accepted by replay, refused by
//! `check`).

use crate::support::sensor::{row, HEADER};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Single levels low 4h and medium 8h, cumulative off; no `[[source]]`.
const A: &str = "[sensor]\nname = \"t\"\n[single]\nlevels = { low = \"4h\", medium = \"8h\" }\n[cumulative]\nlevels = {}\n";
/// Lower thresholds: low 3h, medium 5h.
const B: &str = "[sensor]\nname = \"t\"\n[single]\nlevels = { low = \"3h\", medium = \"5h\" }\n[cumulative]\nlevels = {}\n";

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    /// a.toml, b.toml, and conn.log with three groups: 10.0.0.1 at 5h (low in A, medium in B), 10.0.0.2
    /// at 3.4h (0.85 of A's low, low in B), 10.0.0.3 at 2h (0.5 of A's low).
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.toml"), A).expect("a.toml");
        std::fs::write(dir.path().join("b.toml"), B).expect("b.toml");
        let log = format!(
            "{HEADER}{}{}{}",
            row(1, "10.0.0.1", "203.0.113.1", 5.0 * 3600.0),
            row(2, "10.0.0.2", "203.0.113.2", 3.4 * 3600.0),
            row(3, "10.0.0.3", "203.0.113.3", 2.0 * 3600.0),
        );
        std::fs::write(dir.path().join("conn.log"), log).expect("conn.log");
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `longconn <args...>`, paths relative to the temp dir.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_longconn"))
            .current_dir(self.dir.path())
            .args(args)
            .output()
            .expect("longconn")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The JSON lines of stderr whose `kind` is `kind`.
fn json_lines(out: &Output, kind: &str) -> Vec<Value> {
    text(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .filter(|v| v["kind"] == kind)
        .collect()
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn replay_accepts_a_config_without_source_that_check_refuses() {
    let f = Files::new();
    let out = f.run(&["replay", "--config", "a.toml", "conn.log"]);
    ok(&out);
    assert_eq!(text(&out.stdout).lines().count(), 1, "one alert (10.0.0.1)");

    let check = f.run(&["check", "--config", "a.toml"]);
    assert_eq!(check.status.code(), Some(78));
    assert!(
        text(&check.stderr).contains("source: no [[source]]: give at least one"),
        "{}",
        text(&check.stderr)
    );

    // Every other problem is still refused.
    std::fs::write(f.path("bad.toml"), "[window]\nlength = \"soon\"\n").expect("bad.toml");
    let bad = f.run(&["replay", "--config", "bad.toml", "conn.log"]);
    assert_eq!(bad.status.code(), Some(78));
    let err = text(&bad.stderr);
    assert!(err.contains("window.length"), "{err}");
    assert!(!err.contains("[[source]]"), "{err}");
}

#[test]
fn summary_table_lists_each_alerting_group_after_the_counts() {
    let f = Files::new();
    let out = f.run(&["replay", "--config", "b.toml", "conn.log"]);
    ok(&out);
    let err = text(&out.stderr);
    let counts = err.find("longconn replay summary").expect("counts");
    let groups = err
        .find("longconn replay groups: 2 alerted")
        .expect("groups");
    assert!(counts < groups, "{err}");
    let rows: Vec<&str> = err[groups..].lines().skip(2).collect();
    assert_eq!(rows.len(), 2, "{err}");
    assert!(
        rows[0].contains("10.0.0.1") && rows[0].contains("medium"),
        "{err}"
    );
    assert!(rows[0].contains("5h 0m 0s"), "{err}");
    assert!(
        rows[1].contains("10.0.0.2") && rows[1].contains("low"),
        "{err}"
    );
    assert!(!err.contains("10.0.0.3"), "{err}");
}

#[test]
fn summary_json_lines_carry_the_fields() {
    let f = Files::new();
    let out = f.run(&[
        "replay",
        "--config",
        "b.toml",
        "--summary",
        "json",
        "conn.log",
    ]);
    ok(&out);
    let groups = json_lines(&out, "group");
    assert_eq!(groups.len(), 2, "{}", text(&out.stderr));
    let g = &groups[0];
    assert_eq!(g["source"], "10.0.0.1");
    assert_eq!(g["destination"], "203.0.113.1");
    assert_eq!(g["level"], "medium");
    assert_eq!(g["alerts"], 1);
    assert_eq!(g["longest_seconds"], 18000.0);
    assert!(g["measure_seconds"].is_number());
    assert!(g["names"].as_array().is_some_and(Vec::is_empty));
    assert!(g["reasons"].as_array().is_some_and(Vec::is_empty));
    assert!(g["near"].is_null());
    assert_eq!(groups[1]["source"], "10.0.0.2");
    assert_eq!(groups[1]["level"], "low");
}

#[test]
fn near_lists_a_group_at_085_of_a_level_and_not_one_at_05() {
    let f = Files::new();
    let out = f.run(&[
        "replay",
        "--config",
        "a.toml",
        "--near",
        "0.8",
        "--summary",
        "json",
        "conn.log",
    ]);
    ok(&out);
    let groups = json_lines(&out, "group");
    let sources: Vec<&str> = groups.iter().filter_map(|g| g["source"].as_str()).collect();
    assert_eq!(sources, ["10.0.0.1", "10.0.0.2"], "{}", text(&out.stderr));
    let near = &groups[1];
    assert!(near["level"].is_null());
    assert_eq!(near["alerts"], 0);
    assert_eq!(near["near"]["level"], "low");
    assert_eq!(near["near"]["trigger"], "single");
    let fraction = near["near"]["fraction"].as_f64().expect("fraction");
    assert!((fraction - 0.85).abs() < 1e-9, "{fraction}");
    // 10.0.0.1 (5h, low at 4h) is 0.625 of medium: not near at 0.8.
    assert!(groups[0]["near"].is_null());

    let table = f.run(&["replay", "--config", "a.toml", "--near", "0.8", "conn.log"]);
    ok(&table);
    let err = text(&table.stderr);
    assert!(
        err.contains("1 alerted, 1 near only (at least 0.8 of a level)"),
        "{err}"
    );
    assert!(err.contains("low 0.85 single"), "{err}");

    let bad = f.run(&["replay", "--config", "a.toml", "--near", "1.5", "conn.log"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn compare_prints_exactly_the_alerts_one_config_raises() {
    let f = Files::new();
    let alone = f.run(&["replay", "--config", "a.toml", "conn.log"]);
    let b = f.run(&["replay", "--config", "b.toml", "conn.log"]);
    let out = f.run(&[
        "replay",
        "--config",
        "a.toml",
        "--compare",
        "b.toml",
        "--summary",
        "json",
        "conn.log",
    ]);
    ok(&out);
    assert_eq!(
        out.stdout, alone.stdout,
        "stdout keeps the alerts of --config"
    );

    let ids = |o: &Output| -> Vec<String> {
        text(&o.stdout)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("alert");
                v["event"]["id"].as_str().expect("event.id").to_string()
            })
            .collect()
    };
    let (in_a, in_b) = (ids(&alone), ids(&b));
    let mut want: Vec<(String, String)> = in_a
        .iter()
        .filter(|i| !in_b.contains(i))
        .map(|i| ("config".to_string(), i.clone()))
        .chain(
            in_b.iter()
                .filter(|i| !in_a.contains(i))
                .map(|i| ("compare".to_string(), i.clone())),
        )
        .collect();
    want.sort();
    let diffs = json_lines(&out, "difference");
    let mut got: Vec<(String, String)> = diffs
        .iter()
        .map(|d| {
            (
                d["raised_by"].as_str().unwrap_or_default().to_string(),
                d["event_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, want);
    // 10.0.0.1: low with A, medium with B; 10.0.0.2: low with B only.
    let mut moved: Vec<(String, String, String)> = diffs
        .iter()
        .map(|d| {
            let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            (s("raised_by"), s("group"), s("level"))
        })
        .collect();
    moved.sort();
    assert_eq!(
        moved,
        [
            ("compare", "10.0.0.1>203.0.113.1", "medium"),
            ("compare", "10.0.0.2>203.0.113.2", "low"),
            ("config", "10.0.0.1>203.0.113.1", "low"),
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );

    let table = f.run(&[
        "replay",
        "--config",
        "a.toml",
        "--compare",
        "b.toml",
        "conn.log",
    ]);
    ok(&table);
    let err = text(&table.stderr);
    assert!(
        err.contains("longconn replay compare: 1 alerts only with a.toml, 2 only with b.toml"),
        "{err}"
    );
}
