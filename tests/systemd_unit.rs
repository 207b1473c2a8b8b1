//! The shipped unit, `systemd/longconn.service`, checked with systemd's own tools: `systemd-analyze
//! security --offline=yes` must rate its exposure 1.5 or lower ("OK" or better), and the unit must keep the
//! settings the daemon relies on (Type=notify, the watchdog, check before start and reload). Without
//! `systemd-analyze` the test prints a note and passes, unless `LONGCONN_REQUIRE_SYSTEMD=1` (CI).

use std::path::Path;
use std::process::Command;

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/longconn.service");
const MAX_EXPOSURE: f64 = 1.5;

fn systemd_analyze() -> Option<&'static str> {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("systemd-analyze");
    }
    assert!(
        std::env::var("LONGCONN_REQUIRE_SYSTEMD").as_deref() != Ok("1"),
        "LONGCONN_REQUIRE_SYSTEMD=1 but systemd-analyze is missing (apt-get install systemd)"
    );
    eprintln!("note: systemd-analyze not found, security score not checked");
    None
}

/// The number in "→ Overall exposure level for longconn.service: 1.1 OK".
fn exposure(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    let after = line.rsplit_once(": ")?.1;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn exposure_score_is_ok_or_better() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let out = Command::new(tool)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(UNIT)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .expect("run systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let score = exposure(&text).unwrap_or_else(|| {
        panic!(
            "no exposure score in:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{text}"
    );
}

#[test]
fn unit_keeps_what_the_daemon_relies_on() {
    let unit = std::fs::read_to_string(Path::new(UNIT)).expect("read the unit");
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "ExecStartPre=/usr/bin/longconn check --quiet --config /etc/longconn/longconn.toml",
        "ExecStart=/usr/bin/longconn run --config /etc/longconn/longconn.toml",
        "ExecReload=/usr/bin/longconn reload --config /etc/longconn/longconn.toml --pid $MAINPID",
        "StateDirectory=longconn",
        "ConfigurationDirectory=longconn",
        "User=longconn",
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(has(line), "the unit lacks {line:?}");
    }
    // The state directory systemd makes is the config's default.
    let config = include_str!("../config/longconn.toml");
    assert!(config.contains("dir = \"/var/lib/longconn\""));
}

/// The unit's command lines: (setting, program, arguments), the `-@:+!` prefixes dropped.
fn exec_lines(unit: &str) -> Vec<(String, String, Vec<String>)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Exec"))
        .filter_map(|l| l.split_once('='))
        .map(|(key, cmd)| {
            let mut words = cmd.split_whitespace().map(str::to_string);
            let program = words.next().unwrap_or_default();
            let program = program
                .trim_start_matches(['-', '@', ':', '+', '!'])
                .to_string();
            (key.to_string(), program, words.collect())
        })
        .collect()
}

#[test]
fn every_command_of_the_unit_is_the_packaged_binary() {
    // A minimal Debian has no procps: `ExecReload=/bin/kill` failed there with 203/EXEC. The package
    // depends on nothing that ships a program, so the unit runs nothing but its own binary.
    let unit = std::fs::read_to_string(Path::new(UNIT)).expect("read the unit");
    let lines = exec_lines(&unit);
    assert!(
        lines.iter().any(|(k, _, _)| k == "ExecReload"),
        "no ExecReload"
    );
    for (key, program, args) in &lines {
        assert_eq!(
            program, "/usr/bin/longconn",
            "{key} runs {program}, which the package does not ship"
        );
        // The binary accepts the arguments (clap parses them before acting on --help).
        let args: Vec<&str> = args
            .iter()
            .map(|a| if a == "$MAINPID" { "1" } else { a.as_str() })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_longconn"))
            .args(&args)
            .arg("--help")
            .output()
            .expect("run longconn");
        assert!(
            out.status.success(),
            "{key}: longconn refuses {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn unit_verifies() {
    // `systemd-analyze verify` checks syntax and every setting; the only complaint allowed is the binary
    // being absent from /usr/bin on a build machine.
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let out = Command::new(tool)
        .arg("verify")
        .arg(UNIT)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .expect("run systemd-analyze verify");
    let text = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("/usr/bin/longconn is not executable"))
        .collect();
    assert!(problems.is_empty(), "systemd-analyze verify:\n{text}");
}

#[test]
fn parses_the_score_line() {
    assert_eq!(
        exposure("✓ x\n→ Overall exposure level for longconn.service: 1.1 OK 🙂\n"),
        Some(1.1)
    );
    assert_eq!(exposure("nothing"), None);
}

#[test]
fn check_quiet_is_silent_on_a_good_config_and_loud_on_a_bad_one() {
    // What ExecStartPre and ExecReload run.
    let dir = tempfile::tempdir().unwrap();
    let run = |text: &str| {
        let path = dir.path().join("longconn.toml");
        std::fs::write(&path, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_longconn"))
            .args(["check", "--quiet", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let good = run(include_str!("../config/longconn.toml"));
    assert!(good.status.success());
    assert!(good.stdout.is_empty() && good.stderr.is_empty());
    let bad = run("[[source]]\npath = \"/x\"\n[metrics]\nlisten = \"nowhere\"\n");
    assert_eq!(bad.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("metrics.listen"));
}
