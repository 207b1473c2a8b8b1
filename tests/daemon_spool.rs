//! End-to-end: the real `longconn run` with two outputs, a file and a TCP syslog server that is down. The file
//! output gets alerts while the syslog one cannot (one dead output does not block another) until the spool,
//! held by the dead output, reaches `[spool] max_bytes`: then reading pauses with a warning. When a receiver
//! appears, the dead output catches up, segments are freed, reading resumes, and both outputs end up with
//! every alert that `longconn replay` raises for the log.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\n";

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ids(path: &Path) -> BTreeSet<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["event"]["id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn dead_output_fills_the_spool_then_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut log = String::from(HEADER);
    let mut rest = String::new();
    for i in 0..300u64 {
        // The first 100 records fill the spool; the rest is written while reading is paused.
        let log = if i < 100 { &mut log } else { &mut rest };
        writeln!(
            log,
            "{}.000000\tC{i:017}\t10.2.{}.{}\t{}\t198.51.100.{}\t22\ttcp\tssh\t{}.0\t1\t2\tSF",
            1_700_000_000 + i * 10,
            i / 200,
            i % 200 + 1,
            30000 + i,
            i % 9 + 1,
            61 + (i % 4) * 120
        )
        .unwrap();
    }
    fs::write(d.join("conn.log"), &log).unwrap();
    let alerts = d.join("alerts.json");
    let config = d.join("longconn.toml");
    fs::write(
        &config,
        format!(
            r#"[[source]]
path = "{log}"
[state]
dir = "{state}"
checkpoint_interval = "1s"
[single]
levels = {{ low = "1m", medium = "2m", high = "5m", critical = "10m" }}
[cumulative]
levels = {{}}
[spool]
max_bytes = 65536
[[output]]
type = "file"
path = "{alerts}"
flush_interval = "10ms"
[[output]]
type = "syslog"
name = "down"
transport = "tcp"
address = "127.0.0.1:{port}"
flush_interval = "10ms"
[metrics]
listen = "127.0.0.1:{metrics_port}"
"#,
            log = d.join("conn.log").display(),
            state = d.join("state").display(),
            alerts = alerts.display(),
        ),
    )
    .unwrap();
    let full_log = format!("{log}{rest}");
    fs::write(d.join("full.log"), &full_log).unwrap();
    let want: BTreeSet<String> = crate::support::sensor::replay(&config, &d.join("full.log"))
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["event"]["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(want.len(), 300);

    let stderr = d.join("daemon.stderr");
    let notify = crate::support::sensor::Notify::bind(d.join("notify.sock"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_longconn"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .envs(notify.env())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), "the spool to fill", || {
        fs::read_to_string(&stderr)
            .unwrap_or_default()
            .contains("spool full")
    });
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(d.join("conn.log"))
            .unwrap();
        f.write_all(rest.as_bytes()).unwrap();
    }
    // The file output went on while syslog was down, but reading stays paused: the new records wait
    // through rounds of polls that began after they were written, and the daemon's own count of records
    // read (taken in the round that reads them, before its watchdog ping) says none of them was read, so
    // no alert of theirs is on its way to the file either.
    wait_until(Duration::from_secs(20), "the file output's part", || {
        ids(&alerts).len() >= 100
    });
    notify.wait_rounds(3);
    let source = d.join("conn.log").display().to_string();
    let read = crate::support::sensor::scrape(metrics_port).and_then(|body| {
        crate::support::sensor::metric(&body, "longconn_records_read_total", &[("source", &source)])
    });
    assert_eq!(read, Some(100.0), "records read while reading was paused");
    let partial = ids(&alerts).len();
    assert_eq!(
        partial, 100,
        "the file got the first part, and nothing more was read"
    );

    // A receiver appears: the syslog output drains the spool and reading resumes.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        let start = Instant::now();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while start.elapsed() < Duration::from_secs(30) {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(_) if String::from_utf8_lossy(&all).matches(" ALERT - ").count() >= 300 => {
                    break
                }
                Err(_) => {}
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    wait_until(Duration::from_secs(30), "every alert in the file", || {
        ids(&alerts).len() == want.len()
    });
    let received = receiver.join().unwrap();
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(ids(&alerts), want);
    let syslog_ids: BTreeSet<String> = received
        .split(" ALERT - ")
        .skip(1)
        .filter_map(|m| {
            let json = &m[..m.rfind('}')? + 1];
            let v: serde_json::Value = serde_json::from_str(json).ok()?;
            v["event"]["id"].as_str().map(str::to_string)
        })
        .collect();
    assert_eq!(syslog_ids, want);
    let log = fs::read_to_string(&stderr).unwrap();
    assert!(log.contains("reading resumed"), "{log}");
}
