//! The daemon (`longconn run`): wiring only. It restores the checkpoint, starts one [`Tailer`] per source, and
//! runs the pipeline tail -> parse -> detector -> outputs on one blocking thread, while the async side turns
//! signals and file-system notifications into control messages for it.
//!
//! Ordering invariant: alerts are written and flushed to every output before the checkpoint that covers the
//! records that raised them is saved. So after SIGTERM nothing is read twice or lost; after SIGKILL the
//! records since the last checkpoint are read again and raise the same alerts with the same `event.id`.
//! Backpressure: outputs are written synchronously, so a slow output slows reading (the log file is the
//! buffer); nothing is dropped.
//!
//! What the daemon tells systemd (readiness, reloads, the watchdog, a status line) and Prometheus lives in
//! `daemon/health.rs`; the pipeline calls into it at a few marked points.

mod health;

use crate::checkpoint::CheckpointStore;
use crate::config::Config;
use crate::detector::{Detector, DetectorState};
use crate::output::{self, Output};
use crate::signal::{Signal, Signals};
use crate::tail::{SourceCheckpoint, TailEvent, Tailer};
use crate::zeek::ParseOptions;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// What is saved in the state directory.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    pub sources: Vec<SourceCheckpoint>,
    pub detector: DetectorState,
}

const STATE_VERSION: u32 = 1;

/// How often sources are re-checked when no notification arrives (lost events, NFS, no inotify).
const RECHECK: Duration = Duration::from_millis(250);

/// How long a graceful stop may take.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Bytes read from one live file per poll: keeps a large backlog from delaying alerts, checkpoints and stop.
const POLL_BUDGET: u64 = 16 * 1024 * 1024;

/// Skipped lines logged per source before going quiet (all are counted).
const SKIP_LOG_LIMIT: u64 = 20;

/// Messages from the async side to the pipeline thread.
#[derive(Debug)]
pub enum Control {
    /// Something changed on disk: poll now.
    Wake,
    /// Apply a new, already validated config.
    Reload(Box<Config>),
    /// Drain, checkpoint and stop.
    Stop,
}

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Ignore (and later overwrite) an existing checkpoint.
    pub fresh: bool,
}

fn parse_options() -> ParseOptions {
    ParseOptions::default()
}

/// The pipeline: everything between the files and the outputs, on one thread.
struct Pipeline {
    config: Config,
    tailers: Vec<Tailer>,
    detector: Detector,
    outputs: Vec<Box<dyn Output>>,
    store: CheckpointStore,
    skipped_logged: HashMap<PathBuf, u64>,
    alerts_buf: Vec<crate::alert::Alert>,
    alerts_written: u64,
    records: u64,
    /// sd_notify and metrics (`daemon/health.rs`).
    health: health::Health,
}

impl Pipeline {
    fn start(config: Config, opts: &RunOptions) -> anyhow::Result<Pipeline> {
        let store = CheckpointStore::new(&config.state.dir);
        store
            .prepare()
            .map_err(|e| anyhow::anyhow!("state directory {}: {e}", config.state.dir.display()))?;
        let saved: Option<SavedState> = if opts.fresh {
            None
        } else {
            match store.load::<SavedState>() {
                Ok(s) => s,
                Err(e) => {
                    error!("{e}");
                    None
                }
            }
        };
        let (detector, mut saved_sources) = match saved {
            Some(s) if s.version == STATE_VERSION => {
                info!(path = %store.path().display(), "checkpoint restored");
                (Detector::restore(&config, s.detector), s.sources)
            }
            Some(s) => {
                warn!(version = s.version, "checkpoint of another version ignored");
                (Detector::new(&config), Vec::new())
            }
            None => (Detector::new(&config), Vec::new()),
        };
        let tailers = config
            .sources
            .iter()
            .map(|src| {
                let saved = saved_sources
                    .iter()
                    .position(|c| c.path == src.path)
                    .map(|i| saved_sources.swap_remove(i));
                Tailer::new(src, parse_options(), saved).with_poll_budget(POLL_BUDGET)
            })
            .collect();
        let outputs = output::build(&config.outputs)?;
        let health = health::Health::new(&config.sources);
        Ok(Pipeline {
            config,
            tailers,
            detector,
            outputs,
            store,
            skipped_logged: HashMap::new(),
            alerts_buf: Vec::new(),
            alerts_written: 0,
            records: 0,
            health,
        })
    }

    fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.tailers.iter().flat_map(Tailer::watch_dirs).collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Reads what is available from every source (up to the poll budget); returns the bytes read.
    fn poll_all(&mut self) -> u64 {
        let mut total = 0;
        let mut bytes = 0;
        for i in 0..self.tailers.len() {
            let detector = &mut self.detector;
            let alerts = &mut self.alerts_buf;
            let skipped_logged = &mut self.skipped_logged;
            let health = &mut self.health;
            let before = detector.stats();
            let mut records = 0u64;
            let kind = self.tailers[i].kind();
            let result = self.tailers[i].poll(&mut |ev| match ev {
                TailEvent::Record { rec, .. } => {
                    records += 1;
                    detector.process(&rec, kind, alerts);
                    health.record();
                }
                TailEvent::Skipped {
                    path,
                    line_no,
                    reason,
                } => {
                    health.skipped(i, reason.kind());
                    let n = skipped_logged.entry(path.to_path_buf()).or_default();
                    *n += 1;
                    if *n <= SKIP_LOG_LIMIT {
                        warn!(file = %path.display(), line = line_no, reason = reason.kind(), "skipped line: {reason}");
                    } else if *n == SKIP_LOG_LIMIT + 1 {
                        warn!(file = %path.display(), "more skipped lines in this file; counting without logging");
                    }
                }
                TailEvent::Rotated { from, to } => {
                    info!(from = %from.display(), to = ?to, "file rotated");
                }
                TailEvent::Opened { path, resumed_at } => {
                    info!(file = %path.display(), offset = resumed_at, "reading file");
                }
                TailEvent::Truncated { path } => {
                    warn!(file = %path.display(), "file truncated or replaced: reading it from the start");
                }
                TailEvent::Finished { path } => {
                    debug!(file = %path.display(), "rotated file finished");
                }
                TailEvent::Lost { path, offset } => {
                    error!(file = %path.display(), offset, "a file in the checkpoint is gone: the rest of it was not read");
                }
            });
            match result {
                Ok(stats) => bytes += stats.bytes,
                Err(e) => {
                    warn!(source = %self.tailers[i].path().display(), "reading failed, will retry: {e}")
                }
            }
            self.health
                .polled(i, records, &before, &self.detector.stats());
            total += records;
            // Write alerts as they come, so a slow output slows reading.
            self.write_alerts();
        }
        self.records += total;
        bytes
    }

    fn write_alerts(&mut self) {
        if self.alerts_buf.is_empty() {
            return;
        }
        for a in self.alerts_buf.drain(..) {
            let json = a.to_json();
            for o in self.outputs.iter_mut() {
                if let Err(e) = o.write_alert(&json) {
                    error!(output = %o.name(), "writing alert failed: {e}");
                }
            }
            self.alerts_written += 1;
        }
        // Alerts are due now, not at the next checkpoint.
        for o in self.outputs.iter_mut() {
            if let Err(e) = o.flush() {
                error!(output = %o.name(), "flushing alerts failed: {e}");
            }
        }
    }

    /// Flushes outputs, then saves positions and detector state together.
    fn checkpoint(&mut self) {
        for o in self.outputs.iter_mut() {
            if let Err(e) = o.flush() {
                // Not saving keeps the records re-readable: their alerts are raised again after a restart.
                error!(output = %o.name(), "flushing alerts failed, checkpoint skipped: {e}");
                return;
            }
        }
        let state = SavedState {
            version: STATE_VERSION,
            sources: self.tailers.iter().map(Tailer::checkpoint).collect(),
            detector: self.detector.snapshot(),
        };
        match self.store.save(&state) {
            Ok(()) => self.health.checkpoint_saved(),
            Err(e) => error!(path = %self.store.path().display(), "writing checkpoint failed: {e}"),
        }
    }

