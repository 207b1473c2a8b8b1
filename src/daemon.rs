//! The daemon (`longconn run`): wiring only. It restores the checkpoint, starts one [`Tailer`] per source, and
//! runs the pipeline tail -> parse -> detector -> spool on one blocking thread (a backlog's lines are parsed
//! ahead on a second, short-lived thread, `tail/ahead.rs`, and handed over in file order); one delivery task
//! per output (`crate::output::delivery`) carries alerts from the spool to the output, while the async side turns its
//! caller's [`Control`] requests (stop, reload: `main` wires SIGTERM, SIGINT and SIGHUP to them, tests send
//! them directly) and file-system notifications into messages for the pipeline. Nothing here installs a
//! signal handler.
//!
//! The caller sees what the daemon did through a [`Progress`] watch (ready, records read, caught up, alerts
//! spooled and delivered), so a test awaits an event instead of sleeping. File-system wake-ups are coalesced
//! (one pending wake-up at most) and the pipeline takes its commands before them, so a stop or a reload is never
//! queued behind the notifications of a busy file. A stop is honoured within [`STOP_DEADLINE`]: the pipeline
//! thread is waited for that long and no longer (`run` then fails and the process exits without it).
//!
//! At-least-once, the ordering invariant: every alert is appended to the spool and the spool is fsynced
//! ([`Spool::sync`]) BEFORE the checkpoint that covers the records that raised it is saved. So an alert is
//! either durable in the spool or its records are read again after a crash (and raise it again, with the same
//! `event.id`). Outputs only see synced alerts and move their cursors only after a delivery is accepted, so
//! a restart (SIGTERM or SIGKILL) resumes each output where it stood; what is sent twice shares `event.id`.
//! Backpressure: when the spool reaches `[spool] max_bytes` the pipeline stops reading (the log files are the
//! buffer) until outputs catch up; nothing is dropped.
//! Stop: the pipeline stops reading, syncs the spool, saves the checkpoint; then the delivery tasks get
//! [`DELIVERY_GRACE`] to flush what is in the spool; the rest waits there for the next start. A final
//! checkpoint that could not be saved is an ERROR and `run` fails with [`CheckpointNotSaved`] (exit 75): the
//! next start re-reads from the last saved one, nothing is lost, but the stop was not clean.
//!
//! Several sources are read in event-time order (`daemon/merge.rs`): the conn.logs of a cluster's loggers
//! and the context logs together, each interim kind on its own; a single source is polled as it always was.
//!
//! What the daemon tells systemd (readiness, reloads, the watchdog, a status line) and Prometheus lives in
//! `daemon/health.rs`; the pipeline calls into it at a few marked points.

mod health;
pub mod merge;

use crate::checkpoint::groups::{self, GroupStore, StoreError, StoreRef};
use crate::checkpoint::{CheckpointStore, LoadError};
use crate::config::Config;
use crate::detector::{Detector, DetectorState};
use crate::output::delivery::{self, OutputStats};
use crate::output::{self, ReopenGeneration};
use crate::spool::{Spool, SpoolOptions, DEFAULT_SEGMENT_BYTES};
use crate::tail::{SourceCheckpoint, TailEvent, Tailer};
use crate::zeek::{Show, SkippedLines, SourceKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

/// What earlier builds saved in the state directory (`checkpoint.json`, the whole window as JSON): read once,
/// to upgrade, and still the layout of `checkpoint.json` apart from the groups (see `Saved`).
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    pub sources: Vec<SourceCheckpoint>,
    pub detector: DetectorState,
}

/// What `checkpoint.json` holds: the file positions and the detector state, with the window's groups in the
/// binary group store it names (`crate::checkpoint::groups`), committed by this file's atomic rename. Without
/// `groups_store` it is a [`SavedState`] of an earlier build, its groups inline (read once, to upgrade; the
/// next checkpoint writes the store). A checkpoint with a store has no `groups` member, so an earlier build
/// refuses it (sets it aside) rather than start with an empty window.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    version: u32,
    sources: Vec<SourceCheckpoint>,
    detector: DetectorState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    groups_store: Option<StoreRef>,
}

/// The version of `checkpoint.json`'s JSON layout (unchanged: the store is an added member); the group store
/// has a version of its own ([`groups::STORE_VERSION`]).
const STATE_VERSION: u32 = 1;

/// How often sources are re-checked when no notification arrives (lost events, NFS, no inotify).
const RECHECK: Duration = Duration::from_millis(250);

/// The average rate at which checkpoints may be written (bytes/s): a checkpoint appends what changed (a
/// compaction rewrites the whole group store, about 43 bytes per one-connection group), and one of 100 MB is
/// then followed by the next about 100 s later rather than a few seconds (a disk on a sensor should not spend
/// its life rewriting the same state).
const MAX_CHECKPOINT_RATE: u64 = 1024 * 1024;

/// The time between two checkpoints: the configured interval, stretched so that writing the last one's
/// `size` bytes (which took `cost`) takes at most a tenth of the time and [`MAX_CHECKPOINT_RATE`].
fn checkpoint_interval(configured: Duration, cost: Duration, size: u64) -> Duration {
    configured
        .max(cost * 10)
        .max(Duration::from_secs(size / MAX_CHECKPOINT_RATE))
}

/// While records wait for a dry source (`merge`) and nothing moved, how often the sources are looked at.
const MERGE_RECHECK: Duration = Duration::from_millis(20);

/// How long a graceful stop may take.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Bytes read from one live file per poll: keeps a large backlog from delaying alerts, checkpoints and stop.
const POLL_BUDGET: u64 = 16 * 1024 * 1024;
/// At most this many records are held back within a poll for the detector's prefetching
/// ([`Detector::process_all`]).
const DETECT_BATCH: usize = 256;

