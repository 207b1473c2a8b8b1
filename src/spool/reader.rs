//! One output's view of the spool: [`SpoolReader`] reads synced records forward from the output's cursor,
//! opening a segment only for the length of one [`SpoolReader::read`] (an idle reader must not keep a
//! deleted segment's space), skips damaged lines and reports what the output will never deliver as a
//! [`Loss`], and commits the cursor after a batch is delivered, deleting the segments every output has
//! passed.

use super::record::{parse_record, segment_name};
use super::{cursor, io_err, lock, Shared, Spool, SpoolError, Spooled};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{error, warn};

impl Spool {
    /// A reader for the output `name`, starting at its saved cursor (or at the oldest alert in the spool if
    /// it has none). Every output in use must have a reader before segments are deleted on its behalf.
    pub fn reader(&self, name: &str) -> Result<SpoolReader, SpoolError> {
        let path = cursor::path(&self.shared.dir, name)?;
        let mut st = lock(&self.shared);
        let oldest = st.segments.keys().next().copied().unwrap_or(0);
        let saved = cursor::load(&path, name)?;
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
        cursor::save(&self.cursor_path, next)
    }

    /// Moves the read position back to `cursor` (after a failed batch is to be read again).
    pub fn rewind(&mut self, cursor: u64) {
        self.cursor = cursor;
        self.pos = None;
        self.damaged_at = None;
    }
}
