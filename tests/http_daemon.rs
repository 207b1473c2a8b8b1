//! End to end through an HTTP output: the real daemon delivers its alerts to a faithful Elasticsearch `_bulk`
//! receiver (in `support/receiver.rs`) that is down at first; the daemon is killed (SIGKILL) and restarted,
//! then stopped (SIGTERM) and restarted with the receiver back. Every alert `replay` raises must end up in the
//! index exactly as raised, under its `event.id`; duplicates can only ever be the same document. And the
//! daemon's HTTP output follows the environment's proxy unless told `proxy = "none"` (a real tinyproxy).

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support;
use support::receiver::{Mode, Receiver};
use support::tinyproxy::Tinyproxy;
use support::zeek::{header, records};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_longconn")
}

fn config(dir: &Path, url: &str) -> String {
    format!(
        r#"
[sensor]
name = "http-test"
[[source]]
path = "{dir}/logs/conn.log"
[state]
dir = "{dir}/state"
checkpoint_interval = "200ms"
[window]
length = "6h"
[single]
levels = {{ low = "10m", medium = "30m", high = "1h", critical = "2h" }}
[cumulative]
levels = {{ low = "30m", medium = "1h", high = "2h", critical = "4h" }}
[[output]]
type = "file"
name = "local"
path = "{dir}/alerts.json"
[[output]]
type = "http"
name = "elastic"
url = "{url}"
format = "elasticsearch"
batch_size = 20
timeout = "2s"
"#,
        dir = dir.display()
    )
}

fn start(cfg: &Path, log: &Path) -> tokio::process::Child {
    start_with_env(cfg, log, &[])
}

fn start_with_env(cfg: &Path, log: &Path, env: &[(&str, &str)]) -> tokio::process::Child {
    let err = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(["run", "--log-level", "info", "--config"])
        .arg(cfg)
        .stdout(std::process::Stdio::null())
        .stderr(err);
    for key in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(key);
    }
    for key in ["NO_PROXY", "no_proxy"] {
        cmd.env_remove(key);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start daemon")
}

fn signal(child: &tokio::process::Child, sig: i32) {
    let pid = child.id().expect("running") as i32;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

fn append(path: &Path, text: &str, joined: &mut String) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(text.as_bytes()).expect("append");
    joined.extend(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n")),
    );
}

/// The alerts `replay` raises on the joined records, by event.id.
fn expected(dir: &Path, cfg: &Path, joined: &str) -> BTreeMap<String, String> {
    let file = dir.join("joined.log");
    fs::write(&file, joined).expect("write joined");
    support::sensor::replay(cfg, &file)
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            (
                v["event"]["id"].as_str().expect("id").to_string(),
                l.to_string(),
            )
        })
        .collect()
}

