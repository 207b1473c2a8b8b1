//! Issue 13, several Zeek loggers: a cluster's loggers each get every Nth log record
//! (`Cluster::rr_log_topic`), so one host pair's connections are split over their conn.log files. One
//! daemon following all of them (one `[[source]]` each) reads them in event-time order, and raises exactly
//! the alerts, `event.id`s included, that `longconn replay` raises on the joined stream, even when one
//! logger's file lags far behind the others when the daemon starts (it grows later, or appears later).
//!
//! The joined streams are real conn.logs of `tests/data`, with their records put in the order a logger
//! writes them: at the connection's end (ties in file order). A real file is only roughly in that order
//! (Zeek writes a connection when its state is removed, up to minutes after its end); split over several
//! files, that disorder cannot be put back by any reader, and it is not what this test is about.

use crate::support::inproc::InProc;
use crate::support::sensor::replay;
use longconn::daemon::RunOptions;
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Thresholds these small captures reach, and a window shorter than they last, so that what falls out of
/// the window (the watermark's order) matters.
const LEVELS: &str = "[window]\nlength = \"5m\"\n\
[single]\nlevels = { low = \"10s\", medium = \"30s\", high = \"1m\", critical = \"3m\" }\n\
[cumulative]\nlevels = { low = \"20s\", medium = \"1m\", high = \"2m\", critical = \"5m\" }\n";

/// A real log: its header lines (none for NDJSON) and its records, in end order.
fn real_log(name: &str) -> (String, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = fs::read_to_string(&path).expect("test data");
    let header: String = text
        .lines()
        .filter(|l| l.starts_with('#') && !l.starts_with("#close"))
        .map(|l| format!("{l}\n"))
        .collect();
    let fields: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .map(|f| f.split('\t').collect())
        .unwrap_or_default();
    let end = |line: &str| -> f64 {
        let (ts, dur) = if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(line).expect("json record");
            (v["ts"].as_f64(), v["duration"].as_f64())
        } else {
            let cols: Vec<&str> = line.split('\t').collect();
            let get = |name: &str| {
                fields
                    .iter()
                    .position(|f| *f == name)
                    .and_then(|i| cols.get(i))
                    .and_then(|v| v.parse::<f64>().ok())
            };
            (get("ts"), get("duration"))
        };
        ts.unwrap_or(0.0) + dur.unwrap_or(0.0)
    };
    let mut rows: Vec<(f64, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| (end(l), format!("{l}\n")))
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    (header, rows.into_iter().map(|(_, r)| r).collect())
}

fn append(path: &Path, text: &str) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

/// A cluster of `n` loggers in a temp dir: `logger-K/conn.log` each, one `[[source]]` each.
struct Cluster {
    dir: tempfile::TempDir,
    logs: Vec<PathBuf>,
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut logs = Vec::new();
        let mut config = String::from("[sensor]\nname = \"cluster\"\n");
        for k in 1..=n {
            let d = dir.path().join(format!("logger-{k}"));
            fs::create_dir_all(&d).expect("mkdir");
            let log = d.join("conn.log");
            config.push_str(&format!("[[source]]\npath = \"{}\"\n", log.display()));
            logs.push(log);
        }
        config.push_str(&format!(
            "[state]\ndir = \"{}\"\ncheckpoint_interval = \"200ms\"\n[[output]]\ntype = \"file\"\npath = \"{}\"\n{LEVELS}",
            dir.path().join("state").display(),
            dir.path().join("alerts.json").display(),
        ));
        fs::write(dir.path().join("longconn.toml"), config).expect("config");
        Cluster { dir, logs }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("longconn.toml")
    }

    /// What `replay` raises on the joined stream.
    fn expected(&self, header: &str, rows: &[String]) -> Vec<String> {
        let joined = self.dir.path().join("joined.log");
        fs::write(&joined, format!("{header}{}", rows.concat())).expect("joined");
        replay(&self.config(), &joined)
    }

    fn alerts(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("alerts.json"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Record `i` of the joined stream goes to logger `i % n`.
fn split(rows: &[String], n: usize) -> Vec<Vec<String>> {
    let mut parts = vec![Vec::new(); n];
    for (i, r) in rows.iter().enumerate() {
        parts[i % n].push(r.clone());
    }
    parts
}

/// Runs the daemon until it has read `total` records and delivered every alert; returns them.
async fn run_until_read(
    cluster: &Cluster,
    total: u64,
    later: impl FnOnce(),
) -> (Vec<String>, longconn::daemon::Progress) {
    let mut d = InProc::start(&cluster.config(), RunOptions::default());
    d.ready().await;
    // The lagging logger catches up while the others wait for it.
    later();
    let p = d
        .wait("every record read", |p| p.records >= total && p.caught_up)
        .await;
    let spooled = p.alerts_spooled;
    d.wait("every alert delivered", |p| p.alerts_delivered >= spooled)
        .await;
    d.stop().await.expect("clean stop");
    (cluster.alerts(), p)
}

fn ids(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("alert json");
            v["event"]["id"].as_str().expect("event.id").to_string()
        })
        .collect()
}

