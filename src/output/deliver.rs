//! The delivery contract between the spool and the SIEM outputs (syslog, HTTP): an output takes a batch of
//! spooled alerts, in spool order, and either accepts all of them or says whether to retry.
//!
//! At-least-once: a batch may be delivered again after a failure or a restart; every alert carries a stable
//! `event.id`, so receivers (Elasticsearch `_id`, SIEM dedup) drop duplicates.

use crate::spool::Spooled;
use std::future::Future;
use std::pin::Pin;

/// Why a batch was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// Worth retrying with backoff: connection refused or reset, timeout, 429, 5xx.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Retrying the same request cannot help: 400, 401, 403, a bad certificate. Logged loudly and counted;
    /// the batch is set aside so it does not block this output forever, and other outputs go on.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliverError>> + Send + 'a>>;

/// An output that sends alerts somewhere.
pub trait Deliver: Send {
    /// The output's configured name, for logs and metrics.
    fn name(&self) -> &str;
    /// Delivers `batch` (never empty) in order. `Ok` means every alert in it was accepted (a receiver's
    /// "duplicate" answer, such as Elasticsearch's 409, counts as accepted).
    fn deliver<'a>(&'a mut self, batch: &'a [Spooled]) -> DeliverFuture<'a>;
}
