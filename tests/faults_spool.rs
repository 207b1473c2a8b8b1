//! Faults of the spool, end to end with the real `longconn run`, each compared with `longconn replay` of the
//! same log:
//! - the state directory on a tmpfs smaller than one default spool segment (needs root to mount it): many
//!   alerts, a restart, more alerts; every alert replay raises reaches the file output on another file
//!   system, because delivered space in the active segment is freed and a full disk is retried, not a stall;
//! - a byte flipped in the middle of a spool segment while the daemon is stopped, with an output that had
//!   not delivered that part yet: after the restart that output gets every other alert, and the one record
//!   lost is reported in the log (segment, offset, sequence number) and in the metric
//!   `longconn_spool_records_lost_total`.

use crate::support::faults::{skip_unless_root, wait_until, Daemon, Tmpfs};
use crate::support::sensor;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\n";

/// Rows `range`, each its own host pair and long enough (120 s against `low = "1m"`) for one alert.
fn rows(range: std::ops::Range<u64>) -> String {
    let mut s = String::new();
    for i in range {
        writeln!(
            s,
            "{}.000000\tC{i:017}\t10.{}.{}.{}\t{}\t198.51.100.{}\t22\ttcp\tssh\t120.0\t1\t2\tSF",
            1_700_000_000 + i * 10,
            i / 62_500,
            i / 250 % 250,
            i % 250 + 1,
            30000 + i % 30000,
            i % 9 + 1,
        )
        .expect("write to a String");
    }
    s
}

/// Event ids of the JSON lines of `text`, asserting each line is one whole JSON document.
fn ids_of(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON alert: {e}: {l}"));
            v["event"]["id"].as_str().expect("event.id").to_string()
        })
        .collect()
}

/// Ids of the complete lines written so far (a line being written is not counted yet).
fn delivered(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    ids_of(complete)
}

