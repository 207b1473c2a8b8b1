//! Following one configured log path through rotations, truncations and restarts.
//!
//! A [`Tailer`] is the synchronous, deterministic core the daemon drives: it never sleeps and never spawns;
//! the daemon calls [`Tailer::poll`] when [`watch::watch`] wakes it and on a periodic re-check (which also
//! covers lost notifications, NFS and exhausted inotify watches). Each poll stats the configured path
//! (following a symlinked directory afresh every time) and compares what is there with the file it has open,
//! by (device, inode) and a content fingerprint, never by name:
//!
//! - another file (or none) at the path: the open file was rotated (renamed, moved, deleted); it is kept open
//!   and drained to its end from the handle, then the new file is read from 0. Rotated siblings newer than it
//!   that we never saw (several rotations between two looks) are found in the same directory and drained in
//!   between, oldest first.
//! - the same inode, but shorter than our offset or with another fingerprint: truncated or replaced in place
//!   (copytruncate): read again from 0. If a sibling is a copy of the old content (same fingerprint, another
//!   inode, longer than our offset), the lines we had not read yet are drained from it first.
//!
//! [`Tailer::checkpoint`] saves the position (offset of the first unread line, line number, parser header
//! state) of the live file and of every rotated file still being drained. On restart, a saved file no longer
//! at the path is searched for among its rotated siblings by identity and fingerprint and finished first.
//! Only the configured file name and its rotated forms (`conn.*.log`, `conn.log.N`) are ever read.
//!
//! A caller merging several sources ([`Tailer::poll_gated`]) reads up to the first record its [`Gate`]
//! refuses: that record stays unconsumed (parsed and kept, the position before it), so checkpoints only
//! ever cover records handed over.
//!
//! A read that finds a backlog (a whole chunk at once) goes on in regions parsed ahead on a second thread while
//! the caller's sink runs on the one before (`ahead.rs`; [`Tailer::set_parse_ahead`] turns it off); lines,
//! events, positions and held records are exactly those of a read that parses each line where it is consumed.
//!
//! Identity never depends on time. Only one heuristic does: rotated files we never had open (several
//! rotations between two looks, or while stopped) are those whose modification time is at least that of the
//! last file we read when we last read it, and which we do not remember reading (by inode and fingerprint);
//! they are drained in modification-time order. A wall clock stepping back between two such unseen rotations
//! can hide one of them; files we had open are never affected.

mod ahead;
pub mod config;
mod file;
mod restore;
pub mod watch;

#[cfg(test)]
mod tests;

use crate::zeek::SourceKind;
use crate::zeek::{ConnRecord, ParseOptions, SkipReason};
use config::{Source, StartAt};
use file::{mtime, FileReader, LineFormat};
pub use file::{FileCheckpoint, FileId, Fingerprint, Gate, HeaderLine, FINGERPRINT_LEN};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tracing::debug;

/// Lines longer than this (bytes, without the newline) are skipped and reported as [`SkipReason::TooLong`].
pub const MAX_LINE: usize = 1 << 20;

/// How many retired files are remembered so a rotated sibling is never read twice.
const RETIRED_KEPT: usize = 64;

#[cfg(not(test))]
const CHUNK: usize = 64 * 1024;
// Tests read in tiny chunks, so that lines span chunks and regions and every read parses ahead.
#[cfg(test)]
const CHUNK: usize = 48;

