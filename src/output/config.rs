//! The `[[output]]` tables: one [`Output`] per table, a tagged enum by `type`, with the batching every
//! output shares and the settings of the stdout and file outputs (syslog's are in
//! [`crate::output::syslog::config`], HTTP's in [`crate::output::http::config`]).

use crate::output::syslog::config::SyslogConfig;
use std::path::PathBuf;
use std::time::Duration;

/// One `[[output]]`. Every output has a unique `name` (its cursor in the spool, and its label in logs).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Stdout {
        name: String,
        batch: Batching,
    },
    File {
        name: String,
        path: PathBuf,
        fsync: FsyncPolicy,
        batch: Batching,
    },
    Syslog {
        name: String,
        syslog: SyslogConfig,
        batch: Batching,
    },
    /// Splunk HEC, Elasticsearch bulk or an NDJSON webhook; see `crate::output::http`.
    Http {
        name: String,
        http: Box<crate::output::http::HttpConfig>,
    },
}

impl Output {
    /// The output's unique name.
    pub fn name(&self) -> &str {
        match self {
            Output::Stdout { name, .. }
            | Output::File { name, .. }
            | Output::Syslog { name, .. }
            | Output::Http { name, .. } => name,
        }
    }

    /// How alerts are grouped for delivery.
    pub fn batching(&self) -> Batching {
        match self {
            Output::Stdout { batch, .. }
            | Output::File { batch, .. }
            | Output::Syslog { batch, .. } => *batch,
            Output::Http { http, .. } => Batching {
                size: http.batch_size,
                flush_interval: http.flush_interval,
            },
        }
    }
}

/// Batching of one output: at most `size` alerts per delivery. With a non-zero `flush_interval`, while alerts
/// keep coming a smaller batch waits until `flush_interval` after the previous delivery (an alert after a
/// quiet spell goes at once). Zero (the default) delivers at once; alerts that arrive while a delivery is in
/// flight form the next batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batching {
    pub size: usize,
    pub flush_interval: Duration,
}

pub const DEFAULT_BATCHING: Batching = Batching {
    size: 500,
    flush_interval: Duration::ZERO,
};

/// When the file output calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every alert.
    Always,
    /// After every delivered batch (default).
    Batch,
    /// Never (the OS writes back when it likes).
    Never,
}

pub(crate) const FSYNC: &[(&str, FsyncPolicy)] = &[
    ("always", FsyncPolicy::Always),
    ("batch", FsyncPolicy::Batch),
    ("never", FsyncPolicy::Never),
];
