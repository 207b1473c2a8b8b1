//! Fault injection on the disk, with the real `longconn run`: the file output and the state directory on
//! tiny tmpfs mounts that fill up and are then enlarged, a failed final checkpoint, a damaged or foreign
//! checkpoint, and a SIGKILL while a checkpoint is being written (tailing scenario 19). Each test compares
//! what reached `alerts.json` with what `longconn replay` raises for the same log, by `event.id`.
//!
//! The tmpfs tests need root (mount); without it they print "SKIPPED: needs root" and pass. Every mount is
//! undone by a guard, even when a test fails.

use crate::support::faults::{skip_unless_root, wait_until, Daemon, Tmpfs};
use crate::support::sensor;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\n";

/// Rows `from..to`, each its own pair; `duration` seconds long (61 or more raises one alert).
fn rows(from: u64, to: u64, duration: u64) -> String {
    let mut s = String::new();
    for i in from..to {
        writeln!(
            s,
            "{}.000000\tC{i:017}\t10.{}.{}.{}\t{}\t198.51.100.{}\t22\ttcp\tssh\t{duration}.0\t1\t2\tSF",
            1_700_000_000 + i,
            i / 65536 % 256,
            i / 256 % 256,
            i % 256,
            30000 + i % 30000,
            i % 9 + 1,
        )
        .expect("write row");
    }
    s
}

/// The test's sensor: `conn.log` and the config in a temp dir; state and alerts where the test puts them.
struct Setup {
    tmp: tempfile::TempDir,
    state: PathBuf,
    alerts: PathBuf,
    /// Every record written to `conn.log`, for `replay`.
    written: String,
}

impl Setup {
    fn new(state: Option<PathBuf>, alerts: Option<PathBuf>) -> Setup {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = state.unwrap_or_else(|| tmp.path().join("state"));
        let alerts = alerts.unwrap_or_else(|| tmp.path().join("alerts.json"));
        let s = Setup {
            tmp,
            state,
            alerts,
            written: String::from(HEADER),
        };
        fs::write(s.log(), HEADER).expect("conn.log");
        let config = format!(
            r#"[[source]]
path = "{log}"
[state]
dir = "{state}"
checkpoint_interval = "200ms"
[single]
levels = {{ low = "1m", medium = "2m", high = "5m", critical = "10m" }}
[cumulative]
levels = {{}}
[spool]
max_bytes = 4194304
[[output]]
type = "file"
path = "{alerts}"
batch_size = 100
"#,
            log = s.log().display(),
            state = s.state.display(),
            alerts = s.alerts.display(),
        );
        fs::write(s.config(), config).expect("config");
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn log(&self) -> PathBuf {
        self.path("conn.log")
    }
    fn config(&self) -> PathBuf {
        self.path("longconn.toml")
    }
    fn checkpoint(&self) -> PathBuf {
        self.state.join("checkpoint.json")
    }

    fn append(&mut self, text: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.log())
            .expect("open conn.log");
        f.write_all(text.as_bytes()).expect("append");
        self.written.push_str(text);
    }

    fn start(&self, run: u32) -> Daemon {
        Daemon::start(&self.config(), &self.path(&format!("daemon{run}.stderr")))
    }

    /// The ids `replay` raises for every record written.
    fn replay_ids(&self) -> BTreeSet<String> {
        let all = self.path("all.log");
        fs::write(&all, &self.written).expect("all.log");
        sensor::replay(&self.config(), &all)
            .iter()
            .map(|l| event_id(l).expect("replay writes alerts"))
            .collect()
    }
}

fn event_id(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["event"]["id"].as_str().map(str::to_string)
}

/// How often each id appears in the alert file; panics on a line that is not an alert.
fn delivered(path: &Path) -> BTreeMap<String, u32> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut ids = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let id = event_id(line).unwrap_or_else(|| {
            panic!("line {} of the alert file is not an alert: {line:?}", n + 1)
        });
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