fn replay_ids(config: &Path, log: &Path) -> BTreeSet<String> {
    ids_of(&sensor::replay(config, log).join("\n"))
        .into_iter()
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A config reading `log`, its state in `state`, alerts to the file `alerts` (flushed every 10 ms), one alert
/// per row (`low = "1m"`); `tables` (whole TOML tables) added before the output.
fn file_output_config(log: &Path, state: &Path, alerts: &Path, tables: &str) -> String {
    format!(
        r#"[[source]]
path = "{log}"
[state]
dir = "{state}"
checkpoint_interval = "200ms"
[single]
levels = {{ low = "1m" }}
[cumulative]
levels = {{}}
{tables}[[output]]
type = "file"
path = "{alerts}"
flush_interval = "10ms"
"#,
        log = log.display(),
        state = state.display(),
        alerts = alerts.display(),
    )
}

/// Waits (2 min at most) until the file `alerts` holds `want` alerts; fails as soon as delivery makes no
/// progress for 30 s, showing the end of the daemon's log and the state and spool directories.
fn wait_all_delivered(alerts: &Path, want: usize, stderr: &Path, state: &Path) {
    let mut last = (0, Instant::now());
    wait_until(Duration::from_secs(120), "every alert delivered", || {
        let n = delivered(alerts).len();
        if n != last.0 {
            last = (n, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(30),
            "delivery stalled at {n} of {want} alerts; the log ends with:\n{}\n{}",
            tail(stderr),
            String::from_utf8_lossy(
                &Command::new("ls")
                    .arg("-la")
                    .arg(state.join("spool"))
                    .arg(state)
                    .output()
                    .unwrap()
                    .stdout
            )
        );
        n >= want
    });
}

/// The file `alerts` holds every id of `want` exactly once, and no other.
fn assert_each_delivered_once(alerts: &Path, want: &BTreeSet<String>) {
    let got = delivered(alerts);
    let set: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(&set, want, "every replay id delivered, no other");
    assert_eq!(got.len(), set.len(), "no id twice (no SIGKILL)");
}

/// The last lines of a log, for a failure message.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn spool_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn spool_on_a_partition_smaller_than_one_segment() {
    if skip_unless_root(" (mounts a 2 MB tmpfs for the state directory)") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let state = d.join("state");
    // Declared before the daemon, so the daemon is killed before the unmount.
    let _mount = Tmpfs::mount(&state, "2m");
    let log = d.join("conn.log");
    let alerts = d.join("alerts.json");
    let config = d.join("longconn.toml");
    let stderr = d.join("daemon.stderr");
    // Default [spool]: max_bytes 1 GiB, so the configured segment size is the 16 MiB default.
    fs::write(
        &config,
        file_output_config(&log, &state, &alerts, "[window]\nlength = \"10m\"\n"),
    )
    .expect("config");
    // About 4 MB of alerts in all, twice the partition.
    let first = rows(0..1500);
    let second = rows(1500..4500);
    fs::write(d.join("full.log"), format!("{HEADER}{first}{second}")).expect("full log");
    let want = replay_ids(&config, &d.join("full.log"));
    assert_eq!(want.len(), 4500);

    fs::write(&log, format!("{HEADER}{first}")).expect("log");
    let daemon = Daemon::start(&config, &stderr);
    wait_until(Duration::from_secs(60), "the first 1500 alerts", || {
        delivered(&alerts).len() >= 1500
    });
    daemon.stop_ok();

    let daemon = Daemon::start(&config, &stderr);
    fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open log")
        .write_all(second.as_bytes())
        .expect("append");
    wait_all_delivered(&alerts, want.len(), &stderr, &state);
    daemon.stop_ok();
    assert_each_delivered_once(&alerts, &want);
    assert!(spool_bytes(&state.join("spool")) < 2 << 20);
}

#[test]
fn spool_disk_full_episode_frees_delivered_space_and_retries() {
    if skip_unless_root(" (mounts a 2 MB tmpfs for the state directory)") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let state = d.join("state");
    let _mount = Tmpfs::mount(&state, "2m");
    let logs = d.join("logs");
    fs::create_dir_all(&logs).expect("logs dir");
    let log = logs.join("conn.log");
    let alerts = d.join("alerts.json");
    let config = d.join("longconn.toml");
    let stderr = d.join("daemon.stderr");
    fs::write(&config, file_output_config(&log, &state, &alerts, "")).expect("config");
    let records = rows(0..3000);
    fs::write(d.join("full.log"), format!("{HEADER}{records}")).expect("full log");
    let want = replay_ids(&config, &d.join("full.log"));
    fs::write(&log, HEADER).expect("log");
    let daemon = Daemon::start(&config, &stderr);
    wait_until(Duration::from_secs(20), "the daemon running", || {
        fs::read_to_string(&stderr)
            .unwrap_or_default()
            .contains("longconn running")
    });
    // Something else fills the partition, leaving about 150 kB: the spool runs out of space mid-segment.
    let ballast = state.join("ballast");
    {
        let mut f = fs::File::create(&ballast).expect("ballast");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let len = f.metadata().expect("ballast size").len();
        f.set_len(len.saturating_sub(150 * 1024))
            .expect("trim ballast");
    }
    fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open log")
        .write_all(records.as_bytes())
        .expect("append");
    wait_all_delivered(&alerts, want.len(), &stderr, &state);
    let text = fs::read_to_string(&stderr).expect("stderr");
    assert!(
        text.contains("spool: no space left for alerts"),
        "the episode happened:\n{}",
        tail(&stderr)
    );
    assert!(
        text.contains("alerts written again"),
        "and ended:\n{}",
        tail(&stderr)
    );
    // Room again before stopping, so the final checkpoint is saved.
    fs::remove_file(&ballast).expect("remove ballast");
    daemon.stop_ok();
    assert_each_delivered_once(&alerts, &want);
}

#[test]
fn byte_flipped_in_the_middle_of_a_spool_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let log = d.join("conn.log");
    let state = d.join("state");
    let alerts = d.join("alerts.json");
    let late = d.join("late.json");
    let config = d.join("longconn.toml");
    let stderr = d.join("daemon.stderr");
    let metrics_port = free_port();
    let base = file_output_config(
        &log,
        &state,
        &alerts,
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
    );
    // First run: the output "late" is a syslog server that is down, so its cursor stays at the start.
    let down = free_port();
    fs::write(
        &config,
        format!("{base}[[output]]\ntype = \"syslog\"\nname = \"late\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{down}\"\n"),
    )
    .expect("config");
    let text = format!("{HEADER}{}", rows(0..100));
    fs::write(&log, &text).expect("log");
    let want = replay_ids(&config, &log);
    assert_eq!(want.len(), 100);
    let daemon = Daemon::start(&config, &stderr);
    wait_until(Duration::from_secs(30), "100 alerts in the file", || {
        delivered(&alerts).len() >= 100
    });
    daemon.stop_ok();

    // Flip one byte in the middle of record 50 (sequence number 50) of the spool, while stopped.
    let spool = state.join("spool");
    let mut segs: Vec<PathBuf> = fs::read_dir(&spool)
        .expect("spool dir")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let seg = segs
        .iter()
        .find(|p| {
            fs::read(p).is_ok_and(|b| b.split(|&c| c == b'\n').any(|l| l.starts_with(b"50\t")))
        })
        .expect("a segment holding record 50")
        .clone();
    let mut bytes = fs::read(&seg).expect("segment");
    let start = bytes
        .split_inclusive(|&c| c == b'\n')
        .take_while(|l| !l.starts_with(b"50\t"))
        .map(<[u8]>::len)
        .sum::<usize>();
    let len = bytes[start..]
        .iter()
        .position(|&c| c == b'\n')
        .expect("a whole line");
    let victim_line = String::from_utf8_lossy(&bytes[start..start + len]).into_owned();
    let victim = want
        .iter()
        .find(|id| victim_line.contains(id.as_str()))
        .expect("the record's alert id")
        .clone();
    bytes[start + len / 2] ^= 0x01;
    assert!(start + len + 1 < bytes.len(), "records follow it");
    fs::write(&seg, &bytes).expect("write segment");

    // Second run: "late" is now a file output (same name, same cursor) that can deliver.
    fs::write(
        &config,
        format!("{base}[[output]]\ntype = \"file\"\nname = \"late\"\npath = \"{}\"\nflush_interval = \"10ms\"\n", late.display()),
    )
    .expect("config");
    let daemon = Daemon::start(&config, &stderr);
    wait_until(Duration::from_secs(30), "the lost record reported", || {
        fs::read_to_string(&stderr)
            .unwrap_or_default()
            .contains("records lost")
    });
    wait_until(Duration::from_secs(30), "99 alerts for late", || {
        delivered(&late).len() >= 99
    });
    let body = {
        let mut body = String::new();
        wait_until(Duration::from_secs(10), "the lost metric", || {
            body = crate::support::sensor::scrape(metrics_port).unwrap_or_default();
            body.lines().any(|l| {
                l.starts_with("longconn_spool_records_lost_total{")
                    && l.contains("output=\"late\"")
                    && l.ends_with(" 1")
            })
        });
        body
    };
    daemon.stop_ok();
    let got: BTreeSet<String> = delivered(&late).into_iter().collect();
    let mut expected = want.clone();
    expected.remove(&victim);
    assert_eq!(got, expected, "every other alert delivered");
    assert_eq!(
        delivered(&alerts).len(),
        100,
        "the file output had them all"
    );
    let log_text = fs::read_to_string(&stderr).expect("stderr");
    let line = log_text
        .lines()
        .find(|l| l.contains("records lost"))
        .expect("a lost line");
    let seg_name = seg
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(line.contains(&seg_name), "names the segment: {line}");
    assert!(
        line.contains(&format!("offset={start}")),
        "names the offset: {line}"
    );
    assert!(
        line.contains("first_seq=50") && line.contains("last_seq=50"),
        "{line}"
    );
    assert!(!log_text.contains("raised again"), "{log_text}");
    assert!(body.contains("longconn_spool_records_lost_total"));
}
