//! The spool: a durable, bounded, append-only queue of alerts between the detector and the outputs, in
//! `<state.dir>/spool/`.
//!
//! Layout: segment files `<first seq, 20 digits>.seg`, each holding records as text lines
//! `SEQ<TAB>ALERT-JSON<LF>`, sequence numbers strictly increasing by one across segments. The pipeline thread
//! appends to the last (active) segment and rolls to a new one past [`SpoolOptions::segment_bytes`]; a rolled
//! segment is fsynced before the next one is created. Each output has a cursor (the next sequence number it
//! has not delivered) in `spool/cursors/<name>`, advanced only after a batch is delivered.
//!
//! Invariants:
//! - **Readers only see synced records.** [`Spool::sync`] fsyncs the active segment and only then publishes the
//!   new end to the readers. So a sequence number that an output delivered (and a cursor that passed it) is
//!   always durable: after a crash no number is handed out twice for different alerts.
//! - **Torn tail.** After a crash the active segment may end in a partial or garbled record (written, never
//!   synced, never delivered, never covered by a checkpoint). [`Spool::open`] truncates the active segment at
//!   the first record that is not a complete `SEQ<TAB>JSON<LF>` line with the expected number; the records that
//!   raised it are read again (the checkpoint did not cover them) and the alert is raised again.
//! - **Deletion.** A segment is deleted only when every configured output's cursor has passed its last record;
//!   the active segment is never deleted, so its name keeps the next sequence number after a restart.
//! - **Bounded.** [`Spool::is_full`] turns true when the segments take `max_bytes` or more; the daemon then
//!   stops reading its sources (the log files are the buffer) until outputs catch up and segments are
//!   deleted. Alerts of records already read are still appended, so the limit is overshot by the alerts of
//!   one poll (`Tailer::poll` reads everything available, which after a long stop can be a large backlog);
//!   nothing is ever dropped.
//! - Cursors are written atomically (temp file + rename) but not fsynced: a cursor lost in a crash falls back
//!   to an older one (or to the oldest segment), which means redelivery, never loss.

use crate::alert::Alert;
use crate::output::Spooled;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::{error, info, warn};

/// Default segment size: large enough for few files, small enough to free space early.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

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
    /// A segment is rolled once it reaches this size.
    pub segment_bytes: u64,
}

/// One segment as the shared state knows it.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Synced length in bytes (what readers may read).
    synced_len: u64,
    /// Length including unsynced appends.
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

struct Shared {
    dir: PathBuf,
    opts: SpoolOptions,
    state: Mutex<State>,
    /// The synced end, for readers to wait on.
    synced_tx: tokio::sync::watch::Sender<u64>,
}

/// The writing side (the pipeline thread owns it) and a factory for readers.
pub struct Spool {
    shared: Arc<Shared>,
    active: BufWriter<File>,
    active_first: u64,
    next_seq: u64,
    /// A segment was created since the last directory fsync.
    dir_dirty: bool,
    full_warned: bool,
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

#[derive(Deserialize)]
struct IdFields {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    event: IdEvent,
}

#[derive(Deserialize)]
struct IdEvent {
    id: String,
    severity: u8,
}

/// Parses one record line (without its LF): `Some((seq, Spooled))` if it is whole and valid.
fn parse_record(line: &[u8]) -> Option<Spooled> {
    let tab = memchr::memchr(b'\t', line)?;
    let seq: u64 = std::str::from_utf8(&line[..tab]).ok()?.parse().ok()?;
    let json = std::str::from_utf8(&line[tab + 1..]).ok()?;
    let f: IdFields = serde_json::from_str(json).ok()?;
    Some(Spooled {
        seq,
        event_id: f.event.id,
        timestamp: f.timestamp,
        severity: f.event.severity,
        json: Arc::from(json),
    })
}

/// Scans a segment from the start; returns the byte length of its valid prefix and the next sequence number.
fn scan_valid(bytes: &[u8], first: u64) -> (u64, u64) {
    let mut pos = 0usize;
    let mut next = first;
    while pos < bytes.len() {
        let Some(nl) = memchr::memchr(b'\n', &bytes[pos..]) else {
            break;
        };
        match parse_record(&bytes[pos..pos + nl]) {
            Some(r) if r.seq == next => {
                next += 1;
                pos += nl + 1;
            }
            _ => break,
        }
    }
    (pos as u64, next)
}

fn valid_cursor_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, truncating a torn tail of the active segment.
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
        let (active_first, next_seq) = match segments.iter().next_back().map(|(k, _)| *k) {
            Some(first) => {
                let path = dir.join(segment_name(first));
                let bytes = fs::read(&path).map_err(io_err(&path))?;
                let (valid, next) = scan_valid(&bytes, first);
                if valid < bytes.len() as u64 {
                    warn!(
                        segment = %path.display(),
                        discarded_bytes = bytes.len() as u64 - valid,
                        "spool: torn record at the end discarded (its alert is raised again from the log)"
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io_err(&path))?;
                    f.set_len(valid).map_err(io_err(&path))?;
                    f.sync_all().map_err(io_err(&path))?;
                    segments.insert(
                        first,
                        Segment {
                            synced_len: valid,
                            len: valid,
                        },
                    );
                }
                (first, next)
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
        let path = dir.join(segment_name(active_first));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
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
            active: BufWriter::with_capacity(256 * 1024, file),
            active_first,
            next_seq,
            dir_dirty: true,
            full_warned: false,
        };
        info!(dir = %dir.display(), next_seq, bytes = spool.bytes(), "spool opened");
        Ok(spool)
    }

