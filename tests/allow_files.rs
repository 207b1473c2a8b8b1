//! Allow lists (`[filter] allow_files`, issue 12 item 6) through the real binary: `check` lists every bad
//! line as FILE:LINE and exits 78, and `run` refuses the same config; `replay` drops the allowed pair's
//! alerts; a running daemon applies an edited allow list on SIGHUP (awaited through its "configuration
//! reloaded" line, and the absence of an alert proved by a later alert from the same file); and a domain in
//! an allow list applies to the names the daemon learns from a live ssl.log, before and after a SIGHUP.

use crate::support::sensor::{
    quiet, replay, row, signal, stderr_now, stop, wait_checkpoint_covers, Sensor, HEADER,
};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn longconn(args: &[&str], config: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_longconn"));
    cmd.args(args).arg("--config").arg(config);
    quiet(&mut cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.output().expect("run longconn")
}

/// A sensor whose config reads `allow.d/*.list` in its directory.
fn sensor_with_lists() -> Sensor {
    let s = Sensor::new("");
    std::fs::create_dir(s.path("allow.d")).expect("mkdir allow.d");
    s.write_config(&format!(
        "[filter]\nallow_files = [\"{}/*.list\", \"{}/none-*.list\"]\n",
        s.path("allow.d").display(),
        s.path("allow.d").display()
    ));
    s
}

#[test]
fn check_and_run_list_every_bad_line_with_file_and_line() {
    let s = sensor_with_lists();
    let a = s.path("allow.d/a.list");
    let b = s.path("allow.d/b.list");
    std::fs::write(
        &a,
        "# vendors\nslack.com\nhttps://zoom.us/\n10.0.0.0/8 8.8.8.8\n",
    )
    .expect("a");
    std::fs::write(
        &b,
        "203.0.113.0/24\n\n10.0.0.1/8\n1.2.3.4 5.6.7.8 9.9.9.9\n",
    )
    .expect("b");

    let out = longconn(&["check"], &s.config());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "check: {err}");
    for (file, line, reason) in [(&a, 3, "URL"), (&b, 3, "host bits"), (&b, 4, "3 words")] {
        let prefix = format!("{}:{line}: ", file.display());
        assert!(
            err.lines()
                .any(|l| l.starts_with(&prefix) && l.contains(reason)),
            "no {prefix}...{reason} in:\n{err}"
        );
    }
    assert_eq!(err.matches(".list:").count(), 3, "{err}");

    // `run` refuses the same lists, before it creates anything.
    let out = longconn(&["run"], &s.config());
    let run_err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "run: {run_err}");
    assert!(
        run_err.contains(&format!("{}:3: ", a.display())),
        "{run_err}"
    );
    assert!(!s.path("state").exists(), "run created its state directory");

    // Fixed, `check` passes; the pattern matching nothing is a warning.
    std::fs::write(&a, "slack.com\n=zoom.us # exact\n").expect("a");
    std::fs::write(&b, "203.0.113.0/24\n").expect("b");
    let out = longconn(&["check"], &s.config());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check: {err}");
    assert!(
        err.contains("warning: filter.allow_files[1]") && err.contains("matches no file"),
        "{err}"
    );
}

#[test]
fn replay_drops_the_allowed_pairs_alerts() {
    let s = sensor_with_lists();
    s.append(&row(1, "10.0.0.1", "203.0.113.5", 7200.0));
    s.append(&row(2, "10.0.0.2", "203.0.113.6", 7200.0));
    s.append(&row(3, "10.0.0.3", "198.51.100.9", 7200.0));
    let alerts = replay(&s.config(), &s.log());
    assert!(
        ["203.0.113.5", "203.0.113.6", "198.51.100.9"]
            .iter()
            .all(|ip| alerts.iter().any(|a| a.contains(ip))),
        "{alerts:?}"
    );

    std::fs::write(
        s.path("allow.d/pairs.list"),
        "# a pair, and a destination alone\n10.0.0.1 203.0.113.5\n198.51.100.9\n",
    )
    .expect("list");
    let alerts = replay(&s.config(), &s.log());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains("203.0.113.6"), "{alerts:?}");

    // A bad line: replay refuses the config like a bad key.
    std::fs::write(s.path("allow.d/bad.list"), "nope nope nope\n").expect("list");
    let out = Command::new(env!("CARGO_BIN_EXE_longconn"))
        .args(["replay", "--config"])
        .arg(s.config())
        .arg(s.log())
        .output()
        .expect("replay");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("bad.list:1: "), "{err}");
}