fn complete_lines(path: &Path) -> usize {
    fs::read(path)
        .unwrap_or_default()
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// Issue 10 item 2: the file output on a file system that fills up, then is enlarged. Every line of the
/// alert file is a whole alert, each id `replay` gives is there exactly once (no SIGKILL in between).
#[test]
fn file_output_on_a_full_file_system_writes_each_alert_once_and_whole() {
    if skip_unless_root("") {
        return;
    }
    let mnt = tempfile::tempdir().expect("tempdir");
    let state_fs = Tmpfs::mount(&mnt.path().join("state"), "16m");
    let out_fs = Tmpfs::mount(&mnt.path().join("out"), "64k");
    let mut s = Setup::new(
        Some(state_fs.dir.join("state")),
        Some(out_fs.dir.join("alerts.json")),
    );
    s.append(&rows(0, 1500, 100));
    let want = s.replay_ids();
    assert_eq!(want.len(), 1500);

    let d = s.start(1);
    // A few retries meet the full disk (the first failure and two more attempts, each logged), then room.
    d.wait_lines(
        Duration::from_secs(30),
        &["delivery failed, will retry", "No space left on device"],
        3,
    );
    out_fs.resize("32m");
    wait_until(Duration::from_secs(60), "every alert written", || {
        complete_lines(&s.alerts) >= want.len()
    });
    let (status, log) = d.stop();
    assert!(status.success(), "exit {status}:\n{log}");
    let got = delivered(&s.alerts);
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} alerts written more than once",
        twice.len()
    );
    let got: BTreeSet<String> = got.into_keys().collect();
    assert_eq!(got, want, "every alert replay raises, and no other");
    let text = fs::read(&s.alerts).expect("alerts");
    assert_eq!(text.last(), Some(&b'\n'), "the file ends with a whole line");
}

/// Issue 10 item 4: the state file system is full at the stop. The final checkpoint fails: an ERROR, a
/// non-zero exit (75), no "checkpoint saved", no temp file left behind.
#[test]
fn failed_final_checkpoint_is_an_error_and_a_non_zero_exit() {
    if skip_unless_root("") {
        return;
    }
    let mnt = tempfile::tempdir().expect("tempdir");
    let state_fs = Tmpfs::mount(&mnt.path().join("state"), "1m");
    let mut s = Setup::new(Some(state_fs.dir.join("state")), None);
    s.append(&rows(0, 50, 1));
    let d = s.start(1);
    wait_until(Duration::from_secs(20), "the first checkpoint", || {
        s.checkpoint().exists()
    });
    state_fs.fill("filler");
    // New records (no alerts): the state changes and the next checkpoint cannot be written.
    s.append(&rows(50, 3000, 1));
    d.wait_log(Duration::from_secs(20), "writing checkpoint failed");
    let (status, log) = d.stop();
    assert_eq!(status.code(), Some(75), "exit status:\n{log}");
    assert!(!log.contains("checkpoint saved"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("final checkpoint")),
        "{log}"
    );
    assert!(
        !s.state.join("checkpoint.json.tmp").exists(),
        "no temp file left behind"
    );
}

/// The bad checkpoints set aside so far, by name.
fn set_aside(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(state)
        .expect("state dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint.json.bad"))
        .collect();
    names.sort();
    names
}

/// Changes one byte near the middle of `path` so that the JSON stays valid (a digit to another digit):
/// only a checksum can tell.
fn flip_a_digit_in_the_middle(path: &Path) {
    let mut bytes = fs::read(path).expect("checkpoint");
    let mid = bytes.len() / 2;
    let at = (mid..bytes.len())
        .find(|&i| bytes[i].is_ascii_digit())
        .expect("a digit after the middle");
    bytes[at] = if bytes[at] == b'9' {
        b'1'
    } else {
        bytes[at] + 1
    };
    fs::write(path, bytes).expect("write checkpoint");
}