    fn path_of(&self, first: u64) -> PathBuf {
        self.shared.dir.join(segment_name(first))
    }

    /// Appends one alert; it becomes visible to outputs at the next [`Spool::sync`].
    pub fn append(&mut self, alert: &Alert) -> Result<u64, SpoolError> {
        self.append_json(&alert.to_json())
    }

    /// Appends one alert given as its JSON line (no newline inside, as `Alert::to_json` makes it).
    pub fn append_json(&mut self, json: &str) -> Result<u64, SpoolError> {
        let seq = self.next_seq;
        let line = format!("{seq}\t{json}\n");
        let len_now = lock(&self.shared)
            .segments
            .get(&self.active_first)
            .map_or(0, |s| s.len);
        if len_now > 0 && len_now + line.len() as u64 > self.shared.opts.segment_bytes {
            self.roll()?;
        }
        let path = self.path_of(self.active_first);
        self.active
            .write_all(line.as_bytes())
            .map_err(io_err(&path))?;
        self.next_seq += 1;
        let mut st = lock(&self.shared);
        if let Some(s) = st.segments.get_mut(&self.active_first) {
            s.len += line.len() as u64;
        }
        Ok(seq)
    }

    /// Syncs the active segment and starts a new one named by the next sequence number.
    fn roll(&mut self) -> Result<(), SpoolError> {
        self.sync()?;
        let first = self.next_seq;
        let path = self.path_of(first);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.active = BufWriter::with_capacity(256 * 1024, file);
        self.active_first = first;
        self.dir_dirty = true;
        lock(&self.shared).segments.insert(
            first,
            Segment {
                synced_len: 0,
                len: 0,
            },
        );
        Ok(())
    }

    /// Makes every appended alert durable (fsync), then hands them to the outputs. The pipeline calls this
    /// before saving a checkpoint that covers the records that raised them.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        let path = self.path_of(self.active_first);
        self.active.flush().map_err(io_err(&path))?;
        self.active.get_ref().sync_data().map_err(io_err(&path))?;
        if self.dir_dirty {
            File::open(&self.shared.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(&self.shared.dir))?;
            self.dir_dirty = false;
        }
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

    /// Bytes the segments take.
    pub fn bytes(&self) -> u64 {
        lock(&self.shared).segments.values().map(|s| s.len).sum()
    }

    /// Whether the spool has reached `max_bytes`: the pipeline must stop reading. Warns loudly once per
    /// episode and says when it is over.
    pub fn is_full(&mut self) -> bool {
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
            synced_rx: self.shared.synced_tx.subscribe(),
        })
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves plain numbers behind; keep going with them.
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// One output's view of the spool: reads forward from its cursor.
pub struct SpoolReader {
    shared: Arc<Shared>,
    name: String,
    cursor_path: PathBuf,
    /// The next sequence number to hand out (read, not necessarily committed).
    cursor: u64,
    /// (segment first seq, open file, byte offset of `cursor` in it).
    pos: Option<(u64, File, u64)>,
    synced_rx: tokio::sync::watch::Receiver<u64>,
}

impl SpoolReader {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until there may be something new to read (a sync happened since the last call).
    pub async fn changed(&mut self) {
        if self.synced_rx.changed().await.is_err() {
            // The spool is gone (shutdown); nothing more will come.
            std::future::pending::<()>().await;
        }
    }