/// What happened while polling, in file order.
// Events go straight to the sink, never into a collection: boxing the record would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum TailEvent<'a> {
    /// A parsed record, at 1-based line `line_no` of `path`.
    Record {
        rec: ConnRecord,
        path: &'a Path,
        line_no: u64,
        bad_values: u32,
    },
    /// A record of a context log (ssl, http, dns).
    Context {
        rec: crate::zeek::context::ContextRecord,
    },
    /// A line that did not become a record (bad row, over-long line, cut-off last line).
    Skipped {
        path: &'a Path,
        line_no: u64,
        reason: SkipReason,
    },
    /// The file we were reading is no longer at the configured path; `to` is its new name in the same
    /// directory, if it is still there. It is drained before the next file.
    Rotated { from: &'a Path, to: Option<PathBuf> },
    /// A file is being read, from byte `resumed_at`.
    Opened { path: &'a Path, resumed_at: u64 },
    /// The file was truncated or replaced in place: read again from 0.
    Truncated { path: &'a Path },
    /// A rotated file was read to its end and closed.
    Finished { path: &'a Path },
    /// A file saved in the checkpoint was not found again at restart; the rest of it is lost.
    Lost { path: &'a Path, offset: u64 },
    /// A run of NUL bytes at a line start (a writer without O_APPEND after a truncation), skipped.
    Nul {
        path: &'a Path,
        offset: u64,
        bytes: u64,
    },
}

/// Counters for one poll.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollStats {
    pub bytes: u64,
    pub lines: u64,
    pub records: u64,
    pub skipped: u64,
}

/// A rotated file already read (or being read), so it is not picked up again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredFile {
    pub id: FileId,
    pub fingerprint: Fingerprint,
}

/// Everything needed to continue one source exactly where it stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCheckpoint {
    /// The configured path.
    pub path: PathBuf,
    /// Rotated files still being drained, oldest first.
    #[serde(default)]
    pub draining: Vec<FileCheckpoint>,
    /// The file at the configured path.
    pub live: Option<FileCheckpoint>,
    /// Recently rotated files, never to be read again.
    #[serde(default)]
    pub retired: Vec<RetiredFile>,
    /// Modification time of the last rotated live file: rotated siblings at least this new and not retired
    /// were rotated while we were not looking.
    #[serde(default)]
    pub anchor: Option<(i64, i64)>,
}

/// A file about to be drained, ordered by its modification time.
struct Pending {
    mtime: (i64, i64),
    reader: FileReader,
    /// Emit `Opened` for it (not for the live file moving to the drain queue).
    announce: bool,
    /// Among files of one modification time (a file time is only as fine as the kernel's tick): the copy
    /// of a truncated file first, then the file we followed until this rotation (everything else found
    /// with it came to the live path after it), then the rest by name.
    rank: Rank,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Copy,
    Held,
    Other,
}

/// Follows one configured source path.
pub struct Tailer {
    path: PathBuf,
    start_at: StartAt,
    kind: SourceKind,
    opts: LineFormat,
    max_line: usize,
    live: Option<FileReader>,
    draining: Vec<FileReader>,
    /// The checkpoint to resume from, applied on the first poll.
    saved: Option<SourceCheckpoint>,
    started: bool,
    retired: Vec<RetiredFile>,
    anchor: Option<(i64, i64)>,
    chunk: Vec<u8>,
    /// A read that finds a backlog goes on parsing ahead on a second thread (`ahead.rs`).
    parse_ahead: bool,
    /// Bytes of the live file read per poll at most, so a large backlog does not hold the caller for long.
    budget: u64,
    #[cfg(test)]
    pub(crate) race_hook: Option<Box<dyn FnMut() + Send>>,
    /// Runs right after a look listed the directory (tests: a change that lands between the listing and
    /// the decisions taken from it).
    #[cfg(test)]
    pub(crate) listed_hook: Option<Box<dyn FnMut() + Send>>,
}

impl Tailer {
    /// A tailer of `source`; its conn records are parsed with `opts`, a context source (ssl, http, dns)
    /// by its own parser.
    pub fn new(source: &Source, opts: ParseOptions, saved: Option<SourceCheckpoint>) -> Tailer {
        let opts = match source.kind.context() {
            Some(k) => LineFormat::Context(k),
            None => LineFormat::Conn(opts),
        };
        Tailer {
            path: source.path.clone(),
            start_at: source.start_at,
            kind: source.kind,
            opts,
            max_line: MAX_LINE,
            live: None,
            draining: Vec::new(),
            saved,
            started: false,
            retired: Vec::new(),
            anchor: None,
            chunk: vec![0; CHUNK],
            parse_ahead: true,
            budget: u64::MAX,
            #[cfg(test)]
            race_hook: None,
            #[cfg(test)]
            listed_hook: None,
        }
    }

    /// Reads at most about `bytes` of the live file per poll (whole chunks; rotated files are always drained
    /// whole). A poll that returns `PollStats::bytes >= bytes` may have more to read.
    pub fn with_poll_budget(mut self, bytes: u64) -> Tailer {
        self.budget = bytes.max(1);
        self
    }

    /// Whether a read that finds a backlog parses ahead on a second thread (default: yes). Either way the
    /// same lines are read, with the same events and positions; a caller whose gate holds a record every
    /// few records gains nothing from it.
    pub fn set_parse_ahead(&mut self, on: bool) {
        self.parse_ahead = on;
    }

    /// Sets the longest line accepted (default [`MAX_LINE`]).
    pub fn with_max_line(mut self, max_line: usize) -> Tailer {
        self.max_line = max_line.max(1);
        self
    }

    /// The kind of log this source is (conn, or an interim log); the detector needs it per record.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// The configured path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every complete new line available now, across rotated files still being drained (oldest first)
    /// and the live file, calling `sink` for each event. Returns when nothing more can be read.
    ///
    /// An error looking at the directory or the live path (permission denied, a symlink loop, an I/O error)
    /// is never taken for absence: nothing is decided about rotations, every saved position is kept, the
    /// files already open are still read, and the error is returned after them; the next poll tries again.
    pub fn poll(&mut self, sink: &mut dyn FnMut(TailEvent)) -> io::Result<PollStats> {
        self.poll_gated(true, &mut |_| true, sink)
    }

    /// [`Tailer::poll`] up to the first record `gate` holds (see [`Gate`]): that record is not consumed (the
    /// checkpoint stays before it) and is offered to the gate first on the next poll; nothing after it is
    /// read meanwhile, and a rotated file holding it is not finished. With `look` false the configured path
    /// is not looked at (no rotation is noticed): only the files already open are read on, which is cheap
    /// enough to do after every few records.
    pub fn poll_gated(
        &mut self,
        look: bool,
        gate: Gate<'_>,
        sink: &mut dyn FnMut(TailEvent),
    ) -> io::Result<PollStats> {
        let mut stats = PollStats::default();
        self.start(sink)?;
        let looked = if look { self.check_live(sink) } else { Ok(()) };

        let mut i = 0;
        // The header of the file drained before, for one that starts with rows (below).
        let mut prev_header: Option<crate::zeek::TsvHeader> = None;
        while i < self.draining.len() {
            let r = &mut self.draining[i];
            // A rotated file read from its start that has no header continues the file drained just before
            // it: a live file copytruncated (its header is in the copy, drained first) and then rotated
            // before we ever had it open (tailing scenario 26). A header block of its own replaces this one.
            if r.offset == 0 && r.buf.is_empty() && !has_fields(r.parser.header()) {
                if let Some(h) = prev_header.take() {
                    r.parser.set_header(h);
                }
            }
            r.parse_ahead = self.parse_ahead;
            let any = r.read(
                &mut self.chunk,
                self.max_line,
                u64::MAX,
                gate,
                sink,
                &mut stats,
            )?;
            if r.holds() {
                // Nothing after a held record is read: it is the next one of this source.
                return looked.map(|()| stats);
            }
            prev_header = has_fields(r.parser.header()).then(|| r.parser.header().clone());
            r.eof_polls = if any { 0 } else { r.eof_polls + 1 };
            let unlinked = r.file.metadata().map(|m| m.nlink() == 0).unwrap_or(true);
            // Finished: the writer closed it (`#close`), or it is deleted (nobody can write it), or a whole
            // poll found nothing new after its rotation.
            if r.saw_close || unlinked || r.eof_polls >= 1 {
                let mut r = self.draining.remove(i);
                r.finish(sink, &mut stats);
                // Remembered by its whole content (up to the fingerprint length), read from the handle.
                if r.refresh_fingerprint().unwrap_or(false) {
                    self.remember(r.id, r.fp.clone());
                }
                debug!(path = %r.path.display(), lines = r.line_no, "rotated file finished");
                sink(TailEvent::Finished { path: &r.path });
            } else {
                i += 1;
            }
        }
        if let Some(r) = self.live.as_mut() {
            // A file read from its start that has no header yet continues the newest file drained before it
            // when it starts with rows: after a copytruncate (even one right after a burst of rotations) the
            // writer goes on without a header, and its header is in the copy (tailing scenario 26). A header
            // block of its own, if it has one, replaces this one.
            if r.offset == 0 && r.buf.is_empty() && !has_fields(r.parser.header()) {
                if let Some(prev) = self.draining.last() {
                    if has_fields(prev.parser.header()) {
                        r.parser.set_header(prev.parser.header().clone());
                    }
                }
            }
            r.parse_ahead = self.parse_ahead;
            r.read(
                &mut self.chunk,
                self.max_line,
                self.budget,
                gate,
                sink,
                &mut stats,
            )?;
        }
        looked.map(|()| stats)
    }

    /// Lines of the open files consumed as a parse worker parsed them (tests: reading ahead happened).
    #[cfg(test)]
    pub(crate) fn parsed_ahead(&self) -> u64 {
        self.draining.iter().map(|r| r.parsed_ahead).sum::<u64>()
            + self.live.as_ref().map_or(0, |r| r.parsed_ahead)
    }

    /// True while a gate holds a record of this source (see [`Tailer::poll_gated`]).
    pub fn holds(&self) -> bool {
        self.draining.iter().any(FileReader::holds)
            || self.live.as_ref().is_some_and(FileReader::holds)
    }

    /// Opens the files to follow, once: from the checkpoint if there is one, else per `start_at`. `poll`
    /// does this first; the daemon calls it on its own at a first start, to save these positions before
    /// reading anything (a kill before the first periodic checkpoint then loses nothing: scenario 25).
    /// On an error nothing is kept and the next call starts again from the same checkpoint.
    pub fn start(&mut self, sink: &mut dyn FnMut(TailEvent)) -> io::Result<()> {
        if self.started {
            return Ok(());
        }
        match self.saved.take() {
            Some(saved) => {
                if let Err(e) = self.restore(saved.clone(), sink) {
                    self.live = None;
                    self.draining.clear();
                    self.saved = Some(saved);
                    return Err(e);
                }
            }
            None => self.first_open(sink)?,
        }
        self.started = true;
        Ok(())
    }

    /// True while no file of this source is open (the live path is missing and nothing is being drained).
    pub fn is_idle(&self) -> bool {
        self.live.is_none() && self.draining.is_empty()
    }

    /// The position of every open file, to be saved atomically with the detector state.
    pub fn checkpoint(&self) -> SourceCheckpoint {
        if let Some(saved) = &self.saved {
            return saved.clone();
        }
        SourceCheckpoint {
            path: self.path.clone(),
            draining: self.draining.iter().map(FileReader::checkpoint).collect(),
            live: self.live.as_ref().map(FileReader::checkpoint),
            retired: self.retired.clone(),
            anchor: self.anchor,
        }
    }

    /// Directories to watch (non-recursively): the live file's directory, and, when that directory is a
    /// symlink (zeekctl's `current`), the directory holding the symlink, so re-pointing it wakes us too.
    /// Call again after a rotation: the resolved directory may have changed.
    pub fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        let parent = self.dir();
        if let Ok(real) = fs::canonicalize(&parent) {
            dirs.push(real);
        }
        let is_link = fs::symlink_metadata(&parent)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if is_link {
            if let Some(up) = parent.parent() {
                let up = if up.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    up.to_path_buf()
                };
                dirs.push(fs::canonicalize(&up).unwrap_or(up));
            }
        }
        if dirs.is_empty() {
            dirs.push(parent);
        }
        dirs.dedup();
        dirs
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Moves the anchor (the mtime after which unseen rotated siblings are ours to read) forward.
    fn retire_anchor(&mut self, t: (i64, i64)) {
        self.anchor = Some(self.anchor.map_or(t, |a| a.max(t)));
    }

    /// Remembers a file as read (one entry per inode: the newest replaces an older one).
    fn remember(&mut self, id: FileId, fingerprint: Fingerprint) {
        self.retired.retain(|r| r.id != id);
        self.retired.push(RetiredFile { id, fingerprint });
        if self.retired.len() > RETIRED_KEPT {
            self.retired.remove(0);
        }
    }

    fn is_open(&self, id: FileId) -> bool {
        self.live.as_ref().is_some_and(|r| r.id == id) || self.draining.iter().any(|r| r.id == id)
    }

    /// One look at the directory: the live path is opened FIRST and its first bytes read, then the
    /// directory is listed, so a file renamed away from the live path in between is in the listing under its
    /// new name and is recognised there by the identity of the handle we hold (tailing scenario 23), and a
    /// truncate seen in those bytes came before the listing: logrotate's copy, made before its truncate, is
    /// in it whole (tailing scenario 24: content read after the listing could show a truncate whose copy the
    /// listing lacks).
    fn snapshot(&mut self) -> io::Result<Snapshot> {
        let mut live = open_live(&self.path)?;
        let mut live_head = match live.as_ref() {
            Some((file, _)) => file::prefix(file).map_err(at(&self.path))?,
            None => Vec::new(),
        };
        #[cfg(test)]
        if let Some(h) = self.race_hook.as_mut() {
            h();
        }
        let siblings = self.siblings()?;
        #[cfg(test)]
        if let Some(h) = self.listed_hook.as_mut() {
            h();
        }
        // Renamed between the open and the listing: the listing may hold files rotated after it, which
        // must not be read before it. It is a rotated file of this listing then (its handle kept, so it is
        // read even if it is deleted next), and the live path is looked at again at the next poll.
        let mut renamed = None;
        if let Some((_, meta)) = live.as_ref() {
            let id = FileId::of(meta);
            if siblings.iter().any(|(_, m)| FileId::of(m) == id) {
                renamed = live.take().map(|(file, _)| (id, file));
                live_head.clear();
            }
        }
        Ok(Snapshot {
            live,
            live_head,
            siblings,
            renamed,
        })
    }

    /// Rotated siblings of the live file: `(path, metadata)` of every regular file whose name is a rotated
    /// form of the configured name. A missing directory has none; any other error is returned.
    fn siblings(&self) -> io::Result<Vec<(PathBuf, fs::Metadata)>> {
        let Some(live_name) = self.path.file_name().and_then(|n| n.to_str()) else {
            return Ok(Vec::new());
        };
        let dir = self.dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(at(&dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(at(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_rotated_name(live_name, name) {
                continue;
            }
            let path = entry.path();
            match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => out.push((path, meta)),
                Ok(_) => {}
                // Deleted while we listed (zeekctl's archiver), or a dangling symlink.
                Err(e) if missing(&e) => {}
                Err(e) => return Err(at(&path)(e)),
            }
        }
        Ok(out)
    }

    /// Rotated siblings that appeared after the last rotated live file (at least as new as `anchor`) and
    /// that we never read (several rotations or copytruncates between two looks, or while stopped), with
    /// their modification times. Not: files open now (or about to be, `also_open`), the file at the live
    /// path, files remembered as read (same inode and content, or the same content by a full fingerprint
    /// or in full), and copies of a file we are reading (logrotate's copy made before its truncate: what it
    /// holds comes through the file we read, and when the truncate comes, the copy is drained from where we
    /// were). An empty sibling waits: there is nothing in it to recognise it by. Changes nothing: the caller
    /// [`adopt`](Tailer::adopt)s what it returns, so an error part way leaves the state as it was.
    fn discover(
        &self,
        snap: &Snapshot,
        also_open: &[FileId],
        anchor: Option<(i64, i64)>,
    ) -> io::Result<Vec<Pending>> {
        let Some(anchor) = anchor else {
            return Ok(Vec::new());
        };
        let live_id = snap.live_id();
        let mut open_prefixes = None;
        let mut found = Vec::new();
        for (path, meta) in &snap.siblings {
            let id = FileId::of(meta);
            if mtime(meta) < anchor
                || self.is_open(id)
                || live_id == Some(id)
                || also_open.contains(&id)
                || meta.len() == 0
            {
                continue;
            }
            let Some(file) = snap.open(id, path)? else {
                continue;
            };
            let head = file::prefix(&file).map_err(at(path))?;
            if head.is_empty() || self.retired.iter().any(|r| r.knows(id, &head)) {
                continue;
            }
            if open_prefixes.is_none() {
                let mut v = Vec::new();
                for r in self.live.iter().chain(self.draining.iter()) {
                    v.push(r.prefix().map_err(at(&r.path))?);
                }
                if snap.live.is_some() {
                    v.push(snap.live_head.clone());
                }
                open_prefixes = Some(v);
            }
            let copy_of_open = open_prefixes
                .iter()
                .flatten()
                .any(|q| head.len() <= q.len() && q[..head.len()] == head[..]);
            if copy_of_open {
                debug!(path = %path.display(), "a copy of a file being read: not read on its own");
                continue;
            }
            let r = FileReader::from_file(path, file, self.opts).map_err(at(path))?;
            debug!(path = %r.path.display(), "rotated file found unread");
            found.push(Pending {
                mtime: mtime(meta),
                reader: r,
                announce: true,
                rank: Rank::Other,
            });
        }
        Ok(found)
    }

    /// Takes files returned by [`discover`](Tailer::discover) or [`find_copy`](Tailer::find_copy) as ours:
    /// remembered as read, so they are never found again.
    fn adopt(&mut self, files: &[Pending]) {
        for p in files {
            self.remember(p.reader.id, p.reader.fp.clone());
        }
    }

    /// After copytruncate: a rotated sibling that is a copy of the truncated file (another inode, made since
    /// we last read it, starting with the bytes we had read). With lines past where we were, it is returned
    /// to drain from where we stopped; a copy with nothing more is only remembered (`Err` side of the
    /// result: its identity). Changes nothing.
    fn find_copy(
        &self,
        before: &FileCheckpoint,
        head: &[u8],
        snap: &Snapshot,
    ) -> io::Result<Option<Result<Pending, (FileId, Fingerprint)>>> {
        let live_id = snap.live_id();
        for (path, meta) in &snap.siblings {
            let id = FileId::of(meta);
            if id == before.id || self.is_open(id) || Some(id) == live_id || meta.len() == 0 {
                continue;
            }
            let Some(file) = snap.open(id, path)? else {
                continue;
            };
            // The copy starts with the bytes we had (it may be shorter than what we read: rows written
            // between the copy and the truncate; or longer: rows written before the copy, not read yet).
            let p = file::prefix(&file).map_err(at(path))?;
            let n = head.len().min(p.len());
            if n == 0 || head[..n] != p[..n] {
                debug!(path = %path.display(), head = head.len(), prefix = p.len(), "not a copy of the truncated file");
                continue;
            }
            let fp = Fingerprint::of_bytes(&p);
            if meta.len() <= before.offset {
                return Ok(Some(Err((id, fp))));
            }
            let r = FileReader::resume(path, file, before, fp, p, self.opts);
            debug!(path = %r.path.display(), offset = r.offset, "draining the copy of a truncated file");
            return Ok(Some(Ok(Pending {
                mtime: mtime(meta),
                reader: r,
                announce: true,
                rank: Rank::Copy,
            })));
        }
        Ok(None)
    }

    /// Queues files to drain, oldest content (modification time) first.
    fn drain(&mut self, mut files: Vec<Pending>, sink: &mut dyn FnMut(TailEvent)) {
        // Equal times (a file time is only as fine as the kernel's tick): the rotated names tell the order.
        // Saved rotated files (the oldest time there is) keep their saved order: the sort is stable.
        let live_name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        files.sort_by_cached_key(|p| {
            let name = if p.mtime == (i64::MIN, 0) {
                RotatedName::Saved
            } else {
                RotatedName::of(live_name, &p.reader.path)
            };
            (p.mtime, p.rank, name)
        });
        for p in files {
            if p.announce {
                sink(TailEvent::Opened {
                    path: &p.reader.path,
                    resumed_at: p.reader.offset,
                });
            }
            self.draining.push(p.reader);
        }
    }

    /// Remembers a copy found by [`find_copy`](Tailer::find_copy) and returns what is left to drain of it.
    fn take_copy(&mut self, copy: Option<Result<Pending, (FileId, Fingerprint)>>) -> Vec<Pending> {
        match copy {
            Some(Ok(p)) => {
                self.remember(p.reader.id, p.reader.fp.clone());
                vec![p]
            }
            Some(Err((id, fp))) => {
                self.remember(id, fp);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// Compares the file at the configured path with the one we follow. Everything that can fail (opening
    /// the live path, listing the directory, reading siblings) happens before anything is changed, so an
    /// error leaves the state as it was and the next poll looks again.
    fn check_live(&mut self, sink: &mut dyn FnMut(TailEvent)) -> io::Result<()> {
        let mut snap = self.snapshot()?;
        let live_id = snap.live_id();
        let max_anchor = |a: Option<(i64, i64)>, t: (i64, i64)| Some(a.map_or(t, |a| a.max(t)));
        if let (Some(r), Some(id)) = (self.live.as_ref(), live_id) {
            if id == r.id {
                let len = snap.live.as_ref().map_or(0, |(_, m)| m.len());
                // The same inode as ours: its first bytes as read before the listing (see `snapshot`).
                let head = snap.live_head.clone();
                let same = len >= r.offset + r.buf.len() as u64 && r.fp.is_prefix_of(&head);
                if same {
                    if let Some(r) = self.live.as_mut() {
                        r.fp = Fingerprint::of_bytes(&head);
                        r.head = head;
                    }
                    return Ok(());
                }
                // Truncated or replaced in place (copytruncate). Copies made since we last read it (several
                // copytruncates between two looks) are found first; then the state changes.
                let before = r.checkpoint();
                let anchor = max_anchor(self.anchor, before.mtime);
                let copy = self.find_copy(&before, &r.head, &snap)?;
                let copy_id = match &copy {
                    Some(Ok(p)) => Some(p.reader.id),
                    Some(Err((id, _))) => Some(*id),
                    None => None,
                };
                // Only copies as old as the live file: a file rotated after it (the path renamed while we
                // looked) holds later records, and is found when the rotation is (tailing scenario 23).
                let newest = snap.live.as_ref().map(|(_, m)| mtime(m));
                let found: Vec<Pending> = self
                    .discover(&snap, &copy_id.into_iter().collect::<Vec<_>>(), anchor)?
                    .into_iter()
                    .filter(|p| newest.map_or(true, |t| p.mtime <= t))
                    .collect();
                if let Some(r) = self.live.as_mut() {
                    sink(TailEvent::Truncated { path: &r.path });
                    r.restart();
                }
                self.anchor = anchor;
                let mut files = self.take_copy(copy);
                self.adopt(&found);
                files.extend(found);
                self.drain(files, sink);
                return Ok(());
            }
        }
        if let Some(old) = self.live.as_ref() {
            // Rotated: keep it open and drain it before anything newer. First what can fail.
            let old_meta = old.file.metadata().map_err(at(&old.path))?;
            let anchor = max_anchor(self.anchor, old.seen_mtime);
            // The fingerprint is taken again from the handle before the file is remembered: one taken when
            // it was empty or short would be a prefix of other files.
            let fresh = if old_meta.len() >= old.offset + old.buf.len() as u64 {
                old.fp.check(&old.file).map_err(at(&old.path))?
            } else {
                None
            };
            let before = old.checkpoint();
            let copy = match fresh {
                Some(_) => None,
                // Truncated in place before it was rotated: its old content may be in a copy.
                None => self.find_copy(&before, &old.head, &snap)?,
            };
            let mut held = vec![old.id];
            match &copy {
                Some(Ok(p)) => held.push(p.reader.id),
                Some(Err((id, _))) => held.push(*id),
                None => {}
            }
            let found = self.discover(&snap, &held, anchor)?;
            // Then the change.
            let Some(mut old) = self.live.take() else {
                return Ok(());
            };
            let to = snap
                .siblings
                .iter()
                .find(|(_, m)| FileId::of(m) == old.id)
                .map(|(p, _)| p.clone());
            sink(TailEvent::Rotated {
                from: &old.path,
                to: to.clone(),
            });
            if let Some(to) = to {
                old.path = to;
            }
            self.anchor = anchor;
            let mut files = Vec::new();
            match fresh {
                Some(fp) => old.fp = fp,
                None => {
                    sink(TailEvent::Truncated { path: &old.path });
                    old.restart();
                    files.extend(self.take_copy(copy));
                }
            }
            self.remember(old.id, old.fp.clone());
            files.push(Pending {
                mtime: mtime(&old_meta),
                reader: old,
                announce: false,
                rank: Rank::Held,
            });
            self.adopt(&found);
            files.extend(found);
            self.drain(files, sink);
        } else {
            let found = self.discover(&snap, &[], self.anchor)?;
            self.adopt(&found);
            self.drain(found, sink);
        }
        // The file at the live path when we looked: read from that handle (tailing scenario 23).
        if let Some((file, meta)) = snap.live.take() {
            if !self.is_open(FileId::of(&meta)) {
                let r =
                    FileReader::from_file(&self.path, file, self.opts).map_err(at(&self.path))?;
                sink(TailEvent::Opened {
                    path: &r.path,
                    resumed_at: 0,
                });
                self.live = Some(r);
            }
        }
        Ok(())
    }
}

/// Where a rotated file's name puts it among files of one modification time: logrotate's `conn.log.N` are
/// oldest first from the highest N; other rotated names (Zeek's `conn.YYYY-MM-DD-HH-MM-SS.log`) sort as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum RotatedName {
    Saved,
    Numbered(std::cmp::Reverse<u64>),
    Named(String),
}

impl RotatedName {
    fn of(live_name: &str, path: &Path) -> RotatedName {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let n = name
            .strip_prefix(live_name)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.parse::<u64>().ok());
        match n {
            Some(n) => RotatedName::Numbered(std::cmp::Reverse(n)),
            None => RotatedName::Named(name.to_string()),
        }
    }
}

/// The directory as seen at one moment: the file at the configured path, opened, and the rotated siblings.
struct Snapshot {
    live: Option<(File, fs::Metadata)>,
    /// The file opened at the live path and found renamed in the listing: `live` is `None` then.
    renamed: Option<(FileId, File)>,
    /// The first bytes of `live`, read before the listing.
    live_head: Vec<u8>,
    siblings: Vec<(PathBuf, fs::Metadata)>,
}

impl Snapshot {
    fn live_id(&self) -> Option<FileId> {
        self.live.as_ref().map(|(_, m)| FileId::of(m))
    }

    /// Opens a listed sibling: the handle we hold if it is the file renamed while we looked.
    fn open(&self, id: FileId, path: &Path) -> io::Result<Option<File>> {
        match self.renamed.as_ref() {
            Some((rid, file)) if *rid == id => file.try_clone().map(Some).map_err(at(path)),
            _ => open_existing(path),
        }
    }
}

impl RetiredFile {
    /// True if the file with identity `id` and first bytes `head` is this one: the same inode with the
    /// content we had (a non-empty fingerprint: an inode is reused once a file is deleted), or, under
    /// another inode (a copy), the same content by [`Fingerprint::same_content`].
    fn knows(&self, id: FileId, head: &[u8]) -> bool {
        if id == self.id && self.fingerprint.len > 0 && self.fingerprint.is_prefix_of(head) {
            return true;
        }
        self.fingerprint.same_content(head)
    }
}

/// Opens the file at the live path: `None` if there is none. Anything but a regular file there, or any
/// error other than absence, is an error.
fn open_live(path: &Path) -> io::Result<Option<(File, fs::Metadata)>> {
    let Some(file) = open_existing(path)? else {
        return Ok(None);
    };
    let meta = file.metadata().map_err(at(path))?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file", path.display()),
        ));
    }
    Ok(Some((file, meta)))
}