#[tokio::test]
async fn two_loggers_one_growing_late_give_the_alerts_of_the_joined_stream() {
    let (header, rows) = real_log("zat_bro2.conn.log");
    let cluster = Cluster::new(2);
    let parts = split(&rows, 2);
    // Logger 1 has written everything; logger 2 only its first tenth when the daemon starts.
    fs::write(&cluster.logs[0], format!("{header}{}", parts[0].concat())).expect("logger 1");
    let lag = parts[1].len() / 10;
    fs::write(
        &cluster.logs[1],
        format!("{header}{}", parts[1][..lag].concat()),
    )
    .expect("logger 2");
    let want = cluster.expected(&header, &rows);
    assert!(
        want.len() >= 20,
        "the capture raises alerts: {}",
        want.len()
    );
    let (got, p) = run_until_read(&cluster, rows.len() as u64, || {
        append(&cluster.logs[1], &parts[1][lag..].concat())
    })
    .await;
    assert_eq!(p.records, rows.len() as u64, "every record once");
    assert_eq!(ids(&got), ids(&want), "the same event.ids");
    assert_eq!(got, want, "the same alerts, in the same order");
}

#[tokio::test]
async fn three_loggers_one_file_appearing_late_give_the_alerts_of_the_joined_stream() {
    let (header, rows) = real_log("otrf_apt29_day1_NASHUA.conn.ndjson");
    let cluster = Cluster::new(3);
    let parts = split(&rows, 3);
    // Loggers 1 and 2 have written everything; logger 3's file is not there yet.
    for (log, part) in cluster.logs.iter().zip(&parts).take(2) {
        fs::write(log, format!("{header}{}", part.concat())).expect("log");
    }
    let want = cluster.expected(&header, &rows);
    assert!(want.len() >= 5, "the capture raises alerts: {}", want.len());
    let (got, p) = run_until_read(&cluster, rows.len() as u64, || {
        append(&cluster.logs[2], &format!("{header}{}", parts[2].concat()))
    })
    .await;
    assert_eq!(p.records, rows.len() as u64, "every record once");
    assert_eq!(ids(&got), ids(&want), "the same event.ids");
    assert_eq!(got, want, "the same alerts, in the same order");
}

#[tokio::test]
async fn three_loggers_caught_up_after_downtime_give_the_alerts_of_the_joined_stream() {
    // Every file complete before the start (a daemon that was down): the backlogs are merged, none is
    // read a poll budget ahead of the others.
    let (header, rows) = real_log("zat_bro2.conn.log");
    let cluster = Cluster::new(3);
    for (k, part) in split(&rows, 3).iter().enumerate() {
        fs::write(&cluster.logs[k], format!("{header}{}", part.concat())).expect("log");
    }
    let want = cluster.expected(&header, &rows);
    let (got, _) = run_until_read(&cluster, rows.len() as u64, || {}).await;
    assert_eq!(got, want);
}

const SSL_HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tssl\n#open\t2024-01-01-00-00-00\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tversion\tserver_name\n#types\ttime\tstring\taddr\tport\taddr\tport\tstring\tstring\n";

