//! A real tinyproxy (Debian's `tinyproxy` package) for the proxy tests: its own config and port in a temp
//! directory, Basic authentication `sensor` / `s3cret`, its log readable by the test. Without tinyproxy the
//! tests that need it print SKIPPED, unless `LONGCONN_REQUIRE_TINYPROXY=1` (CI) makes them fail.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// A real tinyproxy (Debian's package), with Basic authentication, running for one test.
pub struct Tinyproxy {
    child: std::process::Child,
    pub port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// `None` when tinyproxy is not installed (the test is then skipped, unless CI requires it).
    pub fn start() -> Option<Tinyproxy> {
        let found = std::process::Command::new("tinyproxy")
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            if std::env::var("LONGCONN_REQUIRE_TINYPROXY").as_deref() == Ok("1") {
                panic!("tinyproxy not found and LONGCONN_REQUIRE_TINYPROXY=1: apt-get install tinyproxy");
            }
            eprintln!("SKIPPED: tinyproxy not installed (apt-get install tinyproxy)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Connect\nLogFile \"{}\"\nMaxClients 20\nAllow 127.0.0.1\nBasicAuth sensor s3cret\n",
                log.display()
            ),
        )
        .expect("write conf");
        let child = std::process::Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Tinyproxy {
            child,
            port,
            log,
            _dir: dir,
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
