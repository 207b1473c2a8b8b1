//! One followed file: its identity and a line reader over an open handle.
//!
//! A file is identified by its (device, inode) together with a fingerprint of its first bytes, never by its
//! path: Zeek and zeekctl rename, move and delete files under us, and inodes are reused once a file is gone.
//! The reader works on the open handle with positioned reads (`read_at`), so a renamed or deleted file is
//! still drained to its end. Its `offset` is always the start of the first line not yet consumed: a partial
//! last line is held in memory until its newline arrives and is re-read after a restart.
//!
//! A caller may read up to an event time only (a [`Gate`]): the first record the gate refuses is parsed but
//! not consumed. It is kept with the bytes read after it and offered again on the next read, and `offset`
//! stays at its start, so a checkpoint taken meanwhile re-reads it after a restart.

use super::ahead::{self, Pre, Region};
use super::{PollStats, TailEvent};
use crate::zeek::context::{ContextKind, ContextLine, ContextParser};
use crate::zeek::{Line, LogParser, ParseOptions, SkipReason, TsvHeader};

/// How a source's lines are read: conn records for the detector, or context records (ssl, http, dns).
#[derive(Debug, Clone, Copy)]
pub enum LineFormat {
    Conn(ParseOptions),
    Context(ContextKind),
}

/// A file's parser, by [`LineFormat`]; both keep a TSV header block the checkpoint saves.
#[derive(Debug, Clone)]
pub enum SourceParser {
    Conn(LogParser),
    Context(ContextParser),
}

impl SourceParser {
    pub fn new(format: LineFormat) -> SourceParser {
        match format {
            LineFormat::Conn(opts) => SourceParser::Conn(LogParser::new(opts)),
            LineFormat::Context(kind) => SourceParser::Context(ContextParser::new(kind)),
        }
    }

    pub fn format(&self) -> LineFormat {
        match self {
            SourceParser::Conn(p) => LineFormat::Conn(p.options()),
            SourceParser::Context(p) => LineFormat::Context(p.kind()),
        }
    }

    pub fn header(&self) -> &TsvHeader {
        match self {
            SourceParser::Conn(p) => p.header(),
            SourceParser::Context(p) => p.header(),
        }
    }

    pub fn set_header(&mut self, header: TsvHeader) {
        match self {
            SourceParser::Conn(p) => p.set_header(header),
            SourceParser::Context(p) => p.set_header(header),
        }
    }

    pub(super) fn parse_line(&mut self, line: &[u8]) -> Parsed {
        match self {
            SourceParser::Conn(p) => match p.parse_line(line) {
                Line::Record(rec, bad) => Parsed::Conn(rec, bad),
                Line::Meta => Parsed::Meta,
                Line::Skipped(r) => Parsed::Skipped(r),
            },
            SourceParser::Context(p) => match p.parse_line(line) {
                ContextLine::Record(rec) => Parsed::Context(rec),
                ContextLine::Meta => Parsed::Meta,
                ContextLine::Skipped(r) => Parsed::Skipped(r),
            },
        }
    }
}

/// Decides, from a record's event time, whether it is handed over now (true) or held, unconsumed, to be
/// offered again on the next read (false). The time is a conn record's end (`ts + duration`, None without
/// `ts`) or a context record's `ts`.
pub type Gate<'a> = &'a mut dyn FnMut(Option<f64>) -> bool;

/// What one line was, for either parser.
// Records are the common case: boxing them would cost an allocation per line on the hot path.
#[allow(clippy::large_enum_variant)]
pub(super) enum Parsed {
    Conn(crate::zeek::ConnRecord, u32),
    Context(crate::zeek::context::ContextRecord),
    Meta,
    Skipped(SkipReason),
}

impl Parsed {
    /// The event time a [`Gate`] sees.
    fn time(&self) -> Option<f64> {
        match self {
            Parsed::Conn(rec, _) => rec.end(),
            Parsed::Context(rec) => Some(rec.ts),
            Parsed::Meta | Parsed::Skipped(_) => None,
        }
    }
}

/// A record a [`Gate`] held: parsed, not consumed; `len` bytes at `offset` with its newline.
struct Held {
    parsed: Parsed,
    len: u64,
}
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How many leading bytes of a file its fingerprint covers at most. Zeek TSV headers are identical between
/// files up to `#open` (a few hundred bytes in), so this reaches past `#open` into the first rows.
pub const FINGERPRINT_LEN: usize = 1024;

