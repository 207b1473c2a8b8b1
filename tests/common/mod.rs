//! Shared by the end-to-end tests that run the real `longconn run`: a temp sensor (conn.log, state
//! directory, config) and the TSV rows to write into it.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub const HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t2024-01-01-00-00-00\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\n";

/// One conn.log row: `n` makes the uid and the time unique.
pub fn row(n: u32, orig: &str, resp: &str, duration: f64) -> String {
    let ts = 1_700_000_000.0 + f64::from(n);
    format!("{ts:.6}\tC{n:08}\t{orig}\t40000\t{resp}\t443\ttcp\tssl\t{duration:.6}\t100\t200\tSF\n")
}

/// A row with too few columns (skipped as `column_count`).
pub fn bad_row(n: u32) -> String {
    format!("1700000000.{n:06}\tCbad{n}\t10.0.0.1\n")
}

/// A temp sensor: `conn.log`, `state/`, `alerts.json` and `longconn.toml` in one directory.
pub struct Sensor {
    pub dir: tempfile::TempDir,
}

impl Sensor {
    /// `extra` is appended to the config (e.g. a `[metrics]` table).
    pub fn new(extra: &str) -> Sensor {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Sensor { dir };
        std::fs::write(s.log(), HEADER).expect("write conn.log");
        s.write_config(extra);
        s
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> PathBuf {
        self.path("conn.log")
    }

    pub fn config(&self) -> PathBuf {
        self.path("longconn.toml")
    }

    pub fn write_config(&self, extra: &str) {
        let text = format!(
            "[sensor]\nname = \"test\"\n[[source]]\npath = \"{}\"\n[state]\ndir = \"{}\"\ncheckpoint_interval = \"200ms\"\n[cumulative]\nlevels = {{}}\n[[output]]\ntype = \"file\"\npath = \"{}\"\n{extra}",
            self.log().display(),
            self.path("state").display(),
            self.path("alerts.json").display(),
        );
        std::fs::write(self.config(), text).expect("write config");
    }

    pub fn append(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.log())
            .expect("open conn.log");
        f.write_all(text.as_bytes()).expect("append");
    }

    /// `longconn run` on this sensor, stderr piped, with `env` added.
    pub fn spawn(&self, env: &[(&str, &str)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_longconn"));
        cmd.arg("run")
            .arg("--config")
            .arg(self.config())
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn longconn")
    }
}

pub fn signal(child: &Child, sig: i32) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill failed");
}

/// Sends SIGTERM and waits; panics if the daemon does not exit cleanly within 15 s.
pub fn stop(mut child: Child) -> String {
    signal(&child, libc::SIGTERM);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            assert!(status.success(), "exit {status}: {err}");
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("longconn did not stop after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whatever the child has written to stderr so far, without blocking.
pub fn stderr_now(child: &mut Child) -> String {
    use std::os::fd::AsRawFd;
    let Some(err) = child.stderr.as_mut() else {
        return String::new();
    };
    let fd = err.as_raw_fd();
    // SAFETY: fcntl on a pipe fd we own; O_NONBLOCK only changes how reads behave.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match std::io::Read::read(err, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    // SAFETY: as above, back to blocking for the final read in `stop`.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    String::from_utf8_lossy(&out).into_owned()
}
