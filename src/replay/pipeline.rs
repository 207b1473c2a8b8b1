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

/// What a conn reader found, in file order.
// Records are the common case: boxing them would cost an allocation per line.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum ConnItem {
    /// The next file (an index into the replay's inputs), and whether it opened. Its lines follow.
    Start {
        file: usize,
        opened: io::Result<()>,
    },
    Record(ConnRecord),
    /// Line `line_no` of the current file was skipped.
    Skipped {
        line_no: u64,
        reason: SkipReason,
    },
    /// Reading line `line_no` failed: the file ends here (a line the error cut off follows as
    /// [`SkipReason::Truncated`]).
    ReadError {
        line_no: u64,
        error: io::Error,
    },
}

/// What a context reader found, in file order; the first item says whether the file opened.
#[derive(Debug)]
pub(super) enum ContextItem {
    Opened(io::Result<()>),
    Record(ContextRecord),
    Skipped {
        line_no: u64,
        reason: SkipReason,
    },
    /// Reading line `line_no` failed: the file ends here.
    ReadError {
        line_no: u64,
        error: io::Error,
    },
}

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
        let reader = match input::open(input, Default::default()) {
            Ok(r) => r,
            Err(e) => {
                out.push(ConnItem::Start {
                    file,
                    opened: Err(e),
                })?;
                continue;
            }
        };
        out.push(ConnItem::Start {
            file,
            opened: Ok(()),
        })?;
        let mut reader = BufReader::with_capacity(256 * 1024, reader);
        let mut parser = LogParser::new(opts);
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let n = match reader.read_until(b'\n', &mut buf) {
                Ok(n) => n,
                Err(error) => {
                    out.push(ConnItem::ReadError {
                        line_no: line_no + 1,
                        error,
                    })?;
                    if !buf.is_empty() {
                        // The line the error cut off (as scan does): counted, never parsed.
                        line_no += 1;
                        out.push(ConnItem::Skipped {
                            line_no,
                            reason: SkipReason::Truncated,
                        })?;
                    }
                    break;
                }
            };
            if n == 0 {
                break;
            }
            line_no += 1;
            let (line, terminated) = line_of(&buf);
            match parser.parse_line(line) {
                Line::Record(rec, _) => out.push(ConnItem::Record(rec))?,
                Line::Meta => {}
                Line::Skipped(reason) => {
                    let reason = if terminated {
                        reason
                    } else {
                        SkipReason::Truncated
                    };
                    out.push(ConnItem::Skipped { line_no, reason })?;
                }
            }
        }
    }
    Ok(())
}

/// Reads one context file of kind `kind`.
pub(super) fn read_context(input: &InputPath, kind: ContextKind, mut out: Batcher<ContextItem>) {
    let _ = read_context_file(input, kind, &mut out).and_then(|()| out.flush());
}

fn read_context_file(
    input: &InputPath,
    kind: ContextKind,
    out: &mut Batcher<ContextItem>,
) -> Result<(), Gone> {
    let reader = match input::open(input, Default::default()) {
        Ok(r) => r,
        Err(e) => return out.push(ContextItem::Opened(Err(e))),
    };
    out.push(ContextItem::Opened(Ok(())))?;
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let mut parser = ContextParser::new(kind);
    let mut buf = Vec::with_capacity(1024);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = match reader.read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(error) => {
                return out.push(ContextItem::ReadError {
                    line_no: line_no + 1,
                    error,
                });
            }
        };
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let (line, terminated) = line_of(&buf);
        match parser.parse_line(line) {
            ContextLine::Record(r) => out.push(ContextItem::Record(r))?,
            ContextLine::Meta => {}
            ContextLine::Skipped(reason) => {
                let reason = if terminated {
                    reason
                } else {
                    SkipReason::Truncated
                };
                out.push(ContextItem::Skipped { line_no, reason })?;
            }
        }
    }
}
