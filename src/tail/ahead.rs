//! Parsing ahead on a second thread while a backlog is read (the daemon's catch-up).
//!
//! When a read of a file fills a whole chunk, more is likely waiting, and `FileReader::read` goes on in
//! regions of complete lines: the reader thread reads region k+1 and hands it to a parse worker, then takes
//! region k back, parsed, and runs it through the very same line loop as before, whose sink runs the
//! detector. So the detector of region k and the parsing of region k+1 overlap. Nothing else moves: the
//! line loop still decides every line (NUL runs, over-long lines, the gate, header lines, offsets and line
//! numbers); it only takes the worker's result for a line instead of parsing it, after checking that it is
//! the same line (its file offset and length). A header line is applied by the reader thread's own parser
//! too, so the header a checkpoint saves is always the one of the first line not consumed. The worker
//! starts from a copy of that parser at the first region and applies header lines in file order, so each
//! row is parsed with the header the rows before it left. Should a line ever not be the one the worker
//! parsed next (it cannot, as the worker splits lines by the line loop's rules; this is a safety net), the
//! rest of the read is parsed on the reader thread, as it always was.
//!
//! A region a gate stops in gives its unconsumed bytes back, with those of the regions read after it, as
//! the bytes read ahead of the held record (`ahead`): they are parsed again when the gate lets them go on.
//! The daemon turns parsing ahead off for the sources it merges, which it reads a few records at a time.

use super::file::{Parsed, SourceParser};
use crossbeam_channel::{Receiver, Sender};
use std::collections::VecDeque;

/// A line the worker parsed: `len` bytes (with the newline) at file offset `offset`.
pub(super) struct Pre {
    pub offset: u64,
    pub len: u64,
    pub parsed: Parsed,
}

/// Complete lines of a file, from offset `base` (a line start), and what the worker made of them.
#[derive(Default)]
pub(super) struct Region {
    pub base: u64,
    pub data: Vec<u8>,
    pub items: VecDeque<Pre>,
}

/// The worker: parses each region it is sent, in order, and sends it back, until the reader hangs up.
/// `parser` is the reader's parser as it is at the first region's start.
pub(super) fn parse_regions(
    mut parser: SourceParser,
    max_line: usize,
    jobs: Receiver<Region>,
    done: Sender<Region>,
) {
    for mut region in jobs {
        parse_region(&mut parser, max_line, &mut region);
        if done.send(region).is_err() {
            return;
        }
    }
}

/// Parses the lines of `region` as `FileReader::lines` cuts them, from a line start with nothing
/// pending: a run of NUL bytes at a line start is passed over, a line longer than `max_line` is not
/// parsed (it is skipped as too long).
pub(super) fn parse_region(parser: &mut SourceParser, max_line: usize, region: &mut Region) {
    region.items.clear();
    let data = &region.data[..];
    let mut p = 0;
    while p < data.len() {
        if data[p] == 0 {
            p += data[p..]
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(data.len() - p);
            continue;
        }
        // A region ends with a newline: a line without one is never there (but is left alone if it is).
        let Some(i) = memchr::memchr(b'\n', &data[p..]) else {
            return;
        };
        if i <= max_line {
            region.items.push_back(Pre {
                offset: region.base + p as u64,
                len: i as u64 + 1,
                parsed: parser.parse_line(&data[p..p + i]),
            });
        }
        p += i + 1;
    }
}