/// How long delivery tasks may flush after the pipeline stopped.
pub const DELIVERY_GRACE: Duration = Duration::from_secs(3);

/// How often the directories to watch are recomputed.
const WATCH_REFRESH: Duration = Duration::from_secs(2);

/// The file-system watches: directories only, events are wake-ups; the periodic re-check finds everything
/// when notifications are lost or unavailable.
struct Watches {
    watcher: Option<notify::RecommendedWatcher>,
    /// The directories watched, with their identity when the watch was set: a directory deleted and
    /// recreated under the same name (zeekctl moves its spool away) is another directory, watched anew.
    dirs: Vec<(PathBuf, Option<crate::tail::FileId>)>,
    wake: crossbeam_channel::Sender<()>,
}

impl Watches {
    /// Watches `dirs` if they differ from what is watched now (by path or by identity).
    fn refresh(&mut self, dirs: Vec<PathBuf>) {
        let dirs: Vec<(PathBuf, Option<crate::tail::FileId>)> = dirs
            .into_iter()
            .map(|d| {
                let id = std::fs::metadata(&d)
                    .ok()
                    .map(|m| crate::tail::FileId::of(&m));
                (d, id)
            })
            .collect();
        if dirs == self.dirs && self.watcher.is_some() {
            return;
        }
        let paths: Vec<PathBuf> = dirs.iter().map(|(d, _)| d.clone()).collect();
        let wake = self.wake.clone();
        self.watcher = match crate::tail::watch::watch(&paths, move || {
            // Full: a wake-up is already pending, and the next poll sees this change too.
            let _ = wake.try_send(());
        }) {
            Ok(w) => {
                for d in &paths {
                    debug!(dir = %d.display(), "watching");
                }
                Some(w)
            }
            Err(e) => {
                if self.dirs.is_empty() {
                    warn!(
                        "file notifications unavailable, polling every {} ms: {e}",
                        RECHECK.as_millis()
                    );
                }
                None
            }
        };
        self.dirs = dirs;
    }
}

/// A failure that repeats for as long as its cause lasts (a full disk, an unreadable source): logged when it
/// starts, then at most every `every` with the count so far, and once when it ends.
#[derive(Debug)]
struct Episode {
    every: Duration,
    since: Option<Instant>,
    logged: Option<Instant>,
    count: u64,
}

impl Default for Episode {
    fn default() -> Episode {
        Episode::every(Duration::from_secs(60))
    }
}

impl Episode {
    fn every(every: Duration) -> Episode {
        Episode {
            every,
            since: None,
            logged: None,
            count: 0,
        }
    }

    /// One more failure: `Some(count)` when it is to be logged (1: it has just started).
    fn hit(&mut self) -> Option<u64> {
        let now = Instant::now();
        self.count += 1;
        self.since.get_or_insert(now);
        if self.logged.is_some_and(|t| now - t < self.every) {
            return None;
        }
        self.logged = Some(now);
        Some(self.count)
    }

    /// How long it has been failing.
    fn elapsed(&self) -> Duration {
        self.since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// It worked again: `Some((failures, how long))` if it had been failing.
    fn end(&mut self) -> Option<(u64, Duration)> {
        let since = self.since.take()?;
        let n = std::mem::take(&mut self.count);
        self.logged = None;
        Some((n, since.elapsed()))
    }
}

/// The repeating failures of the pipeline.
#[derive(Debug, Default)]
struct Faults {
    append: Episode,
    sync: Episode,
    checkpoint: Episode,
}

/// What the caller asks of a running daemon (`main` sends these on SIGTERM/SIGINT and SIGHUP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Drain, checkpoint and stop (also when every sender is dropped).
    Stop,
    /// Read the config file again and apply it (a bad one is logged and the running one kept).
    Reload,
}

/// What a running daemon has done so far, published after every round of polls: for callers (tests) to
/// await instead of sleeping. Counters only grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The first round of polls is done (`READY=1` was sent).
    pub ready: bool,
    /// Rounds of polls completed. A round that starts after a write has seen it: wait for two more rounds
    /// than were counted when the write finished.
    pub rounds: u64,
    /// Records read.
    pub records: u64,
    /// The last round found nothing more to read in any source (and nothing waits for room in the spool).
    pub caught_up: bool,
    /// Alerts appended to the spool.
    pub alerts_spooled: u64,
    /// Alerts the outputs delivered (summed over outputs).
    pub alerts_delivered: u64,
    /// Checkpoints saved (including "still current", which writes nothing).
    pub checkpoints: u64,
    /// Reload requests handled: applied or refused.
    pub reloads: u64,
}

impl Progress {
    /// Caught up in a round that started after a round count of `rounds` was seen (see [`Progress::rounds`]).
    pub fn settled_since(&self, rounds: u64) -> bool {
        self.caught_up && self.rounds >= rounds + 2
    }
}

/// Messages from the async side to the pipeline thread.
#[derive(Debug)]
enum Command {
    /// Apply a new, already validated config.
    Reload(Box<Config>),
    /// Drain, checkpoint and stop.
    Stop,
}

/// The pipeline thread's inbox: commands in order, file-system wake-ups coalesced into at most one pending
/// (a bounded channel of one, filled with `try_send`), and commands always taken first.
struct Inbox {
    commands: crossbeam_channel::Receiver<Command>,
    wakes: crossbeam_channel::Receiver<()>,
}