fn local_alerts(dir: &Path) -> usize {
    fs::read_to_string(dir.join("alerts.json"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

async fn wait_until(what: &str, log: &Path, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; daemon log:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn elasticsearch_outage_with_kill_and_restart_delivers_every_alert() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().to_path_buf();
    fs::create_dir_all(dir.join("logs")).expect("mkdir");
    let live = dir.join("logs/conn.log");
    let log = dir.join("daemon.log");

    // Reserve a port, then close it: the receiver is down when the daemon starts.
    let addr = {
        let r = Receiver::start(Mode::Elastic { auth: None }).await;
        r.addr
    };
    let cfg = dir.join("longconn.toml");
    fs::write(&cfg, config(&dir, &format!("http://{addr}"))).expect("config");

    let mut joined = header("2023-11-14-22-00-00");
    append(&live, &header("2023-11-14-22-00-00"), &mut joined);
    append(&live, &records(0..60), &mut joined);
    let child = start(&cfg, &log);
    let want = expected(&dir, &cfg, &joined).len();
    assert!(want > 0);
    wait_until("first alerts raised", &log, || local_alerts(&dir) >= want).await;

    // Killed while the receiver is down, more records, restarted.
    signal(&child, libc::SIGKILL);
    let mut child = child;
    let _ = child.wait().await;
    append(&live, &records(60..120), &mut joined);
    let child = start(&cfg, &log);
    let want = expected(&dir, &cfg, &joined).len();
    wait_until("alerts after the restart", &log, || {
        local_alerts(&dir) >= want
    })
    .await;

    // A graceful stop, more records, the receiver back, restarted.
    signal(&child, libc::SIGTERM);
    let mut child = child;
    let status = child.wait().await.expect("wait");
    assert!(status.success(), "{status:?}");
    append(&live, &records(120..160), &mut joined);
    let receiver = Receiver::restart_on(addr, Mode::Elastic { auth: None }).await;
    let mut child = start(&cfg, &log);

    let want = expected(&dir, &cfg, &joined);
    assert!(want.len() >= 10, "the stream raises alerts: {}", want.len());
    wait_until("every alert in the index", &log, || {
        let st = receiver.state();
        want.keys().all(|id| st.docs.contains_key(id))
    })
    .await;
    {
        let st = receiver.state();
        assert_eq!(
            st.docs.len(),
            want.len(),
            "no alert the detector did not raise"
        );
        for (id, line) in &want {
            let (_, doc) = &st.docs[id];
            let expected: serde_json::Value = serde_json::from_str(line).expect("json");
            assert_eq!(doc, &expected, "document {id} arrived intact");
        }
    }
    signal(&child, libc::SIGTERM);
    let status = child.wait().await.expect("wait");
    assert!(status.success());
}

/// The proxy of the environment (`HTTP_PROXY`, as a unit's `Environment=` sets it) is used when the output
/// names none, and ignored with `proxy = "none"`: through a real tinyproxy the receiver sees its `Via`
/// header on every request; straight, on none.
#[tokio::test]
async fn environment_proxy_is_used_unless_the_output_says_none() {
    let Some(proxy) = Tinyproxy::start() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().to_path_buf();
    fs::create_dir_all(dir.join("logs")).expect("mkdir");
    let live = dir.join("logs/conn.log");
    let log = dir.join("daemon.log");
    let receiver = Receiver::start(Mode::Elastic { auth: None }).await;
    let cfg = dir.join("longconn.toml");
    let base = config(&dir, &receiver.url(""));
    fs::write(&cfg, &base).expect("config");
    let env_proxy = format!("http://sensor:s3cret@127.0.0.1:{}", proxy.port);
    let env = [
        ("HTTP_PROXY", env_proxy.as_str()),
        ("http_proxy", env_proxy.as_str()),
    ];

    let mut joined = header("2023-11-14-22-00-00");
    append(&live, &header("2023-11-14-22-00-00"), &mut joined);
    append(&live, &records(0..60), &mut joined);
    let mut child = start_with_env(&cfg, &log, &env);
    let want = expected(&dir, &cfg, &joined);
    assert!(!want.is_empty());
    wait_until("alerts through the environment's proxy", &log, || {
        let st = receiver.state();
        want.keys().all(|id| st.docs.contains_key(id))
    })
    .await;
    signal(&child, libc::SIGTERM);
    assert!(child.wait().await.expect("wait").success());
    let proxied = {
        let st = receiver.state();
        let vias: Vec<String> = st
            .requests
            .iter()
            .map(|r| r.headers.get("via").cloned().unwrap_or_default())
            .collect();
        assert!(vias.iter().all(|v| v.contains("tinyproxy")), "{vias:?}");
        vias.len()
    };

    fs::write(&cfg, format!("{base}proxy = \"none\"\n")).expect("config");
    append(&live, &records(60..120), &mut joined);
    let mut child = start_with_env(&cfg, &log, &env);
    let want = expected(&dir, &cfg, &joined);
    wait_until("alerts sent straight", &log, || {
        let st = receiver.state();
        want.keys().all(|id| st.docs.contains_key(id))
    })
    .await;
    signal(&child, libc::SIGTERM);
    assert!(child.wait().await.expect("wait").success());
    let st = receiver.state();
    assert!(st.requests.len() > proxied);
    assert!(
        st.requests[proxied..]
            .iter()
            .all(|r| !r.headers.contains_key("via")),
        "proxy = \"none\" went through the proxy"
    );
}
