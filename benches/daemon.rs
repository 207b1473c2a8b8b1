//! Figures for the streaming detector (issue 3 targets), printed, never asserted:
//! 1. records/s through the whole daemon (`longconn run`) tailing a generated conn.log from the beginning;
//! 2. latency from a line being appended to the live log to its alert being in the alert file (p50, p99);
//! 3. resident memory per tracked group, and the time to restore 1 million groups from a checkpoint;
//! 4. records/s through `longconn replay` on the file of (1), with no alert and with the default levels,
//!    next to `longconn scan` on the same file (the speed the detector path is measured against).
//!
//! Run: `cargo bench --bench daemon`. `LONGCONN_BENCH_RECORDS` (default 2,000,000) sets the size of (1);
//! `LONGCONN_BENCH_GROUPS` (default 1,000,000) the size of (3).

use longconn::config::Config;
use longconn::detector::{Detector, DetectorState};
use longconn::zeek::ConnRecord;
use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t2024-04-19-00-00-01\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n";

fn line(i: u64, ts: f64, dur: f64) -> String {
    let o = i % 50_000;
    format!(
        "{ts:.6}\tC{i:017}\t10.{}.{}.{}\t{}\t203.0.{}.{}\t443\ttcp\tssl\t{dur:.6}\t{}\t{}\tSF\tT\tF\t0\tShADadFf\t12\t1500\t10\t9000\t-\n",
        o >> 16 & 255,
        o >> 8 & 255,
        o & 255,
        1024 + i % 60000,
        o % 200,
        1 + o % 250,
        100 + i % 5000,
        2000 + i % 90000
    )
}

fn config(dir: &Path, single_low: &str) -> String {
    format!(
        r#"
[sensor]
name = "bench"
[[source]]
path = "{logs}/conn.log"
start_at = "beginning"
[state]
dir = "{dir}/state"
checkpoint_interval = "1s"
[single]
levels = {{ low = "{single_low}" }}
[cumulative]
levels = {{ low = "100d" }}
[[output]]
type = "file"
path = "{dir}/alerts.json"
"#,
        logs = dir.join("logs").display(),
        dir = dir.display()
    )
}