/// Where a file lives on disk: stable across renames, reused after deletion (hence the fingerprint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A file's modification time, (seconds, nanoseconds), used only to order rotated siblings.
pub(super) fn mtime(meta: &Metadata) -> (i64, i64) {
    (meta.mtime(), meta.mtime_nsec())
}

/// SHA-256 of the first `len` bytes of a file; `len` grows (up to [`FINGERPRINT_LEN`]) as the file does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u64,
    /// Lower-case hex.
    pub sha256: String,
}

impl Fingerprint {
    pub(super) fn of_bytes(bytes: &[u8]) -> Fingerprint {
        let digest = Sha256::digest(bytes);
        let mut hex = String::with_capacity(64);
        for b in digest {
            hex.push_str(&format!("{b:02x}"));
        }
        Fingerprint {
            len: bytes.len() as u64,
            sha256: hex,
        }
    }

    /// The fingerprint of a file's current first bytes.
    pub fn of_file(file: &File) -> io::Result<Fingerprint> {
        Ok(Fingerprint::of_bytes(&read_prefix(file, FINGERPRINT_LEN)?))
    }

    /// If `file` starts with the bytes this fingerprint was taken from, the (possibly longer) fingerprint
    /// of its current content; `None` if it is another file (or was truncated below the fingerprint).
    pub fn check(&self, file: &File) -> io::Result<Option<Fingerprint>> {
        let want = usize::try_from(self.len).unwrap_or(usize::MAX);
        let prefix = read_prefix(file, FINGERPRINT_LEN.max(want))?;
        if prefix.len() < want || Fingerprint::of_bytes(&prefix[..want]) != *self {
            return Ok(None);
        }
        if prefix.len() == want {
            return Ok(Some(self.clone()));
        }
        Ok(Some(Fingerprint::of_bytes(&prefix)))
    }

    /// [`check`](Fingerprint::check) on a file's first bytes already read (up to [`FINGERPRINT_LEN`]).
    pub fn check_prefix(&self, prefix: &[u8]) -> Option<Fingerprint> {
        if !self.is_prefix_of(prefix) {
            return None;
        }
        if prefix.len() as u64 == self.len {
            return Some(self.clone());
        }
        Some(Fingerprint::of_bytes(prefix))
    }

    /// True if `prefix` (a file's first bytes, up to [`FINGERPRINT_LEN`]) starts with the fingerprinted bytes.
    /// Only safe together with the inode: a short fingerprint is a prefix of many files (an empty one of all).
    pub fn is_prefix_of(&self, prefix: &[u8]) -> bool {
        let Ok(n) = usize::try_from(self.len) else {
            return false;
        };
        prefix.len() >= n && Fingerprint::of_bytes(&prefix[..n]) == *self
    }

    /// True if `prefix` (a file's first bytes, up to [`FINGERPRINT_LEN`]) is the content this fingerprint was
    /// taken from, without help from the inode: a full-length fingerprint matches by prefix; a shorter one
    /// only a file of exactly those bytes. A short fingerprint is never taken for a prefix of a longer file
    /// (tailing scenario 22: an empty fingerprint is a prefix of every file).
    pub fn same_content(&self, prefix: &[u8]) -> bool {
        self.is_prefix_of(prefix)
            && (self.len >= FINGERPRINT_LEN as u64 || prefix.len() as u64 == self.len)
    }
}

/// A file's first bytes, up to [`FINGERPRINT_LEN`].
pub(super) fn prefix(file: &File) -> io::Result<Vec<u8>> {
    read_prefix(file, FINGERPRINT_LEN)
}

fn read_prefix(file: &File, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// A header line saved in a checkpoint: text when it is UTF-8 (it always is for Zeek), else raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderLine {
    Text(String),
    Bytes(Vec<u8>),
}

impl HeaderLine {
    fn from_bytes(b: &[u8]) -> HeaderLine {
        match std::str::from_utf8(b) {
            Ok(s) => HeaderLine::Text(s.to_owned()),
            Err(_) => HeaderLine::Bytes(b.to_vec()),
        }
    }
    fn into_bytes(self) -> Vec<u8> {
        match self {
            HeaderLine::Text(s) => s.into_bytes(),
            HeaderLine::Bytes(b) => b,
        }
    }
}

