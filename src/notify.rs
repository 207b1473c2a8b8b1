//! The systemd notification protocol (`sd_notify(3)`): one datagram of `KEY=value` lines sent to the Unix
//! socket named by `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). When `NOTIFY_SOCKET` is
//! unset (not under systemd, or `Type=` other than `notify`) every call does nothing.
//!
//! The messages and the `CLOCK_MONOTONIC` reading come from the `sd-notify` crate ([`NotifyState`]). The
//! datagram is sent here, on one socket kept for the daemon's life: the crate's own `notify` opens a socket
//! per message, knows no abstract (`@name`) sockets and ends every line with a newline, where the daemon
//! sends the lines joined by newlines as it always has.
//!
//! What the daemon says and when (see `daemon.rs`): `READY=1` once the config is loaded, the checkpoint
//! restored, the file watches set and the first poll has opened the sources; around a SIGHUP reload
//! `RELOADING=1` with `MONOTONIC_USEC` and then `READY=1` again; `STOPPING=1` on shutdown; `STATUS=` with a
//! one-line summary every few seconds; `EXTEND_TIMEOUT_USEC` while a first read of a large backlog delays
//! `READY=1`; and `WATCHDOG=1` from the pipeline loop itself, at half the
//! `WATCHDOG_USEC` interval, so that a wedged pipeline (not just a live process) gets restarted.
//! Sending is best effort: a failed send is logged once at debug level and never stops the daemon.

use sd_notify::NotifyState;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::debug;

/// Where notifications go.
#[derive(Debug)]
enum Target {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

#[derive(Debug)]
struct Socket {
    sock: UnixDatagram,
    target: Target,
    failed: AtomicBool,
}

/// A handle to the service manager; cheap to clone, usable from any thread.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<Arc<Socket>>,
    /// Half of `WATCHDOG_USEC`, when the watchdog is on and meant for this process.
    watchdog_every: Option<Duration>,
    last_watchdog: Option<Instant>,
    last_extend: Option<Instant>,
}

/// While starting, how much longer each `EXTEND_TIMEOUT_USEC` asks for, and how often it is sent.
const EXTEND_BY: Duration = Duration::from_secs(90);
const EXTEND_EVERY: Duration = Duration::from_secs(10);

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|s| {
            let target = parse_target(s.as_encoded_bytes())?;
            match UnixDatagram::unbound() {
                Ok(sock) => Some(Arc::new(Socket {
                    sock,
                    target,
                    failed: AtomicBool::new(false),
                })),
                Err(e) => {
                    debug!("NOTIFY_SOCKET set but no socket could be made: {e}");
                    None
                }
            }
        });
        let watchdog_every = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Notifier {
            watchdog_every: watchdog_every.filter(|_| socket.is_some()),
            socket,
            last_watchdog: None,
            last_extend: None,
        }
    }

    /// Whether messages go anywhere.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// How often the pipeline must call [`Notifier::watchdog`] at least (None: no watchdog).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_every
    }

    /// `READY=1`: startup or a reload is complete.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    /// `RELOADING=1` with the `CLOCK_MONOTONIC` time, as systemd requires; follow with [`Notifier::ready`].
    pub fn reloading(&self) {
        let now = NotifyState::monotonic_usec_now().unwrap_or(NotifyState::MonotonicUsec(0));
        self.send(&[NotifyState::Reloading, now]);
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// `STATUS=`: one line shown by `systemctl status`.
    pub fn status(&self, text: &str) {
        let line: String = text.chars().filter(|c| *c != '\n').collect();
        self.send(&[NotifyState::Status(&line)]);
    }

    /// `WATCHDOG=1` if half the watchdog interval has passed since the last one; cheap otherwise.
    pub fn watchdog(&mut self) {
        let Some(every) = self.watchdog_every else {
            return;
        };
        let now = Instant::now();
        if self.last_watchdog.is_some_and(|t| now - t < every) {
            return;
        }
        self.last_watchdog = Some(now);
        self.send(&[NotifyState::Watchdog]);
    }

    /// Before `READY=1`, while a backlog is read: `EXTEND_TIMEOUT_USEC` (at most every 10 s) so that a long
    /// first read is not killed by `TimeoutStartSec=` as long as it makes progress, with `progress` as the
    /// status line.
    pub fn starting(&mut self, progress: &str) {
        let now = Instant::now();
        if self.last_extend.is_some_and(|t| now - t < EXTEND_EVERY) {
            return;
        }
        self.last_extend = Some(now);
        let usec = u32::try_from(EXTEND_BY.as_micros()).unwrap_or(u32::MAX);
        self.send(&[
            NotifyState::ExtendTimeoutUsec(usec),
            NotifyState::Status(progress),
        ]);
    }

    /// One datagram: the states' lines joined by newlines.
    fn send(&self, states: &[NotifyState]) {
        let Some(s) = &self.socket else { return };
        let msg = states
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        let sent = match &s.target {
            Target::Path(p) => s.sock.send_to(msg.as_bytes(), p),
            Target::Abstract(name) => send_abstract(&s.sock, name, msg.as_bytes()),
        };
        if let Err(e) = sent {
            if !s.failed.swap(true, Ordering::Relaxed) {
                debug!("sd_notify failed (reported once): {e}");
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(sock: &UnixDatagram, name: &[u8], msg: &[u8]) -> std::io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(msg, &addr)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_sock: &UnixDatagram, _name: &[u8], _msg: &[u8]) -> std::io::Result<usize> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets need Linux",
    ))
}

