//! End to end (issue 6): the real binary's `run` follows an `open_conn.log` and a `conn.log` in a temp dir and
//! alerts on a connection that is still open, from its interim record, before the final record exists; the
//! final record then alerts only because it reaches a higher level, and the connection counts once.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FIELDS: &str = "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\n\
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\n";

fn header(path: &str) -> String {
    format!(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\t{path}\n#open\t2024-01-01-00-00-00\n{FIELDS}"
    )
}

fn row(uid: &str, ts: f64, dur: f64) -> String {
    format!("{ts:.6}\t{uid}\t10.0.0.1\t50000\t203.0.113.7\t22\ttcp\tssh\t{dur:.6}\t100\t200\tS1\n")
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

/// Kills the daemon when the test ends, pass or fail.
struct Daemon(Child);

/// A child that has exited at once, to leave in a [`Daemon`] whose daemon was stopped.
fn spawn_nothing() -> Child {
    let mut c = Command::new("true").spawn().expect("spawn true");
    let _ = c.wait();
    c
}
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Alert JSON lines in `path` once `pred` holds for them (up to 30 s).
fn wait_for(path: &Path, pred: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alerts: Vec<serde_json::Value> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if pred(&alerts) {
            return alerts;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; alerts so far: {alerts:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn singles(alerts: &[serde_json::Value]) -> Vec<(String, bool)> {
    alerts
        .iter()
        .filter(|a| a["longconn"]["trigger"] == "single")
        .map(|a| {
            (
                a["longconn"]["level"].as_str().unwrap_or("").to_string(),
                a["longconn"]["open"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn daemon_alerts_on_a_still_open_connection_from_open_conn_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let open_conn = dir.join("open_conn.log");
    let conn = dir.join("conn.log");
    let alerts = dir.join("alerts.json");
    let t0 = 1_704_067_200.0;
    append(&conn, &(header("conn") + &row("Cshort", t0, 5.0)));
    // The first hourly snapshot: the SSH session has been up 1h30m.
    append(
        &open_conn,
        &(header("open_conn") + &row("Clong", t0, 5400.0)),
    );
    let cfg = dir.join("longconn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sensor]\nname = \"t\"\n\
             [[source]]\npath = \"{}\"\n\
             [[source]]\npath = \"{}\"\n\
             [state]\ndir = \"{}\"\ncheckpoint_interval = \"1s\"\n\
             [single]\nlevels = {{ low = \"1h\", medium = \"4h\" }}\n\
             [cumulative]\nlevels = {{ high = \"8h\" }}\n\
             [[output]]\ntype = \"file\"\npath = \"{}\"\n",
            conn.display(),
            open_conn.display(),
            dir.join("state").display(),
            alerts.display()
        ),
    )
    .expect("write config");
    let notify = crate::support::sensor::Notify::bind(dir.join("notify.sock"));
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_longconn"))
            .args(["run", "--fresh", "--config"])
            .arg(&cfg)
            .envs(notify.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start longconn run"),
    );

    // Alert from the interim record while conn.log has no record of the connection.
    let got = wait_for(&alerts, |a| !singles(a).is_empty());
    assert_eq!(singles(&got), vec![("low".to_string(), true)]);
    assert_eq!(got[0]["zeek"]["session_id"][0], "Clong");
    assert!(got[0]["longconn"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("still open"));

    // More snapshots at the same level: nothing new. The final record reaches medium: one more alert, closed.
    append(&open_conn, &row("Clong", t0, 9000.0));
    append(&conn, &row("Clong", t0, 4.5 * 3600.0));
    let got = wait_for(&alerts, |a| singles(a).len() >= 2);
    assert_eq!(
        singles(&got),
        vec![("low".to_string(), true), ("medium".to_string(), false)]
    );
    // A snapshot written late (after the close) is ignored; the connection never counted twice: 4.5h of
    // cumulative time is below the 8h cumulative level (summing the four records would give 12h).
    append(&open_conn, &row("Clong", t0, 12_600.0));
    append(&conn, &row("Cmark", t0 + 5.0 * 3600.0, 1.0));
    // Rounds of polls that began after the writes have read them (a third alert would be spooled by now);
    // a clean stop lets the file output deliver everything spooled.
    notify.wait_rounds(3);
    let mut child = std::mem::replace(&mut daemon.0, spawn_nothing());
    // SAFETY: kill(2) on our own child with a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert!(child.wait().expect("wait").success(), "clean stop");
    let got = wait_for(&alerts, |_| true);
    assert_eq!(singles(&got).len(), 2, "{got:#?}");
    assert!(got.iter().all(|a| a["longconn"]["trigger"] == "single"));
}