/// The saved position in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    /// The path the file was last seen under (for messages; identity is `id` + `fingerprint`).
    pub path: PathBuf,
    pub id: FileId,
    pub fingerprint: Fingerprint,
    /// Start of the first line not yet consumed.
    pub offset: u64,
    /// Lines consumed so far (the next line is `line_no + 1`).
    pub line_no: u64,
    /// Inside an over-long line already reported: discard up to the next newline.
    #[serde(default)]
    pub skipping: bool,
    /// Modification time when last read, (seconds, nanoseconds): rotated siblings and copies newer than
    /// this were made after we last looked.
    pub mtime: (i64, i64),
    /// The parser's current TSV header block.
    pub header: Vec<HeaderLine>,
}

/// An open file being read line by line.
pub(super) struct FileReader {
    pub path: PathBuf,
    pub file: File,
    pub id: FileId,
    pub fp: Fingerprint,
    pub offset: u64,
    pub line_no: u64,
    pub parser: SourceParser,
    /// Bytes of a partial line, from `offset` on.
    pub buf: Vec<u8>,
    pub skipping: bool,
    /// A `#close` line was read: the writer is done with this file.
    pub saw_close: bool,
    /// Consecutive polls that found a rotated file at its end (a grace poll before finishing it).
    pub eof_polls: u32,
    /// The file's modification time when we last read from it: copies and rotations made later are newer.
    pub seen_mtime: (i64, i64),
    /// The file's first bytes (up to [`FINGERPRINT_LEN`]) as last seen, kept while it is open: after a
    /// copytruncate they tell its copy even when the copy is shorter than what was read (rows written
    /// between logrotate's copy and its truncate), which a hash of a longer prefix cannot.
    pub head: Vec<u8>,
    /// NUL bytes skipped at a line start and not yet reported (a writer without O_APPEND after a truncation
    /// leaves a hole up to its old offset).
    nul_run: u64,
    /// The record at `offset` a gate held, if any.
    held: Option<Held>,
    /// Bytes read after the held record, from `ahead_at` on, not looked at yet (whole lines, then maybe a
    /// partial one). Only with `held`; `buf` is empty then. Kept with a start index, so that a merge that
    /// switches sources after every record copies each chunk once.
    ahead: Vec<u8>,
    ahead_at: usize,
    /// The lines of the region being consumed that the parse worker parsed (`ahead.rs`), in file order;
    /// empty outside a read that parses ahead.
    pre: VecDeque<Pre>,
    /// A line was not the next one the worker parsed: the rest of this read is parsed here.
    pre_off: bool,
    /// A read that finds a backlog may parse ahead (the tailer's setting).
    pub parse_ahead: bool,
    /// Lines consumed as the parse worker parsed them (tests: that reading ahead happened).
    #[cfg(test)]
    pub parsed_ahead: u64,
}

/// Regions read while parsing ahead are this many chunks.
const REGION_CHUNKS: usize = 4;

/// The parse worker stopped before its reader (it cannot, short of a panic, which its scope passes on).
/// Nothing after the last line consumed counts then: `offset` is where the next read starts again.
fn worker_gone() -> io::Error {
    io::Error::other("the parse worker stopped")
}

/// Why reading regions stopped.
enum Stop {
    /// The end of the file for now.
    End,
    /// The poll's budget is read.
    Budget,
    /// The file no longer starts with the bytes we know (the caller's next look sees why).
    Changed,
    Error(io::Error),
    /// A line that is no line yet (longer than `max_line`, no newline), or a line that was not the one the
    /// worker parsed: the rest is read as it always was.
    Inline,
}

