//! Alert outputs: where alerts go. Every output is a [`Deliver`]: the spool hands it batches of alerts in
//! order, from its own cursor, through a delivery task ([`delivery`]); it accepts a batch or says whether
//! to retry. Outputs: stdout and file (JSON lines), syslog (RFC 5424 over UDP, TCP, TLS or a unix socket);
//! HTTP outputs plug into the same contract.

pub mod config;
mod deliver;
pub mod delivery;
mod file;
pub mod http;
pub mod syslog;
pub mod tls;

pub use deliver::{Deliver, DeliverError, DeliverFuture};
pub use file::FileOutput;
pub use http::{HttpConfig, HttpOutput};
pub use syslog::SyslogOutput;

use crate::spool::Spooled;
use config::Output as OutputConfig;
use std::io::{self, Write};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Bumped on SIGHUP: file outputs reopen their file before the next batch (logrotate).
pub type ReopenGeneration = Arc<AtomicU64>;

/// Alerts as JSON lines on standard output, flushed after every batch.
pub struct StdoutOutput {
    name: String,
}

impl StdoutOutput {
    pub fn new(name: String) -> Self {
        StdoutOutput { name }
    }
}

impl Deliver for StdoutOutput {
    fn name(&self) -> &str {
        &self.name
    }
    fn deliver<'a>(&'a mut self, batch: &'a [Spooled]) -> DeliverFuture<'a> {
        let buf = json_lines(batch);
        Box::pin(async move {
            // Writing to a pipe may block: keep it off the runtime thread.
            tokio::task::spawn_blocking(move || -> io::Result<()> {
                let mut out = io::stdout().lock();
                out.write_all(&buf)?;
                out.flush()
            })
            .await
            .map_err(|e| DeliverError::Transient(format!("writer task: {e}")))?
            .map_err(|e| DeliverError::Transient(format!("stdout: {e}")))
        })
    }
}

/// The batch as JSON lines.
pub fn json_lines(batch: &[Spooled]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(batch.iter().map(|s| s.json.len() + 1).sum());
    for s in batch {
        buf.extend_from_slice(s.json.as_bytes());
        buf.push(b'\n');
    }
    buf
}

/// Builds the outputs a config names, in config order.
pub fn build(
    configs: &[OutputConfig],
    reopen: &ReopenGeneration,
) -> Result<Vec<Box<dyn Deliver>>, String> {
    configs
        .iter()
        .map(|c| -> Result<Box<dyn Deliver>, String> {
            Ok(match c {
                OutputConfig::Stdout { name, .. } => Box::new(StdoutOutput::new(name.clone())),
                OutputConfig::File {
                    name, path, fsync, ..
                } => Box::new(
                    FileOutput::open(name.clone(), path, *fsync, reopen.clone())
                        .map_err(|e| format!("output {name}: {e}"))?,
                ),
                OutputConfig::Syslog { name, syslog, .. } => Box::new(
                    SyslogOutput::new(name.clone(), syslog)
                        .map_err(|e| format!("output {name}: {e}"))?,
                ),
                OutputConfig::Http { name, http } => Box::new(
                    http::HttpOutput::new(name.clone(), http)
                        .map_err(|e| format!("output {name}: {e}"))?,
                ),
            })
        })
        .collect()
}
