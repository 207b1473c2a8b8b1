//! Alert outputs: where alert JSON lines go. Each output is one [`Output`]; the daemon writes every alert to
//! every output and flushes them all before it checkpoints, so an alert is never lost behind a checkpoint.

mod deliver;
mod file;
pub mod http;

pub use deliver::{Deliver, DeliverError, DeliverFuture, Spooled};
pub use file::FileOutput;
pub use http::{HttpConfig, HttpOutput};

use crate::config::Output as OutputConfig;
use std::io::{self, Write};

/// One destination for alerts.
pub trait Output: Send {
    /// A name for messages.
    fn name(&self) -> String;
    /// Appends one alert (a JSON document without newline).
    fn write_alert(&mut self, json: &str) -> io::Result<()>;
    /// Makes everything written so far durable or delivered.
    fn flush(&mut self) -> io::Result<()>;
    /// Reopens files (after logrotate moved them away; on SIGHUP).
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Alerts as JSON lines on standard output.
pub struct StdoutOutput {
    out: io::BufWriter<io::Stdout>,
}

impl StdoutOutput {
    pub fn new() -> Self {
        StdoutOutput {
            out: io::BufWriter::new(io::stdout()),
        }
    }
}

impl Default for StdoutOutput {
    fn default() -> Self {
        Self::new()
    }
}

impl Output for StdoutOutput {
    fn name(&self) -> String {
        "stdout".to_string()
    }
    fn write_alert(&mut self, json: &str) -> io::Result<()> {
        self.out.write_all(json.as_bytes())?;
        self.out.write_all(b"\n")
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Builds the outputs a config names.
pub fn build(configs: &[OutputConfig]) -> io::Result<Vec<Box<dyn Output>>> {
    configs
        .iter()
        .map(|c| -> io::Result<Box<dyn Output>> {
            Ok(match c {
                OutputConfig::Stdout => Box::new(StdoutOutput::new()),
                OutputConfig::File { path } => Box::new(FileOutput::open(path)?),
            })
        })
        .collect()
}