    fn reload(&mut self, config: Config) {
        self.detector.reconfigure(&config);
        if config.outputs != self.config.outputs {
            match output::build(&config.outputs) {
                Ok(new) => {
                    for o in self.outputs.iter_mut() {
                        let _ = o.flush();
                    }
                    self.outputs = new;
                }
                Err(e) => error!("new outputs could not be opened, keeping the old ones: {e}"),
            }
        } else {
            for o in self.outputs.iter_mut() {
                if let Err(e) = o.reopen() {
                    error!(output = %o.name(), "reopening failed: {e}");
                }
            }
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

    fn run(mut self, ctrl: mpsc::Receiver<Control>) {
        let mut last_checkpoint = Instant::now();
        // A large window makes a checkpoint slow (it holds every interval): never spend more than a tenth of
        // the time writing them, whatever the configured interval.
        let mut last_cost = Duration::ZERO;
        loop {
            let n = self.poll_all();
            self.report(); // READY=1 the first time, watchdog, status, gauges
            let interval = self.config.state.checkpoint_interval.max(last_cost * 10);
            if last_checkpoint.elapsed() >= interval {
                let started = Instant::now();
                self.checkpoint();
                last_checkpoint = Instant::now();
                last_cost = started.elapsed();
                debug!(seconds = last_cost.as_secs_f64(), "checkpoint written");
            }
            let wait = if n > 0 { Duration::ZERO } else { RECHECK };
            let wait = self.health.max_wait(wait);
            match ctrl.recv_timeout(wait) {
                Ok(Control::Wake) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Ok(Control::Reload(cfg)) => {
                    self.reload(*cfg);
                    self.health.reloaded(); // READY=1 after RELOADING=1
                }
                Ok(Control::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.checkpoint();
        let stats = self.detector.stats();
        info!(
            records = self.records,
            alerts = self.alerts_written,
            groups = stats.groups_tracked,
            "stopped; checkpoint saved"
        );
    }
}

/// Runs the daemon until SIGTERM/SIGINT. `config_path` is re-read on SIGHUP; a bad config is logged and the
/// running one kept.
pub async fn run(config_path: &Path, config: Config, opts: RunOptions) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    // Before the pipeline resolves its metric handles.
    let _metrics = match config.metrics.listen {
        Some(addr) => Some(crate::metrics::serve(addr).await?),
        None => None,
    };
    let notifier = crate::notify::Notifier::from_env();
    let pipeline = Pipeline::start(config, &opts)?;
    let (tx, rx) = mpsc::channel::<Control>();
    let wake_tx = tx.clone();
    let dirs = pipeline.watch_dirs();
    let _watcher = match crate::tail::watch::watch(&dirs, move || {
        let _ = wake_tx.send(Control::Wake);
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!("file notifications unavailable, polling every {RECHECK:?}: {e}");
            None
        }
    };
    info!(sources = pipeline.tailers.len(), "longconn running");
    let worker = tokio::task::spawn_blocking(move || pipeline.run(rx));
    loop {
        match signals.recv().await {
            Signal::Reload => {
                notifier.reloading(); // the pipeline says READY=1 once it has applied it
                match Config::load(config_path) {
                    Ok(cfg) => {
                        let _ = tx.send(Control::Reload(Box::new(cfg)));
                    }
                    Err(e) => {
                        error!("reload refused, keeping the running configuration:\n{e}");
                        notifier.ready();
                    }
                }
            }
            Signal::Terminate => {
                notifier.stopping();
                info!("stopping");
                let _ = tx.send(Control::Stop);
                break;
            }
        }
    }
    match tokio::time::timeout(STOP_DEADLINE, worker).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!("pipeline failed: {e}")),
        Err(_) => Err(anyhow::anyhow!(
            "pipeline did not stop within {STOP_DEADLINE:?}"
        )),
    }
}
