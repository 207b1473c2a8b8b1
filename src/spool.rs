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

pub mod config;

use crate::alert::{self, Alert};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
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

fn is_no_space(e: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(Errno::from_io_error(e), Some(Errno::NOSPC | Errno::DQUOT))
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

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

fn checksum(seq: &[u8], json: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(seq);
    h.update(b"\t");
    h.update(json);
    h.finalize()
}

/// One record line with its LF: `SEQ<TAB>CRC<TAB>JSON<LF>`.
fn encode(seq: u64, json: &str) -> String {
    let s = seq.to_string();
    let crc = checksum(s.as_bytes(), json.as_bytes());
    format!("{s}\t{crc:08x}\t{json}\n")
}

/// Sequence numbers are below this: the number after a record is always a `u64`, so a spool that has
/// handed out every number refuses to append ([`Spool::append_json`]) rather than wrap to 0 and hand
/// numbers out twice, and a line numbered `SEQ_END` (damage, or written by hand) is not a record.
const SEQ_END: u64 = u64::MAX;

/// Parses one record line (without its LF): `Some(Spooled)` if it is whole, its number is below
/// [`SEQ_END`], its checksum matches (or it is a version 1 line without one) and its JSON has the fields
/// outputs need.
fn parse_record(line: &[u8]) -> Option<Spooled> {
    let tab = memchr::memchr(b'\t', line)?;
    let seq_text = &line[..tab];
    if seq_text.is_empty() || !seq_text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let seq: u64 = std::str::from_utf8(seq_text).ok()?.parse().ok()?;
    if seq == SEQ_END {
        return None;
    }
    let rest = &line[tab + 1..];
    let lower_hex = |c: &u8| c.is_ascii_digit() || (b'a'..=b'f').contains(c);
    let json = if rest.len() > 9 && rest[8] == b'\t' && rest[..8].iter().all(lower_hex) {
        let want = u32::from_str_radix(std::str::from_utf8(&rest[..8]).ok()?, 16).ok()?;
        let json = &rest[9..];
        if checksum(seq_text, json) != want {
            return None;
        }
        json
    } else if rest.first() == Some(&b'{') {
        // Version 1: no checksum; the JSON must still parse.
        rest
    } else {
        return None;
    };
    let json = std::str::from_utf8(json).ok()?;
    let f = alert::Head::parse(json).ok()?;
    Some(Spooled {
        seq,
        event_id: f.event.id,
        timestamp: f.timestamp,
        severity: f.event.severity,
        json: Arc::from(json),
    })
}

/// What a scan of a whole segment found.
#[derive(Debug, PartialEq, Eq)]
struct Scan {
    /// Byte length up to and including the last valid record (what is kept).
    valid_len: u64,
    /// The sequence number after the last valid record (`first` if there is none).
    next: u64,
    /// Damaged lines before the last valid record (skipped by readers, reported by them).
    damaged: u64,
    /// Byte offset of the first of them.
    first_damaged: Option<u64>,
}

/// Scans a segment: every line that is a valid record with a number above the previous one is kept;
/// damaged lines between valid records are counted; what follows the last valid record is the tail.
fn scan_segment(bytes: &[u8], first: u64) -> Scan {
    let mut scan = Scan {
        valid_len: 0,
        next: first,
        damaged: 0,
        first_damaged: None,
    };
    let mut pos = 0usize;
    // Damaged lines since the last valid record: (count, offset of the first).
    let mut pending: Option<(u64, u64)> = None;
    while let Some(nl) = memchr::memchr(b'\n', &bytes[pos..]) {
        match parse_record(&bytes[pos..pos + nl]) {
            Some(r) if r.seq >= scan.next => {
                if let Some((n, off)) = pending.take() {
                    scan.damaged += n;
                    scan.first_damaged.get_or_insert(off);
                }
                scan.next = r.seq + 1;
                scan.valid_len = (pos + nl + 1) as u64;
            }
            _ => {
                let p = pending.get_or_insert((0, pos as u64));
                p.0 += 1;
            }
        }
        pos += nl + 1;
    }
    scan
}

fn valid_cursor_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Saved cursors in `dir` (unreadable ones left out).
fn saved_cursors(dir: &Path) -> Vec<(String, u64)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let e = e.ok()?;
        let name = e.file_name().into_string().ok()?;
        if !valid_cursor_name(&name) || name.ends_with(".tmp") {
            return None;
        }
        let c = fs::read_to_string(e.path()).ok()?.trim().parse().ok()?;
        Some((name, c))
    })
    .collect()
}

