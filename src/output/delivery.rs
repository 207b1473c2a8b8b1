//! Delivery: one tokio task per output, moving alerts from the spool to the output. Each task reads forward
//! from its own cursor, batches (at most `batch_size`; what is there goes at once, and alerts arriving during a
//! delivery form the next batch; with a non-zero `flush_interval`, while alerts keep coming a short batch
//! waits until `flush_interval` after the previous delivery, so a trickle becomes one request per interval),
//! calls [`Deliver::deliver`] and commits the cursor only when the batch is accepted.
//!
//! - `Transient` failures are retried with exponential backoff and full jitter (0.5 s doubling, capped at 60 s);
//!   the same batch is sent again, so nothing behind it overtakes it.
//! - `Permanent` failures are logged loudly (`error!` with the output's name, never its secrets), counted, and
//!   the batch is set aside (the cursor moves past it), so one bad batch does not block the output forever.
//! - Outputs never wait on each other: a slow or dead output only holds back its own cursor; the spool's
//!   `max_bytes` eventually pauses reading the logs, never the other outputs.
//! - On stop, a task delivers what is already in the spool until it runs dry or fails; the daemon gives the
//!   tasks a short grace period and then drops them. Undelivered alerts stay in the spool for the next start.

use super::{Deliver, DeliverError};
use crate::output::config::Batching;
use crate::spool::{SpoolReader, Spooled};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, error, warn};

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// Counters of one output, for logs and metrics.
#[derive(Debug, Default)]
pub struct OutputStats {
    pub delivered: AtomicU64,
    pub batches: AtomicU64,
    pub transient_failures: AtomicU64,
    /// Alerts in batches set aside after a permanent failure.
    pub permanently_failed: AtomicU64,
}

/// The delay before retry number `attempt` (1-based): a uniformly random fraction of
/// min(cap, start * 2^(attempt-1)) ("full jitter"), at least 50 ms.
pub fn backoff(attempt: u32, seed: &mut u64) -> Duration {
    let exp = BACKOFF_START.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let ceiling = exp.min(BACKOFF_CAP);
    // xorshift64*: enough randomness to spread retries of many daemons.
    *seed ^= *seed >> 12;
    *seed ^= *seed << 25;
    *seed ^= *seed >> 27;
    let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let frac = (r >> 11) as f64 / (1u64 << 53) as f64;
    ceiling.mul_f64(frac).max(Duration::from_millis(50))
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    (t ^ u64::from(std::process::id()).rotate_left(32)) | 1
}

