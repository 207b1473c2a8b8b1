//! The spool: a durable, bounded, append-only queue of alerts between the detector and the outputs, in
//! `<state.dir>/spool/`. It exists so that an output that is down, slow or refusing never loses an alert and
//! never holds up reading for the others, and so that a crash or a damaged disk is survived with every loss
//! named, never silently.
//!
//! Layout: segment files `<first seq, 20 digits>.seg`, each holding records as text lines
//! `SEQ<TAB>CRC<TAB>ALERT-JSON<LF>`, where CRC is the CRC-32 (IEEE, 8 lowercase hex digits) of
//! `SEQ<TAB>ALERT-JSON`. Sequence numbers increase strictly across segments. Lines `SEQ<TAB>ALERT-JSON<LF>`
//! without a checksum (written before records carried one) are still read, so an upgrade keeps what was
//! spooled; new records always carry the checksum. The pipeline thread appends to the last (active)
//! segment and rolls to a new one past the segment size; a rolled segment is fsynced before the next one is
//! created. Each output has a cursor (the next sequence number it has not delivered) in
//! `spool/cursors/<name>`, advanced only after a batch is delivered.
//!
//! Invariants:
//! - **Readers only see synced records.** [`Spool::sync`] fsyncs the active segment and only then publishes the
//!   new end to the readers. So a sequence number that an output delivered (and a cursor that passed it) is
//!   always durable: after a crash no number is handed out twice for different alerts.
//! - **Torn tail.** After a crash the last segment may end in a partial or garbled record (written, never
//!   synced, never delivered, never covered by a checkpoint). [`Spool::open`] truncates the last segment after
//!   its last valid record; the records that raised the cut alerts are read again (the checkpoint did not
//!   cover them). If a saved cursor shows the cut records had been synced (damage, not a crash), the loss is
//!   reported as such.
//! - **Damage is skipped, counted and named.** A record whose checksum or shape is wrong anywhere else is
//!   skipped; reading resumes at the next valid line. Each output that had not delivered it logs an error
//!   naming the segment, the byte offset and the sequence numbers it will never deliver, and counts them in
//!   `longconn_spool_records_lost_total{output}`.
//! - **Delivered space is freed in every segment state.** A segment is deleted when every output's cursor
//!   has passed its last record. The active segment, once every cursor has passed all of it, is rolled (a new,
//!   empty segment named by the next sequence number is created, then the old one deleted), so a restart
//!   keeps the numbering and a small partition is not filled with delivered alerts. When an append fails for
//!   lack of space (ENOSPC, EDQUOT) the partial write is cut off, the active segment is rolled so it can be
//!   freed as soon as the outputs pass it, and the write is retried; until space is free the caller keeps
//!   the alert and retries (reading pauses), nothing is dropped.
//! - **Sized against the disk.** The segment size is the configured one, at most a quarter of `max_bytes`
//!   and at most an eighth of the room the spool has (free space on its file system plus what it holds),
//!   recomputed at each roll, but at least [`MIN_SEGMENT_BYTES`]. So with the state directory on a partition
//!   smaller than one default segment the spool still rolls and frees.
//! - **Bounded.** [`Spool::is_full`] turns true when the segments take `max_bytes` or more; the daemon then
//!   stops reading its sources (the log files are the buffer) until outputs catch up and segments are
//!   deleted. Alerts of records already read are still appended, so the limit is overshot by the alerts of
//!   one poll (`Tailer::poll` reads everything available, which after a long stop can be a large backlog);
//!   nothing is ever dropped.
//! - Cursors are written atomically (temp file + rename) but not fsynced: a cursor lost in a crash falls back
//!   to an older one (or to the oldest segment), which means redelivery, never loss.
//!
//! Code: this file is the writing side (open and its torn tail, append, sync, roll, fullness); `record.rs`
//! the segment and record format and its checks; `space.rs` segment sizing and a full disk or quota;
//! `cursor.rs` the cursor files; `reader.rs` the readers, one per output.

pub mod config;
mod cursor;
mod reader;
mod record;
mod space;

pub use reader::{Loss, SpoolReader};

use crate::alert::Alert;
use record::{encode, parse_segment_name, scan_segment, segment_name, Scan, SEQ_END};
use space::segment_size;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::{error, info, warn};

