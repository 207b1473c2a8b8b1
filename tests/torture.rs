//! The seeded torture test: the real `longconn run` follows a live Zeek TSV conn.log that a writer (this test)
//! appends in chunks cut at arbitrary bytes, while a random schedule drawn from a seeded xorshift rotates it in
//! every style a sensor uses, kills and restarts the daemon, reloads it and takes its HTTP output down and up.
//! At the end every alert id `longconn replay` raises over every record written, in the order written, must
//! have been delivered to both outputs, no other id, and an id again only across a SIGKILL: its j-th repeat must
//! come after at least j/2 kills (a kill may add two copies of an alert: one delivered before the kill whose
//! output cursor was not saved yet is delivered again from the spool after the restart, and the records read
//! again since the checkpoint raise it once more; seed 3 shows all three); for the HTTP output a receiver outage
//! counts for one more copy (at least once).
//!
//! The schedule draws from:
//! - Zeek's own rotation: `#close`, rename to `conn.YYYY-MM-DD-HH-MM-SS.log` in the same directory, and the live
//!   path missing until the next write, which starts a new file with a new header block (scenarios 2, 5).
//! - zeekctl: rename to a sibling, gzip it into `archive/`, delete the sibling (scenario 3).
//! - logrotate copytruncate: the previous copy `conn.log.1` gzipped away, `conn.log` copied to `conn.log.1`, then
//!   truncated; the writer goes on with rows and no new header, as Zeek's writer does (scenarios 7, 26), with a
//!   SIGKILL, or a whole restart, between the copy and the truncate (scenario 24).
//! - delete and recreate (scenario 8); bursts of two to five rotations with no pause, also right after a
//!   copytruncate (scenario 14); rotations while the daemon is down (scenario 4).
//! - SIGKILL during heavy writing, right after a rotation, between copy and truncate, and before the first
//!   checkpoint of the fresh state directory with a rotation since the start (scenarios 18, 25); the 200 ms
//!   checkpoint interval lands other kills at varied points of a checkpoint (scenario 19); SIGTERM restarts
//!   (scenario 20) and SIGHUP reloads.
//!
//! Left out, because no follower can survive it: a file moved away and deleted while the daemon is down or before
//! it ever had the file open (its records exist nowhere the daemon can read). So a deleting rotation (zeekctl,
//! delete and recreate, dropping an old `conn.log.1`, cleaning old rotated files) happens only after a sync
//! proved that the daemon has the file open or has read past it, and a kill or stop comes only once a checkpoint
//! taken after the daemon read past every deleted file is on disk. A sync writes one record of a pair of its
//! own, long enough to raise a single alert, and awaits that alert in the file output. Rotations happen at line
//! boundaries: a copy taken in the middle of a line, or rows written between logrotate's copy and its truncate,
//! are lost by copytruncate itself. A copytruncate happens only to a live file that the checkpoint on disk
//! names: the rows written after it have no header in their file, and a daemon that never had the file (it was
//! created and copytruncated while the daemon was down, or since the last checkpoint before a kill) has no
//! header state to read them with. Before it, a kill between the copy and the truncate has its precondition
//! met before the copy, so no sync writes rows between them (the checkpoint would be past the copy's end).
//! Signals come only once the daemon logged "longconn running" (its handlers are installed: a SIGTERM or
//! SIGHUP before would kill it by the default action), and the config is rewritten atomically for a reload.
//!
//! Short by default (CI, release build: `cargo test --release --test integration torture::`). `LONGCONN_TORTURE_LONG=1` runs
//! until at least 1,000 rotations and 100 SIGKILLs; `LONGCONN_TORTURE_SEED=N` picks the schedule;
//! `LONGCONN_TORTURE_ROTATIONS=N` and `LONGCONN_TORTURE_KILLS=N` set other targets (small ones reduce a failure to
//! a short schedule); `LONGCONN_TORTURE_WITHOUT=copytruncate,kill,...` leaves steps out (see `Torture::with`);
//! `LONGCONN_TORTURE_SYNC_SECS=N` how long a sync waits (15 s); `LONGCONN_TORTURE_LOG` the daemon's log filter
//! (`info`; `info,longconn::tail=debug` shows the follower's decisions). The schedule is a function of
//! the seed; the daemon's timing against it is not, so a seed reproduces a failure nearly always, not always. A
//! failure prints the seed, the figures, the command to run it again, and keeps its directory (`schedule.txt`,
//! `all_bytes.log`: every byte written, in order; `joined.log`: the replay input; `daemon.log`; both outputs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::support;
use support::receiver::{Mode, Receiver};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_longconn")
}

/// xorshift64*: a tiny, seeded, portable generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

const FIELDS: &str = "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n";

/// Event time of record 0; records end 20 s apart.
const T0: u64 = 1_700_000_000;

/// `YYYY-MM-DD-HH-MM-SS` (or with `sep` between the time parts) of a Unix time, UTC.
fn stamp(t: u64, sep: char) -> String {
    let days = t / 86_400;
    let secs = t % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}-{:02}{sep}{:02}{sep}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn header(t: u64) -> String {
    format!(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t{}\n{FIELDS}",
        stamp(t, '-')
    )
}

/// The record stream: mostly short connections between many pairs, some long single connections, a few pairs
/// that reconnect all the time (cumulative alerts), and sync records (a pair of their own, one long connection).
struct Gen {
    n: u64,
    syncs: u64,
    /// Record number of each sync record.
    sync_ns: Vec<u64>,
}

impl Gen {
    fn end_time(&self) -> u64 {
        T0 + self.n * 20
    }