impl Inbox {
    /// Waits up to `d` for a command only (wake-ups stay pending for [`Inbox::next`]).
    fn pause(&self, d: Duration) -> Option<Command> {
        if d.is_zero() {
            return None;
        }
        match self.commands.recv_timeout(d) {
            Ok(c) => Some(c),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Some(Command::Stop),
        }
    }

    /// The next command, waiting up to `wait` for one or for a wake-up (`None`: poll again). A closed
    /// command channel is a stop.
    fn next(&self, wait: Duration) -> Option<Command> {
        match self.commands.try_recv() {
            Ok(c) => return Some(c),
            Err(crossbeam_channel::TryRecvError::Disconnected) => return Some(Command::Stop),
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
        if wait.is_zero() {
            // Polling again at once: that poll sees whatever the pending wake-up was about.
            let _ = self.wakes.try_recv();
            return None;
        }
        crossbeam_channel::select_biased! {
            recv(self.commands) -> c => Some(c.unwrap_or(Command::Stop)),
            recv(self.wakes) -> _ => None,
            default(wait) => None,
        }
    }
}

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Ignore (and later overwrite) an existing checkpoint.
    pub fresh: bool,
}

/// Sources read together, in event-time order ([`merge`]): every conn source with every context source,
/// then each interim kind (open_conn, conn_long) on its own, in config order within a group.
struct SourceGroup {
    sources: Vec<usize>,
    merge: merge::Group,
}

impl SourceGroup {
    fn of(sources: &[crate::config::Source]) -> Vec<SourceGroup> {
        let class = |k: SourceKind| match k {
            SourceKind::OpenConn | SourceKind::ConnLong => Some(k),
            _ => None,
        };
        let mut classes: Vec<Option<SourceKind>> = Vec::new();
        for s in sources {
            if !classes.contains(&class(s.kind)) {
                classes.push(class(s.kind));
            }
        }
        // The conn and context group first: a context record read in a round names what follows.
        classes.sort_by_key(Option::is_some);
        classes
            .into_iter()
            .map(|c| {
                let members: Vec<usize> = (0..sources.len())
                    .filter(|&i| class(sources[i].kind) == c)
                    .collect();
                let roles: Vec<merge::Role> = members
                    .iter()
                    .map(|&i| match sources[i].kind.context() {
                        Some(_) => merge::Role::Context,
                        None => merge::Role::Conn,
                    })
                    .collect();
                SourceGroup {
                    sources: members,
                    merge: merge::Group::new(&roles),
                }
            })
            .collect()
    }
}

/// The pipeline: everything between the files and the outputs, on one thread.
struct Pipeline {
    config: Config,
    tailers: Vec<Tailer>,
    /// The sources read together in event-time order (`merge`), in the order they are polled.
    groups: Vec<SourceGroup>,
    /// When the longest wait of a group for a dry source ends (set by each round of polls).
    merge_wait: Option<Instant>,
    detector: Detector,
    spool: Spool,
    store: CheckpointStore,
    /// The window's groups, saved incrementally (`checkpoint.json` names the part committed).
    group_store: GroupStore,
    /// Deltas appended since the last full write of the group store.
    deltas: u64,
    skipped_logged: SkippedLines<PathBuf>,
    alerts_buf: Vec<crate::alert::Alert>,
    /// Records held back within one poll for [`Detector::process_all`] (empty between polls).
    held: Vec<crate::zeek::ConnRecord>,
    alerts_written: u64,
    records: u64,
    /// sd_notify and metrics (`daemon/health.rs`).
    health: health::Health,
    /// The source positions of the last checkpoint saved, and whether a reload changed the detector since:
    /// with neither changed, the saved state is still current and is not written again.
    saved_sources: Option<Vec<SourceCheckpoint>>,
    reconfigured: bool,
    /// No checkpoint was loaded: the positions of the files opened are saved before anything is read.
    first_start: bool,
    /// Failures that repeat while a disk is full, logged at a limited rate.
    faults: Faults,
    /// What the caller sees of our progress, and the outputs' counters summed into it.
    progress: Arc<watch::Sender<Progress>>,
    output_stats: Vec<Arc<OutputStats>>,
    checkpoints: u64,
    /// Held while we run: no second daemon on this state directory.
    _state_lock: std::fs::File,
}