/// Opens a file that may have gone: `None` when it is absent, an error for anything else.
fn open_existing(path: &Path) -> io::Result<Option<File>> {
    // Checked first so that a FIFO at the path is refused instead of blocking the open.
    match fs::metadata(path) {
        Ok(m) if !m.is_file() && !m.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a regular file", path.display()),
            ))
        }
        Ok(_) => {}
        Err(e) if missing(&e) => return Ok(None),
        Err(e) => return Err(at(path)(e)),
    }
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if missing(&e) => Ok(None),
        Err(e) => Err(at(path)(e)),
    }
}

/// True if a TSV header block has its `#fields` line (rows can be read with it).
fn has_fields(h: &crate::zeek::TsvHeader) -> bool {
    h.lines().iter().any(|l| l.starts_with(b"#fields"))
}

/// Adds the path to an error's message, so a log line names the file or directory that failed.
fn at(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// True if `name` is a rotated form of the live file `live`: `conn.log` -> `conn.<anything>.log` (Zeek's
/// `conn.2024-01-01-00-00-00.log`) or `conn.log.<digits>` (logrotate, Corelight). Never another log type
/// (`conn_long.log`, `dns.log`), the live name itself, or a compressed file.
fn is_rotated_name(live: &str, name: &str) -> bool {
    if name == live {
        return false;
    }
    if let Some(n) = name.strip_prefix(live).and_then(|r| r.strip_prefix('.')) {
        return !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    }
    match live.strip_suffix(".log") {
        Some(stem) => {
            name.len() > live.len()
                && name
                    .strip_prefix(stem)
                    .and_then(|r| r.strip_prefix('.'))
                    .is_some_and(|r| r.ends_with(".log"))
        }
        None => false,
    }
}
