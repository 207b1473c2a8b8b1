//! Process signals, in one place: SIGHUP reloads, SIGTERM and SIGINT stop. `main` installs the handlers and
//! forwards what arrives to the daemon as [`Control`] requests; the daemon itself installs none, so tests
//! drive it with the same requests in-process.

use crate::daemon::Control;

use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Reload,
    Terminate,
}

/// A stream of the signals the daemon acts on.
pub struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (must run inside a tokio runtime).
    pub fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.hup.recv() => Signal::Reload,
            _ = self.term.recv() => Signal::Terminate,
            _ = self.int.recv() => Signal::Terminate,
        }
    }
}

/// Turns signals into the daemon's control requests until the daemon stops listening.
pub async fn forward(mut signals: Signals, control: tokio::sync::mpsc::Sender<Control>) {
    loop {
        let request = match signals.recv().await {
            Signal::Reload => Control::Reload,
            Signal::Terminate => Control::Stop,
        };
        if control.send(request).await.is_err() {
            // Stopped: later signals are received and ignored, as while the daemon drains.
            let _ = std::future::pending::<()>().await;
        }
    }
}