impl Pipeline {
    fn start(
        config: Config,
        opts: &RunOptions,
        progress: Arc<watch::Sender<Progress>>,
    ) -> anyhow::Result<Pipeline> {
        let store = CheckpointStore::new(&config.state.dir);
        store
            .prepare()
            .map_err(|e| anyhow::anyhow!("state directory {}: {e}", config.state.dir.display()))?;
        let state_lock = store.lock().map_err(|e| anyhow::anyhow!(e))?;
        let mut group_store = GroupStore::new(&config.state.dir);
        let saved = if opts.fresh {
            None
        } else {
            match restore(&store, &config) {
                Ok(s) => s,
                Err(LoadError::SetAside(e)) => {
                    error!("{e}");
                    None
                }
                // Starting without it would read every log again and then overwrite it.
                Err(LoadError::Unreadable(e)) => anyhow::bail!("{e}"),
            }
        };
        let first_start = saved.is_none();
        let (mut detector, mut saved_sources) = match saved {
            Some((detector, sources, groups)) => {
                match groups {
                    Some(r) => {
                        info!(path = %store.path().display(), groups = %r.file, "checkpoint restored");
                        group_store.adopt(r);
                    }
                    None => info!(
                        path = %store.path().display(),
                        "checkpoint restored (of an earlier build, or under another window length or \
                         grouping: the next checkpoint writes the group store whole)"
                    ),
                }
                (detector, sources)
            }
            None => (Detector::new(&config.detector()), Vec::new()),
        };
        detector.track_changes();
        let mut tailers: Vec<Tailer> = config
            .sources
            .iter()
            .map(|src| {
                let saved = saved_sources
                    .iter()
                    .position(|c| c.path == src.path)
                    .map(|i| saved_sources.swap_remove(i));
                Tailer::new(src, crate::detector::parse_options(), saved)
                    .with_poll_budget(POLL_BUDGET)
            })
            .collect();
        let spool_dir = config.state.dir.join("spool");
        let spool = Spool::open(
            &spool_dir,
            SpoolOptions {
                max_bytes: config.spool.max_bytes,
                segment_bytes: DEFAULT_SEGMENT_BYTES.min(config.spool.max_bytes / 4),
            },
        )?;
        let health = health::Health::new(&config.sources);
        let groups = SourceGroup::of(&config.sources);
        for g in groups.iter().filter(|g| g.sources.len() > 1) {
            // A merged source is read a few records at a time, up to the record the merge holds: lines
            // parsed ahead past it would mostly be parsed again (`tail/ahead.rs`).
            for &i in &g.sources {
                tailers[i].set_parse_ahead(false);
            }
        }
        Ok(Pipeline {
            config,
            tailers,
            groups,
            merge_wait: None,
            detector,
            spool,
            store,
            group_store,
            deltas: 0,
            skipped_logged: SkippedLines::default(),
            alerts_buf: Vec::new(),
            held: Vec::with_capacity(DETECT_BATCH),
            alerts_written: 0,
            records: 0,
            health,
            saved_sources: None,
            reconfigured: false,
            first_start,
            faults: Faults::default(),
            progress,
            output_stats: Vec::new(),
            checkpoints: 0,
            _state_lock: state_lock,
        })
    }

    fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.tailers.iter().flat_map(Tailer::watch_dirs).collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Reads what is available from every source (up to the poll budget), group by group (see
    /// [`merge`]): conn and context sources first. Returns the bytes read plus the records handed over
    /// (0: nothing new). A group whose next records wait for a source with nothing to read sets
    /// `merge_wait` to when that wait ends.
    fn poll_all(&mut self) -> u64 {
        self.merge_wait = None;
        let mut total = 0;
        let mut progress = 0;
        for g in 0..self.groups.len() {
            let (records, bytes) = if self.groups[g].sources.len() == 1 {
                let i = self.groups[g].sources[0];
                self.poll_source(i, true, None)
            } else {
                self.poll_merged(g)
            };
            total += records;
            progress += records + bytes;
        }
        self.records += total;
        progress
    }

    /// One round of a merged group: every source is looked at once (its next record read and held), then
    /// the source whose next record comes first in the merged order is read on, until every source is dry,
    /// the rest waits for a dry one, or the round read its budget. Returns (records, bytes).
    fn poll_merged(&mut self, g: usize) -> (u64, u64) {
        let now = Instant::now();
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let sources = self.groups[g].sources.clone();
        let (mut records, mut bytes) = (0, 0);
        for (m, &i) in sources.iter().enumerate() {
            let (r, b) = self.poll_source(i, true, Some((g, m, None)));
            records += r;
            bytes += b;
            if !self.tailers[i].holds() {
                self.groups[g].merge.dry(m, now);
            }
        }
        let budget = POLL_BUDGET.saturating_mul(sources.len() as u64);
        while bytes < budget && self.alerts_buf.is_empty() {
            match self.groups[g].merge.next(now, wall) {
                merge::Next::Done => break,
                merge::Next::Wait(until) => {
                    self.merge_wait = Some(self.merge_wait.map_or(until, |w| w.min(until)));
                    break;
                }
                merge::Next::Read { member, limit } => {
                    let i = sources[member];
                    let (r, b) = self.poll_source(i, false, Some((g, member, Some(limit))));
                    records += r;
                    bytes += b;
                    if !self.tailers[i].holds() {
                        self.groups[g].merge.dry(member, now);
                    }
                }
            }
        }
        (records, bytes)
    }

    /// Polls source `i` (with `look`, the configured path is looked at for rotations). With a gate
    /// `(group, member, limit)`: records are read while `limit` admits them in the group's merged order
    /// (no limit: none, the next record is only read and held). Returns (records, bytes).
    fn poll_source(
        &mut self,
        i: usize,
        look: bool,
        gate: Option<(usize, usize, Option<merge::Limit>)>,
    ) -> (u64, u64) {
        let Pipeline {
            tailers,
            detector,
            held,
            alerts_buf: alerts,
            skipped_logged,
            health,
            groups,
            ..
        } = self;
        let before = detector.stats();
        let mut records = 0u64;
        let kind = tailers[i].kind();
        let mut admit_all = |_: Option<f64>| true;
        let mut gated = |t: Option<f64>| match gate {
            Some((g, m, limit)) => {
                let merge = &mut groups[g].merge;
                let admitted = limit.is_some_and(|l| l.admits(&merge.rank(m, t)));
                if admitted {
                    merge.taken(m, t);
                } else {
                    merge.holds(m, t);
                }
                admitted
            }
            None => true,
        };
        let gate_fn: crate::tail::Gate<'_> = if gate.is_some() {
            &mut gated
        } else {
            &mut admit_all
        };
        // Records are held back within this poll, up to `DETECT_BATCH`, so that the detector can prefetch
        // ahead (`Detector::process_all`). Any other event, and the end of the poll, first runs the held
        // records: the detector sees everything in file order and is up to date when the poll returns.
        let result = tailers[i].poll_gated(look, gate_fn, &mut |ev| match ev {
            TailEvent::Record { rec, .. } => {
                records += 1;
                held.push(rec);
                if held.len() >= DETECT_BATCH {
                    detector.process_all(held, kind, alerts);
                    held.clear();
                }
                health.record();
            }
            ev => {
                if !held.is_empty() {
                    detector.process_all(held, kind, alerts);
                    held.clear();
                }
                match ev {
                    // Taken by the arm above.
                    TailEvent::Record { .. } => {}
            TailEvent::Context { rec } => {
                records += 1;
                detector.process_context(&rec);
                health.record();
            }
            TailEvent::Skipped {
                path,
                line_no,
                reason,
            } => {
                health.skipped(i, reason.kind());
                match skipped_logged.count(path.to_path_buf()) {
                    Show::Line => warn!(file = %path.display(), line = line_no, reason = reason.kind(), "skipped line: {reason}"),
                    Show::FirstHidden => warn!(file = %path.display(), "more skipped lines in this file; counting without logging"),
                    Show::Hidden => {}
                }
            }
            TailEvent::Rotated { from, to } => match to {
                Some(to) => info!(from = %from.display(), to = %to.display(), "file rotated"),
                None => info!(from = %from.display(), "file rotated (moved out of the directory or deleted)"),
            },
            TailEvent::Opened { path, resumed_at } => {
                info!(file = %path.display(), offset = resumed_at, "reading file");
            }
            TailEvent::Truncated { path } => {
                warn!(file = %path.display(), "file truncated or replaced: reading it from the start");
            }
            TailEvent::Finished { path } => {
                debug!(file = %path.display(), "rotated file finished");
            }
            TailEvent::Nul {
                path,
                offset,
                bytes,
            } => {
                health.nul_bytes(i, bytes);
                if skipped_logged.count(path.to_path_buf()) == Show::Line {
                    warn!(file = %path.display(), offset, bytes, "skipped a run of NUL bytes (a writer without O_APPEND after a truncation)");
                }
            }
            TailEvent::Lost { path, offset } => {
                error!(file = %path.display(), offset, "a file in the checkpoint is gone: the rest of it was not read");
            }
                }
            }
        });
        if !held.is_empty() {
            detector.process_all(held, kind, alerts);
            held.clear();
        }
        let mut bytes = 0;
        match result {
            Ok(stats) => {
                bytes = stats.bytes;
                if look {
                    let state = if self.tailers[i].is_idle() {
                        health::SourceState::Missing
                    } else {
                        health::SourceState::Up
                    };
                    self.health.source_state(i, state);
                }
            }
            // Logged once per change by the health state (never every poll); positions are kept.
            Err(e) => self
                .health
                .source_state(i, health::SourceState::Unreadable(e.to_string())),
        }
        if records > 0 {
            self.health
                .polled(i, records, &before, &self.detector.stats());
        }
        // Write alerts as they come, so a slow output slows reading.
        if !self.alerts_buf.is_empty() {
            self.write_alerts();
        }
        (records, bytes)
    }

