//! Shared by the end-to-end tests that run the real `longconn run`: a temp sensor (conn.log, state
//! directory, config) and the TSV rows to write into it; [`quiet`], the environment a daemon under test runs
//! in; [`replay`], what `longconn replay` raises.

use std::io::Write;
use std::path::{Path, PathBuf};
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

/// `cmd` (a `longconn` command) as the daemon tests run it: none of the environment that changes its logging
/// or makes it talk to systemd (`RUST_LOG`, `JOURNAL_STREAM`, `NOTIFY_SOCKET`, `WATCHDOG_*`); stdin and
/// stdout to /dev/null (stderr is the caller's).
pub fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
}

/// The alert lines `longconn replay --config CONFIG LOG` writes; fails (with its stderr) unless it succeeds.
pub fn replay(config: &Path, log: &Path) -> Vec<String> {
    replay_files(config, &[log])
}

/// The alert lines `longconn replay --config CONFIG FILE...` writes; fails (with its stderr) unless it
/// succeeds.
pub fn replay_files<P: AsRef<std::ffi::OsStr>>(config: &Path, files: &[P]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_longconn"))
        .args(["replay", "--config"])
        .arg(config)
        .args(files)
        .output()
        .expect("run replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_string)
        .collect()
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
        cmd.arg("run").arg("--config").arg(self.config());
        quiet(&mut cmd).stderr(Stdio::piped());
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

/// A `NOTIFY_SOCKET` for one daemon, drained by a thread so that the daemon never blocks on it: what the
/// tests of the real binary await instead of sleeping. `READY=1` comes after the first round of polls, and
/// with the short `WATCHDOG_USEC` of [`Notify::env`] the pipeline sends `WATCHDOG=1` after about every round.
pub struct Notify {
    path: PathBuf,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long any one wait on a [`Notify`] may take.
const NOTIFY_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Notify {
    /// Binds the socket at `path` (removing a stale one).
    pub fn bind(path: PathBuf) -> Notify {
        let _ = std::fs::remove_file(&path);
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .expect("timeout");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (seen, done) = (seen.clone(), done.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                        seen.lock().expect("lock").push(m);
                    }
                }
            })
        };
        Notify {
            path,
            seen,
            done,
            thread: Some(thread),
        }
    }

    /// The environment that points a daemon at this socket, with a watchdog of 40 ms (one `WATCHDOG=1`
    /// every 20 ms at most, and a pipeline that waits no longer than that between rounds).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NOTIFY_SOCKET", self.path.display().to_string()),
            ("WATCHDOG_USEC", "40000".to_string()),
        ]
    }

    /// How many messages equal to `msg` have arrived.
    pub fn count(&self, msg: &str) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| *m == msg)
            .count()
    }

    /// Waits until `msg` has arrived `n` times in all.
    pub fn wait_count(&self, msg: &str, n: usize) {
        let start = std::time::Instant::now();
        while self.count(msg) < n {
            assert!(
                start.elapsed() < NOTIFY_LIMIT,
                "no {msg:?} x{n} within {NOTIFY_LIMIT:?}; seen {:?}",
                self.seen.lock().expect("lock")
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Waits for the first `READY=1`: the first round of polls is done.
    pub fn wait_ready(&self) {
        self.wait_count("READY=1", 1);
    }

    /// Waits for `rounds` rounds of polls (at least) that began after this call: three more watchdog
    /// pings than now for the first (the first of them may come from a round already under way, the
    /// second from one that had begun before the ping before it was read), one more for each further.
    pub fn wait_rounds(&self, rounds: usize) {
        let now = self.count("WATCHDOG=1");
        self.wait_count("WATCHDOG=1", now + 2 + rounds);
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The offset of the live file of source `source` in the checkpoint saved in `state_dir`, if any.
pub fn checkpoint_offset(state_dir: &std::path::Path, source: usize) -> Option<u64> {
    let text = std::fs::read_to_string(state_dir.join("checkpoint.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["sources"][source]["live"]["offset"].as_u64()
}

/// Waits until the checkpoint in `state_dir` covers all of `file` (source 0): every record in it was read
/// and its alerts are in the spool (they are synced before the checkpoint that covers them).
pub fn wait_checkpoint_covers(state_dir: &std::path::Path, file: &std::path::Path) {
    let start = std::time::Instant::now();
    loop {
        let len = std::fs::metadata(file).map(|m| m.len()).ok();
        if len.is_some() && checkpoint_offset(state_dir, 0) == len {
            return;
        }
        assert!(
            start.elapsed() < NOTIFY_LIMIT,
            "the checkpoint in {} does not cover {} ({:?} of {len:?} bytes)",
            state_dir.display(),
            file.display(),
            checkpoint_offset(state_dir, 0)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The Prometheus text of a daemon's `[metrics]` endpoint on `port` (None while it does not answer).
pub fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

/// The value of the series `name` in the Prometheus text `body` whose labels include every `labels` pair.
pub fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines().find_map(|line| {
        let (series, v) = line.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        labels
            .iter()
            .all(|(k, val)| rest.contains(&format!("{k}=\"{val}\"")))
            .then(|| v.parse().ok())?
    })
}