/// Bytes free for an unprivileged writer on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The segment size in force: see the module doc.
fn segment_size(opts: &SpoolOptions, dir: &Path, held: u64) -> u64 {
    let by_room = free_bytes(dir).map_or(u64::MAX, |free| free.saturating_add(held) / 8);
    (opts.max_bytes / 4)
        .min(by_room)
        .max(MIN_SEGMENT_BYTES)
        .min(opts.segment_bytes)
        .max(1)
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
        let cursors = saved_cursors(cursors_dir);
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

    /// Writes the buffered records to the active file. On failure the file is cut back to its last whole
    /// record; when the disk is full, as many whole records as fit are written first (so what fits can be
    /// closed, delivered and freed); the rest stays buffered.
    fn write_buf(&mut self) -> io::Result<()> {
        let e = match self.active.write_all(&self.buf) {
            Ok(()) => {
                self.written += self.buf.len() as u64;
                self.written_next = self.next_seq;
                self.buf.clear();
                return Ok(());
            }
            Err(e) => e,
        };
        self.cut_back();
        if !is_no_space(&e) {
            return Err(e);
        }
        let mut done = 0;
        while let Some(nl) = memchr::memchr(b'\n', &self.buf[done..]) {
            let end = done + nl + 1;
            if self.active.write_all(&self.buf[done..end]).is_err() {
                self.cut_back();
                break;
            }
            self.written += (end - done) as u64;
            self.written_next += 1;
            done = end;
        }
        self.buf.drain(..done);
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(e)
        }
    }

    /// Cuts the active file back to its last whole record written (after a failed write).
    fn cut_back(&mut self) {
        if let Err(e) = self.active.set_len(self.written) {
            warn!(segment = %self.path_of(self.active_first).display(), error = %e, "spool: cutting a failed write back failed");
        }
    }

    /// Writes the buffered records out; when the disk is full, frees what is delivered and retries once.
    fn write_out(&mut self) -> Result<(), SpoolError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = self.path_of(self.active_first);
        let result = match self.write_buf() {
            Err(e) if is_no_space(&e) => {
                if !self.no_space {
                    warn!(dir = %self.shared.dir.display(), bytes = self.bytes(), error = %e, "spool: no space left for alerts; freeing delivered segments and retrying (reading pauses meanwhile, nothing is dropped)");
                    self.no_space = true;
                }
                self.make_room()?;
                let path = self.path_of(self.active_first);
                self.write_buf().map_err(io_err(&path))
            }
            other => other.map_err(io_err(&path)),
        };
        if result.is_ok() && self.no_space {
            info!(dir = %self.shared.dir.display(), bytes = self.bytes(), "spool: alerts written again after a lack of space");
            self.no_space = false;
        }
        result
    }

    /// After a write failed for lack of space: closes the active segment at its last written record (fsync,
    /// published to readers) and starts a new one holding the buffered records, so the closed one is deleted
    /// as soon as every output has passed it (at once if they all have). Nothing to do when the active
    /// segment has no written record: space comes back when outputs pass older segments.
    fn make_room(&mut self) -> Result<(), SpoolError> {
        if self.written == 0 {
            return Ok(());
        }
        let old = self.path_of(self.active_first);
        self.active.sync_data().map_err(io_err(&old))?;
        let first = self.written_next;
        let file = create_segment(&self.shared.dir, first)?;
        let doomed = {
            let mut st = lock(&self.shared);
            if let Some(s) = st.segments.get_mut(&self.active_first) {
                s.len = self.written;
                s.synced_len = self.written;
            }
            st.segments.insert(
                first,
                Segment {
                    synced_len: 0,
                    len: self.buf.len() as u64,
                },
            );
            st.synced_end = first;
            st.take_passed()
        };
        self.shared.synced_tx.send_replace(first);
        self.active = file;
        self.active_first = first;
        self.written = 0;
        self.shared.delete(doomed);
        self.segment_bytes = segment_size(&self.shared.opts, &self.shared.dir, self.bytes());
        Ok(())
    }

    /// When every output has passed every record of the active segment and it holds a quarter of a segment
    /// or more, starts a new one and deletes it: delivered alerts do not sit on the disk until the segment
    /// fills. A failure is only logged: the next call tries again.
    fn free_delivered(&mut self) {
        if !self.buf.is_empty() || self.written == 0 || self.written < self.segment_bytes / 4 {
            return;
        }
        {
            let st = lock(&self.shared);
            let all_passed = !st.cursors.is_empty()
                && st.synced_end == self.next_seq
                && st.cursors.values().all(|c| *c >= self.next_seq);
            if !all_passed {
                return;
            }
        }
        if let Err(e) = self.start_segment() {
            warn!(error = %e, "spool: starting a new segment to free delivered alerts failed; will retry");
        }
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

    /// A reader for the output `name`, starting at its saved cursor (or at the oldest alert in the spool if
    /// it has none). Every output in use must have a reader before segments are deleted on its behalf.
    pub fn reader(&self, name: &str) -> Result<SpoolReader, SpoolError> {
        if !valid_cursor_name(name) {
            return Err(SpoolError::BadName(name.to_string()));
        }
        let path = self.shared.dir.join("cursors").join(name);
        let mut st = lock(&self.shared);
        let oldest = st.segments.keys().next().copied().unwrap_or(0);
        let saved = match fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(c) => Some(c),
                Err(_) => {
                    warn!(output = name, cursor = %path.display(), "spool: unreadable cursor, delivering again from the oldest alert");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path)(e)),
        };
        let cursor = saved.unwrap_or(oldest).clamp(oldest, st.synced_end);
        st.cursors.insert(name.to_string(), cursor);
        Ok(SpoolReader {
            shared: self.shared.clone(),
            name: name.to_string(),
            cursor_path: path,
            cursor,
            pos: None,
            damaged_at: None,
            lost: 0,
            last_loss: None,
            synced_rx: self.shared.synced_tx.subscribe(),
        })
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves plain numbers behind; keep going with them.
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records one output will never deliver, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte offset of the first damaged line (or where the gap was found).
    pub offset: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// One output's view of the spool: reads forward from its cursor.
