//! `longconn reload --pid PID --config PATH`, what the unit's ExecReload runs (so that a minimal Debian, without
//! procps and its /bin/kill, can reload): the real binary against a real daemon started here. A good config
//! makes the daemon log "configuration reloaded"; a bad one makes `reload` fail with the check's exit status and
//! signal nothing, so the daemon keeps running on its config; a pid that cannot be signalled is named. That
//! nothing was signalled is read from a witness process that blocks SIGHUP (a sent one stays pending, in
//! /proc/PID/status), never concluded from a daemon that stayed quiet for a while.

use crate::support::sensor::{signal, stderr_now, stop, Sensor};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

fn reload(config: &std::path::Path, pid: u32) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longconn"))
        .args(["reload", "--config"])
        .arg(config)
        .arg("--pid")
        .arg(pid.to_string())
        .output()
        .expect("run longconn reload")
}

/// The daemon's stderr so far, appended to `log`, until `needle` has appeared `times` times (20 s at most).
fn wait_for(child: &mut Child, log: &mut String, needle: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        log.push_str(&stderr_now(child));
        if log.matches(needle).count() >= times {
            return;
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the daemon exited ({status}) before logging {needle:?}:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} (x{times}) within 20 s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A stand-in for the daemon that never acts on SIGHUP: `sleep` with SIGHUP blocked, so a SIGHUP sent to
/// it stays pending, shown in /proc/PID/status as soon as kill(2) returns. Whether a command signalled it
/// is read when the command has exited, with no wait and no race.
struct Witness(Child);

impl Witness {
    fn start() -> Witness {
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        // SAFETY: between fork and exec only async-signal-safe calls (sigemptyset, sigaddset, sigprocmask).
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGHUP);
                if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let w = Witness(cmd.spawn().expect("spawn sleep"));
        assert!(w.mask("SigBlk:") & HUP != 0, "SIGHUP not blocked");
        w
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// A signal mask of /proc/PID/status (`SigBlk:`, `SigPnd:`, `ShdPnd:`).
    fn mask(&self, key: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in:\n{status}"));
        u64::from_str_radix(hex.trim(), 16).expect("a hex mask")
    }

    /// A SIGHUP was sent and is pending (to the process or its thread).
    fn hup_pending(&self) -> bool {
        (self.mask("ShdPnd:") | self.mask("SigPnd:")) & HUP != 0
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGHUP in a signal mask.
const HUP: u64 = 1 << (libc::SIGHUP - 1);

#[test]
fn reload_with_a_good_config_makes_the_daemon_reload() {
    let sensor = Sensor::new("");
    let mut daemon = sensor.spawn(&[]);
    let mut log = String::new();
    wait_for(&mut daemon, &mut log, "longconn running", 1);

    let out = reload(&sensor.config(), daemon.id());
    assert!(
        out.status.success(),
        "reload failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "reload printed on stdout");
    wait_for(&mut daemon, &mut log, "configuration reloaded", 1);
    log.push_str(&stop(daemon));
    assert!(!log.contains("reload refused"), "{log}");
}

#[test]
fn reload_with_a_bad_config_fails_and_signals_nothing() {
    let sensor = Sensor::new("");
    let mut daemon = sensor.spawn(&[]);
    let mut log = String::new();
    wait_for(&mut daemon, &mut log, "longconn running", 1);
    let witness = Witness::start();

    let good = std::fs::read_to_string(sensor.config()).expect("config");
    std::fs::write(
        sensor.config(),
        format!("{good}[metrics]\nlisten = \"nowhere\"\n"),
    )
    .expect("write bad config");
    for pid in [witness.pid(), daemon.id()] {
        let out = reload(&sensor.config(), pid);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "reload: {err}");
        assert!(err.contains("metrics.listen"), "the check's message: {err}");
        assert!(err.contains("not signalled"), "reload: {err}");
    }
    // The proof that nothing was signalled, read rather than waited for: a SIGHUP sent by `reload` would be
    // pending on the witness from the moment kill(2) returned, before `reload` exited.
    assert!(
        !witness.hup_pending(),
        "reload sent SIGHUP with a bad config"
    );

    // The good config back: the same command signals (the witness shows it at once) and the daemon reloads.
    std::fs::write(sensor.config(), &good).expect("restore config");
    for pid in [witness.pid(), daemon.id()] {
        let out = reload(&sensor.config(), pid);
        assert!(
            out.status.success(),
            "reload failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(witness.hup_pending(), "the witness missed a SIGHUP");
    wait_for(&mut daemon, &mut log, "configuration reloaded", 1);
    log.push_str(&stop(daemon));
    // The daemon logs one of these two lines per reload request it handles: exactly one, the good one.
    assert!(
        !log.contains("reload refused"),
        "the bad config reached the daemon:\n{log}"
    );
    assert_eq!(log.matches("configuration reloaded").count(), 1, "{log}");
}

#[test]
fn reload_names_a_pid_that_is_gone() {
    let sensor = Sensor::new("");
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let pid = gone.id();
    gone.wait().expect("wait true");
    let out = reload(&sensor.config(), pid);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "reload: {err}");
    assert!(
        err.contains(&format!("no such process: pid {pid}")),
        "reload: {err}"
    );
}

#[test]
fn reload_names_a_pid_it_may_not_signal() {
    // An unprivileged reload against a process of another user: as root (CI), drop to nobody with setpriv;
    // otherwise pid 1, which an unprivileged user may not signal (kill fails, nothing is sent).
    let sensor = Sensor::new("");
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let mut target = None;
    let out = if root {
        // Everything the check reads or creates belongs to nobody, so only the kill can fail.
        let status = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(sensor.dir.path())
            .status()
            .expect("chown");
        assert!(status.success());
        let witness = Witness::start();
        let pid = witness.pid();
        target = Some(witness);
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_longconn"))
            .args(["reload", "--config"])
            .arg(sensor.config())
            .arg("--pid")
            .arg(pid.to_string())
            .output()
            .expect("run setpriv")
    } else {
        reload(&sensor.config(), 1)
    };
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if let Some(witness) = target {
        assert!(!witness.hup_pending(), "the target was signalled");
    }
    assert_eq!(out.status.code(), Some(1), "reload: {err}");
    assert!(err.contains("permission denied"), "reload: {err}");
}

#[test]
fn reload_with_an_unchanged_config_and_hec_ack_reports_no_change() {
    // A Splunk HEC output with `ack = true` and no `channel`: loading the same file twice must give the same
    // config (the channel id is made when the output is built), so a SIGHUP without a change warns of none.
    let sensor = Sensor::new(
        "[[output]]\ntype = \"http\"\nname = \"hec\"\nurl = \"http://127.0.0.1:9/\"\nformat = \"splunk_hec\"\ntoken = \"t\"\nack = true\n",
    );
    let mut daemon = sensor.spawn(&[]);
    let mut log = String::new();
    wait_for(&mut daemon, &mut log, "longconn running", 1);
    signal(&daemon, libc::SIGHUP);
    wait_for(&mut daemon, &mut log, "configuration reloaded", 1);
    log.push_str(&stop(daemon));
    assert!(!log.contains("reload refused"), "{log}");
    assert!(
        !log.contains("take effect at the next restart"),
        "an unchanged config was reported as changed:\n{log}"
    );
}
