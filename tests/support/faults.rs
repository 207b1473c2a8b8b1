//! What the fault-injection tests share: whether they run as root (mounting a tmpfs and dropping privileges
//! need it; CI runs as root, elsewhere such tests print SKIPPED), a tmpfs guard that unmounts itself, also
//! when a test fails, and [`Daemon`], `longconn run` with its stderr in a file, killed if a test fails
//! while it runs (so that a tmpfs can be unmounted).
#![allow(dead_code)]

use super::sensor;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

pub fn is_root() -> bool {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a test that needs root is skipped: when not root, says `SKIPPED: needs root` and `why` (the test
/// then returns and passes).
pub fn skip_unless_root(why: &str) -> bool {
    if is_root() {
        return false;
    }
    println!("SKIPPED: needs root{why}");
    true
}

/// Polls `f` until it holds; panics naming `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tmpfs mounted on a directory for the life of the guard.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).expect("mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// A new size, the content kept (`mount -o remount,size=`).
    pub fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "remount {}", self.dir.display());
    }

    /// Fills the file system to the last byte with `name`.
    pub fn fill(&self, name: &str) {
        let mut f = fs::File::create(self.dir.join(name)).expect("filler");
        let chunk = vec![0u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", self.dir.display()),
            }
        }
        let _ = f.sync_all();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// A running `longconn run`, its stderr in a file; killed if still running when dropped.
pub struct Daemon {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Daemon {
    /// `longconn run --config CONFIG`, its stderr appended to `stderr`.
    pub fn start(config: &Path, stderr: &Path) -> Daemon {
        let err = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr)
            .expect("stderr file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_longconn"));
        cmd.arg("run").arg("--config").arg(config);
        let child = sensor::quiet(&mut cmd)
            .stderr(err)
            .spawn()
            .expect("spawn longconn");
        Daemon {
            child: Some(child),
            stderr: stderr.to_path_buf(),
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn wait_log(&self, limit: Duration, needle: &str) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {needle:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `n` lines of the log contain every one of `needles`.
    pub fn wait_lines(&self, limit: Duration, needles: &[&str], n: usize) {
        let start = Instant::now();
        let count = || {
            self.log()
                .lines()
                .filter(|l| needles.iter().all(|w| l.contains(w)))
                .count()
        };
        while count() < n {
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {n} lines with {needles:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(i32::try_from(child.id()).expect("pid"), sig) };
        assert_eq!(rc, 0, "kill");
    }

    /// SIGTERM, then the exit status (within 15 s).
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return (st, self.log());
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                panic!("longconn did not stop after SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and a clean exit within 15 s.
    pub fn stop_ok(self) {
        let (status, log) = self.stop();
        assert!(status.success(), "exit {status}\n{log}");
    }

    pub fn kill(mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.log()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