/// One alert as the spool hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    /// Position in the spool (strictly increasing).
    pub seq: u64,
    /// The alert's `event.id`.
    pub event_id: String,
    /// The alert's `@timestamp` (RFC 3339, UTC).
    pub timestamp: String,
    /// `event.severity`: 1 (low) to 4 (critical).
    pub severity: u8,
    /// The alert document, one line of JSON.
    pub json: Arc<str>,
}

/// Default segment size: large enough for few files, small enough to free space early.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// The smallest segment chosen against free space (a configured size below it is kept, for tests).
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;

/// Appended records are written to the file in chunks of at most this much (and at most one segment).
const WRITE_CHUNK: usize = 256 * 1024;

/// Errors callers act on.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spool output name {0:?} cannot name a cursor file")]
    BadName(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SpoolOptions {
    /// Reading pauses once the segments take this much.
    pub max_bytes: u64,
    /// A segment is rolled once it reaches this size (the largest size used; see the module doc).
    pub segment_bytes: u64,
}

/// One segment as the shared state knows it.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Synced length in bytes (what readers may read).
    synced_len: u64,
    /// Length including unsynced appends (and records not yet written to the file).
    len: u64,
}

#[derive(Debug)]
struct State {
    /// By first sequence number.
    segments: BTreeMap<u64, Segment>,
    /// Records below this are synced and visible to readers.
    synced_end: u64,
    /// Cursors of the outputs in use (the next sequence number each has not delivered).
    cursors: HashMap<String, u64>,
}

impl State {
    /// Removes from the map every segment that all cursors have passed, except the last (active) one;
    /// returns their first sequence numbers. Nothing goes while no output has a cursor.
    fn take_passed(&mut self) -> Vec<u64> {
        let Some(min) = self.cursors.values().copied().min() else {
            return Vec::new();
        };
        let firsts: Vec<u64> = self.segments.keys().copied().collect();
        // Segment i may go when segment i+1 starts at or before `min` (all of i is below min).
        let doomed: Vec<u64> = firsts
            .windows(2)
            .filter(|w| w[1] <= min)
            .map(|w| w[0])
            .collect();
        for f in &doomed {
            self.segments.remove(f);
        }
        doomed
    }
}

struct Shared {
    dir: PathBuf,
    opts: SpoolOptions,
    state: Mutex<State>,
    /// The synced end, for readers to wait on.
    synced_tx: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// Deletes the files of segments taken out of the map (`State::take_passed`).
    fn delete(&self, firsts: Vec<u64>) -> u64 {
        let mut freed = 0;
        for first in firsts {
            let path = self.dir.join(segment_name(first));
            let len = fs::metadata(&path).map_or(0, |m| m.len());
            match fs::remove_file(&path) {
                Ok(()) => {
                    freed += len;
                    info!(segment = %path.display(), bytes = len, "spool segment delivered everywhere: deleted");
                }
                Err(e) => {
                    warn!(segment = %path.display(), error = %e, "spool: deleting a delivered segment failed")
                }
            }
        }
        freed
    }
}

/// The writing side (the pipeline thread owns it) and a factory for readers.
pub struct Spool {
    shared: Arc<Shared>,
    active: File,
    active_first: u64,
    /// Bytes of whole records written to the active file (synced or not).
    written: u64,
    /// The sequence number after the last record written to the file.
    written_next: u64,
    /// Appended records not yet written to the file: whole lines, from `written_next` on.
    buf: Vec<u8>,
    next_seq: u64,
    /// The segment size in force (see the module doc).
    segment_bytes: u64,
    full_warned: bool,
    /// An append or sync failed for lack of space and has not succeeded since.
    no_space: bool,
    /// Records cut from the end of the last segment at open that some output had delivered (so the others
    /// lost them), summed over the outputs behind.
    lost_at_open: u64,
}