pub struct SpoolReader {
    shared: Arc<Shared>,
    name: String,
    cursor_path: PathBuf,
    /// The next sequence number to hand out (read, not necessarily committed).
    cursor: u64,
    /// (segment first seq, byte offset of `cursor` in it). The file is opened per [`SpoolReader::read`]
    /// and closed before it returns: an idle reader holding a deleted segment open would keep its space.
    pos: Option<(u64, u64)>,
    /// The first damaged line since the last valid record: (segment first seq, byte offset).
    damaged_at: Option<(u64, u64)>,
    /// Records this output lost to damage (skipped, never delivered).
    lost: u64,
    last_loss: Option<Loss>,
    synced_rx: tokio::sync::watch::Receiver<u64>,
}

impl SpoolReader {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records skipped as lost by this reader since it was made.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The last loss reported.
    pub fn last_loss(&self) -> Option<&Loss> {
        self.last_loss.as_ref()
    }

    /// Waits until there may be something new to read (a sync happened since the last call).
    pub async fn changed(&mut self) {
        if self.synced_rx.changed().await.is_err() {
            // The spool is gone (shutdown); nothing more will come.
            std::future::pending::<()>().await;
        }
    }

    /// The records from the cursor up to `upto` are gone (a damaged line, or missing): said loudly, counted,
    /// skipped. `seg_first`/`offset` say where the gap was seen, unless a damaged line came before it.
    fn report_lost(&mut self, upto: u64, seg_first: u64, offset: u64) {
        let (seg, offset) = self.damaged_at.take().unwrap_or((seg_first, offset));
        let n = upto - self.cursor;
        let segment = self.shared.dir.join(segment_name(seg));
        error!(
            output = %self.name,
            segment = %segment.display(),
            offset,
            first_seq = self.cursor,
            last_seq = upto - 1,
            records = n,
            "spool: records lost: damaged or missing in the spool, skipped; this output will never deliver them"
        );
        ::metrics::counter!(crate::metrics::SPOOL_RECORDS_LOST, "output" => self.name.clone())
            .increment(n);
        self.lost += n;
        self.last_loss = Some(Loss {
            segment,
            offset,
            first_seq: self.cursor,
            last_seq: upto - 1,
        });
        self.cursor = upto;
    }

    /// Handles one line at `offset` of segment `seg_first`: a record to hand out is pushed to `out`.
    fn take_line(
        &mut self,
        line: &[u8],
        seg_first: u64,
        offset: u64,
        synced_end: u64,
        out: &mut Vec<Spooled>,
    ) {
        match parse_record(line) {
            Some(r) if r.seq < self.cursor => {
                // Handed out before (a damaged line before it was reported then, if it hid anything).
                self.damaged_at = None;
            }
            Some(r) if r.seq < synced_end => {
                if r.seq > self.cursor {
                    self.report_lost(r.seq, seg_first, offset);
                } else if let Some((seg, off)) = self.damaged_at.take() {
                    warn!(
                        output = %self.name,
                        segment = %self.shared.dir.join(segment_name(seg)).display(),
                        offset = off,
                        "spool: damaged bytes skipped (no record lost)"
                    );
                }
                self.cursor = r.seq + 1;
                out.push(r);
            }
            Some(_) => {}
            None => {
                self.damaged_at.get_or_insert((seg_first, offset));
            }
        }
    }