    fn row(&mut self, rng: &mut Rng) -> (String, String) {
        self.n += 1;
        let n = self.n;
        let end = self.end_time();
        let kind = rng.below(100);
        let (orig, resp, port, proto, service, dur) = if kind < 70 {
            (
                format!("10.1.{}.{}", rng.below(3), 1 + rng.below(10)),
                format!("198.51.100.{}", 1 + rng.below(8)),
                443,
                "tcp",
                "ssl",
                rng.below(300_000) as f64 / 1000.0,
            )
        } else if kind < 80 {
            (
                format!("10.2.0.{}", 1 + rng.below(20)),
                format!("203.0.113.{}", 1 + rng.below(10)),
                22,
                "tcp",
                "ssh",
                (600 + rng.below(5_000)) as f64 + rng.below(1_000_000) as f64 / 1e6,
            )
        } else {
            (
                format!("10.3.0.{}", 1 + rng.below(5)),
                "192.0.2.53".to_string(),
                53,
                "udp",
                "dns",
                (100 + rng.below(800)) as f64 + rng.below(1_000_000) as f64 / 1e6,
            )
        };
        let uid = format!("C{n:017}");
        (
            self.format(end, &uid, &orig, &resp, port, proto, service, dur),
            uid,
        )
    }

    /// A record of a pair of its own lasting 2 h: always a single alert, found by its uid.
    fn sync_row(&mut self) -> (String, String) {
        self.n += 1;
        self.syncs += 1;
        self.sync_ns.push(self.n);
        let s = self.syncs;
        let uid = format!("CSYNC{s:012}");
        let orig = format!("10.250.{}.{}", s / 250, 1 + s % 250);
        let row = self.format(
            self.end_time(),
            &uid,
            &orig,
            "198.51.100.250",
            8443,
            "tcp",
            "ssl",
            7200.5,
        );
        (row, uid)
    }

    #[allow(clippy::too_many_arguments)]
    fn format(
        &self,
        end: u64,
        uid: &str,
        orig: &str,
        resp: &str,
        port: u16,
        proto: &str,
        service: &str,
        dur: f64,
    ) -> String {
        let n = self.n;
        let ts = end as f64 - dur;
        format!(
            "{ts:.6}\t{uid}\t{orig}\t{}\t{resp}\t{port}\t{proto}\t{service}\t{dur:.6}\t{}\t{}\tSF\tT\tF\t0\tShADadFf\t{}\t{}\t{}\t{}\t(empty)\n",
            40_000 + n % 20_000,
            100 + n % 997,
            2_000 + n % 7_919,
            10 + n % 50,
            900 + n % 5_000,
            10 + n % 40,
            5_000 + n % 9_000,
        )
    }
}