/// The daemon's stderr, appended to `log`, until `needle` has appeared `times` times (20 s at most).
fn wait_log(child: &mut Child, log: &mut String, needle: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.matches(needle).count() < times {
        log.push_str(&stderr_now(child));
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the daemon exited ({status}) before logging {needle:?}:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} within 20 s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The alert file's lines once one of them names `ip` (20 s at most).
fn wait_alert(s: &Sensor, ip: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(s.path("alerts.json")).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.iter().any(|l| l.contains(ip)) {
            return lines;
        }
        assert!(Instant::now() < deadline, "no alert for {ip}:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_applies_an_edited_allow_list() {
    let s = sensor_with_lists();
    let list = s.path("allow.d/site.list");
    std::fs::write(&list, "10.0.0.1 203.0.113.5\n").expect("list");
    std::fs::write(s.log(), HEADER).expect("log");
    let mut daemon = s.spawn(&[]);
    let mut log = String::new();
    wait_log(&mut daemon, &mut log, "longconn running", 1);

    // The allowed pair first: the next pair's alert proves its row was read.
    s.append(&row(1, "10.0.0.1", "203.0.113.5", 7200.0));
    s.append(&row(2, "10.0.0.2", "203.0.113.6", 7200.0));
    let alerts = wait_alert(&s, "203.0.113.6");
    assert!(
        !alerts.iter().any(|a| a.contains("203.0.113.5")),
        "{alerts:?}"
    );

    // Edited: the first pair is no longer allowed, a third one is.
    std::fs::write(&list, "# moved\n10.0.0.3 203.0.113.7\n").expect("list");
    signal(&daemon, libc::SIGHUP);
    wait_log(&mut daemon, &mut log, "configuration reloaded", 1);
    s.append(&row(3, "10.0.0.3", "203.0.113.7", 7200.0));
    s.append(&row(4, "10.0.0.1", "203.0.113.5", 7200.0));
    let alerts = wait_alert(&s, "203.0.113.5");
    assert!(
        !alerts.iter().any(|a| a.contains("203.0.113.7")),
        "{alerts:?}"
    );

    // A bad line on reload: refused, the running lists kept.
    std::fs::write(&list, "10.0.0.3 203.0.113.7\nnot a line\n").expect("list");
    signal(&daemon, libc::SIGHUP);
    wait_log(&mut daemon, &mut log, "reload refused", 1);
    assert!(log.contains("site.list:2: "), "{log}");
    s.append(&row(5, "10.0.0.3", "203.0.113.7", 7200.0));
    s.append(&row(6, "10.0.0.4", "203.0.113.8", 7200.0));
    let alerts = wait_alert(&s, "203.0.113.8");
    assert!(
        !alerts.iter().any(|a| a.contains("203.0.113.7")),
        "{alerts:?}"
    );
    log.push_str(&stop(daemon));
}

const SSL_HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tssl\n#open\t2024-01-01-00-00-00\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tversion\tserver_name\n#types\ttime\tstring\taddr\tport\taddr\tport\tstring\tstring\n";

/// The ssl.log line of [`row`] `n` (same uid and ts) naming its server `name`.
fn ssl_row(n: u32, orig: &str, resp: &str, name: &str) -> String {
    let ts = 1_700_000_000.0 + f64::from(n);
    format!("{ts:.6}\tC{n:08}\t{orig}\t40000\t{resp}\t443\tTLSv13\t{name}\n")
}

#[test]
fn sighup_applies_a_domain_allow_list_to_names_from_a_live_ssl_log() {
    let s = Sensor::new("");
    std::fs::create_dir(s.path("allow.d")).expect("mkdir allow.d");
    let (ssl, state) = (s.path("ssl.log"), s.path("state"));
    std::fs::write(&ssl, SSL_HEADER).expect("ssl.log");
    // ssl.log is source 0 (the checkpoint awaited below); the TLS modifier is off so that 2 h sessions to
    // named servers on 443 stay low alerts.
    std::fs::write(
        s.config(),
        format!(
            "[sensor]\nname = \"test\"\n[[source]]\npath = \"{}\"\n[[source]]\npath = \"{}\"\n[state]\ndir = \"{}\"\ncheckpoint_interval = \"100ms\"\n[cumulative]\nlevels = {{}}\n[filter]\nallow_files = [\"{}/*.list\"]\n[context]\nnamed_tls_usual_port = false\n[[output]]\ntype = \"file\"\npath = \"{}\"\n",
            ssl.display(),
            s.log().display(),
            state.display(),
            s.path("allow.d").display(),
            s.path("alerts.json").display(),
        ),
    )
    .expect("config");
    let list = s.path("allow.d/site.list");
    std::fs::write(&list, "example.com\n").expect("list");
    let mut daemon = s.spawn(&[]);
    let mut log = String::new();
    wait_log(&mut daemon, &mut log, "longconn running", 1);

    // The handshakes first, read before their connections (awaited through the checkpoint).
    let ssl_append = |text: &str| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&ssl)
            .expect("open ssl.log");
        std::io::Write::write_all(&mut f, text.as_bytes()).expect("append ssl.log");
        wait_checkpoint_covers(&state, &ssl);
    };
    ssl_append(&format!(
        "{}{}",
        ssl_row(1, "10.0.0.1", "203.0.113.5", "Chat.Example.com"),
        ssl_row(2, "10.0.0.2", "203.0.113.6", "example.org")
    ));
    // Under the allowed domain: no alert; the next row's alert proves the first was read.
    s.append(&row(1, "10.0.0.1", "203.0.113.5", 7200.0));
    s.append(&row(2, "10.0.0.2", "203.0.113.6", 7200.0));
    let alerts = wait_alert(&s, "203.0.113.6");
    assert!(
        !alerts.iter().any(|a| a.contains("203.0.113.5")),
        "{alerts:?}"
    );
    assert!(
        alerts
            .iter()
            .any(|a| a.contains("\"domain\":\"example.org\"")),
        "{alerts:?}"
    );

    // Edited: example.org exactly is allowed now, example.com no longer.
    std::fs::write(&list, "=example.org\n").expect("list");
    signal(&daemon, libc::SIGHUP);
    wait_log(&mut daemon, &mut log, "configuration reloaded", 1);
    ssl_append(&format!(
        "{}{}{}",
        ssl_row(3, "10.0.0.3", "203.0.113.7", "example.org"),
        ssl_row(4, "10.0.0.3", "203.0.113.9", "www.example.org"),
        ssl_row(5, "10.0.0.1", "203.0.113.8", "chat.example.com")
    ));
    s.append(&row(3, "10.0.0.3", "203.0.113.7", 7200.0));
    s.append(&row(4, "10.0.0.3", "203.0.113.9", 7200.0));
    s.append(&row(5, "10.0.0.1", "203.0.113.8", 7200.0));
    let alerts = wait_alert(&s, "203.0.113.8");
    assert!(
        !alerts.iter().any(|a| a.contains("203.0.113.7")),
        "{alerts:?}"
    );
    // "=example.org" is that name only: its subdomain alerts.
    assert!(
        alerts.iter().any(|a| a.contains("203.0.113.9")),
        "{alerts:?}"
    );
    log.push_str(&stop(daemon));
}