/// Runs one output until `stop` turns true and the spool has nothing more for it (or it fails while
/// stopping).
pub async fn run(
    mut output: Box<dyn Deliver>,
    mut reader: SpoolReader,
    batching: Batching,
    mut stop: watch::Receiver<bool>,
    stats: Arc<OutputStats>,
) {
    let name = output.name().to_string();
    let mut rng = seed();
    let mut stopping = *stop.borrow();
    let mut last_delivery = tokio::time::Instant::now() - batching.flush_interval;
    loop {
        let mut batch = match reader.read(batching.size) {
            Ok(b) => b,
            Err(e) => {
                error!(output = %name, "reading the spool failed: {e}");
                if stopping {
                    return;
                }
                tokio::time::sleep(backoff(3, &mut rng)).await;
                continue;
            }
        };
        if batch.is_empty() {
            if stopping {
                return;
            }
            tokio::select! {
                _ = reader.changed() => {}
                _ = stop.changed() => stopping = true,
            }
            continue;
        }
        // An alert after a quiet spell goes out at once; while alerts keep coming, a short batch waits until
        // `flush_interval` after the previous delivery, so a trickle becomes one batch per interval.
        let deadline = last_delivery + batching.flush_interval;
        if batch.len() < batching.size
            && !stopping
            && !batching.flush_interval.is_zero()
            && tokio::time::Instant::now() < deadline
        {
            while batch.len() < batching.size {
                tokio::select! {
                    _ = reader.changed() => {
                        match reader.read(batching.size - batch.len()) {
                            Ok(more) => batch.extend(more),
                            Err(e) => { error!(output = %name, "reading the spool failed: {e}"); break; }
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = stop.changed() => { stopping = true; break; }
                }
            }
        }
        if !deliver_batch(
            &mut *output,
            &name,
            &batch,
            &mut stop,
            &mut stopping,
            &stats,
            &mut rng,
        )
        .await
        {
            return;
        }
        last_delivery = tokio::time::Instant::now();
        let next = batch.last().map_or(0, |s| s.seq + 1);
        if let Err(e) = reader.commit(next) {
            error!(output = %name, "saving the spool cursor failed (alerts may be sent again): {e}");
        }
    }
}

/// Delivers one batch, retrying transient failures. False when stopping interrupted it (the batch stays
/// undelivered in the spool).
async fn deliver_batch(
    output: &mut dyn Deliver,
    name: &str,
    batch: &[Spooled],
    stop: &mut watch::Receiver<bool>,
    stopping: &mut bool,
    stats: &OutputStats,
    rng: &mut u64,
) -> bool {
    let mut attempt = 0u32;
    loop {
        match output.deliver(batch).await {
            Ok(()) => {
                stats
                    .delivered
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                if attempt > 0 {
                    warn!(output = %name, attempts = attempt + 1, "delivery recovered");
                }
                debug!(output = %name, alerts = batch.len(), "batch delivered");
                return true;
            }
            Err(DeliverError::Permanent(reason)) => {
                stats
                    .permanently_failed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                error!(
                    output = %name,
                    alerts = batch.len(),
                    first_seq = batch.first().map_or(0, |s| s.seq),
                    last_seq = batch.last().map_or(0, |s| s.seq),
                    first_event_id = %batch.first().map_or("", |s| s.event_id.as_str()),
                    "PERMANENT delivery failure, batch set aside (these alerts did not reach this output): {reason}"
                );
                return true;
            }
            Err(DeliverError::Transient(reason)) => {
                stats.transient_failures.fetch_add(1, Ordering::Relaxed);
                if *stopping {
                    warn!(output = %name, "delivery failed while stopping; the alerts stay in the spool: {reason}");
                    return false;
                }
                attempt += 1;
                let delay = backoff(attempt, rng);
                // One warning when the outage starts, then at attempts 2, 4, 8, ... (with the backoff capped,
                // a long outage is not a line per retry); "delivery recovered" ends it.
                if attempt.is_power_of_two() {
                    warn!(output = %name, attempt, retry_in_ms = delay.as_millis() as u64, "delivery failed, will retry: {reason}");
                } else {
                    debug!(output = %name, attempt, retry_in_ms = delay.as_millis() as u64, "delivery failed, will retry: {reason}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => {
                        *stopping = true;
                        return false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::DeliverFuture;
    use crate::spool::{Spool, SpoolOptions};
    use std::sync::Mutex;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let mut s = 12345;
        for attempt in 1..40 {
            let d = backoff(attempt, &mut s);
            assert!(d <= BACKOFF_CAP);
            assert!(d >= Duration::from_millis(50));
        }
        let big: Vec<Duration> = (0..50).map(|_| backoff(30, &mut s)).collect();
        assert!(big.iter().any(|d| *d > Duration::from_secs(10)));
        assert!(big.windows(2).any(|w| w[0] != w[1]), "jittered");
    }

    /// Fails transiently `fail_first` times, permanently for batches holding `poison`, else records.
    struct Fake {
        got: Arc<Mutex<Vec<u64>>>,
        fail_first: u32,
        poison: Option<u64>,
    }

    impl Deliver for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn deliver<'a>(&'a mut self, batch: &'a [Spooled]) -> DeliverFuture<'a> {
            Box::pin(async move {
                if self.fail_first > 0 {
                    self.fail_first -= 1;
                    return Err(DeliverError::Transient("down".into()));
                }
                if batch.iter().any(|s| Some(s.seq) == self.poison) {
                    return Err(DeliverError::Permanent("400".into()));
                }
                self.got.lock().unwrap().extend(batch.iter().map(|s| s.seq));
                Ok(())
            })
        }
    }

    fn json(i: u64) -> String {
        format!("{{\"@timestamp\":\"t\",\"event\":{{\"id\":\"e{i}\",\"severity\":1}}}}")
    }

    #[tokio::test(start_paused = true)]
    async fn retries_skips_poison_and_a_dead_output_does_not_block_another() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(
            dir.path(),
            SpoolOptions {
                max_bytes: 1 << 20,
                segment_bytes: 1 << 16,
            },
        )
        .unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let batching = Batching {
            size: 3,
            flush_interval: Duration::from_millis(10),
        };
        let good = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(OutputStats::default());
        let t1 = tokio::spawn(run(
            Box::new(Fake {
                got: good.clone(),
                fail_first: 2,
                poison: Some(4),
            }),
            spool.reader("good").unwrap(),
            batching,
            stop_rx.clone(),
            stats.clone(),
        ));
        let dead = Arc::new(Mutex::new(Vec::new()));
        let t2 = tokio::spawn(run(
            Box::new(Fake {
                got: dead.clone(),
                fail_first: u32::MAX,
                poison: None,
            }),
            spool.reader("dead").unwrap(),
            batching,
            stop_rx,
            Arc::new(OutputStats::default()),
        ));
        for i in 0..9 {
            spool.append_json(&json(i)).unwrap();
        }
        spool.sync().unwrap();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if good.lock().unwrap().len() >= 6 {
                break;
            }
        }
        // Batch 3..6 held the poison record: set aside, counted; the rest arrived in order.
        assert_eq!(*good.lock().unwrap(), vec![0, 1, 2, 6, 7, 8]);
        assert_eq!(stats.permanently_failed.load(Ordering::Relaxed), 3);
        assert!(dead.lock().unwrap().is_empty());
        stop_tx.send(true).unwrap();
        t1.await.unwrap();
        t2.await.unwrap();
        // The dead output's cursor kept everything for the next start.
        let mut r = spool.reader("dead").unwrap();
        assert_eq!(r.read(100).unwrap().len(), 9);
    }
}