fn create_segment(dir: &Path, first: u64) -> Result<File, SpoolError> {
    let path = dir.join(segment_name(first));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    // The name carries the numbering across a restart: make it durable before anything relies on it.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(file)
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, truncating a torn tail of the last segment.
    pub fn open(dir: &Path, opts: SpoolOptions) -> Result<Spool, SpoolError> {
        let cursors_dir = dir.join("cursors");
        fs::create_dir_all(&cursors_dir).map_err(io_err(&cursors_dir))?;
        let mut segments = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(first) = name.to_str().and_then(parse_segment_name) else {
                continue;
            };
            let len = entry.metadata().map_err(io_err(&entry.path()))?.len();
            segments.insert(
                first,
                Segment {
                    synced_len: len,
                    len,
                },
            );
        }
        let mut lost_at_open = 0;
        let (active_first, next_seq) = match segments.iter().next_back().map(|(k, _)| *k) {
            Some(first) => {
                let path = dir.join(segment_name(first));
                let bytes = fs::read(&path).map_err(io_err(&path))?;
                let scan = scan_segment(&bytes, first);
                if scan.damaged > 0 {
                    warn!(
                        segment = %path.display(),
                        damaged_records = scan.damaged,
                        first_offset = scan.first_damaged.unwrap_or(0),
                        "spool: damaged records in the last segment are skipped; each output that has not delivered them reports them lost"
                    );
                }
                if scan.valid_len < bytes.len() as u64 {
                    lost_at_open = Self::cut_tail(&path, &bytes, &scan, &cursors_dir)?;
                    segments.insert(
                        first,
                        Segment {
                            synced_len: scan.valid_len,
                            len: scan.valid_len,
                        },
                    );
                }
                (first, scan.next)
            }
            None => {
                segments.insert(
                    0,
                    Segment {
                        synced_len: 0,
                        len: 0,
                    },
                );
                (0, 0)
            }
        };
        let written = segments.get(&active_first).map_or(0, |s| s.len);
        let held: u64 = segments.values().map(|s| s.len).sum();
        let file = create_segment(dir, active_first)?;
        let segment_bytes = segment_size(&opts, dir, held);
        let (synced_tx, _) = tokio::sync::watch::channel(next_seq);
        let spool = Spool {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                opts,
                state: Mutex::new(State {
                    segments,
                    synced_end: next_seq,
                    cursors: HashMap::new(),
                }),
                synced_tx,
            }),
            active: file,
            active_first,
            written,
            written_next: next_seq,
            buf: Vec::new(),
            next_seq,
            segment_bytes,
            full_warned: false,
            no_space: false,
            lost_at_open,
        };
        info!(dir = %dir.display(), next_seq, bytes = spool.bytes(), segment_bytes, "spool opened");
        Ok(spool)
    }

    /// Cuts what follows the last valid record of the last segment. Normally a record torn by a crash
    /// (never synced, so its alert is raised again from the log); if a saved cursor had passed it, it was
    /// synced and delivered somewhere, so the outputs behind that cursor lost it: said as such.
    fn cut_tail(
        path: &Path,
        bytes: &[u8],
        scan: &Scan,
        cursors_dir: &Path,
    ) -> Result<u64, SpoolError> {
        let discarded = bytes.len() as u64 - scan.valid_len;
        let cursors = cursor::saved(cursors_dir);
        let mut lost = 0;
        let reached = cursors.iter().map(|(_, c)| *c).max().unwrap_or(0);
        if reached > scan.next {
            for (name, c) in &cursors {
                let from = (*c).max(scan.next);
                if from < reached {
                    error!(
                        output = %name,
                        segment = %path.display(),
                        offset = scan.valid_len,
                        first_seq = from,
                        last_seq = reached - 1,
                        "spool: records lost: damaged records at the end of the last segment were synced (another output delivered them) and are discarded; this output never gets them"
                    );
                    ::metrics::counter!(crate::metrics::SPOOL_RECORDS_LOST, "output" => name.clone())
                        .increment(reached - from);
                    lost += reached - from;
                }
            }
        } else {
            warn!(
                segment = %path.display(),
                offset = scan.valid_len,
                discarded_bytes = discarded,
                next_seq = scan.next,
                "spool: torn record at the end of the last segment discarded (written but not synced before the daemon stopped; the checkpoint does not cover the records that raised it, so they are read again)"
            );
        }
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.set_len(scan.valid_len).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
        Ok(lost)
    }

    /// Records lost at open: cut from the end of the last segment although an output had delivered them
    /// (summed over the outputs that had not).
    pub fn lost_at_open(&self) -> u64 {
        self.lost_at_open
    }

    fn path_of(&self, first: u64) -> PathBuf {
        self.shared.dir.join(segment_name(first))
    }

    /// Appends one alert; it becomes visible to outputs at the next [`Spool::sync`].
    pub fn append(&mut self, alert: &Alert) -> Result<u64, SpoolError> {
        self.append_json(&alert.to_json())
    }

    /// Appends one alert given as its JSON line (no newline inside, as `Alert::to_json` makes it). On an
    /// error nothing of this alert is kept (the caller keeps it and tries again); alerts appended before
    /// stay appended.
    pub fn append_json(&mut self, json: &str) -> Result<u64, SpoolError> {
        self.free_delivered();
        let seq = self.next_seq;
        if seq == SEQ_END {
            // Only a damaged spool gets here (a segment named near the last number): 2^64 alerts are
            // never appended.
            return Err(SpoolError::Io {
                path: self.path_of(self.active_first),
                source: io::Error::other("every sequence number is used: the spool is damaged"),
            });
        }
        let line = encode(seq, json);
        let len_now = self.written + self.buf.len() as u64;
        if len_now > 0 && len_now + line.len() as u64 > self.segment_bytes {
            self.roll()?;
        }
        let chunk = WRITE_CHUNK.min(usize::try_from(self.segment_bytes).unwrap_or(usize::MAX));
        if !self.buf.is_empty() && self.buf.len() + line.len() > chunk {
            self.write_out()?;
        }
        self.buf.extend_from_slice(line.as_bytes());
        self.next_seq += 1;
        let mut st = lock(&self.shared);
        if let Some(s) = st.segments.get_mut(&self.active_first) {
            s.len += line.len() as u64;
        }
        Ok(seq)
    }

    /// Starts a new active segment at `next_seq` (every record written and synced before), then deletes what
    /// every output has passed.
    fn start_segment(&mut self) -> Result<(), SpoolError> {
        let first = self.next_seq;
        let file = create_segment(&self.shared.dir, first)?;
        self.active = file;
        self.active_first = first;
        self.written = 0;
        self.written_next = first;
        let doomed = {
            let mut st = lock(&self.shared);
            st.segments.insert(
                first,
                Segment {
                    synced_len: 0,
                    len: 0,
                },
            );
            st.take_passed()
        };
        self.shared.delete(doomed);
        self.segment_bytes = segment_size(&self.shared.opts, &self.shared.dir, self.bytes());
        Ok(())
    }

    /// Syncs the active segment and starts a new one named by the next sequence number.
    fn roll(&mut self) -> Result<(), SpoolError> {
        self.sync()?;
        self.start_segment()
    }

    /// Makes every appended alert durable (fsync), then hands them to the outputs. The pipeline calls this
    /// before saving a checkpoint that covers the records that raised them.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.write_out()?;
        let path = self.path_of(self.active_first);
        self.active.sync_data().map_err(io_err(&path))?;
        {
            let mut st = lock(&self.shared);
            for seg in st.segments.values_mut() {
                seg.synced_len = seg.len;
            }
            st.synced_end = self.next_seq;
        }
        self.shared.synced_tx.send_replace(self.next_seq);
        Ok(())
    }

    /// Whether there are appended alerts not yet synced.
    pub fn has_unsynced(&self) -> bool {
        lock(&self.shared).synced_end != self.next_seq
    }

    /// Bytes the segments take (with appended records not yet written).
    pub fn bytes(&self) -> u64 {
        lock(&self.shared).segments.values().map(|s| s.len).sum()
    }

    /// The segment size in force.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// Whether the spool has reached `max_bytes`: the pipeline must stop reading. Frees a delivered active
    /// segment first. Warns loudly once per episode and says when it is over.
    pub fn is_full(&mut self) -> bool {
        self.free_delivered();
        let bytes = self.bytes();
        let full = bytes >= self.shared.opts.max_bytes;
        if full && !self.full_warned {
            let st = lock(&self.shared);
            let lagging: Vec<String> = st
                .cursors
                .iter()
                .map(|(name, c)| format!("{name}={}", self.next_seq.saturating_sub(*c)))
                .collect();
            warn!(
                bytes,
                max_bytes = self.shared.opts.max_bytes,
                undelivered = %lagging.join(","),
                "spool full: reading paused until outputs catch up (alerts are not dropped; the log files are the buffer)"
            );
            self.full_warned = true;
        } else if !full && self.full_warned {
            info!(bytes, "spool has room again: reading resumed");
            self.full_warned = false;
        }
        full
    }

    /// The next sequence number to be appended.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves plain numbers behind; keep going with them.
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