    /// Appends the pending alerts to the spool. Alerts that cannot be appended (disk full, I/O error) stay
    /// pending: reading pauses and no checkpoint is saved until they are in.
    fn write_alerts(&mut self) {
        let mut done = 0;
        for a in &self.alerts_buf {
            if let Err(e) = self.spool.append(a) {
                if let Some(n) = self.faults.append.hit() {
                    error!(
                        times = n,
                        "appending an alert to the spool failed; reading paused, will retry: {e}"
                    );
                }
                break;
            }
            done += 1;
        }
        if done > 0 {
            if let Some((n, d)) = self.faults.append.end() {
                info!(
                    times = n,
                    seconds = d.as_secs(),
                    "alerts are appended to the spool again"
                );
            }
        }
        self.alerts_buf.drain(..done);
        self.alerts_written += done as u64;
    }

    /// Makes appended alerts durable and visible to the outputs.
    fn sync_spool(&mut self) -> bool {
        match self.spool.sync() {
            Ok(()) => {
                if let Some((n, d)) = self.faults.sync.end() {
                    info!(times = n, seconds = d.as_secs(), "the spool syncs again");
                }
                true
            }
            Err(e) => {
                if let Some(n) = self.faults.sync.hit() {
                    error!(times = n, "syncing the spool failed: {e}");
                }
                false
            }
        }
    }