impl FileReader {
    /// Reads an already opened file (found at `path`) from its start: the handle, not the path, is what
    /// is read, so a rename between looking and opening cannot swap the file.
    pub fn from_file(path: &Path, file: File, opts: LineFormat) -> io::Result<FileReader> {
        let meta = file.metadata()?;
        let head = prefix(&file)?;
        let fp = Fingerprint::of_bytes(&head);
        let seen_mtime = mtime(&meta);
        Ok(FileReader {
            path: path.to_path_buf(),
            file,
            id: FileId::of(&meta),
            fp,
            offset: 0,
            line_no: 0,
            parser: SourceParser::new(opts),
            buf: Vec::new(),
            skipping: false,
            saw_close: false,
            eof_polls: 0,
            seen_mtime,
            head,
            nul_run: 0,
            held: None,
            ahead: Vec::new(),
            ahead_at: 0,
            pre: VecDeque::new(),
            pre_off: false,
            parse_ahead: true,
            #[cfg(test)]
            parsed_ahead: 0,
        })
    }

    /// Starts with the header block `saved` had: for a file truncated in place, whose writer goes on with
    /// rows and no new header (a header block in the file, if any, replaces it as usual).
    pub fn keep_header(&mut self, saved: &FileCheckpoint) {
        self.parser.set_header(TsvHeader::from_lines(
            saved.header.iter().cloned().map(HeaderLine::into_bytes),
        ));
    }

    /// Resumes a file already opened and recognised as `saved`.
    /// `head` is the file's first bytes as read when it was recognised by them (`fp` was checked against
    /// them): read again here, they could show a truncate that the check did not, and a copytruncate right
    /// after the restart would not be recognised by its copy.
    pub fn resume(
        path: &Path,
        file: File,
        saved: &FileCheckpoint,
        fp: Fingerprint,
        head: Vec<u8>,
        opts: LineFormat,
    ) -> FileReader {
        let mut parser = SourceParser::new(opts);
        parser.set_header(TsvHeader::from_lines(
            saved.header.iter().cloned().map(HeaderLine::into_bytes),
        ));
        // The inode of what we found (a copy made by copytruncate has another one).
        let id = file.metadata().map(|m| FileId::of(&m)).unwrap_or(saved.id);
        let seen_mtime = saved.mtime;
        FileReader {
            path: path.to_path_buf(),
            file,
            id,
            fp,
            offset: saved.offset,
            line_no: saved.line_no,
            parser,
            buf: Vec::new(),
            skipping: saved.skipping,
            saw_close: false,
            eof_polls: 0,
            seen_mtime,
            head,
            nul_run: 0,
            held: None,
            ahead: Vec::new(),
            ahead_at: 0,
            pre: VecDeque::new(),
            pre_off: false,
            parse_ahead: true,
            #[cfg(test)]
            parsed_ahead: 0,
        }
    }

    /// Forgets everything read: the file was truncated or replaced in place. The parser keeps its header
    /// block: after a copytruncate Zeek's writer carries on with rows and writes no new header (tailing
    /// scenario 26); a new header block, if one comes, replaces it as anywhere else.
    pub fn restart(&mut self) {
        // Unreadable now: an empty fingerprint, which grows with what is read.
        self.head = prefix(&self.file).unwrap_or_default();
        self.fp = Fingerprint::of_bytes(&self.head);
        self.offset = 0;
        self.line_no = 0;
        let header = self.parser.header().clone();
        self.parser = SourceParser::new(self.parser.format());
        self.parser.set_header(header);
        self.nul_run = 0;
        self.buf.clear();
        self.held = None;
        self.ahead.clear();
        self.ahead_at = 0;
        self.pre.clear();
        self.skipping = false;
        self.saw_close = false;
        self.eof_polls = 0;
    }

    /// Skips to the end of the file's last complete line, reading only its header lines (`start_at = end`).
    pub fn seek_to_end(&mut self, chunk: &mut [u8]) -> io::Result<()> {
        let mut pos = 0u64;
        let mut line_start = true;
        let mut header_line: Option<Vec<u8>> = None;
        loop {
            let n = self.file.read_at(chunk, pos)?;
            if n == 0 {
                break;
            }
            for &b in &chunk[..n] {
                if line_start && b == b'#' {
                    header_line = Some(Vec::new());
                }
                if b == b'\n' {
                    self.line_no += 1;
                    if let Some(line) = header_line.take() {
                        self.parser.parse_line(&line);
                        if line.starts_with(b"#close") {
                            self.saw_close = true;
                        }
                    }
                    line_start = true;
                    continue;
                }
                line_start = false;
                if let Some(line) = header_line.as_mut() {
                    if line.len() <= super::MAX_LINE {
                        line.push(b);
                    }
                }
            }
            pos += n as u64;
            // Offset: just after the last newline seen.
            if let Some(i) = memchr::memrchr(b'\n', &chunk[..n]) {
                self.offset = pos - n as u64 + i as u64 + 1;
            }
        }
        Ok(())
    }