#[tokio::test]
async fn conn_and_ssl_logs_of_two_loggers_name_servers_as_replay_does_on_the_joined_logs() {
    use crate::support::sensor::{replay_files, row, HEADER};
    // Forty 5 h connections 1000 s apart over eight pairs; every other one has a handshake in ssl.log (same
    // uid and ts). A handshake names its pair's later connections, never the ones that ended before it
    // was written: the order of ssl.log against conn.log matters.
    let pair = |k: u32| {
        (
            format!("10.0.0.{}", k % 4 + 1),
            format!("203.0.113.{}", k % 8 + 1),
        )
    };
    let conns: Vec<String> = (0..40)
        .map(|k| {
            let (o, r) = pair(k);
            row(k * 10_000, &o, &r, 2.0 * 3600.0)
        })
        .collect();
    let ssls: Vec<String> = (0..40)
        .filter(|k| k % 2 == 1)
        .map(|k| {
            let (o, r) = pair(k);
            let n = k * 10_000;
            let ts = 1_700_000_000.0 + f64::from(n);
            format!(
                "{ts:.6}\tC{n:08}\t{o}\t40000\t{r}\t443\tTLSv13\tsvc{}.example.com\n",
                k % 3
            )
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = String::from("[sensor]\nname = \"cluster\"\n");
    let mut files = Vec::new();
    for k in 1..=2 {
        let d = dir.path().join(format!("logger-{k}"));
        fs::create_dir_all(&d).expect("mkdir");
        for name in ["conn.log", "ssl.log"] {
            config.push_str(&format!(
                "[[source]]\npath = \"{}\"\n",
                d.join(name).display()
            ));
        }
        files.push((d.join("conn.log"), d.join("ssl.log")));
    }
    config.push_str(&format!(
        "[state]\ndir = \"{}\"\ncheckpoint_interval = \"200ms\"\n[cumulative]\nlevels = {{}}\n[context]\nnamed_tls_usual_port = false\ncommon_destination = false\nrare_destination = false\n[[output]]\ntype = \"file\"\npath = \"{}\"\n",
        dir.path().join("state").display(),
        dir.path().join("alerts.json").display(),
    ));
    let cfg = dir.path().join("longconn.toml");
    fs::write(&cfg, config).expect("config");
    // Everything written before the start (a daemon catching up), each log split round-robin.
    for (k, (conn, ssl)) in files.iter().enumerate() {
        let mine = |v: &[String]| -> String { v.iter().skip(k).step_by(2).cloned().collect() };
        fs::write(conn, format!("{HEADER}{}", mine(&conns))).expect("conn.log");
        fs::write(ssl, format!("{SSL_HEADER}{}", mine(&ssls))).expect("ssl.log");
    }
    let (joined_conn, joined_ssl) = (
        dir.path().join("all.conn.log"),
        dir.path().join("all.ssl.log"),
    );
    fs::write(&joined_conn, format!("{HEADER}{}", conns.concat())).expect("joined conn");
    fs::write(&joined_ssl, format!("{SSL_HEADER}{}", ssls.concat())).expect("joined ssl");
    let want = replay_files(&cfg, &[&joined_conn, &joined_ssl]);
    assert!(
        want.len() >= 7,
        "at least one alert per pair: {}",
        want.len()
    );
    let named = want.iter().filter(|l| l.contains("\"domain\"")).count();
    assert!(
        named > 0 && named < want.len(),
        "named: {named} of {}",
        want.len()
    );

    let mut d = InProc::start(&cfg, RunOptions::default());
    let total = (conns.len() + ssls.len()) as u64;
    let p = d
        .wait("every record read", |p| p.records >= total && p.caught_up)
        .await;
    let spooled = p.alerts_spooled;
    d.wait("every alert delivered", |p| p.alerts_delivered >= spooled)
        .await;
    d.stop().await.expect("clean stop");
    let got: Vec<String> = fs::read_to_string(dir.path().join("alerts.json"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        got, want,
        "the same alerts, names included, in the same order"
    );
}