    /// Syncs the spool, then saves positions and detector state together (the at-least-once ordering).
    /// Returns the bytes written (0 when the saved state is still current), a full write of the group store
    /// (a compaction) spread over the deltas before it, so that one compaction does not stretch the cadence
    /// (its cost is paid once per that many checkpoints); or why nothing was saved.
    fn checkpoint(&mut self) -> Result<u64, CheckpointNotSaved> {
        if !self.alerts_buf.is_empty() || !self.sync_spool() {
            // Not saving keeps the records re-readable: their alerts are raised again after a restart.
            if let Some(n) = self.faults.checkpoint.hit() {
                error!(times = n, "alerts not yet in the spool: checkpoint skipped");
            }
            return Err(CheckpointNotSaved);
        }
        let sources: Vec<SourceCheckpoint> = self.tailers.iter().map(Tailer::checkpoint).collect();
        if !self.reconfigured && self.saved_sources.as_ref() == Some(&sources) {
            // Nothing read and no reload since the last one: the saved state is still the current one.
            self.health.checkpoint_saved();
            self.checkpoints += 1;
            return Ok(0);
        }
        // The groups first (a delta appended, or a full write), fsynced; then checkpoint.json, whose rename
        // commits them together with the positions.
        let pending = match self.group_store.write(&self.detector) {
            Ok(p) => p,
            Err(e) => {
                if let Some(n) = self.faults.checkpoint.hit() {
                    error!(path = %self.store.path().display(), times = n, "writing checkpoint failed: {e}");
                }
                return Err(CheckpointNotSaved);
            }
        };
        let state = Saved {
            version: STATE_VERSION,
            sources,
            detector: self.detector.snapshot_header(),
            groups_store: Some(pending.store.clone()),
        };
        match self.store.save(&state) {
            Ok(size) => {
                let size = if pending.is_full() {
                    let spread = pending.bytes / (self.deltas + 1);
                    self.deltas = 0;
                    size + spread
                } else {
                    self.deltas += 1;
                    size + pending.bytes
                };
                self.group_store.commit(pending);
                self.detector.clear_changes();
                if let Some((n, d)) = self.faults.checkpoint.end() {
                    info!(
                        times = n,
                        seconds = d.as_secs(),
                        "checkpoints are saved again"
                    );
                }
                self.health.checkpoint_saved();
                self.checkpoints += 1;
                self.saved_sources = Some(state.sources);
                self.reconfigured = false;
                Ok(size)
            }
            Err(e) => {
                self.group_store.abandon(pending);
                if let Some(n) = self.faults.checkpoint.hit() {
                    error!(path = %self.store.path().display(), times = n, "writing checkpoint failed: {e}");
                }
                Err(CheckpointNotSaved)
            }
        }
    }

    fn reload(&mut self, config: Config) {
        self.detector.reconfigure(&config.detector());
        self.reconfigured = true;
        if config.outputs != self.config.outputs || config.spool != self.config.spool {
            warn!("changes to [[output]] and [spool] take effect at the next restart");
        }
        if config.metrics != self.config.metrics {
            warn!("changes to [metrics] take effect at the next restart");
        }
        if config.sources != self.config.sources {
            warn!("changes to [[source]] take effect at the next restart");
        }
        self.config = config;
        info!("configuration reloaded");
    }

    /// A first start (no checkpoint): open every source and save those positions at once, before reading,
    /// so a kill before the first periodic checkpoint does not restart at the live path and miss the files
    /// rotated since (tailing scenario 25).
    fn save_first_positions(&mut self) {
        for i in 0..self.tailers.len() {
            let result = self.tailers[i].start(&mut |ev| {
                if let TailEvent::Opened { path, resumed_at } = ev {
                    info!(file = %path.display(), offset = resumed_at, "reading file");
                }
            });
            if let Err(e) = result {
                self.health
                    .source_state(i, health::SourceState::Unreadable(e.to_string()));
            }
        }
        // A failure is logged; the periodic checkpoints try again.
        let _ = self.checkpoint();
    }

    /// Publishes what the caller may await (after each round of polls and each command).
    fn publish(&self, caught_up: bool, reloaded: bool) {
        let p = Progress {
            ready: true,
            rounds: 0,
            records: self.records,
            caught_up,
            alerts_spooled: self.alerts_written,
            alerts_delivered: self
                .output_stats
                .iter()
                .map(|s| s.delivered.load(Ordering::Relaxed))
                .sum(),
            checkpoints: self.checkpoints,
            reloads: 0,
        };
        self.progress.send_modify(|old| {
            let rounds = old.rounds + u64::from(!reloaded);
            let reloads = old.reloads + u64::from(reloaded);
            *old = Progress {
                rounds,
                reloads,
                ..p
            };
        });
    }

    fn run(mut self, inbox: Inbox, mut watches: Watches) -> Result<(), CheckpointNotSaved> {
        if self.first_start {
            self.save_first_positions();
        }
        let mut last_checkpoint = Instant::now();
        let mut last_watch_check = Instant::now();
        // A large window makes a checkpoint slow and big (it holds every interval): never spend more than a
        // tenth of the time writing them, nor write more than MAX_CHECKPOINT_RATE on average, whatever the
        // configured interval. A crash then re-reads a little more; a stop always saves.
        let mut last_cost = Duration::ZERO;
        let mut last_size = 0u64;
        loop {
            // Pending alerts (the spool refused them) or a full spool: do not read, let outputs catch up.
            let (n, polled) = if !self.alerts_buf.is_empty() {
                self.write_alerts();
                (0, false)
            } else if self.spool.is_full() {
                (0, false)
            } else {
                (self.poll_all(), true)
            };
            if self.spool.has_unsynced() {
                // Hand new alerts to the outputs now, not only at the next checkpoint.
                self.sync_spool();
            }
            self.report(); // READY=1 the first time, watchdog, status, gauges
            let interval =
                checkpoint_interval(self.config.state.checkpoint_interval, last_cost, last_size);
            if last_checkpoint.elapsed() >= interval {
                let started = Instant::now();
                let size = self.checkpoint().unwrap_or(0);
                last_checkpoint = Instant::now();
                if size > 0 {
                    last_cost = started.elapsed();
                    last_size = size;
                    debug!(
                        seconds = last_cost.as_secs_f64(),
                        bytes = size,
                        "checkpoint written"
                    );
                }
            }
            if last_watch_check.elapsed() >= WATCH_REFRESH {
                // A rotation or a re-pointed `current` symlink can move the directories to watch.
                watches.refresh(self.watch_dirs());
                last_watch_check = Instant::now();
            }
            let waiting = self.merge_wait.filter(|_| polled);
            self.publish(
                polled && n == 0 && self.alerts_buf.is_empty() && waiting.is_none(),
                false,
            );
            let wait = if n > 0 { Duration::ZERO } else { RECHECK };
            // Records waiting for a dry source go on when that wait ends.
            let wait = waiting.map_or(wait, |w| {
                wait.min(w.saturating_duration_since(Instant::now()))
            });
            let wait = self.health.max_wait(wait);
            // Waiting for a dry source, and nothing moved: the next look at the files is not taken sooner
            // than MERGE_RECHECK, whatever wakes us (our own look at them does).
            let pause = match waiting {
                Some(w) if n == 0 => MERGE_RECHECK.min(w.saturating_duration_since(Instant::now())),
                _ => Duration::ZERO,
            };
            let command = match inbox.pause(pause) {
                Some(c) => Some(c),
                None => inbox.next(wait.saturating_sub(pause)),
            };
            match command {
                None => {}
                Some(Command::Reload(cfg)) => {
                    self.reload(*cfg);
                    self.health.reloaded(); // READY=1 after RELOADING=1
                    self.publish(false, true);
                }
                Some(Command::Stop) => break,
            }
        }
        // One more try for alerts the spool refused (the outputs may have freed room since).
        self.write_alerts();
        let saved = self.checkpoint();
        let stats = self.detector.stats();
        match saved {
            Ok(_) => info!(
                records = self.records,
                alerts = self.alerts_written,
                groups = stats.groups_tracked,
                "stopped; checkpoint saved"
            ),
            Err(_) => error!(
                records = self.records,
                alerts = self.alerts_written,
                groups = stats.groups_tracked,
                "stopped; the final checkpoint was NOT saved: the next start resumes from the last one saved \
                 and reads the records since then again (their alerts are raised again, same event.id)"
            ),
        }
        saved.map(|_| ())
    }
}