    /// The first bytes of the file as it is now (up to [`FINGERPRINT_LEN`]).
    pub fn prefix(&self) -> io::Result<Vec<u8>> {
        prefix(&self.file)
    }

    /// Takes the fingerprint again from the handle, as long as the file is now (up to
    /// [`FINGERPRINT_LEN`]), if the file still starts with the bytes we had; `false` if it does not (it was
    /// truncated or rewritten in place). Done before a file is remembered as read, so the entry names its
    /// whole content and not the few bytes there were when it was opened.
    pub fn refresh_fingerprint(&mut self) -> io::Result<bool> {
        let head = prefix(&self.file)?;
        if !self.fp.is_prefix_of(&head) {
            return Ok(false);
        }
        self.fp = Fingerprint::of_bytes(&head);
        self.head = head;
        Ok(true)
    }

    pub fn checkpoint(&self) -> FileCheckpoint {
        FileCheckpoint {
            path: self.path.clone(),
            id: self.id,
            fingerprint: self.fp.clone(),
            offset: self.offset,
            line_no: self.line_no,
            skipping: self.skipping,
            mtime: self.seen_mtime,
            header: self
                .parser
                .header()
                .lines()
                .iter()
                .map(|l| HeaderLine::from_bytes(l))
                .collect(),
        }
    }

    /// True while a gate holds a record of this file (see [`Gate`]).
    pub fn holds(&self) -> bool {
        self.held.is_some()
    }