/// `NOTIFY_SOCKET`: an absolute path, or `@name` for an abstract socket. Anything else is ignored.
fn parse_target(raw: &[u8]) -> Option<Target> {
    match raw.first() {
        Some(b'/') => {
            use std::os::unix::ffi::OsStrExt;
            Some(Target::Path(std::ffi::OsStr::from_bytes(raw).into()))
        }
        Some(b'@') if raw.len() > 1 => Some(Target::Abstract(raw[1..].to_vec())),
        _ => None,
    }
}

/// Half of `WATCHDOG_USEC`, if it is set, positive, and `WATCHDOG_PID` is unset or this process.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    //! The parsing rules and the datagrams, against a socket of the test.
    use super::*;

    #[test]
    fn targets() {
        assert!(matches!(
            parse_target(b"/run/systemd/notify"),
            Some(Target::Path(_))
        ));
        assert!(matches!(parse_target(b"@abc"), Some(Target::Abstract(n)) if n == b"abc"));
        assert!(parse_target(b"").is_none());
        assert!(parse_target(b"@").is_none());
        assert!(parse_target(b"relative").is_none());
    }

    #[test]
    fn watchdog_rules() {
        let half = Some(Duration::from_millis(15_000));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn sends_datagrams_and_paces_the_watchdog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut n = Notifier {
            socket: Some(Arc::new(Socket {
                sock: UnixDatagram::unbound().unwrap(),
                target: Target::Path(path),
                failed: AtomicBool::new(false),
            })),
            watchdog_every: Some(Duration::from_secs(3600)),
            last_watchdog: None,
            last_extend: None,
        };
        let mut buf = [0u8; 256];
        let mut next = || {
            let len = rx.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..len]).into_owned()
        };
        n.ready();
        assert_eq!(next(), "READY=1");
        n.reloading();
        let msg = next();
        let usec = msg.strip_prefix("RELOADING=1\nMONOTONIC_USEC=");
        assert!(
            usec.and_then(|u| u.parse::<u64>().ok())
                .is_some_and(|u| u > 0),
            "{msg}"
        );
        n.watchdog();
        n.watchdog(); // within the interval: not sent
        n.status("a\nb");
        assert_eq!(next(), "WATCHDOG=1");
        assert_eq!(next(), "STATUS=ab");
        n.starting("reading");
        n.starting("reading"); // within 10 s: not sent
        n.stopping();
        assert_eq!(next(), "EXTEND_TIMEOUT_USEC=90000000\nSTATUS=reading");
        assert_eq!(next(), "STOPPING=1");
    }

    #[test]
    fn unset_socket_is_silent() {
        let mut n = Notifier::default();
        assert!(!n.enabled());
        n.ready();
        n.watchdog();
    }
}