/// What a checkpoint restores: the detector, the file positions, and the group store to continue.
type Restored = (Detector, Vec<SourceCheckpoint>, Option<StoreRef>);

/// Reads the checkpoint in `store` and the group store it names, and rebuilds the detector under `config`:
/// the detector, the file positions, and the group store to continue (`None`: a checkpoint of an earlier
/// build, groups inline). A damaged or foreign group store sets the checkpoint aside, as a damaged
/// `checkpoint.json` is.
fn restore(store: &CheckpointStore, config: &Config) -> Result<Option<Restored>, LoadError> {
    let dir = config.state.dir.clone();
    store.load_then::<Saved, _>(STATE_VERSION, |s| {
        let cfg = config.detector();
        let saved_window = (
            s.detector.window.length_us,
            s.detector.window.group_by.clone(),
        );
        let detector = match &s.groups_store {
            None => Detector::restore(&cfg, s.detector),
            Some(r) => {
                Detector::restore_with(&cfg, s.detector, |w, c, i| groups::load(&dir, r, w, c, i))
                    .map_err(|e| match e {
                    StoreError::Damaged(m) => {
                        LoadError::SetAside(format!("damaged checkpoint: {m}"))
                    }
                    StoreError::Unreadable(m) => LoadError::Unreadable(m),
                })?
            }
        };
        // A new window length or grouping in the config changed every group (or emptied the window): the
        // store no longer holds them, the next checkpoint is a full write.
        let now = detector.window().state_header::<()>();
        let store = s
            .groups_store
            .filter(|_| (now.length_us, now.group_by) == saved_window);
        Ok((detector, s.sources, store))
    })
}

/// The daemon stopped without saving its final checkpoint (the reason was logged): `run` exits with
/// [`CheckpointNotSaved::EXIT_CODE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the final checkpoint was not saved")]
pub struct CheckpointNotSaved;

impl CheckpointNotSaved {
    /// EX_TEMPFAIL from sysexits.h: nothing is lost, but the stop was not clean.
    pub const EXIT_CODE: u8 = 75;
}

/// Runs the daemon until the caller sends [`Control::Stop`] (or drops every sender of `control`).
/// [`Control::Reload`] re-reads `config_path`; a bad config is logged and the running one kept. What the daemon
/// has done is published on `progress`. Installs no signal handler: `main` turns signals into `control`.
pub async fn run(
    config_path: &Path,
    config: Config,
    opts: RunOptions,
    mut control: mpsc::Receiver<Control>,
    progress: watch::Sender<Progress>,
) -> anyhow::Result<()> {
    let progress = Arc::new(progress);
    // Before the pipeline resolves its metric handles.
    let _metrics = match config.metrics.listen {
        Some(addr) => Some(crate::metrics::serve(addr).await?),
        None => None,
    };
    let notifier = crate::notify::Notifier::from_env();
    let mut pipeline = Pipeline::start(config, &opts, progress.clone())?;
    let reopen = ReopenGeneration::default();
    let (stop_delivery, deliveries) = start_delivery(&pipeline, &reopen)?;
    if _metrics.is_some() {
        crate::metrics::outputs(
            deliveries
                .iter()
                .map(|d| (d.name.clone(), d.stats.clone()))
                .collect(),
        );
    }
    pipeline.output_stats = deliveries.iter().map(|d| d.stats.clone()).collect();
    let (commands, commands_rx) = crossbeam_channel::unbounded::<Command>();
    let (wake, wakes) = crossbeam_channel::bounded::<()>(1);
    let inbox = Inbox {
        commands: commands_rx,
        wakes,
    };
    let mut watches = Watches {
        watcher: None,
        dirs: Vec::new(),
        wake,
    };
    watches.refresh(pipeline.watch_dirs());
    info!(sources = pipeline.tailers.len(), "longconn running");
    // A thread of its own rather than `spawn_blocking`: a runtime waits for its blocking tasks when it is
    // dropped, which would make the stop deadline below a wish.
    let (done, worker) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            let _ = done.send(pipeline.run(inbox, watches));
        })?;
    loop {
        match control.recv().await {
            Some(Control::Reload) => {
                notifier.reloading(); // the pipeline says READY=1 once it has applied it
                                      // File outputs reopen before their next batch (logrotate moved them away).
                reopen.fetch_add(1, Ordering::Relaxed);
                // The preflight too, so a bare SIGHUP refuses what `check` refuses.
                match crate::config::preflight::load(config_path) {
                    Ok((cfg, _warnings)) => {
                        let _ = commands.send(Command::Reload(Box::new(cfg)));
                    }
                    Err(e) => {
                        error!("reload refused, keeping the running configuration:\n{e}");
                        notifier.ready();
                        progress.send_modify(|p| p.reloads += 1);
                    }
                }
            }
            Some(Control::Stop) | None => {
                notifier.stopping();
                info!("stopping");
                let _ = commands.send(Command::Stop);
                break;
            }
        }
    }
    let result = match tokio::time::timeout(STOP_DEADLINE, worker).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(_)) => Err(anyhow::anyhow!(
            "pipeline failed: the pipeline thread panicked"
        )),
        Err(_) => Err(anyhow::anyhow!(
            "pipeline did not stop within {STOP_DEADLINE:?}"
        )),
    };
    stop_deliveries(stop_delivery, deliveries).await;
    result
}

