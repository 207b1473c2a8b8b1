//! Room on the disk: the segment size chosen against `max_bytes` and the free space, and what an append
//! does when the disk is full (ENOSPC) or the quota is reached (EDQUOT): whole records that fit are
//! written, the partial write cut off, the active segment closed so the outputs can free it, and the rest
//! kept buffered for the next try. Also the freeing of a delivered active segment.

use super::{
    create_segment, io_err, lock, Segment, Spool, SpoolError, SpoolOptions, MIN_SEGMENT_BYTES,
};
use std::io::{self, Write};
use std::path::Path;
use tracing::{info, warn};

pub(super) fn is_no_space(e: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(Errno::from_io_error(e), Some(Errno::NOSPC | Errno::DQUOT))
}

/// Bytes free for an unprivileged writer on the file system holding `dir`.
pub(super) fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The segment size in force: see the module doc.
pub(super) fn segment_size(opts: &SpoolOptions, dir: &Path, held: u64) -> u64 {
    let by_room = free_bytes(dir).map_or(u64::MAX, |free| free.saturating_add(held) / 8);
    (opts.max_bytes / 4)
        .min(by_room)
        .max(MIN_SEGMENT_BYTES)
        .min(opts.segment_bytes)
        .max(1)
}

impl Spool {
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
    pub(super) fn write_out(&mut self) -> Result<(), SpoolError> {
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
    pub(super) fn free_delivered(&mut self) {
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
}