fn rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn start(bin: &str, cfg: &Path) -> Child {
    Command::new(bin)
        .args(["run", "--log-level", "warn", "--config"])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start daemon")
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// (1) Whole-daemon throughput: time until the alert of a sentinel record, the file's last line, is written.
/// Writes the bench's conn.log: `records` rows of 50,000 pairs, then a sentinel that alerts at once.
fn write_log(log: &Path, records: u64) {
    {
        let mut w = BufWriter::new(fs::File::create(log).expect("create"));
        w.write_all(HEADER.as_bytes()).expect("write");
        for i in 0..records {
            let ts = 1_713_484_795.0 + i as f64 * 0.01;
            let dur = (i * 7919 % 3_600_000) as f64 / 1000.0;
            w.write_all(line(i, ts, dur).as_bytes()).expect("write");
        }
        // The sentinel: a 100-day connection, alerting at once (the file's last record).
        let end = 1_713_484_795.0 + records as f64 * 0.01;
        let sentinel = line(records, end, 8_640_000.0)
            .replace(&format!("C{records:017}"), "CSENTINEL00000000");
        w.write_all(sentinel.as_bytes()).expect("write");
    }
}

fn throughput(bin: &str, records: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    fs::create_dir_all(dir.join("logs")).expect("mkdir");
    let log = dir.join("logs/conn.log");
    write_log(&log, records);
    let size = fs::metadata(&log).expect("stat").len();
    let cfg = dir.join("longconn.toml");
    fs::write(&cfg, config(dir, "30m")).expect("config");
    let t0 = Instant::now();
    let child = start(bin, &cfg);
    // Read the alert file incrementally (it grows): cheap, so the bench does not steal the daemon's CPU.
    let alerts = dir.join("alerts.json");
    let mut seen = 0u64;
    let mut tail = Vec::new();
    loop {
        if let Ok(mut f) = fs::File::open(&alerts) {
            use std::io::{Read, Seek, SeekFrom};
            if f.seek(SeekFrom::Start(seen)).is_ok() {
                tail.clear();
                if let Ok(n) = f.read_to_end(&mut tail) {
                    seen += n as u64;
                    if memchr::memmem::find(&tail, b"CSENTINEL00000000").is_some() {
                        break;
                    }
                    // Keep a partial last line's start for the next look.
                    if let Some(p) = memchr::memrchr(b'\n', &tail) {
                        seen -= (tail.len() - p - 1) as u64;
                    }
                }
            }
        }
        if t0.elapsed() > Duration::from_secs(300) {
            println!("daemon throughput: did not finish within 300 s");
            stop(child);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = t0.elapsed().as_secs_f64();
    stop(child);
    println!(
        "daemon tailing throughput: {records} records ({:.0} MB) in {secs:.2} s = {:.2} M records/s (start-up to the last record's alert)",
        size as f64 / 1e6,
        records as f64 / secs / 1e6
    );
}

/// (2) Append-to-alert latency: one alerting line at a time into the live log.
fn latency(bin: &str, samples: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    fs::create_dir_all(dir.join("logs")).expect("mkdir");
    let log = dir.join("logs/conn.log");
    fs::write(&log, HEADER).expect("header");
    let cfg = dir.join("longconn.toml");
    fs::write(&cfg, config(dir, "1h")).expect("config");
    let child = start(bin, &cfg);
    std::thread::sleep(Duration::from_millis(500));
    let alerts = dir.join("alerts.json");
    let count = || {
        fs::read_to_string(&alerts)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let mut lat = Vec::with_capacity(samples);
    for k in 0..samples as u64 {
        // Each line is a new pair with a 2 h connection: one single alert each.
        let rec = line(1_000_000 + k, 1_713_484_795.0 + k as f64 * 10.0, 7200.0);
        let before = count();
        let t = Instant::now();
        {
            let mut f = OpenOptions::new().append(true).open(&log).expect("open");
            f.write_all(rec.as_bytes()).expect("append");
        }
        while count() == before {
            if t.elapsed() > Duration::from_secs(5) {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    stop(child);
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    println!(
        "append-to-alert latency over {samples} alerts: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p(0.5),
        p(0.99),
        p(1.0)
    );
}

/// (3) Memory per group and restore time, in process.
fn groups(n: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(dir.path(), "1h").replace("max_groups", "x");
    let text = text.replace("[state]", "[window]\nmax_groups = 2000000\n[state]");
    let cfg = Config::from_toml_str(&text).expect("config");
    let mut det = Detector::new(&cfg.detector());
    let mut out = Vec::new();
    let base = rss_kib();
    let t = Instant::now();
    // In batches of 256 through `process_all`, as the daemon's polls feed it.
    let mut batch = Vec::with_capacity(256);
    for i in 0..n {
        let rec = ConnRecord {
            ts: Some(1_713_484_795.0 + i as f64 * 0.001),
            uid: format!("C{i:017}").into(),
            orig_h: Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32))),
            resp_h: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
            resp_p: Some(443),
            proto: "tcp".into(),
            duration: Some(60.0),
            orig_bytes: Some(100),
            resp_bytes: Some(1000),
            ..ConnRecord::default()
        };
        batch.push(rec);
        if batch.len() == 256 || i + 1 == n {
            det.process_all(&batch, longconn::zeek::SourceKind::Conn, &mut out);
            batch.clear();
            out.clear();
        }
    }
    let feed = t.elapsed().as_secs_f64();
    let per_group = (rss_kib().saturating_sub(base)) as f64 * 1024.0 / n as f64;
    let groups = det.stats().groups_tracked;
    println!(
        "detector: {n} records into {groups} groups in {feed:.2} s ({:.2} M records/s on one core); resident memory {per_group:.0} bytes per group",
        n as f64 / feed / 1e6
    );
    let state = det.snapshot();
    let json = serde_json::to_vec(&state).expect("serialize");
    drop(det);
    let t = Instant::now();
    let back: DetectorState = serde_json::from_slice(&json).expect("parse");
    let restored = Detector::restore(&cfg.detector(), back);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "restore {} groups from a {:.0} MB checkpoint: {secs:.2} s",
        restored.stats().groups_tracked,
        json.len() as f64 / 1e6
    );
}

/// (4) `replay` over the throughput file, quiet (no level reachable) and with the default config, and
/// `scan` over the same file; medians of 3 runs each.
fn replay(bin: &str, records: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let log = dir.join("conn.log");
    write_log(&log, records);
    let quiet = dir.join("quiet.toml");
    fs::write(
        &quiet,
        "[single]\nlevels = { low = \"100d\" }\n[cumulative]\nlevels = { low = \"100d\" }\n",
    )
    .expect("config");
    let defaults = dir.join("defaults.toml");
    fs::write(&defaults, "").expect("config");
    let time = |args: &[&std::ffi::OsStr]| {
        let mut v: Vec<f64> = (0..3)
            .map(|_| {
                let t = Instant::now();
                let status = Command::new(bin)
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("run longconn");
                assert!(status.success(), "longconn {args:?} failed");
                t.elapsed().as_secs_f64()
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v[1]
    };
    let scan = time(&["scan".as_ref(), log.as_os_str()]);
    let n = records as f64 + 1.0;
    println!(
        "scan of the same file: {scan:.2} s = {:.2} M records/s",
        n / scan / 1e6
    );
    for (what, cfg) in [("no alert", &quiet), ("default config", &defaults)] {
        let secs = time(&[
            "replay".as_ref(),
            "--config".as_ref(),
            cfg.as_os_str(),
            log.as_os_str(),
        ]);
        println!(
            "replay, {what}: {records} records in {secs:.2} s = {:.2} M records/s ({:.1}x scan's time)",
            n / secs / 1e6,
            secs / scan
        );
    }
}

fn main() {
    let env_u64 = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let bin = env!("CARGO_BIN_EXE_longconn");
    groups(env_u64("LONGCONN_BENCH_GROUPS", 1_000_000));
    throughput(bin, env_u64("LONGCONN_BENCH_RECORDS", 2_000_000));
    latency(bin, 200);
    replay(bin, env_u64("LONGCONN_BENCH_RECORDS", 2_000_000));
}