/// The daemon's side: its process, and how far each output had got when it was killed.
struct Daemon {
    config: PathBuf,
    stderr: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn start(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let err = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .expect("stderr file");
        let mut cmd = Command::new(bin());
        // `LONGCONN_TORTURE_LOG=info,longconn::tail=debug` shows every decision of the follower.
        let level = std::env::var("LONGCONN_TORTURE_LOG").unwrap_or_else(|_| "info".into());
        cmd.args(["run", "--log-level", &level, "--config"])
            .arg(&self.config);
        support::sensor::quiet(&mut cmd).stderr(err);
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
        let before = count_matches(&self.stderr, RUNNING);
        let mut child = cmd.spawn().expect("start longconn run");
        // Signals only once the daemon installed its handlers (it logs "longconn running" after that): a
        // SIGTERM or SIGHUP before kills it by the default action, which no daemon can help.
        let deadline = Instant::now() + Duration::from_secs(30);
        while count_matches(&self.stderr, RUNNING) <= before {
            if let Some(status) = child.try_wait().expect("wait") {
                panic!(
                    "longconn run exited at start ({status}); see {}",
                    self.stderr.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "longconn run not running within 30 s; see {}",
                self.stderr.display()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.child = Some(child);
    }

    fn up(&self) -> bool {
        self.child.is_some()
    }

    fn signal(&self, sig: i32) {
        let child = self.child.as_ref().expect("running");
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let mut child = self.child.take().expect("running");
        child.wait().expect("wait");
    }

    /// SIGTERM and wait (30 s at most); the exit status.
    fn stop(&mut self) -> Result<(), String> {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("exit {status} after SIGTERM"))
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("no exit within 30 s of SIGTERM (killed)".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// The HTTP receiver (NDJSON webhook) on a runtime thread of its own, so it can go down and come back on the
/// same port while the test thread drives everything else.
struct Http {
    rt: tokio::runtime::Handle,
    addr: SocketAddr,
    rx: Option<Receiver>,
    /// Lines received by receivers already stopped.
    lines: Vec<String>,
}

impl Http {
    fn start() -> Http {
        let (tx, hrx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            tx.send(rt.handle().clone()).expect("send handle");
            rt.block_on(std::future::pending::<()>());
        });
        let rt = hrx.recv().expect("runtime handle");
        let rx = rt.block_on(Receiver::start(Mode::Ndjson));
        Http {
            rt,
            addr: rx.addr,
            rx: Some(rx),
            lines: Vec::new(),
        }
    }

    fn up(&self) -> bool {
        self.rx.is_some()
    }

    fn down(&mut self) {
        if let Some(rx) = self.rx.take() {
            let _guard = self.rt.enter();
            self.lines.append(&mut rx.state().ndjson_lines);
            drop(rx);
        }
    }

    fn restart(&mut self) {
        if self.rx.is_none() {
            // The receiver just dropped closes its listener on the runtime thread, a moment later: wait until
            // the port is free (else the bind fails with EADDRINUSE).
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpListener::bind(self.addr).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "port {} not free again",
                    self.addr
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            self.rx = Some(
                self.rt
                    .block_on(Receiver::restart_on(self.addr, Mode::Ndjson)),
            );
        }
    }

    fn all_lines(&self) -> Vec<String> {
        let mut all = self.lines.clone();
        if let Some(rx) = &self.rx {
            all.extend(rx.state().ndjson_lines.iter().cloned());
        }
        all
    }

    fn count(&self) -> usize {
        self.lines.len()
            + self
                .rx
                .as_ref()
                .map_or(0, |rx| rx.state().ndjson_lines.len())
    }
}

#[derive(Default, Debug)]
struct Figures {
    rotations: BTreeMap<&'static str, u64>,
    kills: BTreeMap<&'static str, u64>,
    restarts: u64,
    reloads: u64,
    receiver_outages: u64,
    syncs: u64,
    sync_timeouts: u64,
    stop_failures: Vec<String>,
    records: u64,
    bytes: u64,
    files: u64,
}

/// One live file as written, for the report: which records went into it and what became of it.
struct FileRecord {
    first_n: u64,
    last_n: u64,
    fate: String,
}

struct Torture {
    seed: u64,
    rng: Rng,
    dir: PathBuf,
    logs: PathBuf,
    archive: PathBuf,
    live: PathBuf,
    alerts: PathBuf,
    checkpoint: PathBuf,
    gen: Gen,
    /// The live file's handle (O_APPEND), if the path exists.
    file: Option<File>,
    /// Generated bytes not yet written.
    pending: Vec<u8>,
    /// Every byte written, in order, all files concatenated.
    all: File,
    /// One header block and every record line: what `replay` reads.
    joined: String,
    daemon: Daemon,
    http: Http,
    figures: Figures,
    schedule: File,
    /// Alert-file scan: bytes already looked at, and the sync uids seen.
    alerts_seen: u64,
    syncs_seen: BTreeSet<u64>,
    /// Sync index after which a checkpoint is known to be on disk (the daemon read past that sync record).
    ckpt_sync: u64,
    /// `gen.syncs` when a file was last deleted: a stop needs `ckpt_sync > last_delete`.
    last_delete: Option<u64>,
    /// `gen.syncs` at the last copytruncate (the copy `conn.log.1` may hold unread rows until then).
    last_copytruncate: Option<u64>,
    /// Rotated files still in the log directory, with `gen.syncs` when they were rotated.
    rotated: Vec<(PathBuf, u64)>,
    /// The current live file was opened by the running daemon (a sync in it was delivered).
    live_seen: bool,
    /// Number of lines in each output when the daemon was killed or the receiver went down.
    file_marks: Vec<usize>,
    http_marks: Vec<usize>,
    /// The same at each SIGTERM stop (repeats across these are failures, but told apart in the report).
    term_marks: (Vec<usize>, Vec<usize>),
    files: Vec<FileRecord>,
    rotation_seq: u64,
    long: bool,
    /// Rotations and SIGKILLs to reach before the end.
    targets: (u64, u64),
    sync_deadline: Duration,
    /// Steps left out of the schedule (`LONGCONN_TORTURE_WITHOUT`), to reduce a failure to one cause.
    without: Vec<String>,
}

impl Torture {
    fn new(seed: u64, long: bool) -> Torture {
        let dir = tempfile::Builder::new()
            .prefix("longconn-torture-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let logs = dir.join("logs");
        let archive = dir.join("archive");
        fs::create_dir_all(&logs).expect("mkdir logs");
        fs::create_dir_all(&archive).expect("mkdir archive");
        let http = Http::start();
        let config = dir.join("longconn.toml");
        let text = format!(
            r#"[sensor]
name = "torture"
[[source]]
path = "{logs}/conn.log"
start_at = "beginning"
[state]
dir = "{dir}/state"
checkpoint_interval = "200ms"
[window]
length = "1h"
[single]
levels = {{ low = "10m", medium = "20m", high = "40m", critical = "80m" }}
[cumulative]
levels = {{ low = "20m", medium = "40m", high = "1h", critical = "2h" }}
[[output]]
type = "file"
name = "local"
path = "{dir}/alerts.json"
[[output]]
type = "http"
name = "webhook"
url = "http://{addr}/ingest"
format = "ndjson"
batch_size = 50
timeout = "2s"
"#,
            logs = logs.display(),
            dir = dir.display(),
            addr = http.addr,
        );
        write_atomic(&config, &text);
        fs::write(dir.join("replay.toml"), &text).expect("write replay config");
        Torture {
            seed,
            rng: Rng::new(seed),
            live: logs.join("conn.log"),
            alerts: dir.join("alerts.json"),
            checkpoint: dir.join("state/checkpoint.json"),
            all: File::create(dir.join("all_bytes.log")).expect("all bytes"),
            schedule: File::create(dir.join("schedule.txt")).expect("schedule"),
            joined: header(T0),
            daemon: Daemon {
                config,
                stderr: dir.join("daemon.log"),
                child: None,
            },
            http,
            gen: Gen {
                n: 0,
                syncs: 0,
                sync_ns: Vec::new(),
            },
            file: None,
            pending: Vec::new(),
            figures: Figures::default(),
            alerts_seen: 0,
            syncs_seen: BTreeSet::new(),
            ckpt_sync: 0,
            last_delete: None,
            last_copytruncate: None,
            rotated: Vec::new(),
            live_seen: false,
            file_marks: Vec::new(),
            http_marks: Vec::new(),
            term_marks: (Vec::new(), Vec::new()),
            files: Vec::new(),
            rotation_seq: 0,
            logs,
            archive,
            dir,
            long,
            targets: (
                env_u64("LONGCONN_TORTURE_ROTATIONS").unwrap_or(if long { 1_000 } else { 40 }),
                env_u64("LONGCONN_TORTURE_KILLS").unwrap_or(if long { 100 } else { 8 }),
            ),
            sync_deadline: Duration::from_secs(env_u64("LONGCONN_TORTURE_SYNC_SECS").unwrap_or(15)),
            without: std::env::var("LONGCONN_TORTURE_WITHOUT")
                .unwrap_or_default()
                .split(',')
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// False for a step left out with `LONGCONN_TORTURE_WITHOUT` (one of `first-kill`, `zeekctl`,
    /// `copytruncate`, `delete`, `burst`, `kill`, `term`, `hup`, `receiver`, `down-rotation`).
    fn with(&self, step: &str) -> bool {
        !self.without.iter().any(|w| w == step)
    }

    fn note(&mut self, what: &str) {
        let _ = writeln!(
            self.schedule,
            "[record {} sync {} daemon {}] {what}",
            self.gen.n,
            self.gen.syncs,
            if self.daemon.up() { "up" } else { "down" }
        );
    }

    // ---- the writer ----

    /// Opens (creating with a header block, as Zeek does at its first write) the live file if it is missing.
    fn ensure_live(&mut self) {
        if self.file.is_some() {
            return;
        }
        let new = !self.live.exists();
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.live)
            .expect("open live");
        self.file = Some(f);
        if new {
            self.live_seen = false;
            self.pending
                .splice(0..0, header(self.gen.end_time()).into_bytes());
            self.files.push(FileRecord {
                first_n: self.gen.n + 1,
                last_n: self.gen.n,
                fate: "live".into(),
            });
            self.figures.files += 1;
        }
    }

    fn push_row(&mut self, row: &str) {
        self.pending.extend_from_slice(row.as_bytes());
        self.joined.push_str(row);
        self.figures.records += 1;
        if let Some(f) = self.files.last_mut() {
            f.last_n = self.gen.n;
        }
    }

    fn write_bytes(&mut self, k: usize) {
        self.ensure_live();
        let k = k.min(self.pending.len());
        let chunk: Vec<u8> = self.pending.drain(..k).collect();
        self.file
            .as_mut()
            .expect("live")
            .write_all(&chunk)
            .expect("write live");
        self.all.write_all(&chunk).expect("write all bytes");
        self.figures.bytes += chunk.len() as u64;
    }

    /// Generates records until `want` bytes are pending, then writes a cut of them ending at an arbitrary byte.
    fn write_chunk(&mut self, want: usize) {
        self.ensure_live();
        while self.pending.len() < want {
            let (row, _) = self.gen.row(&mut self.rng);
            self.push_row(&row);
        }
        let k = 1 + self.rng.below(want as u64) as usize;
        self.write_bytes(k);
    }

    /// Writes everything pending: the file ends at a line boundary.
    fn flush_line(&mut self) {
        if !self.pending.is_empty() || self.file.is_none() {
            let k = self.pending.len();
            self.write_bytes(k);
        }
    }

    fn heavy_write(&mut self) {
        let chunks = 1 + self.rng.below(8);
        for _ in 0..chunks {
            let want = 1 + self.rng.below(4_000) as usize;
            self.write_chunk(want);
        }
    }

    // ---- awaiting the daemon ----

    /// Scans the file output for sync uids written since the last look.
    fn scan_alerts(&mut self) {
        let Ok(mut f) = File::open(&self.alerts) else {
            return;
        };
        let mut buf = Vec::new();
        use std::io::Seek;
        if f.seek(std::io::SeekFrom::Start(self.alerts_seen)).is_err() {
            return;
        }
        let _ = f.read_to_end(&mut buf);
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let text = String::from_utf8_lossy(&buf[..=end]);
        for part in text.split("\"CSYNC").skip(1) {
            if let Some(n) = part.get(..12).and_then(|d| d.parse::<u64>().ok()) {
                self.syncs_seen.insert(n);
            }
        }
        self.alerts_seen += end as u64 + 1;
    }

    fn checkpoint_stamp(&self) -> Option<(u64, i64, i64)> {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&self.checkpoint)
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
    }

    /// Writes a sync record into the live file and waits (15 s at most) until its alert is in the file output:
    /// the daemon has the live file open and read everything written before. With `checkpoint`, then also
    /// until a checkpoint written after that is on disk. False on a timeout (counted, reported).
    fn sync(&mut self, checkpoint: bool) -> bool {
        assert!(self.daemon.up());
        self.ensure_live();
        let (row, _) = self.gen.sync_row();
        let s = self.gen.syncs;
        self.push_row(&row);
        self.flush_line();
        self.figures.syncs += 1;
        let deadline = Instant::now() + self.sync_deadline;
        loop {
            self.scan_alerts();
            if self.syncs_seen.contains(&s) {
                break;
            }
            if Instant::now() > deadline {
                self.figures.sync_timeouts += 1;
                self.note(&format!("SYNC TIMEOUT: CSYNC{s:012} not delivered in time"));
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.live_seen = true;
        if checkpoint {
            // Any checkpoint written from now on covers the sync record. One more record makes the daemon's
            // state change, so a checkpoint does come even if the last one was written just after the sync.
            let before = self.checkpoint_stamp();
            let (row, _) = self.gen.row(&mut self.rng);
            self.push_row(&row);
            self.flush_line();
            let deadline = Instant::now() + self.sync_deadline;
            while self.checkpoint_stamp() == before {
                if Instant::now() > deadline {
                    self.figures.sync_timeouts += 1;
                    self.note("SYNC TIMEOUT: no checkpoint in time");
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            self.ckpt_sync = s;
        }
        true
    }

    /// Marks a kill in both outputs' accounting. A kill allows two more copies of an alert: one delivered
    /// before it whose output cursor was not saved yet comes again from the spool after the restart, and the
    /// records read since the checkpoint raise it once more.
    fn mark_kill(&mut self) {
        let (f, h) = (count_lines(&self.alerts), self.http.count());
        self.file_marks.extend([f, f]);
        self.http_marks.extend([h, h]);
    }

    /// True if the checkpoint on disk names the live file (by device and inode), live or draining.
    fn checkpoint_names_live(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = fs::metadata(&self.live) else {
            return false;
        };
        let Ok(text) = fs::read_to_string(&self.checkpoint) else {
            return false;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return false;
        };
        let names = |f: &serde_json::Value| {
            f.pointer("/id/ino").and_then(|i| i.as_u64()) == Some(meta.ino())
                && f.pointer("/id/dev").and_then(|d| d.as_u64()) == Some(meta.dev())
        };
        v.pointer("/sources/0").is_some_and(|src| {
            src.get("live").is_some_and(names)
                || src
                    .get("draining")
                    .and_then(|d| d.as_array())
                    .is_some_and(|d| d.iter().any(names))
        })
    }

    /// True once a kill or stop loses nothing no follower could keep: every deleted file was read past and
    /// checkpointed. Syncs (with a checkpoint) when needed; false if that timed out.
    fn ready_to_stop(&mut self) -> bool {
        match self.last_delete {
            Some(d) if self.ckpt_sync <= d => self.sync(true),
            _ => true,
        }
    }

    // ---- daemon control ----

    fn kill(&mut self, why: &'static str) {
        if !self.with("kill") || !self.daemon.up() || !self.ready_to_stop() {
            return;
        }
        self.kill_now(why);
    }

    /// SIGKILL with no precondition checked (the caller did): nothing is written to the logs.
    fn kill_now(&mut self, why: &'static str) {
        if !self.with("kill") || !self.daemon.up() {
            return;
        }
        self.daemon.kill();
        self.scan_alerts();
        self.mark_kill();
        *self.figures.kills.entry(why).or_default() += 1;
        self.note(&format!("SIGKILL ({why})"));
    }

    fn terminate(&mut self) {
        if !self.with("term") || !self.daemon.up() || !self.ready_to_stop() {
            return;
        }
        self.note("SIGTERM");
        let result = self.daemon.stop();
        self.term_marks.0.push(count_lines(&self.alerts));
        self.term_marks.1.push(self.http.count());
        if let Err(e) = result {
            self.note(&format!("STOP FAILED: {e}"));
            self.figures.stop_failures.push(e);
            // A failed stop may have left anything behind: count it like a kill.
            self.mark_kill();
        }
    }

    fn start(&mut self) {
        if self.daemon.up() {
            return;
        }
        self.daemon.start();
        self.figures.restarts += 1;
        self.live_seen = false;
        self.note("start");
    }

    fn reload(&mut self) {
        if !self.with("hup") || !self.daemon.up() {
            return;
        }
        // The same config, written again (as an operator's edit would be).
        // Atomically (temp file + rename, as editors and config management do): a daemon reading it at this
        // moment sees the old file or the new one, never a half-written one.
        let text = fs::read_to_string(&self.daemon.config).expect("config");
        write_atomic(&self.daemon.config, &text);
        self.daemon.signal(libc::SIGHUP);
        self.figures.reloads += 1;
        self.note("SIGHUP");
    }

    fn toggle_receiver(&mut self) {
        if !self.with("receiver") {
            return;
        }
        if self.http.up() {
            self.http.down();
            self.http_marks.push(self.http.count());
            self.figures.receiver_outages += 1;
            self.note("receiver down");
        } else {
            self.http.restart();
            self.note("receiver up");
        }
    }

    // ---- rotations ----

    fn rotated_name(&mut self) -> PathBuf {
        self.rotation_seq += 1;
        // Distinct, increasing names: Zeek's time stamp of the rotation.
        let t = T0 + self.rotation_seq * 3600;
        self.logs.join(format!("conn.{}.log", stamp(t, '-')))
    }

    fn close_file(&mut self, fate: String) {
        self.flush_line();
        let close = format!("#close\t{}\n", stamp(self.gen.end_time(), '-'));
        self.pending.extend_from_slice(close.as_bytes());
        self.flush_line();
        self.file = None;
        if let Some(f) = self.files.last_mut() {
            f.fate = fate;
        }
    }

    fn count_rotation(&mut self, style: &'static str) {
        *self.figures.rotations.entry(style).or_default() += 1;
    }

    /// Standalone Zeek: close, rename in the same directory; the path stays missing until the next write.
    fn rotate_zeek(&mut self) {
        self.ensure_live();
        let to = self.rotated_name();
        self.close_file(format!("renamed to {}", to.display()));
        fs::rename(&self.live, &to).expect("rename");
        self.rotated.push((to.clone(), self.gen.syncs));
        self.count_rotation("zeek rename");
        self.note(&format!("rotate zeek -> {}", to.display()));
    }

    /// zeekctl: rename to a sibling, gzip it elsewhere, delete the sibling. Only with the daemon holding it.
    fn rotate_zeekctl(&mut self) -> bool {
        if !self.with("zeekctl") || !self.daemon.up() {
            return false;
        }
        self.ensure_live();
        if !self.live_seen && !self.sync(false) {
            return false;
        }
        let to = self.rotated_name();
        self.close_file(format!("renamed to {}, gzipped, deleted", to.display()));
        fs::rename(&self.live, &to).expect("rename");
        gzip_to(
            &to,
            &self
                .archive
                .join(format!("conn.{}.log.gz", self.rotation_seq)),
        );
        fs::remove_file(&to).expect("delete rotated");
        self.last_delete = Some(self.gen.syncs);
        self.count_rotation("zeekctl move+gzip+delete");
        self.note(&format!(
            "rotate zeekctl -> {} -> archive, deleted",
            to.display()
        ));
        true
    }

    /// Delete the live file and start a new one at once. Only with the daemon holding it.
    fn rotate_delete(&mut self) -> bool {
        if !self.with("delete") || !self.daemon.up() {
            return false;
        }
        self.ensure_live();
        if !self.live_seen && !self.sync(false) {
            return false;
        }
        self.close_file("deleted".into());
        fs::remove_file(&self.live).expect("delete live");
        self.last_delete = Some(self.gen.syncs);
        self.ensure_live();
        self.flush_line();
        self.count_rotation("delete+recreate");
        self.note("rotate delete+recreate");
        true
    }

    /// logrotate copytruncate (with delaycompress): the previous copy is gzipped away, the live file copied to
    /// `conn.log.1` and truncated; the writer goes on with rows and no header. `between` runs between the copy
    /// and the truncate.
    fn rotate_copytruncate(&mut self, mut between: Between) -> bool {
        if !self.with("copytruncate") {
            return false;
        }
        let copy = self.logs.join("conn.log.1");
        if copy.exists() {
            // The old copy may hold rows the daemon had not read at the truncate: drop it only once it read past.
            let consumed = self.last_copytruncate.is_some_and(|c| self.ckpt_sync > c);
            if !consumed && (!self.daemon.up() || !self.sync(true)) {
                return false;
            }
            gzip_to(
                &copy,
                &self
                    .archive
                    .join(format!("conn.log.{}.gz", self.rotation_seq)),
            );
            fs::remove_file(&copy).expect("delete old copy");
            self.last_delete = Some(self.gen.syncs);
        }
        self.ensure_live();
        self.flush_line();
        // Rows after the truncate have no header in their file: they can only be read with the header state of
        // the file before, which the daemon must know from a checkpoint (or it starts fresh on a file of rows).
        if !self.checkpoint_names_live() && (!self.daemon.up() || !self.sync(true)) {
            return false;
        }
        // The kill's precondition (a checkpoint past every deleted file) is met BEFORE the copy: a sync it
        // needed between the copy and the truncate would write rows the copy lacks, so the checkpoint would be
        // past the copy's end (a copy shorter than the saved offset is no copy of what was read).
        if !matches!(between, Between::Nothing) && (!self.daemon.up() || !self.ready_to_stop()) {
            between = Between::Nothing;
        }
        self.flush_line();
        fs::copy(&self.live, &copy).expect("copy");
        self.rotation_seq += 1;
        match between {
            Between::Nothing => {}
            Between::Kill => self.kill_now("between copy and truncate"),
            Between::Restart => {
                self.kill_now("between copy and truncate");
                if !self.daemon.up() {
                    self.start();
                    // Let the restore meet the copy before the truncate.
                    std::thread::sleep(Duration::from_millis(self.rng.below(300)));
                }
            }
        }
        OpenOptions::new()
            .write(true)
            .open(&self.live)
            .expect("open for truncate")
            .set_len(0)
            .expect("truncate");
        self.last_copytruncate = Some(self.gen.syncs);
        if let Some(f) = self.files.last_mut() {
            f.fate = format!("{}; copytruncated at record {}", f.fate, self.gen.n);
        }
        self.count_rotation("copytruncate");
        self.note(&format!("rotate copytruncate ({between:?})"));
        true
    }

    /// Two to five rotations with a few records each and no pause; sometimes right after a copytruncate.
    fn burst(&mut self) {
        if !self.with("burst") {
            self.rotate_zeek();
            return;
        }
        let n = 2 + self.rng.below(4);
        self.note(&format!("burst of {n}"));
        if self.rng.chance(30) && self.rotate_copytruncate(Between::Nothing) {
            let want = 1 + self.rng.below(600) as usize;
            self.write_chunk(want);
        }
        for _ in 0..n {
            let want = 1 + self.rng.below(1_500) as usize;
            self.write_chunk(want);
            self.rotate_zeek();
        }
        *self.figures.rotations.entry("(bursts)").or_default() += 1;
    }

    fn rotate(&mut self) {
        let up = self.daemon.up();
        let r = self.rng.below(100);
        let done = if r < 30 {
            self.rotate_zeek();
            true
        } else if r < 50 {
            self.rotate_zeekctl()
        } else if r < 72 {
            let between = match self.rng.below(10) {
                0..=6 => Between::Nothing,
                7 | 8 if up => Between::Kill,
                9 if up => Between::Restart,
                _ => Between::Nothing,
            };
            self.rotate_copytruncate(between)
        } else if r < 85 {
            self.rotate_delete()
        } else {
            self.burst();
            true
        };
        if !done {
            self.rotate_zeek();
        }
        if self.daemon.up() && self.rng.chance(15) {
            self.kill("right after a rotation");
        }
    }

    /// Old rotated files the daemon read past (a checkpoint says so) are removed, as an archive job would.
    fn cleanup(&mut self) {
        let ckpt = self.ckpt_sync;
        let (old, keep): (Vec<_>, Vec<_>) = self.rotated.drain(..).partition(|(_, s)| *s < ckpt);
        self.rotated = keep;
        for (p, _) in &old {
            let _ = fs::remove_file(p);
        }
        if !old.is_empty() {
            self.note(&format!("cleanup: {} old rotated files removed", old.len()));
        }
    }

    // ---- the schedule ----

    fn total_rotations(&self) -> u64 {
        self.figures
            .rotations
            .iter()
            .filter(|(k, _)| !k.starts_with('('))
            .map(|(_, v)| v)
            .sum()
    }

    fn total_kills(&self) -> u64 {
        self.figures.kills.values().sum()
    }

    fn done(&self) -> bool {
        let (rot, kills) = self.targets;
        self.total_rotations() >= rot && self.total_kills() >= kills
    }

    fn run(&mut self) {
        let seed = self.seed;
        self.note(&format!("seed {seed}"));
        // Scenario 25: a fresh state directory, a rotation, and a SIGKILL before the first checkpoint.
        self.start();
        // A first start opens the sources and saves those positions (rotated files already there are history,
        // scenario 1: never read) after it logged "longconn running": nothing is written before that save.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.checkpoint.exists() {
            assert!(Instant::now() < deadline, "no first checkpoint within 30 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.heavy_write();
        if self.with("first-kill") {
            self.rotate_zeek();
            self.heavy_write();
            std::thread::sleep(Duration::from_millis(self.rng.below(120)));
            self.daemon.kill();
            self.mark_kill();
            *self
                .figures
                .kills
                .entry("before the first checkpoint")
                .or_default() += 1;
            self.note("SIGKILL (before the first checkpoint)");
            self.heavy_write();
            self.start();
        } else {
            // Without it: a checkpoint on disk before any kill (every kill before one is a first-checkpoint kill).
            let _ = self.sync(true);
        }

        let started = Instant::now();
        while !self.done() {
            if self.figures.sync_timeouts >= 3 {
                self.note("three sync timeouts: schedule abandoned");
                break;
            }
            if !self.long && started.elapsed() > Duration::from_secs(70) {
                self.note("short run: 70 s budget spent, schedule cut");
                break;
            }
            if self.daemon.up() {
                let r = self.rng.below(100);
                match r {
                    0..=44 => {
                        self.heavy_write();
                        if self.rng.chance(8) {
                            self.kill("during heavy writing");
                        }
                    }
                    45..=66 => self.rotate(),
                    67..=70 => self.kill("at a random moment"),
                    71..=73 => self.terminate(),
                    74..=76 => self.reload(),
                    77..=79 => self.toggle_receiver(),
                    80..=84 => {
                        let _ = self.sync(true);
                    }
                    85..=87 => self.cleanup(),
                    _ => {
                        // Let the daemon look (or not) before the next step.
                        std::thread::sleep(Duration::from_millis(self.rng.below(300)));
                    }
                }
            } else if !self.with("down-rotation") {
                match self.rng.below(100) {
                    0..=59 => self.heavy_write(),
                    _ => self.start(),
                }
            } else {
                match self.rng.below(100) {
                    0..=39 => self.heavy_write(),
                    40..=54 => self.rotate_zeek(),
                    55..=62 => {
                        if !self.rotate_copytruncate(Between::Nothing) {
                            self.rotate_zeek();
                        }
                    }
                    63..=67 => self.burst(),
                    _ => self.start(),
                }
            }
        }
        // The end: receiver up, daemon up, one last sync proves everything written was read.
        self.http.restart();
        self.start();
        self.flush_line();
        let synced = self.sync(true);
        let last = self.gen.syncs;
        let http_deadline = Instant::now() + Duration::from_secs(90);
        let want = format!("\"CSYNC{last:012}\"");
        while synced && !self.http.all_lines().iter().any(|l| l.contains(&want)) {
            if Instant::now() > http_deadline {
                self.note("HTTP output: last sync not delivered within 90 s");
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Err(e) = self.daemon.stop() {
            self.figures.stop_failures.push(e);
        }
        self.note("end");
    }
}

#[derive(Debug, Clone, Copy)]
enum Between {
    Nothing,
    Kill,
    Restart,
}

/// The environment that reruns this schedule (besides the seed).
fn reproduce_env(long: bool, targets: (u64, u64)) -> String {
    let mut env = String::new();
    if long {
        env.push_str("LONGCONN_TORTURE_LONG=1 ");
    }
    for (key, v) in [("ROTATIONS", targets.0), ("KILLS", targets.1)] {
        if std::env::var(format!("LONGCONN_TORTURE_{key}")).is_ok() {
            env.push_str(&format!("LONGCONN_TORTURE_{key}={v} "));
        }
    }
    if let Ok(w) = std::env::var("LONGCONN_TORTURE_WITHOUT") {
        env.push_str(&format!("LONGCONN_TORTURE_WITHOUT={w} "));
    }
    env
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

fn gzip_to(from: &Path, to: &Path) {
    let data = fs::read(from).expect("read rotated");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&data).expect("gzip");
    fs::write(to, enc.finish().expect("gzip")).expect("write gz");
}

/// The line the daemon logs once its signal handlers are installed and its sources are open.
const RUNNING: &str = "longconn running";

/// Occurrences of `needle` in the file (0 if it is missing).
fn count_matches(path: &Path, needle: &str) -> usize {
    fs::read_to_string(path).map_or(0, |t| t.matches(needle).count())
}

/// Writes `path` through a temp file in the same directory and a rename.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    fs::write(&tmp, text).expect("write temp config");
    fs::rename(&tmp, path).expect("rename config");
}

fn count_lines(path: &Path) -> usize {
    fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

fn event_id(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.pointer("/event/id")?.as_str().map(str::to_string)
}

/// What one output delivered, against what replay raised.
struct Verdict {
    delivered: usize,
    distinct: usize,
    missing: Vec<String>,
    unexpected: Vec<String>,
    repeated: usize,
    /// Repeats not covered by a kill (or, for HTTP, an outage) before them.
    bad_repeats: Vec<String>,
    /// Of those, repeats with a SIGTERM restart between them.
    across_term: usize,
    bad_lines: usize,
}

fn judge(
    lines: &[String],
    expected: &BTreeSet<String>,
    marks: &[usize],
    terms: &[usize],
) -> Verdict {
    // An id seen for the j-th time again at line i is legal if at least j marks came before line i: a kill
    // leaves two marks (a copy delivered before it comes again from the spool, and the records read again
    // since the checkpoint raise it once more), a receiver outage one.
    let before = |marks: &[usize], i: usize| marks.iter().filter(|&&m| m <= i).count();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut repeated = 0;
    let mut bad_repeats = Vec::new();
    let mut across_term = 0;
    let mut bad_lines = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(id) = event_id(line) else {
            bad_lines += 1;
            continue;
        };
        let times = seen.entry(id.clone()).or_default();
        *times += 1;
        if *times > 1 {
            repeated += 1;
            let j = *times - 1;
            if before(marks, i) < j {
                if before(marks, i) + before(terms, i) >= j {
                    across_term += 1;
                }
                bad_repeats.push(id);
            }
        }
    }
    let got: BTreeSet<String> = seen.keys().cloned().collect();
    Verdict {
        delivered: lines.len(),
        distinct: got.len(),
        missing: expected.difference(&got).cloned().collect(),
        unexpected: got.difference(expected).cloned().collect(),
        repeated,
        bad_repeats,
        across_term,
        bad_lines,
    }
}

#[test]
fn torture_seeded_rotations_kills_restarts_reloads() {
    let long = std::env::var("LONGCONN_TORTURE_LONG").is_ok_and(|v| v == "1");
    let seed = env_u64("LONGCONN_TORTURE_SEED").unwrap_or(1);
    let began = Instant::now();
    let mut t = Torture::new(seed, long);
    t.run();

    // What replay raises over every record written, in order, under one header block.
    let joined = t.dir.join("joined.log");
    fs::write(&joined, &t.joined).expect("write joined");
    let replay_lines = support::sensor::replay(&t.dir.join("replay.toml"), &joined);
    let expected: BTreeSet<String> = replay_lines.iter().filter_map(|l| event_id(l)).collect();

    let file_lines: Vec<String> = fs::read_to_string(&t.alerts)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let file = judge(&file_lines, &expected, &t.file_marks, &t.term_marks.0);
    let mut http_marks = t.http_marks.clone();
    http_marks.sort_unstable();
    let http_lines = t.http.all_lines();
    let http = judge(&http_lines, &expected, &http_marks, &t.term_marks.1);
    let _ = fs::write(t.dir.join("webhook.json"), http_lines.join("\n") + "\n");
    let _ = fs::write(
        t.dir.join("marks.txt"),
        format!(
            "file kills {:?}\nhttp kills and outages {:?}\nSIGTERM file {:?} http {:?}\n",
            t.file_marks, http_marks, t.term_marks.0, t.term_marks.1
        ),
    );

    let f = &t.figures;
    let mut report = String::new();
    let w = &mut report;
    use std::fmt::Write as _;
    let _ = writeln!(
        w,
        "longconn torture, seed {seed}{}",
        if long { " (long)" } else { "" }
    );
    let _ = writeln!(
        w,
        "  elapsed            {:.1} s",
        began.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        w,
        "  records written    {} ({} bytes, {} files, {} syncs, {} sync timeouts)",
        f.records, f.bytes, f.files, f.syncs, f.sync_timeouts
    );
    let _ = writeln!(w, "  rotations          {} total", t.total_rotations());
    for (k, v) in &f.rotations {
        let _ = writeln!(w, "    {k:<28} {v}");
    }
    let _ = writeln!(w, "  SIGKILLs           {} total", t.total_kills());
    for (k, v) in &f.kills {
        let _ = writeln!(w, "    {k:<28} {v}");
    }
    let _ = writeln!(w, "  starts             {}", f.restarts);
    let _ = writeln!(w, "  SIGHUP reloads     {}", f.reloads);
    let _ = writeln!(w, "  receiver outages   {}", f.receiver_outages);
    let _ = writeln!(w, "  failed stops       {}", f.stop_failures.len());
    let _ = writeln!(
        w,
        "  ids expected       {} (replay lines {})",
        expected.len(),
        replay_lines.len()
    );
    for (name, v) in [("file", &file), ("http", &http)] {
        let _ = writeln!(
            w,
            "  {name:<5} delivered {} lines, {} distinct ids: missing {}, unexpected {}, repeated {} ({} not covered by a kill, {} of them by a SIGTERM), unparsable lines {}",
            v.delivered, v.distinct, v.missing.len(), v.unexpected.len(), v.repeated, v.bad_repeats.len(), v.across_term, v.bad_lines
        );
    }
    eprintln!("{report}");

    let ok = file.missing.is_empty()
        && file.unexpected.is_empty()
        && file.bad_repeats.is_empty()
        && file.bad_lines == 0
        && http.missing.is_empty()
        && http.unexpected.is_empty()
        && http.bad_repeats.is_empty()
        && http.bad_lines == 0
        && f.stop_failures.is_empty()
        && f.sync_timeouts == 0;
    if ok {
        let _ = fs::remove_dir_all(&t.dir);
        return;
    }

    // Reduce for the reader: which files held the records behind the missing alerts.
    let by_id: HashMap<String, &String> = replay_lines
        .iter()
        .filter_map(|l| event_id(l).map(|id| (id, l)))
        .collect();
    let mut per_file: BTreeMap<usize, usize> = BTreeMap::new();
    for id in &file.missing {
        let Some(line) = by_id.get(id) else { continue };
        let v: serde_json::Value = serde_json::from_str(line).expect("replay JSON");
        let Some(uid) = v.pointer("/zeek/session_id/0").and_then(|u| u.as_str()) else {
            continue;
        };
        let n = match uid.strip_prefix("CSYNC") {
            Some(s) => s
                .parse::<usize>()
                .ok()
                .and_then(|s| t.gen.sync_ns.get(s.wrapping_sub(1)).copied())
                .unwrap_or(0),
            None => uid.trim_start_matches('C').parse::<u64>().unwrap_or(0),
        };
        if let Some(i) = t
            .files
            .iter()
            .position(|fr| fr.first_n <= n && n <= fr.last_n)
        {
            *per_file.entry(i).or_default() += 1;
        }
    }
    let mut detail = String::new();
    for (i, c) in &per_file {
        let fr = &t.files[*i];
        let _ = writeln!(
            detail,
            "  file #{i} (records {}..={}, {}): first uid of {c} missing alerts",
            fr.first_n, fr.last_n, fr.fate
        );
    }
    let log = fs::read_to_string(&t.daemon.stderr).unwrap_or_default();
    // Rotated files (by the name they were given) that no line of the daemon's log names.
    let never_named: Vec<String> = t
        .files
        .iter()
        .filter_map(|fr| fr.fate.strip_prefix("renamed to "))
        .map(|rest| rest.split([',', ';']).next().unwrap_or(rest).to_string())
        .filter(|name| !log.contains(name.as_str()))
        .collect();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(40)
        .collect();
    panic!(
        "torture failed (seed {seed}): {report}\nfailed stops: {:?}\nmissing alerts by the file their first record was written to:\n{detail}\nrotated files no daemon log line names ({}): {:?}\nfirst missing ids: {:?}\nfirst unexpected ids: {:?}\nrepeats not covered by a kill (file): {:?}\ndaemon warnings and errors (first 40):\n{}\n\nrun again: LONGCONN_TORTURE_SEED={seed} {}cargo test --release --test integration torture::\nkept: {} (schedule.txt, all_bytes.log, joined.log, daemon.log, alerts.json, state/)",
        f.stop_failures,
        never_named.len(),
        never_named,
        file.missing.iter().take(10).collect::<Vec<_>>(),
        file.unexpected.iter().take(10).collect::<Vec<_>>(),
        file.bad_repeats.iter().take(10).collect::<Vec<_>>(),
        warnings.join("\n"),
        reproduce_env(long, t.targets),
        t.dir.display(),
    );
}