    /// Reads every complete line available now, or up to the first record `gate` holds. Returns true if
    /// any byte was read or any held line consumed.
    pub fn read(
        &mut self,
        chunk: &mut [u8],
        max_line: usize,
        budget: u64,
        gate: Gate<'_>,
        sink: &mut dyn FnMut(TailEvent),
        stats: &mut PollStats,
    ) -> io::Result<bool> {
        let mut any = false;
        let mut parse_ahead = self.parse_ahead;
        if let Some(held) = self.held.take() {
            if !gate(held.parsed.time()) {
                self.held = Some(held);
                return Ok(false);
            }
            any = true;
            self.consume(held, sink, stats);
            let ahead = std::mem::take(&mut self.ahead);
            let from = self.ahead_at.min(ahead.len());
            let stop = self.lines(&ahead[from..], max_line, gate, sink, stats);
            self.ahead = ahead;
            if let Some(at) = stop {
                self.ahead_at = from + at;
                return Ok(true);
            }
            self.ahead.clear();
            self.ahead_at = 0;
        }
        loop {
            if stats.bytes >= budget {
                return Ok(any);
            }
            let pos = self.offset + self.buf.len() as u64;
            let n = match self.file.read_at(chunk, pos) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                if any {
                    self.seen_mtime = mtime(&self.file.metadata()?);
                }
                return Ok(any);
            }
            // What was read counts only if the file still starts with the bytes we know, read AFTER it: a
            // truncate (copytruncate) and new rows past our offset between the caller's look and this read
            // would otherwise be read from the middle of a line (tailing scenario 7). The caller's next
            // look sees the truncate and reads the file again from 0.
            let head = prefix(&self.file)?;
            if !self.fp.is_prefix_of(&head) {
                return Ok(any);
            }
            any = true;
            stats.bytes += n as u64;
            if self.fp.len < FINGERPRINT_LEN as u64 && head.len() as u64 > self.fp.len {
                // The fingerprint covers what was read, up to its full length (a file opened right after
                // its creation was fingerprinted at a few bytes).
                self.fp = Fingerprint::of_bytes(&head);
                self.head = head;
            }
            if let Some(at) = self.lines(&chunk[..n], max_line, gate, sink, stats) {
                self.ahead.clear();
                self.ahead.extend_from_slice(&chunk[at..n]);
                self.ahead_at = 0;
                return Ok(true);
            }
            // A whole chunk: more is likely waiting (a backlog). Read on in regions parsed ahead.
            if parse_ahead && n == chunk.len() && !self.skipping && stats.bytes < budget {
                parse_ahead = false;
                let size = chunk.len().saturating_mul(REGION_CHUNKS);
                if let Some(result) = self.read_ahead(size, max_line, budget, gate, sink, stats) {
                    return result;
                }
            }
        }
    }

    /// [`read`](FileReader::read) on in regions of `size` bytes, each parsed on a worker thread while the
    /// one before it is consumed (`ahead.rs`). `None`: the rest is to be read as before (no thread could be
    /// started, or a line needs the plain loop); everything read so far is consumed then.
    fn read_ahead(
        &mut self,
        size: usize,
        max_line: usize,
        budget: u64,
        gate: Gate<'_>,
        sink: &mut dyn FnMut(TailEvent),
        stats: &mut PollStats,
    ) -> Option<io::Result<bool>> {
        let parser = self.parser.clone();
        std::thread::scope(|s| {
            let (to_worker, jobs) = crossbeam_channel::bounded::<Region>(2);
            let (done_tx, done) = crossbeam_channel::bounded::<Region>(2);
            let worker = std::thread::Builder::new()
                .name("parse".into())
                .spawn_scoped(s, move || {
                    ahead::parse_regions(parser, max_line, jobs, done_tx)
                });
            if worker.is_err() {
                return None;
            }
            let result =
                self.read_regions(size, max_line, budget, gate, sink, stats, &to_worker, &done);
            drop(to_worker);
            result
        })
    }

    /// The reader's side of [`read_ahead`](FileReader::read_ahead): at most two regions are with the
    /// worker; the older one is consumed once the next one is read, or once reading stopped.
    #[allow(clippy::too_many_arguments)]
    fn read_regions(
        &mut self,
        size: usize,
        max_line: usize,
        budget: u64,
        gate: Gate<'_>,
        sink: &mut dyn FnMut(TailEvent),
        stats: &mut PollStats,
        to_worker: &crossbeam_channel::Sender<Region>,
        done: &crossbeam_channel::Receiver<Region>,
    ) -> Option<io::Result<bool>> {
        // The bytes after the last complete line read, from file offset `carry_at` (a line start).
        let mut carry = std::mem::take(&mut self.buf);
        let mut carry_at = self.offset;
        let mut spare: Vec<Region> = Vec::new();
        let mut with_worker = 0usize;
        let mut stop: Option<Stop> = None;
        self.pre_off = false;
        loop {
            if stop.is_none() {
                let mut region = spare.pop().unwrap_or_default();
                stop = self.read_region(
                    size,
                    max_line,
                    budget,
                    stats,
                    &mut carry,
                    &mut carry_at,
                    &mut region,
                );
                if region.data.is_empty() {
                    spare.push(region);
                } else if to_worker.send(region).is_err() {
                    return Some(Err(worker_gone()));
                } else {
                    with_worker += 1;
                }
            }
            if with_worker == 0 {
                if stop.is_some() {
                    break;
                }
                continue;
            }
            if with_worker < 2 && stop.is_none() {
                continue;
            }
            // The worker sends every region back before it looks for the next one.
            let Ok(mut region) = done.recv() else {
                return Some(Err(worker_gone()));
            };
            with_worker -= 1;
            if !self.pre_off {
                std::mem::swap(&mut self.pre, &mut region.items);
            }
            let held_at = self.lines(&region.data, max_line, gate, sink, stats);
            self.pre.clear();
            if self.pre_off && stop.is_none() {
                stop = Some(Stop::Inline);
            }
            if let Some(at) = held_at {
                // A record the gate holds: everything read after it waits for the next read.
                self.ahead.clear();
                self.ahead.extend_from_slice(&region.data[at..]);
                while with_worker > 0 {
                    let Ok(r) = done.recv() else {
                        self.ahead.clear();
                        return Some(Err(worker_gone()));
                    };
                    with_worker -= 1;
                    self.ahead.extend_from_slice(&r.data);
                }
                self.ahead.extend_from_slice(&carry);
                self.ahead_at = 0;
                return Some(Ok(true));
            }
            spare.push(region);
        }
        // Every region read is consumed: the partial line goes where it always went.
        if let Some(at) = self.lines(&carry, max_line, gate, sink, stats) {
            self.ahead.clear();
            self.ahead.extend_from_slice(&carry[at..]);
            self.ahead_at = 0;
            return Some(Ok(true));
        }
        match stop {
            Some(Stop::End) => Some(self.file.metadata().map(|m| {
                self.seen_mtime = mtime(&m);
                true
            })),
            Some(Stop::Budget | Stop::Changed) => Some(Ok(true)),
            Some(Stop::Error(e)) => Some(Err(e)),
            Some(Stop::Inline) | None => None,
        }
    }

    /// Reads the next region: the carried partial line and up to `size` bytes after it, cut after its last
    /// newline (the rest carried on). Leaves `region.data` empty when there is no complete line to parse,
    /// and says why reading stops, if it does.
    #[allow(clippy::too_many_arguments)]
    fn read_region(
        &mut self,
        size: usize,
        max_line: usize,
        budget: u64,
        stats: &mut PollStats,
        carry: &mut Vec<u8>,
        carry_at: &mut u64,
        region: &mut Region,
    ) -> Option<Stop> {
        region.data.clear();
        if stats.bytes >= budget {
            return Some(Stop::Budget);
        }
        region.data.extend_from_slice(carry);
        let start = region.data.len();
        region.data.resize(start + size, 0);
        let pos = *carry_at + start as u64;
        let n = loop {
            match self.file.read_at(&mut region.data[start..], pos) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    region.data.clear();
                    return Some(Stop::Error(e));
                }
            }
        };
        if n == 0 {
            region.data.clear();
            return Some(Stop::End);
        }
        // As in `read`: what was read counts only if the file still starts with the bytes we know.
        let head = match prefix(&self.file) {
            Ok(h) => h,
            Err(e) => {
                region.data.clear();
                return Some(Stop::Error(e));
            }
        };
        if !self.fp.is_prefix_of(&head) {
            region.data.clear();
            return Some(Stop::Changed);
        }
        stats.bytes += n as u64;
        if self.fp.len < FINGERPRINT_LEN as u64 && head.len() as u64 > self.fp.len {
            self.fp = Fingerprint::of_bytes(&head);
            self.head = head;
        }
        region.data.truncate(start + n);
        match memchr::memrchr(b'\n', &region.data) {
            Some(i) => {
                carry.clear();
                carry.extend_from_slice(&region.data[i + 1..]);
                region.data.truncate(i + 1);
                region.base = *carry_at;
                *carry_at += i as u64 + 1;
                None
            }
            None => {
                // No line ends here yet: all of it is carried on, up to a line too long to wait for.
                std::mem::swap(carry, &mut region.data);
                region.data.clear();
                (carry.len() > max_line).then_some(Stop::Inline)
            }
        }
    }

    /// Takes in `data`, the bytes that follow `offset + buf.len()`: whole lines are consumed, a partial last
    /// one is kept in `buf`. Stops at a record `gate` holds and returns where the bytes after it start.
    fn lines(
        &mut self,
        mut data: &[u8],
        max_line: usize,
        gate: Gate<'_>,
        sink: &mut dyn FnMut(TailEvent),
        stats: &mut PollStats,
    ) -> Option<usize> {
        let total = data.len();
        while !data.is_empty() {
            if !self.skipping && self.buf.is_empty() && data[0] == 0 {
                let k = data.iter().position(|&b| b != 0).unwrap_or(data.len());
                self.offset += k as u64;
                self.nul_run += k as u64;
                data = &data[k..];
                continue;
            }
            self.report_nul_run(sink);
            if self.skipping {
                match memchr::memchr(b'\n', data) {
                    Some(i) => {
                        self.offset += i as u64 + 1;
                        data = &data[i + 1..];
                        self.skipping = false;
                    }
                    None => {
                        self.offset += data.len() as u64;
                        data = &[];
                    }
                }
                continue;
            }
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    let len = self.buf.len() + i;
                    let taken = if len > max_line {
                        self.buf.clear();
                        self.skip_line(len as u64 + 1, SkipReason::TooLong, sink, stats);
                        true
                    } else if self.buf.is_empty() {
                        self.line(&data[..i], gate, sink, stats)
                    } else {
                        let mut line = std::mem::take(&mut self.buf);
                        line.extend_from_slice(&data[..i]);
                        let taken = self.line(&line, gate, sink, stats);
                        line.clear();
                        self.buf = line;
                        taken
                    };
                    data = &data[i + 1..];
                    if !taken {
                        return Some(total - data.len());
                    }
                }
                None => {
                    let len = self.buf.len() + data.len();
                    if len > max_line {
                        self.buf.clear();
                        self.skip_line(len as u64, SkipReason::TooLong, sink, stats);
                        self.skipping = true;
                    } else {
                        self.buf.extend_from_slice(data);
                    }
                    data = &[];
                }
            }
        }
        None
    }

    /// Reports the run of NUL bytes skipped just before `offset`, if any.
    fn report_nul_run(&mut self, sink: &mut dyn FnMut(TailEvent)) {
        if self.nul_run > 0 {
            let bytes = std::mem::take(&mut self.nul_run);
            sink(TailEvent::Nul {
                path: &self.path,
                offset: self.offset - bytes,
                bytes,
            });
        }
    }

    /// The file is done: a held partial line is counted as cut off.
    pub fn finish(&mut self, sink: &mut dyn FnMut(TailEvent), stats: &mut PollStats) {
        self.report_nul_run(sink);
        if !self.buf.is_empty() {
            let len = self.buf.len() as u64;
            self.buf.clear();
            self.skip_line(len, SkipReason::Truncated, sink, stats);
        }
    }

    fn skip_line(
        &mut self,
        consumed: u64,
        reason: SkipReason,
        sink: &mut dyn FnMut(TailEvent),
        stats: &mut PollStats,
    ) {
        self.line_no += 1;
        self.offset += consumed;
        stats.lines += 1;
        stats.skipped += 1;
        sink(TailEvent::Skipped {
            path: &self.path,
            line_no: self.line_no,
            reason,
        });
    }

    /// One whole line (without its newline). Returns false if it is a record `gate` held: nothing is
    /// consumed then, and the record waits in `held`.
    fn line(
        &mut self,
        line: &[u8],
        gate: Gate<'_>,
        sink: &mut dyn FnMut(TailEvent),
        stats: &mut PollStats,
    ) -> bool {
        let parsed = match self.parsed_ahead(line) {
            Some(p) => p,
            None => self.parser.parse_line(line),
        };
        let held = Held {
            parsed,
            len: line.len() as u64 + 1,
        };
        if matches!(held.parsed, Parsed::Conn(..) | Parsed::Context(_)) && !gate(held.parsed.time())
        {
            self.held = Some(held);
            return false;
        }
        if matches!(held.parsed, Parsed::Meta) && line.starts_with(b"#close") {
            self.saw_close = true;
        }
        self.consume(held, sink, stats);
        true
    }

    /// What the parse worker made of `line` (the line at `offset`), if it parsed it. A header line is
    /// applied here too, so this parser's header is always the one of the first line not consumed.
    fn parsed_ahead(&mut self, line: &[u8]) -> Option<Parsed> {
        let next = self.pre.front()?;
        if next.offset != self.offset || next.len != line.len() as u64 + 1 {
            self.pre.clear();
            self.pre_off = true;
            return None;
        }
        #[cfg(test)]
        {
            self.parsed_ahead += 1;
        }
        match self.pre.pop_front()?.parsed {
            Parsed::Meta => Some(self.parser.parse_line(line)),
            parsed => Some(parsed),
        }
    }

    /// Consumes one parsed line: counts it, moves past it and hands it to `sink`.
    fn consume(&mut self, held: Held, sink: &mut dyn FnMut(TailEvent), stats: &mut PollStats) {
        self.line_no += 1;
        self.offset += held.len;
        stats.lines += 1;
        match held.parsed {
            Parsed::Conn(rec, bad_values) => {
                stats.records += 1;
                sink(TailEvent::Record {
                    rec,
                    path: &self.path,
                    line_no: self.line_no,
                    bad_values,
                });
            }
            Parsed::Context(rec) => {
                stats.records += 1;
                sink(TailEvent::Context { rec });
            }
            Parsed::Skipped(reason) => {
                stats.skipped += 1;
                sink(TailEvent::Skipped {
                    path: &self.path,
                    line_no: self.line_no,
                    reason,
                });
            }
            Parsed::Meta => {}
        }
    }
}
