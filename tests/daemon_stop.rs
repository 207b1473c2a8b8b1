//! A stop is honoured within the deadline while the daemon is busy: a large backlog being read and the
//! watched file written to continuously (each write a file-system notification). Before the wake-ups were
//! coalesced, every notification queued a message ahead of the stop and the pipeline took one per round of
//! polls, so SIGTERM waited for the whole backlog and then some.

use crate::support::sensor::{row, Sensor, HEADER};
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `STOP_DEADLINE` in src/daemon.rs.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Writes `mib` MiB of rows (one 1 MiB block repeated: reading cost is what matters, not uniqueness).
fn write_backlog(sensor: &Sensor, mib: usize) -> u64 {
    let mut block = String::new();
    let mut n = 0;
    while block.len() < 1 << 20 {
        block.push_str(&row(n, "10.0.0.1", "198.51.100.7", 1.0));
        n += 1;
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(sensor.log())
        .expect("open conn.log");
    for _ in 0..mib {
        f.write_all(block.as_bytes()).expect("write backlog");
    }
    std::fs::metadata(sensor.log()).expect("conn.log").len()
}

/// The live file's offset in the saved checkpoint.
fn checkpoint_offset(sensor: &Sensor) -> u64 {
    let text = std::fs::read_to_string(sensor.path("state/checkpoint.json")).expect("checkpoint");
    let v: serde_json::Value = serde_json::from_str(&text).expect("checkpoint json");
    v["sources"][0]["live"]["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("no live offset in {}", &text[..text.len().min(500)]))
}

#[test]
fn stop_is_honoured_within_the_deadline_while_a_large_backlog_is_read_and_the_file_is_written() {
    let sensor = Sensor::new("");
    // Far more than can be read between READY and the stop, in release or debug builds.
    let backlog = write_backlog(&sensor, 400);
    let stderr = sensor.path("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_longconn"))
        .args(["run", "--log-level", "info", "--config"])
        .arg(sensor.config())
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("spawn longconn");
    crate::support::faults::wait_until(Duration::from_secs(30), "the daemon reading", || {
        std::fs::read_to_string(&stderr)
            .unwrap_or_default()
            .contains("reading file")
    });
    // A writer appending one row per write: thousands of notifications a second.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        let log = sensor.log();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(log)
                .expect("open conn.log");
            let mut n = 10_000_000;
            while writing.load(Ordering::Relaxed) {
                f.write_all(row(n, "10.0.0.2", "198.51.100.8", 1.0).as_bytes())
                    .expect("append");
                n += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };
    // Long enough for thousands of notifications to arrive while the backlog is read (a second reads
    // about 150 MB in a release build here).
    std::thread::sleep(Duration::from_secs(1));
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let asked = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if asked.elapsed() > STOP_DEADLINE + Duration::from_secs(5) {
            writing.store(false, Ordering::Relaxed);
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no exit {:?} after SIGTERM (deadline {STOP_DEADLINE:?}); log:\n{}",
                asked.elapsed(),
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = asked.elapsed();
    writing.store(false, Ordering::Relaxed);
    writer.join().expect("writer");
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(status.success(), "exit {status}: {log}");
    assert!(took < STOP_DEADLINE, "stopped after {took:?}: {log}");
    assert!(log.contains("stopped; checkpoint saved"), "{log}");
    // Stopped in the middle of the backlog (not after reading all of it), and the final checkpoint covers
    // exactly the records the daemon says it read: a restart reads on from there.
    let offset = checkpoint_offset(&sensor);
    assert!(
        offset < backlog,
        "the stop waited for the backlog: offset {offset} of {backlog} ({took:?})"
    );
    let read: u64 = log
        .lines()
        .find(|l| l.contains("stopped; checkpoint saved"))
        .and_then(|l| l.split("records=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no records= in the stop line: {log}"));
    let data = std::fs::read(sensor.log()).expect("conn.log");
    let lines = data[..offset as usize]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64;
    let header_lines = HEADER.lines().count() as u64;
    assert_eq!(
        lines - header_lines,
        read,
        "the checkpoint (offset {offset}) covers what was read"
    );
    eprintln!("stop took {took:?}; read {read} records, {offset} of {backlog} backlog bytes");
}
