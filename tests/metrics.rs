//! The Prometheus endpoint end to end: the real binary with `[metrics] listen` on a free port, known rows
//! written to its conn.log (some malformed, one filtered, one long enough to alert), scraped with a plain
//! HTTP GET; the counters must equal what was written, before and after more rows are appended live, and
//! the alert must show as delivered by the file output.

use crate::support::sensor::{bad_row, metric, row, stderr_now, stop, Sensor};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read response");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (head.to_string(), body.to_string())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Scrapes until `done` holds (10 s at most), returning the last body.
fn scrape_until(port: u16, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Until the daemon has bound the port, connecting fails.
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let (_, body) = get(port, "/metrics");
            if done(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{what} never seen:\n{body}");
        }
        assert!(Instant::now() < deadline, "endpoint never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn counters_match_what_was_written() {
    let port = free_port();
    let sensor = Sensor::new(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let src = sensor.log().display().to_string();
    let src = src.as_str();
    // Batch 1: 4 good rows over 3 pairs (one of them 2 h long: a single-connection alert at "low"),
    // 1 row from loopback (read, then filtered by `never`), 2 malformed rows.
    let mut text = String::new();
    text += &row(1, "10.0.0.1", "198.51.100.7", 2.0 * 3600.0);
    text += &row(2, "10.0.0.1", "198.51.100.7", 10.0);
    text += &bad_row(3);
    text += &row(4, "10.0.0.2", "198.51.100.7", 10.0);
    text += &row(5, "10.0.0.3", "198.51.100.8", 10.0);
    text += &row(6, "127.0.0.1", "127.0.0.1", 10.0);
    text += &bad_row(7);
    sensor.append(&text);
    let mut child = sensor.spawn(&[]);

    let body = scrape_until(port, "5 records read", |b| {
        metric(b, "longconn_records_read_total", &[("source", src)]) == Some(5.0)
            && metric(b, "longconn_groups_tracked", &[]) == Some(3.0)
    });
    let v = |name: &str, labels: &[(&str, &str)]| metric(&body, name, labels);
    assert_eq!(
        v("longconn_records_used_total", &[("source", src)]),
        Some(4.0)
    );
    let skipped = |reason| {
        v(
            "longconn_records_skipped_total",
            &[("source", src), ("reason", reason)],
        )
    };
    assert_eq!(skipped("column_count"), Some(2.0), "{body}");
    assert_eq!(skipped("filter_never"), Some(1.0), "{body}");
    assert_eq!(
        v(
            "longconn_alerts_total",
            &[("trigger", "single"), ("level", "low")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "longconn_alerts_total",
            &[("trigger", "single"), ("level", "medium")]
        ),
        Some(0.0)
    );
    assert!(
        v("process_resident_memory_bytes", &[]).is_some_and(|r| r > 0.0),
        "{body}"
    );
    assert!(
        v("process_open_fds", &[]).is_some_and(|n| n >= 3.0),
        "{body}"
    );
    assert!(v("process_cpu_seconds_total", &[]).is_some(), "{body}");

    // Batch 2, appended while running: 3 good rows (one new pair) and 1 malformed.
    let mut text = String::new();
    text += &row(8, "10.0.0.4", "198.51.100.9", 10.0);
    text += &row(9, "10.0.0.4", "198.51.100.9", 10.0);
    text += &bad_row(10);
    text += &row(11, "10.0.0.1", "198.51.100.7", 10.0);
    sensor.append(&text);
    let body = scrape_until(port, "8 records read, caught up", |b| {
        metric(b, "longconn_records_read_total", &[("source", src)]) == Some(8.0)
            // Read is counted when a line is taken, used once the detector had it: await both.
            && metric(b, "longconn_records_used_total", &[("source", src)]) == Some(7.0)
            && metric(b, "longconn_groups_tracked", &[]) == Some(4.0)
            && metric(b, "longconn_source_lag_bytes", &[("source", src)]) == Some(0.0)
            && metric(b, "longconn_checkpoint_age_seconds", &[]).is_some()
    });
    let v = |name: &str, labels: &[(&str, &str)]| metric(&body, name, labels);
    assert_eq!(
        v("longconn_records_used_total", &[("source", src)]),
        Some(7.0)
    );
    let skipped = |reason| {
        v(
            "longconn_records_skipped_total",
            &[("source", src), ("reason", reason)],
        )
    };
    assert_eq!(skipped("column_count"), Some(3.0), "{body}");
    assert_eq!(skipped("filter_never"), Some(1.0), "{body}");
    assert_eq!(
        v("longconn_source_lag_seconds", &[("source", src)]),
        Some(0.0)
    );
    assert!(v("longconn_checkpoint_age_seconds", &[]).is_some_and(|a| a < 10.0));
    assert!(
        body.contains("# HELP longconn_records_read_total"),
        "{body}"
    );
    // The one alert went through the spool to the file output.
    let body = scrape_until(port, "the alert delivered", |b| {
        metric(b, "longconn_output_deliveries_total", &[("output", "file")]) == Some(1.0)
    });
    let v = |name: &str, labels: &[(&str, &str)]| metric(&body, name, labels);
    let failures = |kind| {
        v(
            "longconn_output_failures_total",
            &[("output", "file"), ("kind", kind)],
        )
    };
    assert_eq!(failures("transient"), Some(0.0));
    assert_eq!(failures("permanent"), Some(0.0));
    assert!(
        v("longconn_spool_bytes", &[]).is_some_and(|b| b > 0.0),
        "{body}"
    );

    let (head, _) = get(port, "/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let log = stderr_now(&mut child);
    assert!(log.contains("metrics endpoint listening"), "{log}");
    stop(child);
}

#[test]
fn unusable_listen_address_fails_the_start() {
    // A port already taken: the daemon must exit with an error rather than run without its metrics.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let sensor = Sensor::new(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_longconn"))
        .args(["run", "--config"])
        .arg(sensor.config())
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics.listen"), "{err}");
}
