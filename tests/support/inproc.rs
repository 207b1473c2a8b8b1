//! The daemon run in-process through the library call (`longconn::daemon::run`), driven as `main` drives
//! it but with the control requests sent by the test and its [`Progress`] awaited: no process, no signals,
//! no sleeps. For scenarios that need no separate process (no kill -9, no sd_notify, no privileges).

use longconn::daemon::{Control, Progress, RunOptions};
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long any one wait may take before the test fails.
const LIMIT: Duration = Duration::from_secs(30);

pub struct InProc {
    control: mpsc::Sender<Control>,
    progress: watch::Receiver<Progress>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProc {
    /// Loads `config` as `longconn run` does and starts the daemon on the current runtime.
    pub fn start(config: &Path, opts: RunOptions) -> InProc {
        let (cfg, _warnings) = longconn::config::preflight::load(config)
            .unwrap_or_else(|e| panic!("config {}: {e}", config.display()));
        let (control, control_rx) = mpsc::channel(4);
        let (progress_tx, progress) = watch::channel(Progress::default());
        let path = config.to_path_buf();
        let task = tokio::spawn(async move {
            longconn::daemon::run(&path, cfg, opts, control_rx, progress_tx).await
        });
        InProc {
            control,
            progress,
            task,
        }
    }

    /// The progress now.
    pub fn now(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Waits until `f` holds for the published progress; panics naming `what` after [`LIMIT`].
    pub async fn wait(&mut self, what: &str, f: impl Fn(&Progress) -> bool) -> Progress {
        let mut progress = self.progress.clone();
        let got = match tokio::time::timeout(LIMIT, progress.wait_for(|p| f(p))).await {
            Ok(Ok(p)) => Some(p.clone()),
            Ok(Err(_)) => panic!("the daemon stopped while waiting for {what}"),
            Err(_) => None,
        };
        got.unwrap_or_else(|| panic!("timed out waiting for {what}; progress {:?}", self.now()))
    }

    /// Waits for `READY`.
    pub async fn ready(&mut self) -> Progress {
        self.wait("ready", |p| p.ready).await
    }

    /// Waits until a round of polls that started after this call found nothing more to read: whatever
    /// was written before the call has been read (and its alerts spooled).
    pub async fn settle(&mut self) -> Progress {
        let rounds = self.now().rounds;
        self.wait("caught up", |p| p.settled_since(rounds)).await
    }

    /// Asks for a reload and waits until it was handled (applied or refused).
    pub async fn reload(&mut self) -> Progress {
        let before = self.now().reloads;
        self.control.send(Control::Reload).await.expect("send");
        self.wait("the reload", |p| p.reloads > before).await
    }

    /// Stops the daemon and returns what `run` returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.control.send(Control::Stop).await;
        match tokio::time::timeout(LIMIT, self.task).await {
            Ok(r) => r.expect("the daemon task panicked"),
            Err(_) => panic!("the daemon did not stop within {LIMIT:?}"),
        }
    }
}