/// Issue 10 item 8 and the checkpoint's checksum: a byte changed in the middle of checkpoint.json is found,
/// the file is set aside under a name of its own (a second one does not overwrite the first), and the
/// daemon starts without it, saying so and naming the file.
#[test]
fn checkpoint_with_a_byte_flipped_is_set_aside_under_a_distinct_name() {
    let mut s = Setup::new(None, None);
    s.append(&rows(0, 200, 100));
    let d = s.start(1);
    wait_until(Duration::from_secs(20), "the alerts", || {
        complete_lines(&s.alerts) >= 200
    });
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("checkpoint saved"), "{log}");

    for run in 2..4 {
        flip_a_digit_in_the_middle(&s.checkpoint());
        let d = s.start(run);
        d.wait_log(Duration::from_secs(20), "longconn running");
        let log = d.log();
        let (status, _) = d.stop();
        assert!(status.success(), "{log}");
        let line = log
            .lines()
            .find(|l| l.contains("checksum"))
            .unwrap_or_else(|| panic!("no word of the damage:\n{log}"));
        assert!(line.contains("ERROR"), "{line}");
        assert!(
            line.contains(&s.checkpoint().display().to_string()),
            "{line}"
        );
        assert!(!log.contains("checkpoint restored"), "{log}");
        let aside = set_aside(&s.state);
        assert_eq!(
            aside.len(),
            usize::try_from(run - 1).expect("n"),
            "{aside:?}"
        );
        assert!(
            aside.iter().all(|n| n != "checkpoint.json.bad"),
            "{aside:?}"
        );
        assert!(
            aside.iter().any(|n| line.contains(n.as_str())),
            "the message names where it went: {line}"
        );
    }
}

/// Issue 10 item 8: a checkpoint of a version this build does not know is named as such.
#[test]
fn checkpoint_of_an_unknown_version_is_named_as_such() {
    let s = Setup::new(None, None);
    fs::create_dir_all(&s.state).expect("state");
    fs::write(
        s.checkpoint(),
        r#"{"version":7,"positions":{"conn.log":1234},"windows":[]}"#,
    )
    .expect("checkpoint");
    let d = s.start(1);
    d.wait_log(Duration::from_secs(20), "longconn running");
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("checkpoint version 7 is not supported (this build reads 1)"),
        "{log}"
    );
    assert!(!log.contains("missing field"), "{log}");
    assert_eq!(set_aside(&s.state).len(), 1, "kept, not overwritten");
}

/// Tailing scenario 19: SIGKILL while checkpoint.json.tmp is being written. At the next start the temp file
/// is removed (and said so), the previous good checkpoint is restored, and every alert replay gives ends
/// up in the file (repeats allowed: there was a SIGKILL).
#[test]
fn scenario_19_sigkill_while_writing_a_checkpoint() {
    let mut s = Setup::new(None, None);
    // Many pairs make a checkpoint big enough to catch it being written.
    s.append(&rows(0, 2_000, 1));
    s.append(&rows(2_000, 2_100, 100));
    let d = s.start(1);
    wait_until(Duration::from_secs(30), "the first checkpoint", || {
        s.checkpoint().exists()
    });
    let tmp = s.state.join("checkpoint.json.tmp");
    let mut caught = false;
    let mut next = 2_100;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !caught && Instant::now() < deadline {
        // Keep the state changing so checkpoints keep being written.
        s.append(&rows(next, next + 5, 100));
        next += 5;
        let until = Instant::now() + Duration::from_millis(250);
        while Instant::now() < until {
            if tmp.exists() {
                d.signal(libc::SIGSTOP);
                if tmp.exists() {
                    caught = true;
                    break;
                }
                d.signal(libc::SIGCONT);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    assert!(caught, "never saw checkpoint.json.tmp being written");
    let log1 = d.kill();
    assert!(tmp.exists(), "the kill left the temp file");
    s.append(&rows(next, next + 50, 100));
    let want = s.replay_ids();

    let d = s.start(2);
    d.wait_log(Duration::from_secs(20), "longconn running");
    let got_all = || -> bool {
        let got: BTreeSet<String> = delivered(&s.alerts).into_keys().collect();
        want.is_subset(&got)
    };
    wait_until(Duration::from_secs(30), "every replay id", got_all);
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("checkpoint restored"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("checkpoint.json.tmp") && l.contains("removed")),
        "the leftover temp file is removed and said so:\n{log}"
    );
    let got: BTreeSet<String> = delivered(&s.alerts).into_keys().collect();
    assert_eq!(got, want, "first run:\n{log1}");
}