    /// Up to `max` synced alerts from the read position on, in order. Empty if there are none.
    pub fn read(&mut self, max: usize) -> Result<Vec<Spooled>, SpoolError> {
        let mut out = Vec::new();
        let mut open: Option<(u64, File)> = None;
        while out.len() < max {
            let (seg_first, seg, next_first, synced_end) = {
                let st = lock(&self.shared);
                if self.cursor >= st.synced_end {
                    break;
                }
                // The segment holding `cursor`: the last one starting at or before it.
                let Some((first, seg)) = st.segments.range(..=self.cursor).next_back() else {
                    // Deleted under us (cannot happen while our cursor holds it); restart at the oldest.
                    let oldest = st.segments.keys().next().copied().unwrap_or(self.cursor);
                    self.cursor = self.cursor.max(oldest);
                    self.pos = None;
                    continue;
                };
                let next_first = st.segments.range(first + 1..).next().map(|(k, _)| *k);
                (*first, *seg, next_first, st.synced_end)
            };
            let path = self.shared.dir.join(segment_name(seg_first));
            if open.as_ref().map(|o| o.0) != Some(seg_first) {
                open = Some((seg_first, File::open(&path).map_err(io_err(&path))?));
            }
            let Some((_, file)) = open.as_ref() else {
                break;
            };
            let offset = match self.pos {
                Some((first, offset)) if first == seg_first => offset,
                // Position at `cursor` by skipping earlier records (only after a start or a skip).
                _ => self.skip_to_cursor(file, seg_first, seg.synced_len)?,
            };
            self.pos = Some((seg_first, offset));
            let avail = seg.synced_len.saturating_sub(offset);
            if avail == 0 {
                match next_first {
                    Some(n) => {
                        if self.cursor < n {
                            self.report_lost(n, seg_first, offset);
                        }
                        self.damaged_at = None;
                        self.pos = None;
                        continue;
                    }
                    None => break,
                }
            }
            let want = avail.min(
                ((max - out.len()) as u64)
                    .saturating_mul(2048)
                    .max(64 * 1024),
            );
            let mut buf = vec![0u8; want as usize];
            file.read_exact_at(&mut buf, offset)
                .map_err(io_err(&path))?;
            let mut used = 0usize;
            if memchr::memchr(b'\n', &buf).is_none() && want < avail {
                // A line longer than the buffer: read the rest of the segment.
                buf = vec![0u8; avail as usize];
                file.read_exact_at(&mut buf, offset)
                    .map_err(io_err(&path))?;
            }
            while out.len() < max {
                let Some(nl) = memchr::memchr(b'\n', &buf[used..]) else {
                    break;
                };
                let line_at = offset + used as u64;
                self.take_line(
                    &buf[used..used + nl],
                    seg_first,
                    line_at,
                    synced_end,
                    &mut out,
                );
                used += nl + 1;
            }
            if used == 0 {
                // Only a part of a line is synced (cannot happen: syncs end at a record).
                break;
            }
            self.pos = Some((seg_first, offset + used as u64));
        }
        Ok(out)
    }