    /// Up to `max` synced alerts from the read position on, in order. Empty if there are none.
    pub fn read(&mut self, max: usize) -> Result<Vec<Spooled>, SpoolError> {
        let mut out = Vec::new();
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
            if self.pos.as_ref().map(|p| p.0) != Some(seg_first) {
                let path = self.shared.dir.join(segment_name(seg_first));
                let file = File::open(&path).map_err(io_err(&path))?;
                self.pos = Some((seg_first, file, 0));
                // Position at `cursor` by skipping earlier records (only after a start or a skip).
                self.skip_to_cursor(seg.synced_len)?;
            }
            let Some((_, file, offset)) = self.pos.as_mut() else {
                break;
            };
            let avail = seg.synced_len.saturating_sub(*offset);
            if avail == 0 {
                match next_first {
                    Some(n) => {
                        if self.cursor < n {
                            error!(output = %self.name, from = self.cursor, to = n, "spool: records missing in a segment, skipped");
                            self.cursor = n;
                        }
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
            let path = self.shared.dir.join(segment_name(seg_first));
            file.read_exact_at(&mut buf, *offset)
                .map_err(io_err(&path))?;
            let mut used = 0usize;
            while out.len() < max {
                let Some(nl) = memchr::memchr(b'\n', &buf[used..]) else {
                    break;
                };
                let line = &buf[used..used + nl];
                used += nl + 1;
                match parse_record(line) {
                    Some(r) if r.seq >= self.cursor && r.seq < synced_end => {
                        self.cursor = r.seq + 1;
                        out.push(r);
                    }
                    Some(_) => {}
                    None => {
                        error!(output = %self.name, segment = %path.display(), offset = *offset + used as u64, "spool: corrupt record skipped");
                    }
                }
            }
            if used == 0 && want < avail {
                // A record longer than the buffer: read it whole next time.
                let mut big = vec![0u8; avail as usize];
                file.read_exact_at(&mut big, *offset)
                    .map_err(io_err(&path))?;
                if let Some(nl) = memchr::memchr(b'\n', &big) {
                    if let Some(r) = parse_record(&big[..nl]) {
                        if r.seq >= self.cursor {
                            self.cursor = r.seq + 1;
                            out.push(r);
                        }
                    }
                    used = nl + 1;
                } else {
                    break;
                }
            } else if used == 0 {
                break;
            }
            *offset += used as u64;
        }
        Ok(out)
    }

    fn skip_to_cursor(&mut self, synced_len: u64) -> Result<(), SpoolError> {
        let Some((first, file, offset)) = self.pos.as_mut() else {
            return Ok(());
        };
        if *first >= self.cursor {
            return Ok(());
        }
        let path = self.shared.dir.join(segment_name(*first));
        let mut buf = vec![0u8; synced_len as usize];
        file.read_exact_at(&mut buf, 0).map_err(io_err(&path))?;
        let mut pos = 0usize;
        while let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) {
            let seq = parse_record(&buf[pos..pos + nl]).map(|r| r.seq);
            if seq.is_some_and(|s| s >= self.cursor) {
                break;
            }
            pos += nl + 1;
        }
        *offset = pos as u64;
        Ok(())
    }

    /// Records that everything before `next` is delivered: saves the cursor and deletes segments every output
    /// has passed.
    pub fn commit(&mut self, next: u64) -> Result<(), SpoolError> {
        let tmp = self.cursor_path.with_extension("tmp");
        fs::write(&tmp, format!("{next}\n")).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &self.cursor_path).map_err(io_err(&self.cursor_path))?;
        let doomed: Vec<u64> = {
            let mut st = lock(&self.shared);
            st.cursors.insert(self.name.clone(), next);
            let min = st.cursors.values().copied().min().unwrap_or(next);
            let firsts: Vec<u64> = st.segments.keys().copied().collect();
            // Segment i may go when segment i+1 starts at or before `min` (all of i is below min); the
            // last (active) segment never goes.
            let doomed: Vec<u64> = firsts
                .windows(2)
                .filter(|w| w[1] <= min)
                .map(|w| w[0])
                .collect();
            for f in &doomed {
                st.segments.remove(f);
            }
            doomed
        };
        for first in doomed {
            let path = self.shared.dir.join(segment_name(first));
            match fs::remove_file(&path) {
                Ok(()) => {
                    info!(segment = %path.display(), "spool segment delivered everywhere: deleted")
                }
                Err(e) => {
                    warn!(segment = %path.display(), "spool: deleting a delivered segment failed: {e}")
                }
            }
        }
        Ok(())
    }

    /// Moves the read position back to `cursor` (after a failed batch is to be read again).
    pub fn rewind(&mut self, cursor: u64) {
        self.cursor = cursor;
        self.pos = None;
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
}