/// One running output: its task and counters.
struct DeliveryTask {
    name: String,
    handle: tokio::task::JoinHandle<()>,
    stats: Arc<OutputStats>,
}

/// Builds the outputs and starts one delivery task per output, each reading the spool from its cursor.
fn start_delivery(
    pipeline: &Pipeline,
    reopen: &ReopenGeneration,
) -> anyhow::Result<(tokio::sync::watch::Sender<bool>, Vec<DeliveryTask>)> {
    let outputs =
        output::build(&pipeline.config.outputs, reopen).map_err(|e| anyhow::anyhow!(e))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (out, cfg) in outputs.into_iter().zip(&pipeline.config.outputs) {
        let reader = pipeline.spool.reader(cfg.name())?;
        let stats = Arc::new(OutputStats::default());
        let handle = tokio::spawn(delivery::run(
            out,
            reader,
            cfg.batching(),
            stop_rx.clone(),
            stats.clone(),
        ));
        tasks.push(DeliveryTask {
            name: cfg.name().to_string(),
            handle,
            stats,
        });
    }
    Ok((stop_tx, tasks))
}

/// Lets delivery tasks flush for [`DELIVERY_GRACE`], then drops them (their cursors are saved per batch).
async fn stop_deliveries(stop: tokio::sync::watch::Sender<bool>, tasks: Vec<DeliveryTask>) {
    let _ = stop.send(true);
    let deadline = tokio::time::Instant::now() + DELIVERY_GRACE;
    for mut t in tasks {
        let finished = tokio::time::timeout_at(deadline, &mut t.handle)
            .await
            .is_ok();
        if !finished {
            t.handle.abort();
            warn!(output = %t.name, "output did not finish within the grace period; its undelivered alerts stay in the spool");
        }
        info!(
            output = %t.name,
            delivered = t.stats.delivered.load(Ordering::Relaxed),
            transient_failures = t.stats.transient_failures.load(Ordering::Relaxed),
            permanently_failed = t.stats.permanently_failed.load(Ordering::Relaxed),
            "output stopped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_failure_is_logged_once_then_at_a_slow_rate_and_when_it_ends() {
        let mut e = Episode::default();
        assert_eq!(e.end(), None, "nothing had failed");
        assert_eq!(e.hit(), Some(1));
        for _ in 0..1000 {
            assert_eq!(e.hit(), None, "250 ms polls on a full disk do not each log");
        }
        let (n, _) = e.end().expect("it had failed");
        assert_eq!(n, 1001);
        assert_eq!(e.hit(), Some(1), "a new episode is logged at once");
    }

    #[test]
    fn a_stop_is_never_queued_behind_wake_ups() {
        let (commands, commands_rx) = crossbeam_channel::unbounded();
        let (wake, wakes) = crossbeam_channel::bounded(1);
        let inbox = Inbox {
            commands: commands_rx,
            wakes,
        };
        // A busy file: thousands of notifications, coalesced into one pending wake-up.
        for _ in 0..10_000 {
            let _ = wake.try_send(());
        }
        assert_eq!(inbox.wakes.len(), 1);
        commands.send(Command::Stop).expect("send");
        let started = Instant::now();
        assert!(matches!(inbox.next(RECHECK), Some(Command::Stop)));
        assert!(started.elapsed() < RECHECK, "taken before the wake-up");
        // The pending wake-up makes the next wait return at once; then it waits for the next one.
        assert!(inbox.next(RECHECK).is_none());
        assert!(inbox.wakes.is_empty());
        drop(commands);
        assert!(
            matches!(inbox.next(Duration::ZERO), Some(Command::Stop)),
            "a caller gone is a stop"
        );
    }

    #[test]
    fn checkpoint_cadence_bounds_time_and_bytes_spent_writing() {
        let five = Duration::from_secs(5);
        // A small window: the configured interval.
        assert_eq!(
            checkpoint_interval(five, Duration::from_millis(3), 200_000),
            five
        );
        // A slow write: at most a tenth of the time.
        assert_eq!(
            checkpoint_interval(five, Duration::from_secs(2), 1_000_000),
            Duration::from_secs(20)
        );
        // A big one: at most MAX_CHECKPOINT_RATE on average (100 MiB: every 100 s).
        assert_eq!(
            checkpoint_interval(five, Duration::from_millis(300), 100 * 1024 * 1024),
            Duration::from_secs(100)
        );
    }
}