    /// Sets the read offset in the freshly opened segment to the first line that is not a valid record
    /// below the cursor (a damaged line stops it, so that its offset is known if it hid a record).
    fn skip_to_cursor(&self, file: &File, first: u64, synced_len: u64) -> Result<u64, SpoolError> {
        if first >= self.cursor {
            return Ok(0);
        }
        let path = self.shared.dir.join(segment_name(first));
        let mut buf = vec![0u8; synced_len as usize];
        file.read_exact_at(&mut buf, 0).map_err(io_err(&path))?;
        let mut pos = 0usize;
        while let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) {
            match parse_record(&buf[pos..pos + nl]) {
                Some(r) if r.seq < self.cursor => pos += nl + 1,
                _ => break,
            }
        }
        Ok(pos as u64)
    }

    /// Records that everything before `next` is delivered: deletes segments every output has passed, then
    /// saves the cursor. Deleting first frees space for the cursor file on a full disk, and is safe: a cursor
    /// file left older (the save failed, or a crash) only means those alerts are delivered again, from the
    /// oldest segment left.
    pub fn commit(&mut self, next: u64) -> Result<(), SpoolError> {
        let doomed = {
            let mut st = lock(&self.shared);
            st.cursors.insert(self.name.clone(), next);
            st.take_passed()
        };
        self.shared.delete(doomed);
        let tmp = self.cursor_path.with_extension("tmp");
        fs::write(&tmp, format!("{next}\n")).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &self.cursor_path).map_err(io_err(&self.cursor_path))?;
        Ok(())
    }

    /// Moves the read position back to `cursor` (after a failed batch is to be read again).
    pub fn rewind(&mut self, cursor: u64) {
        self.cursor = cursor;
        self.pos = None;
        self.damaged_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SpoolOptions {
        SpoolOptions {
            max_bytes: 1 << 30,
            segment_bytes: 300,
        }
    }

    /// Found by fuzzing (fuzz/regressions/spool/): a record numbered `u64::MAX` overflowed `seq + 1` at
    /// open, and a segment named by the last number overflowed `next_seq += 1` at the first append (a
    /// panic in debug builds, numbers handed out again from 0 in release). Such a record is damage, and a
    /// spool out of numbers refuses to append.
    #[test]
    fn the_last_sequence_number_is_never_a_record_nor_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let json = alert_json(1);
        let line = format!("{}\t{json}\n", u64::MAX);
        fs::write(
            dir.path().join(segment_name(0)),
            format!("{}{line}", encode(7, &json)),
        )
        .unwrap();
        let mut s = Spool::open(dir.path(), opts()).unwrap();
        assert_eq!(
            s.next_seq(),
            8,
            "the line numbered u64::MAX is not a record"
        );
        let mut r = s.reader("out").unwrap();
        assert_eq!(
            r.read(10)
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>(),
            vec![7]
        );
        assert_eq!(s.append_json(&json).unwrap(), 8);
        drop(s);

        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(segment_name(u64::MAX)), b"").unwrap();
        let mut s = Spool::open(dir.path(), opts()).unwrap();
        let e = s.append_json(&json).unwrap_err().to_string();
        assert!(e.contains("every sequence number is used"), "{e}");
    }

    fn alert_json(i: u64) -> String {
        format!(
            "{{\"@timestamp\":\"2024-01-01T00:00:00.000000Z\",\"event\":{{\"id\":\"id{i}\",\"severity\":3}},\"n\":{i}}}"
        )
    }

    fn segments(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".seg"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn append_sync_read_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), opts()).unwrap();
        let mut r = s.reader("a").unwrap();
        for i in 0..2 {
            assert_eq!(s.append_json(&alert_json(i)).unwrap(), i);
        }
        // Not synced: invisible.
        assert!(r.read(100).unwrap().is_empty());
        for i in 2..10 {
            assert_eq!(s.append_json(&alert_json(i)).unwrap(), i);
        }
        s.sync().unwrap();
        assert!(segments(dir.path()).len() > 1, "segments rolled");
        let got = r.read(4).unwrap();
        assert_eq!(
            got.iter().map(|x| x.seq).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert_eq!(got[0].event_id, "id0");
        assert_eq!(got[0].severity, 3);
        assert_eq!(&*got[1].json, alert_json(1));
        let rest = r.read(100).unwrap();
        assert_eq!(
            rest.iter().map(|x| x.seq).collect::<Vec<_>>(),
            (4..10).collect::<Vec<_>>()
        );
    }

    #[test]
    fn cursors_persist_and_segments_go_when_all_passed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), opts()).unwrap();
        let mut a = s.reader("a").unwrap();
        let mut b = s.reader("b").unwrap();
        for i in 0..10 {
            s.append_json(&alert_json(i)).unwrap();
        }
        s.sync().unwrap();
        let before = segments(dir.path()).len();
        let got = a.read(100).unwrap();
        a.commit(got.last().unwrap().seq + 1).unwrap();
        assert_eq!(
            segments(dir.path()).len(),
            before,
            "b has delivered nothing"
        );
        let got = b.read(5).unwrap();
        b.commit(5).unwrap();
        assert!(segments(dir.path()).len() < before);
        assert_eq!(got.len(), 5);
        // Restart: b resumes at 5, a at 10 (nothing left), a new output at the oldest retained record.
        drop((a, b, s));
        let s = Spool::open(dir.path(), opts()).unwrap();
        assert_eq!(s.next_seq(), 10);
        let mut b = s.reader("b").unwrap();
        assert_eq!(b.read(1).unwrap()[0].seq, 5);
        let mut a = s.reader("a").unwrap();
        assert!(a.read(10).unwrap().is_empty());
        let mut c = s.reader("c").unwrap();
        assert!(c.read(1).unwrap()[0].seq <= 5);
    }

    #[test]
    fn all_delivered_keeps_numbering_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), opts()).unwrap();
        let mut a = s.reader("a").unwrap();
        for i in 0..10 {
            s.append_json(&alert_json(i)).unwrap();
        }
        s.sync().unwrap();
        a.read(100).unwrap();
        a.commit(10).unwrap();
        assert_eq!(
            segments(dir.path()).len(),
            1,
            "only the active segment stays"
        );
        drop((a, s));
        let mut s = Spool::open(dir.path(), opts()).unwrap();
        assert_eq!(s.next_seq(), 10);
        assert_eq!(s.append_json(&alert_json(10)).unwrap(), 10);
        s.sync().unwrap();
        let mut a = s.reader("a").unwrap();
        assert_eq!(
            a.read(10)
                .unwrap()
                .iter()
                .map(|x| x.seq)
                .collect::<Vec<_>>(),
            vec![10]
        );
    }

    #[test]
    fn full_then_room_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(
            dir.path(),
            SpoolOptions {
                max_bytes: 500,
                segment_bytes: 200,
            },
        )
        .unwrap();
        let mut a = s.reader("a").unwrap();
        let mut n = 0;
        while !s.is_full() {
            s.append_json(&alert_json(n)).unwrap();
            n += 1;
        }
        s.sync().unwrap();
        assert!(s.bytes() >= 500);
        let got = a.read(1000).unwrap();
        assert_eq!(got.len() as u64, n, "nothing dropped");
        a.commit(n).unwrap();
        assert!(!s.is_full());
    }

    #[test]
    fn torn_tail_is_discarded_and_numbering_continues() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), opts()).unwrap();
        for i in 0..2 {
            s.append_json(&alert_json(i)).unwrap();
        }
        s.sync().unwrap();
        drop(s);
        let last = segments(dir.path()).pop().unwrap();
        let path = dir.path().join(&last);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        // A crash in the middle of the third record.
        f.write_all(b"2\t{\"@timestamp\":\"2024").unwrap();
        drop(f);
        let len_torn = fs::metadata(&path).unwrap().len();
        let mut s = Spool::open(dir.path(), opts()).unwrap();
        assert!(fs::metadata(&path).unwrap().len() < len_torn);
        assert_eq!(s.next_seq(), 2);
        s.append_json(&alert_json(2)).unwrap();
        s.sync().unwrap();
        let mut r = s.reader("a").unwrap();
        let got = r.read(10).unwrap();
        assert_eq!(got.iter().map(|x| x.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(got.iter().all(|x| x.event_id.starts_with("id")));

        // Garbage (zeros after a power loss) instead of a partial line is discarded the same way.
        drop((r, s));
        let last = segments(dir.path()).pop().unwrap();
        let path = dir.path().join(&last);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0u8; 64]).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        let s = Spool::open(dir.path(), opts()).unwrap();
        assert_eq!(s.next_seq(), 3);
    }

    #[test]
    fn rewind_reads_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), opts()).unwrap();
        let mut r = s.reader("a").unwrap();
        for i in 0..5 {
            s.append_json(&alert_json(i)).unwrap();
        }
        s.sync().unwrap();
        assert_eq!(r.read(3).unwrap().len(), 3);
        r.rewind(1);
        assert_eq!(r.read(1).unwrap()[0].seq, 1);
        assert!(s.reader("../x").is_err());
    }

    /// Line `i` (0-based) of a segment: (byte offset, length without the LF).
    fn line_at(bytes: &[u8], i: usize) -> (usize, usize) {
        let mut off = 0;
        for (n, l) in bytes.split_inclusive(|&c| c == b'\n').enumerate() {
            if n == i {
                return (off, l.len() - 1);
            }
            off += l.len();
        }
        panic!("no line {i}");
    }

    fn seqs(v: &[Spooled]) -> Vec<u64> {
        v.iter().map(|x| x.seq).collect()
    }

    fn one_segment() -> SpoolOptions {
        SpoolOptions {
            max_bytes: 1 << 30,
            segment_bytes: 1 << 20,
        }
    }

    #[test]
    fn records_carry_a_checksum() {
        let line = encode(7, &alert_json(7));
        let (head, json) = line.trim_end().split_at(line.find('{').unwrap());
        let parts: Vec<&str> = head.split('\t').collect();
        assert_eq!(parts[0], "7");
        assert_eq!(parts[1].len(), 8);
        assert_eq!(json, alert_json(7));
        assert_eq!(parse_record(line.trim_end().as_bytes()).unwrap().seq, 7);
        // Any single flipped bit is caught: in the number, the checksum, the tabs or the JSON.
        let raw = line.trim_end().as_bytes().to_vec();
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut b = raw.clone();
                b[i] ^= 1 << bit;
                let got = parse_record(&b);
                assert!(
                    got.is_none(),
                    "flip at {i} bit {bit} accepted: {}",
                    String::from_utf8_lossy(&b)
                );
            }
        }
    }

    #[test]
    fn active_segment_is_freed_when_every_cursor_has_passed_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), one_segment()).unwrap();
        let mut a = s.reader("a").unwrap();
        let mut b = s.reader("b").unwrap();
        // Half a segment: the active segment is freed from a quarter on (less is not worth a new file).
        let mut n = 0;
        while s.bytes() < s.segment_bytes() / 2 {
            s.append_json(&alert_json(n)).unwrap();
            n += 1;
        }
        s.sync().unwrap();
        assert_eq!(segments(dir.path()).len(), 1, "all in the active segment");
        let held = s.bytes();
        a.read(100_000).unwrap();
        a.commit(n).unwrap();
        assert!(!s.is_full());
        assert_eq!(s.bytes(), held, "b has not delivered them");
        assert_eq!(b.read(100_000).unwrap().len() as u64, n);
        b.commit(n).unwrap();
        // The pipeline's next turn (is_full, or the next append) frees the delivered active segment.
        assert!(!s.is_full());
        assert_eq!(s.bytes(), 0, "delivered space freed");
        let on_disk: u64 = segments(dir.path())
            .iter()
            .map(|n| fs::metadata(dir.path().join(n)).unwrap().len())
            .sum();
        assert_eq!(on_disk, 0);
        assert_eq!(segments(dir.path()), vec![segment_name(n)]);
        // The numbering goes on, also after a restart.
        drop((a, b, s));
        let mut s = Spool::open(dir.path(), one_segment()).unwrap();
        assert_eq!(s.next_seq(), n);
        assert_eq!(s.append_json(&alert_json(n)).unwrap(), n);
        s.sync().unwrap();
        let mut a = s.reader("a").unwrap();
        assert_eq!(seqs(&a.read(10).unwrap()), vec![n]);
    }

    #[test]
    fn a_flipped_byte_mid_segment_skips_exactly_that_record_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), one_segment()).unwrap();
        for i in 0..10 {
            s.append_json(&alert_json(i)).unwrap();
        }
        s.sync().unwrap();
        drop(s);
        let path = dir.path().join(segment_name(0));
        let mut bytes = fs::read(&path).unwrap();
        let (off, len) = line_at(&bytes, 4);
        // A flip that keeps the JSON valid (a digit of the alert's number): only the checksum sees it.
        let digit = off + len - 2;
        assert_eq!(bytes[digit], b'4');
        bytes[digit] = b'5';
        fs::write(&path, &bytes).unwrap();
        let s = Spool::open(dir.path(), one_segment()).unwrap();
        assert_eq!(s.next_seq(), 10, "records after the damage are kept");
        assert_eq!(fs::metadata(&path).unwrap().len(), bytes.len() as u64);
        let mut r = s.reader("a").unwrap();
        let got = r.read(100).unwrap();
        assert_eq!(seqs(&got), vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
        assert!(got.iter().all(|x| x.event_id == format!("id{}", x.seq)));
        assert_eq!(r.lost(), 1);
        // A second output that had delivered record 4 already loses nothing.
        fs::write(dir.path().join("cursors/b"), "5\n").unwrap();
        let mut b = s.reader("b").unwrap();
        assert_eq!(seqs(&b.read(100).unwrap()), vec![5, 6, 7, 8, 9]);
        assert_eq!(b.lost(), 0);
    }

    #[test]
    fn damage_in_a_rolled_segment_is_skipped_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), opts()).unwrap();
        for i in 0..12 {
            s.append_json(&alert_json(i)).unwrap();
        }
        s.sync().unwrap();
        let segs = segments(dir.path());
        assert!(segs.len() >= 3);
        // The middle record of the first segment loses a byte of its JSON.
        let path = dir.path().join(&segs[0]);
        let mut bytes = fs::read(&path).unwrap();
        let (off, len) = line_at(&bytes, 1);
        bytes[off + len / 2] ^= 0x20;
        fs::write(&path, &bytes).unwrap();
        let mut r = s.reader("a").unwrap();
        let got = r.read(100).unwrap();
        assert_eq!(seqs(&got), (0..12).filter(|&i| i != 1).collect::<Vec<_>>());
        assert_eq!(r.lost(), 1);
    }

    #[test]
    fn a_lost_record_is_reported_with_segment_offset_and_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), one_segment()).unwrap();
        for i in 0..10 {
            s.append_json(&alert_json(i)).unwrap();
        }
        s.sync().unwrap();
        let path = dir.path().join(segment_name(0));
        let mut bytes = fs::read(&path).unwrap();
        // The LF ending record 3 is damaged: records 3 and 4 become one bad line, both are lost.
        let (off3, len3) = line_at(&bytes, 3);
        bytes[off3 + len3] = b' ';
        // And the checksum of record 7.
        let (off7, _) = line_at(&bytes, 6);
        bytes[off7 + 2] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let mut r = s.reader("out").unwrap();
        let got = r.read(3).unwrap();
        assert_eq!(seqs(&got), vec![0, 1, 2]);
        assert_eq!(r.lost(), 0);
        let got = r.read(100).unwrap();
        assert_eq!(seqs(&got), vec![5, 6, 8, 9]);
        assert_eq!(r.lost(), 3);
        assert_eq!(
            r.last_loss(),
            Some(&Loss {
                segment: path.clone(),
                offset: off7 as u64,
                first_seq: 7,
                last_seq: 7,
            })
        );
        // The first loss, seen alone by a fresh reader.
        let mut r = s.reader("other").unwrap();
        assert_eq!(seqs(&r.read(4).unwrap()), vec![0, 1, 2, 5]);
        assert_eq!(
            r.last_loss(),
            Some(&Loss {
                segment: path,
                offset: off3 as u64,
                first_seq: 3,
                last_seq: 4,
            })
        );
    }

    #[test]
    fn damage_at_the_end_of_a_segment_is_reported_when_the_next_begins() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), opts()).unwrap();
        for i in 0..12 {
            s.append_json(&alert_json(i)).unwrap();
        }
        s.sync().unwrap();
        let segs = segments(dir.path());
        let path = dir.path().join(&segs[0]);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .count()
            - 1;
        let (off, len) = line_at(&bytes, last);
        bytes[off + len / 2] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let mut r = s.reader("a").unwrap();
        let got = r.read(100).unwrap();
        assert_eq!(got.len(), 11);
        assert_eq!(r.lost(), 1);
        let loss = r.last_loss().unwrap();
        assert_eq!((loss.first_seq, loss.last_seq), (last as u64, last as u64));
        assert_eq!(loss.offset, off as u64);
    }

    #[test]
    fn old_format_segments_are_read_and_continued() {
        let dir = tempfile::tempdir().unwrap();
        // Written by the previous version: `SEQ<TAB>JSON<LF>`, no checksum, in two segments.
        let old = |range: std::ops::Range<u64>| -> String {
            range.map(|i| format!("{i}\t{}\n", alert_json(i))).collect()
        };
        fs::write(dir.path().join(segment_name(0)), old(0..4)).unwrap();
        fs::write(dir.path().join(segment_name(4)), old(4..7)).unwrap();
        fs::create_dir_all(dir.path().join("cursors")).unwrap();
        fs::write(dir.path().join("cursors/a"), "2\n").unwrap();
        let mut s = Spool::open(dir.path(), one_segment()).unwrap();
        assert_eq!(s.next_seq(), 7);
        s.append_json(&alert_json(7)).unwrap();
        s.sync().unwrap();
        let mut a = s.reader("a").unwrap();
        let got = a.read(100).unwrap();
        assert_eq!(seqs(&got), vec![2, 3, 4, 5, 6, 7]);
        assert_eq!(&*got[0].json, alert_json(2));
        assert_eq!(a.lost(), 0);
        // After a restart the mixed segment (old lines, then a new one) reads the same.
        drop((a, s));
        let s = Spool::open(dir.path(), one_segment()).unwrap();
        assert_eq!(s.next_seq(), 8);
        let mut b = s.reader("b").unwrap();
        assert_eq!(seqs(&b.read(100).unwrap()), (0..8).collect::<Vec<_>>());
        assert_eq!(b.lost(), 0);
    }

    #[test]
    fn a_cut_tail_that_an_output_had_delivered_is_reported_lost_not_raised_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), one_segment()).unwrap();
        let mut a = s.reader("a").unwrap();
        let mut b = s.reader("b").unwrap();
        for i in 0..5 {
            s.append_json(&alert_json(i)).unwrap();
        }
        s.sync().unwrap();
        a.read(10).unwrap();
        a.commit(5).unwrap();
        b.commit(3).unwrap();
        drop((a, b, s));
        let path = dir.path().join(segment_name(0));
        let mut bytes = fs::read(&path).unwrap();
        let (off, _) = line_at(&bytes, 4);
        bytes[off + 3] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let s = Spool::open(dir.path(), one_segment()).unwrap();
        assert_eq!(s.next_seq(), 4);
        assert_eq!(fs::metadata(&path).unwrap().len(), off as u64);
        assert_eq!(
            s.lost_at_open(),
            1,
            "b had not delivered record 4 and never will"
        );
        // A crash's torn tail (no cursor beyond it) is not a loss.
        drop(s);
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"4\tdeadbeef\t{\"@time")
            .unwrap();
        fs::write(dir.path().join("cursors/a"), "4\n").unwrap();
        let s = Spool::open(dir.path(), one_segment()).unwrap();
        assert_eq!(s.next_seq(), 4);
        assert_eq!(s.lost_at_open(), 0);
    }

    #[test]
    fn segments_are_sized_against_max_bytes_and_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let big = SpoolOptions {
            max_bytes: 1 << 30,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        };
        let free = free_bytes(dir.path()).unwrap();
        let want = DEFAULT_SEGMENT_BYTES.min(free / 8).max(MIN_SEGMENT_BYTES);
        assert_eq!(segment_size(&big, dir.path(), 0), want);
        let small = SpoolOptions {
            max_bytes: 1 << 20,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        };
        assert!(segment_size(&small, dir.path(), 0) <= 256 * 1024);
        assert_eq!(
            segment_size(&opts(), dir.path(), 0),
            300,
            "a smaller configured size is kept"
        );
    }
}
