//! The reading side of `replay`, run on threads of their own: each reads its files (TSV or JSON, gzip or
//! not, stdin), splits and parses the lines, and sends what they were in batches, in file order, over a
//! bounded channel. The replay thread takes the batches in order and does everything that shows: the
//! detector, the context merge, every message and count. A reader writes nothing: a file that does not
//! open, a read error, a skipped line are items of the stream, reported when the replay thread reaches them,
//! so the output is the same, in the same order, as when the lines were read where they are used.
//!
//! Conn logs are read by one thread, one file after the other. Each context log has its own thread, as the
//! merge takes records from all of them at once. A reader runs at most a few batches ahead; when the replay
//! thread stops taking batches (it is done, or failed) the reader stops at its next send. Batches go back to
//! their reader once consumed, so their memory is reused (and the records are dropped on the reader).

use crate::input::{self, InputPath};
use crate::zeek::context::{ContextKind, ContextLine, ContextParser, ContextRecord};
use crate::zeek::{ConnRecord, Line, LogParser, ParseOptions, SkipReason};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader};

/// Items per conn batch.
pub(super) const CONN_BATCH: usize = 2048;
/// Items per context batch.
pub(super) const CONTEXT_BATCH: usize = 1024;
/// Full batches a reader may have sent that the replay thread has not taken yet.
const AHEAD: usize = 4;

/// What a reader found, in file order: a conn reader's items ([`ConnItem`], every conn file in turn) or a
/// context reader's ([`ContextItem`], one file).
// Records are the common case: boxing them would cost an allocation per line.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Item<R> {
    /// The next file (an index into the replay's inputs), and whether it opened. Its lines follow.
    Start {
        file: usize,
        opened: io::Result<()>,
    },
    Record(R),
    /// Line `line_no` of the current file was skipped.
    Skipped {
        line_no: u64,
        reason: SkipReason,
    },
    /// Reading line `line_no` failed: the file ends here (a conn line the error cut off follows as
    /// [`SkipReason::Truncated`]).
    ReadError {
        line_no: u64,
        error: io::Error,
    },
}

pub(super) type ConnItem = Item<ConnRecord>;
pub(super) type ContextItem = Item<ContextRecord>;

/// The replay thread stopped taking batches.
#[derive(Debug)]
pub(super) struct Gone;

/// The sending end: items are gathered into batches of `size`.
pub(super) struct Batcher<T> {
    size: usize,
    batch: VecDeque<T>,
    tx: Sender<VecDeque<T>>,
    back: Receiver<VecDeque<T>>,
}

impl<T> Batcher<T> {
    pub(super) fn push(&mut self, item: T) -> Result<(), Gone> {
        self.batch.push_back(item);
        if self.batch.len() >= self.size {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the items gathered so far, if any.
    pub(super) fn flush(&mut self) -> Result<(), Gone> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let next = match self.back.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => VecDeque::with_capacity(self.size),
        };
        let full = std::mem::replace(&mut self.batch, next);
        self.tx.send(full).map_err(|_| Gone)
    }
}

/// The receiving end, on the replay thread.
pub(super) struct Batches<T> {
    rx: Receiver<VecDeque<T>>,
    back: Sender<VecDeque<T>>,
}

impl<T> Batches<T> {
    /// The next batch, None once the reader is done.
    pub(super) fn next(&self) -> Option<VecDeque<T>> {
        self.rx.recv().ok()
    }

    /// Hands a consumed batch back to the reader for reuse.
    pub(super) fn recycle(&self, batch: VecDeque<T>) {
        // The reader may be done: then the batch is simply dropped.
        let _ = self.back.try_send(batch);
    }
}

/// A batch channel of `size` items per batch.
pub(super) fn channel<T>(size: usize) -> (Batcher<T>, Batches<T>) {
    let (tx, rx) = bounded(AHEAD);
    let (back_tx, back_rx) = bounded(AHEAD + 2);
    (
        Batcher {
            size,
            batch: VecDeque::with_capacity(size),
            tx,
            back: back_rx,
        },
        Batches { rx, back: back_tx },
    )
}

