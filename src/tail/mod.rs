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
//! Identity never depends on time. Only one heuristic does: rotated files we never had open (several
//! rotations between two looks, or while stopped) are those whose modification time is at least that of the
//! last file we read when we last read it, and which we do not remember reading (by inode and fingerprint);
//! they are drained in modification-time order. A wall clock stepping back between two such unseen rotations
//! can hide one of them; files we had open are never affected.

mod file;
pub mod watch;

#[cfg(test)]
mod tests;

use crate::config::{Source, SourceKind, StartAt};
use crate::zeek::{ConnRecord, ParseOptions, SkipReason};
use file::{mtime, FileReader};
pub use file::{FileCheckpoint, FileId, Fingerprint, HeaderLine, FINGERPRINT_LEN};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tracing::{debug, info, warn};

/// Lines longer than this (bytes, without the newline) are skipped and reported as [`SkipReason::TooLong`].
pub const MAX_LINE: usize = 1 << 20;

/// How many retired files are remembered so a rotated sibling is never read twice.
const RETIRED_KEPT: usize = 64;

const CHUNK: usize = 64 * 1024;

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
}

/// A saved file found again.
struct Found {
    path: PathBuf,
    file: File,
    at_live: bool,
}

/// Follows one configured source path.
pub struct Tailer {
    path: PathBuf,
    start_at: StartAt,
    kind: SourceKind,
    opts: ParseOptions,
    max_line: usize,
    live: Option<FileReader>,
    draining: Vec<FileReader>,
    /// The checkpoint to resume from, applied on the first poll.
    saved: Option<SourceCheckpoint>,
    started: bool,
    retired: Vec<RetiredFile>,
    anchor: Option<(i64, i64)>,
    chunk: Vec<u8>,
    /// Bytes of the live file read per poll at most, so a large backlog does not hold the caller for long.
    budget: u64,
}

