//! The systemd notification protocol end to end: the real binary with `NOTIFY_SOCKET` pointing at a socket
//! of this test. A backlog read before READY extends the start timeout; READY must come only once the
//! source is open, then RELOADING (with MONOTONIC_USEC) and
//! READY around each SIGHUP (a good and a refused config), WATCHDOG keeps arriving from the pipeline loop,
//! and STOPPING on SIGTERM, in that order.

use crate::support::sensor::{row, signal, stderr_now, stop, Sensor};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

struct Listener {
    sock: UnixDatagram,
    /// Every message received, in order.
    seen: Vec<String>,
}

impl Listener {
    /// The next message that is not WATCHDOG=1 or STATUS= (those are kept in `seen` too).
    fn next_event(&mut self) -> String {
        loop {
            let m = self.recv();
            if m != "WATCHDOG=1" && !m.starts_with("STATUS=") {
                return m;
            }
        }
    }

    fn recv(&mut self) -> String {
        let mut buf = [0u8; 4096];
        // A signal to this test process (another test's child exiting, say) interrupts the wait: EINTR is
        // not the timeout, so it waits again.
        let n = loop {
            match self.sock.recv(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!(
                    "no notification within the timeout ({e}); seen: {:?}",
                    self.seen
                ),
            }
        };
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.seen.push(m.clone());
        m
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write into.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
        0
    );
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

fn expect_reload(l: &mut Listener) {
    let m = l.next_event();
    let usec: u64 = m
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("expected RELOADING=1 with MONOTONIC_USEC, got {m:?}"));
    let now = monotonic_usec();
    assert!(
        usec <= now && now - usec < 10_000_000,
        "MONOTONIC_USEC {usec} vs now {now}"
    );
    assert_eq!(l.next_event(), "READY=1", "after RELOADING");
}

#[test]
fn ready_reload_watchdog_stopping_in_order() {
    let sensor = Sensor::new("");
    // A backlog of 5000 rows: more than the 4096 records after which the first read asks for more time.
    let backlog: String = (1..=5000)
        .map(|n| row(n, "10.0.0.1", "198.51.100.7", 60.0))
        .collect();
    sensor.append(&backlog);
    let sock_path = sensor.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut l = Listener {
        sock,
        seen: Vec::new(),
    };
    let mut child = sensor.spawn(&[
        ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "200000"),
    ]);

    // EXTEND_TIMEOUT_USEC while the backlog is read, then READY, and by then the source was opened: the
    // daemon logs "reading file" before sending READY, so the line is already in the pipe.
    let m = l.next_event();
    assert!(
        m.starts_with("EXTEND_TIMEOUT_USEC=90000000\nSTATUS=starting"),
        "{m:?}"
    );
    assert_eq!(l.next_event(), "READY=1");
    let log = stderr_now(&mut child);
    assert!(
        log.contains("reading file") && log.contains(&sensor.log().display().to_string()),
        "READY before the source was opened:\n{log}"
    );

    // A good reload, then a refused one: both are RELOADING then READY, and the daemon keeps running.
    signal(&child, libc::SIGHUP);
    expect_reload(&mut l);
    std::fs::write(sensor.config(), "[window]\nlength = \"nonsense\"\n").unwrap();
    signal(&child, libc::SIGHUP);
    expect_reload(&mut l);

    // The watchdog keeps coming, at about half of WATCHDOG_USEC (100 ms).
    let start = Instant::now();
    let before = l.seen.iter().filter(|m| *m == "WATCHDOG=1").count();
    let mut pings = 0;
    while pings < 3 {
        if l.recv() == "WATCHDOG=1" {
            pings += 1;
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "watchdog too slow"
    );
    assert!(before + pings >= 3);

    let log = stop_and_drain(child, &mut l);
    assert!(log.contains("stopped; checkpoint saved"), "{log}");

    // The whole sequence, watchdog and status left out.
    let events: Vec<&str> = l
        .seen
        .iter()
        .map(String::as_str)
        .filter(|m| *m != "WATCHDOG=1" && !m.starts_with("STATUS="))
        .map(|m| m.split('\n').next().unwrap_or(m))
        .collect();
    assert_eq!(
        events,
        [
            "EXTEND_TIMEOUT_USEC=90000000",
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "STOPPING=1"
        ]
    );
}

/// SIGTERM, then read what is left on the socket: STOPPING=1 must be among it.
fn stop_and_drain(child: std::process::Child, l: &mut Listener) -> String {
    let log = stop(child);
    l.sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match l.sock.recv(&mut buf) {
            Ok(n) => l.seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    log
}

#[test]
fn no_socket_no_effect_and_journald_friendly_logs() {
    // Without NOTIFY_SOCKET the daemon runs and stops as usual. Under journald (JOURNAL_STREAM set) its
    // lines carry no timestamp and no colour: the journal adds its own.
    let sensor = Sensor::new("");
    let mut child = sensor.spawn(&[("WATCHDOG_USEC", "200000"), ("JOURNAL_STREAM", "8:1234")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = String::new();
    while !log.contains("reading file") {
        assert!(Instant::now() < deadline, "never started: {log}");
        std::thread::sleep(Duration::from_millis(20));
        log += &stderr_now(&mut child);
    }
    let log = log + &stop(child);
    assert!(!log.contains('\x1b'), "colours under journald:\n{log}");
    for line in log.lines() {
        assert!(
            !line.starts_with(|c: char| c.is_ascii_digit()),
            "timestamp under journald: {line}"
        );
    }
}