/// The line in `buf` without its newline, and whether it had one.
fn line_of(buf: &[u8]) -> (&[u8], bool) {
    match buf.split_last() {
        Some((b'\n', line)) => (line, true),
        _ => (buf, false),
    }
}

/// Reads the conn files `(index, input)` one after the other, parsed with `opts`.
pub(super) fn read_conn(
    files: &[(usize, &InputPath)],
    opts: ParseOptions,
    mut out: Batcher<ConnItem>,
) {
    let _ = read_conn_files(files, opts, &mut out).and_then(|()| out.flush());
}

fn read_conn_files(
    files: &[(usize, &InputPath)],
    opts: ParseOptions,
    out: &mut Batcher<ConnItem>,
) -> Result<(), Gone> {
    let mut buf = Vec::with_capacity(1024);
    for &(file, input) in files {
        let mut parser = LogParser::new(opts);
        read_file(file, input, out, &mut buf, true, |line| {
            match parser.parse_line(line) {
                Line::Record(rec, _) => Parsed::Record(rec),
                Line::Meta => Parsed::Meta,
                Line::Skipped(reason) => Parsed::Skipped(reason),
            }
        })?;
    }
    Ok(())
}

/// Reads one context file (input number `file`) of kind `kind`.
pub(super) fn read_context(
    file: usize,
    input: &InputPath,
    kind: ContextKind,
    mut out: Batcher<ContextItem>,
) {
    let mut parser = ContextParser::new(kind);
    let mut buf = Vec::with_capacity(1024);
    let _ = read_file(
        file,
        input,
        &mut out,
        &mut buf,
        false,
        |line| match parser.parse_line(line) {
            ContextLine::Record(r) => Parsed::Record(r),
            ContextLine::Meta => Parsed::Meta,
            ContextLine::Skipped(reason) => Parsed::Skipped(reason),
        },
    )
    .and_then(|()| out.flush());
}

/// What a parser made of one line.
enum Parsed<R> {
    Record(R),
    /// A header line.
    Meta,
    Skipped(SkipReason),
}

/// Reads input number `file` line by line into `out`: its [`Item::Start`], then each line's record or
/// skip as `parse` makes it (an unterminated last line is [`SkipReason::Truncated`]), and a read error
/// ends the file; with `cut_line`, a line the error cut off follows it as a truncated skip (conn lines,
/// as scan counts them).
fn read_file<R>(
    file: usize,
    input: &InputPath,
    out: &mut Batcher<Item<R>>,
    buf: &mut Vec<u8>,
    cut_line: bool,
    mut parse: impl FnMut(&[u8]) -> Parsed<R>,
) -> Result<(), Gone> {
    let reader = match input::open(input, Default::default()) {
        Ok(r) => r,
        Err(e) => {
            return out.push(Item::Start {
                file,
                opened: Err(e),
            })
        }
    };
    out.push(Item::Start {
        file,
        opened: Ok(()),
    })?;
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = match reader.read_until(b'\n', buf) {
            Ok(n) => n,
            Err(error) => {
                out.push(Item::ReadError {
                    line_no: line_no + 1,
                    error,
                })?;
                if cut_line && !buf.is_empty() {
                    out.push(Item::Skipped {
                        line_no: line_no + 1,
                        reason: SkipReason::Truncated,
                    })?;
                }
                return Ok(());
            }
        };
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let (line, terminated) = line_of(buf);
        match parse(line) {
            Parsed::Record(r) => out.push(Item::Record(r))?,
            Parsed::Meta => {}
            Parsed::Skipped(reason) => {
                let reason = if terminated {
                    reason
                } else {
                    SkipReason::Truncated
                };
                out.push(Item::Skipped { line_no, reason })?;
            }
        }
    }
}