impl Tailer {
    pub fn new(source: &Source, opts: ParseOptions, saved: Option<SourceCheckpoint>) -> Tailer {
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
            budget: u64::MAX,
        }
    }

    /// Reads at most about `bytes` of the live file per poll (whole chunks; rotated files are always drained
    /// whole). A poll that returns `PollStats::bytes >= bytes` may have more to read.
    pub fn with_poll_budget(mut self, bytes: u64) -> Tailer {
        self.budget = bytes.max(1);
        self
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
    pub fn poll(&mut self, sink: &mut dyn FnMut(TailEvent)) -> io::Result<PollStats> {
        let mut stats = PollStats::default();
        if !self.started {
            self.started = true;
            match self.saved.take() {
                Some(saved) => {
                    if let Err(e) = self.restore(saved.clone(), sink) {
                        // Try again from the same checkpoint at the next poll.
                        self.live = None;
                        self.draining.clear();
                        self.saved = Some(saved);
                        self.started = false;
                        return Err(e);
                    }
                }
                None => self.first_open(sink)?,
            }
        }
        self.check_live(sink)?;

        let mut i = 0;
        while i < self.draining.len() {
            let r = &mut self.draining[i];
            let any = r.read(&mut self.chunk, self.max_line, u64::MAX, sink, &mut stats)?;
            r.eof_polls = if any { 0 } else { r.eof_polls + 1 };
            let unlinked = r.file.metadata().map(|m| m.nlink() == 0).unwrap_or(true);
            // Finished: the writer closed it (`#close`), or it is deleted (nobody can write it), or a whole
            // poll found nothing new after its rotation.
            if r.saw_close || unlinked || r.eof_polls >= 1 {
                let mut r = self.draining.remove(i);
                r.finish(sink, &mut stats);
                debug!(path = %r.path.display(), lines = r.line_no, "rotated file finished");
                sink(TailEvent::Finished { path: &r.path });
            } else {
                i += 1;
            }
        }
        if let Some(r) = self.live.as_mut() {
            r.read(
                &mut self.chunk,
                self.max_line,
                self.budget,
                sink,
                &mut stats,
            )?;
        }
        Ok(stats)
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

    /// First start without a checkpoint: open the live file per `start_at`.
    fn first_open(&mut self, sink: &mut dyn FnMut(TailEvent)) -> io::Result<()> {
        match FileReader::open(&self.path, self.opts) {
            Ok(mut r) => {
                if self.start_at == StartAt::End {
                    r.seek_to_end(&mut self.chunk)?;
                }
                info!(path = %r.path.display(), offset = r.offset, "following");
                sink(TailEvent::Opened {
                    path: &r.path,
                    resumed_at: r.offset,
                });
                self.live = Some(r);
                Ok(())
            }
            Err(e) if missing(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Restart from a checkpoint: find each saved file again, by identity, wherever it went. Saved rotated
    /// files come first, in their saved order; what the live file became, copies of it and rotated files we
    /// never saw follow in modification-time order.
    fn restore(
        &mut self,
        saved: SourceCheckpoint,
        sink: &mut dyn FnMut(TailEvent),
    ) -> io::Result<()> {
        self.retired = saved.retired;
        self.anchor = saved.anchor;
        let mut files = Vec::new();
        let saved_live = saved.live.into_iter().map(|c| (c, true));
        for (fc, is_live) in saved
            .draining
            .into_iter()
            .map(|c| (c, false))
            .chain(saved_live)
        {
            let (same, copy) = self.locate(&fc)?;
            let order = |m: &fs::Metadata| if is_live { mtime(m) } else { (i64::MIN, 0) };
            if let Some((found, Some(fp))) = same {
                // The same file: resume it.
                let meta = found.file.metadata()?;
                let mut r = FileReader::resume(&found.path, found.file, &fc, fp, self.opts);
                if meta.len() < fc.offset {
                    sink(TailEvent::Truncated { path: &r.path });
                    r.restart()?;
                }
                if found.at_live && is_live && self.live.is_none() {
                    sink(TailEvent::Opened {
                        path: &r.path,
                        resumed_at: r.offset,
                    });
                    self.live = Some(r);
                    continue;
                }
                if is_live {
                    sink(TailEvent::Rotated {
                        from: &fc.path,
                        to: Some(r.path.clone()),
                    });
                    self.retire_anchor(fc.mtime);
                }
                self.remember(r.id, r.fp.clone());
                files.push(Pending {
                    mtime: order(&meta),
                    reader: r,
                    announce: true,
                });
                continue;
            }
            if is_live {
                self.retire_anchor(fc.mtime);
            }
            // Rewritten in place (copytruncate) or gone: the rest may be in a copy.
            match copy {
                Some((path, file, fp)) => {
                    sink(TailEvent::Truncated { path: &fc.path });
                    let meta = file.metadata()?;
                    let r = FileReader::resume(&path, file, &fc, fp, self.opts);
                    self.remember(r.id, r.fp.clone());
                    files.push(Pending {
                        mtime: order(&meta),
                        reader: r,
                        announce: true,
                    });
                }
                None => {
                    warn!(path = %fc.path.display(), offset = fc.offset, "saved file not found again");
                    sink(TailEvent::Lost {
                        path: &fc.path,
                        offset: fc.offset,
                    });
                }
            }
            // The inode now holds other content: a new file, read from 0 (at the live path, by check_live).
            if let Some((found, None)) = same {
                if !found.at_live {
                    let meta = found.file.metadata()?;
                    let r = FileReader::open(&found.path, self.opts)?;
                    self.remember(r.id, r.fp.clone());
                    files.push(Pending {
                        mtime: order(&meta),
                        reader: r,
                        announce: true,
                    });
                }
            }
        }
        files.extend(self.discover()?);
        self.drain(files, sink);
        Ok(())
    }

    /// Where a saved file is now: the file with its inode (at the live path or a rotated sibling) with its
    /// refreshed fingerprint if the content is still the same; and a copy of it (another inode, the same
    /// fingerprint, at least as long as the saved offset), as copytruncate leaves.
    #[allow(clippy::type_complexity)]
    fn locate(
        &self,
        fc: &FileCheckpoint,
    ) -> io::Result<(
        Option<(Found, Option<Fingerprint>)>,
        Option<(PathBuf, File, Fingerprint)>,
    )> {
        let mut same = None;
        let mut copy = None;
        let live = fs::metadata(&self.path)
            .ok()
            .map(|m| (self.path.clone(), m));
        let candidates = live.into_iter().map(|c| (c, true));
        let candidates = candidates.chain(self.siblings().into_iter().map(|c| (c, false)));
        for ((path, meta), at_live) in candidates {
            let id = FileId::of(&meta);
            if self.is_open(id) || (id != fc.id && meta.len() < fc.offset) {
                continue;
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let fp = fc.fingerprint.check(&file)?;
            if id == fc.id {
                if same.is_none() {
                    same = Some((
                        Found {
                            path,
                            file,
                            at_live,
                        },
                        fp,
                    ));
                }
            } else if let (None, Some(fp)) = (&copy, fp) {
                copy = Some((path, file, fp));
            }
        }
        Ok((same, copy))
    }

    /// Moves the anchor (the mtime after which unseen rotated siblings are ours to read) forward.
    fn retire_anchor(&mut self, t: (i64, i64)) {
        self.anchor = Some(self.anchor.map_or(t, |a| a.max(t)));
    }

    fn remember(&mut self, id: FileId, fingerprint: Fingerprint) {
        let entry = RetiredFile { id, fingerprint };
        self.retired.retain(|r| *r != entry);
        self.retired.push(entry);
        if self.retired.len() > RETIRED_KEPT {
            self.retired.remove(0);
        }
    }

    fn is_open(&self, id: FileId) -> bool {
        self.live.as_ref().is_some_and(|r| r.id == id) || self.draining.iter().any(|r| r.id == id)
    }

    /// Rotated siblings of the live file: `(path, file, metadata)` of every regular file whose name is a
    /// rotated form of the configured name.
    fn siblings(&self) -> Vec<(PathBuf, fs::Metadata)> {
        let Some(live_name) = self.path.file_name().and_then(|n| n.to_str()) else {
            return Vec::new();
        };
        let Ok(entries) = fs::read_dir(self.dir()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_rotated_name(live_name, name) {
                continue;
            }
            let path = entry.path();
            if let Ok(meta) = fs::metadata(&path) {
                if meta.is_file() {
                    out.push((path, meta));
                }
            }
        }
        out
    }

    /// A rotated sibling holding the saved file: the same inode and fingerprint, else (a copy, as
    /// copytruncate makes) the same fingerprint and at least the saved offset long.
    fn find_copy(&self, fc: &FileCheckpoint) -> io::Result<Option<(PathBuf, File, Fingerprint)>> {
        let mut fallback = None;
        for (path, meta) in self.siblings() {
            let id = FileId::of(&meta);
            if self.is_open(id) {
                continue;
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let Some(fp) = fc.fingerprint.check(&file)? else {
                continue;
            };
            if id == fc.id {
                return Ok(Some((path, file, fp)));
            }
            if fallback.is_none() && meta.len() >= fc.offset {
                fallback = Some((path, file, fp));
            }
        }
        Ok(fallback)
    }

    /// Rotated siblings that appeared after the last rotated live file and that we never read (several
    /// rotations or copytruncates between two looks, or while stopped), with their modification times.
    fn discover(&mut self) -> io::Result<Vec<Pending>> {
        let Some(anchor) = self.anchor else {
            return Ok(Vec::new());
        };
        let live_id = fs::metadata(&self.path).ok().map(|m| FileId::of(&m));
        let mut found = Vec::new();
        for (path, meta) in self.siblings() {
            let id = FileId::of(&meta);
            if mtime(&meta) < anchor || self.is_open(id) || live_id == Some(id) {
                continue;
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            // Read before: the same file, or a copy of one (copytruncate) whose content we have.
            let mut known = false;
            for r in &self.retired {
                known |= r.fingerprint.check(&file)?.is_some();
            }
            if known {
                continue;
            }
            let r = match FileReader::open(&path, self.opts) {
                Ok(r) => r,
                Err(e) if missing(&e) => continue,
                Err(e) => return Err(e),
            };
            info!(path = %r.path.display(), "rotated file found unread");
            self.remember(r.id, r.fp.clone());
            found.push(Pending {
                mtime: mtime(&meta),
                reader: r,
                announce: true,
            });
        }
        Ok(found)
    }

    /// After copytruncate: a rotated sibling that is a copy of the truncated file with lines past where we
    /// were, to drain from where we stopped.
    fn copy_of(&mut self, before: &FileCheckpoint) -> io::Result<Option<Pending>> {
        let Some((path, file, fp)) = self.find_copy(before)? else {
            return Ok(None);
        };
        let meta = file.metadata()?;
        let id = FileId::of(&meta);
        if id == before.id {
            return Ok(None);
        }
        // Read up to `before.offset` already: never discover it as an unread rotated file.
        self.remember(id, fp.clone());
        if meta.len() <= before.offset {
            return Ok(None);
        }
        let r = FileReader::resume(&path, file, before, fp, self.opts);
        info!(path = %r.path.display(), offset = r.offset, "draining the copy of a truncated file");
        Ok(Some(Pending {
            mtime: mtime(&meta),
            reader: r,
            announce: true,
        }))
    }

    /// Queues files to drain, oldest content (modification time) first.
    fn drain(&mut self, mut files: Vec<Pending>, sink: &mut dyn FnMut(TailEvent)) {
        files.sort_by_key(|p| p.mtime);
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

    /// Compares the file at the configured path with the one we follow.
    fn check_live(&mut self, sink: &mut dyn FnMut(TailEvent)) -> io::Result<()> {
        let meta = match fs::metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if missing(&e) => None,
            Err(e) => {
                // Permission denied and the like: decide nothing, keep reading what is open.
                warn!(path = %self.path.display(), error = %e, "cannot stat the live path");
                return Ok(());
            }
        };
        if let (Some(r), Some(m)) = (self.live.as_mut(), meta.as_ref()) {
            if FileId::of(m) == r.id {
                let fp = if m.len() < r.offset + r.buf.len() as u64 {
                    None
                } else {
                    r.fp.check(&r.file)?
                };
                let Some(fp) = fp else {
                    info!(path = %r.path.display(), "file truncated or replaced in place");
                    let before = r.checkpoint();
                    sink(TailEvent::Truncated { path: &r.path });
                    r.restart()?;
                    // Copies made since we last read it (several copytruncates between two looks).
                    self.retire_anchor(before.mtime);
                    let mut files: Vec<Pending> = self.copy_of(&before)?.into_iter().collect();
                    files.extend(self.discover()?);
                    self.drain(files, sink);
                    return Ok(());
                };
                r.fp = fp;
                return Ok(());
            }
        }
        if let Some(mut old) = self.live.take() {
            // Rotated: keep it open and drain it before anything newer.
            let old_meta = old.file.metadata()?;
            let to = self
                .siblings()
                .into_iter()
                .find(|(_, m)| FileId::of(m) == old.id)
                .map(|(p, _)| p);
            info!(from = %old.path.display(), to = ?to, "file rotated");
            sink(TailEvent::Rotated {
                from: &old.path,
                to: to.clone(),
            });
            if let Some(to) = to {
                old.path = to;
            }
            self.retire_anchor(old.seen_mtime);
            let truncated = old_meta.len() < old.offset + old.buf.len() as u64
                || old.fp.check(&old.file)?.is_none();
            let mut files = Vec::new();
            if truncated {
                // Truncated in place before it was rotated: its old content may be in a copy.
                let before = old.checkpoint();
                self.remember(old.id, old.fp.clone());
                sink(TailEvent::Truncated { path: &old.path });
                old.restart()?;
                files.extend(self.copy_of(&before)?);
            }
            self.remember(old.id, old.fp.clone());
            files.push(Pending {
                mtime: mtime(&old_meta),
                reader: old,
                announce: false,
            });
            files.extend(self.discover()?);
            self.drain(files, sink);
        } else {
            let files = self.discover()?;
            self.drain(files, sink);
        }
        if meta.is_some() {
            match FileReader::open(&self.path, self.opts) {
                Ok(r) if self.is_open(r.id) => {}
                Ok(r) => {
                    info!(path = %r.path.display(), "following new file");
                    sink(TailEvent::Opened {
                        path: &r.path,
                        resumed_at: 0,
                    });
                    self.live = Some(r);
                }
                Err(e) if missing(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
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
