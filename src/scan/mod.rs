//! `longconn scan`: the analyst's one-shot report over any Zeek conn.log (TSV, JSON, gzip, stdin).
//!
//! One reader thread reads each input in large chunks cut at line ends, applies header lines itself (they
//! are rare, and each `#fields` changes how the rows after it parse), and hands the rows between headers to
//! worker threads together with the header they need. Workers parse and fold records into their own
//! [`tally::Tally`]; the tallies merge at the end. Memory grows with the number of groups, not of records.

mod json_rows;
mod pairs;
pub mod report;
mod rows;
pub mod tally;

use crate::input::{self, InputPath};
use crate::zeek::{ConnRecord, Field, FieldSet, LogParser, ParseOptions, SkipReason, TsvHeader};
use rows::RowPlan;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tally::PairRow;
use tally::{Tally, TallyOptions};

pub use tally::{Counts, GroupMode, GroupRow, LineIssue, SingleRow};

/// Bytes per chunk handed to a worker.
const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub tally: TallyOptions,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// The kind of every input; `None`: each from its file name (`tally.interim_files` is filled from it).
    pub kind: Option<crate::zeek::SourceKind>,
    /// The single table is printed (false with `--only cumulative`: its rows are never built).
    pub single_table: bool,
}

/// An input that could not be read, or that held no Zeek log.
#[derive(Debug, Clone, PartialEq)]
pub struct FileError {
    pub file: String,
    pub message: String,
    /// Its lines before the error were read (a cut or corrupt gzip, an I/O error part way).
    pub partly_read: bool,
}

/// How an input went, for the summary: read whole, read up to an error, or not read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputOutcome {
    Read,
    ReadUpToError,
    Failed,
}

/// What `scan` found.
#[derive(Debug)]
pub struct ScanReport {
    pub singles: Vec<SingleRow>,
    pub groups: Vec<GroupRow>,
    pub counts: Counts,
    pub files: Vec<String>,
    /// Per input (as `files`), how it went.
    pub outcomes: Vec<InputOutcome>,
    /// Skipped lines with their file index and line number (the first few per worker), sorted.
    pub issues: Vec<LineIssue>,
    pub file_errors: Vec<FileError>,
}

/// A run of data lines that share one header state.
struct Work {
    file: usize,
    header: Arc<TsvHeader>,
    buf: Arc<Vec<u8>>,
    start: usize,
    end: usize,
    /// Line number of the first line of `buf[start..end]` (1-based).
    first_line: u64,
    /// How the run's last line ends.
    last: LastLine,
}

/// How the last line of a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastLine {
    /// With a newline, or the run is not the end of its input.
    Complete,
    /// The input's last line, without a newline: a record if it parses, else skipped as truncated.
    Unterminated,
    /// The input's last line, which a read error cut off: skipped as truncated, never parsed.
    CutOff,
}

/// The fields scan reads; the rest of each line is skipped over.
pub const SCAN_FIELDS: FieldSet = FieldSet::of(&[
    Field::Ts,
    Field::Uid,
    Field::OrigH,
    Field::OrigP,
    Field::RespH,
    Field::RespP,
    Field::Proto,
    Field::Service,
    Field::Duration,
    Field::OrigBytes,
    Field::RespBytes,
]);

/// The fields every record needs for the tallies and the summary counts; text fields (uid, proto, service)
/// are parsed only for the few records that enter the single table.
pub(crate) fn parse_options(by: GroupMode, uids: bool) -> (ParseOptions, ParseOptions) {
    let mut tally_fields = FieldSet::of(&[
        Field::Ts,
        Field::OrigH,
        Field::OrigP,
        Field::RespH,
        Field::RespP,
        Field::Duration,
        Field::OrigBytes,
        Field::RespBytes,
    ]);
    if by == GroupMode::PairPort {
        tally_fields = tally_fields.with(Field::Proto);
    }
    if uids {
        tally_fields = tally_fields.with(Field::Uid);
    }
    let full = ParseOptions {
        wanted: SCAN_FIELDS,
        ..ParseOptions::default()
    };
    (
        ParseOptions {
            wanted: tally_fields,
            ..full
        },
        full,
    )
}

fn work<'w>(tally: &mut Tally, w: &'w Work, opts: &'w (ParseOptions, ParseOptions)) {
    let bytes = &w.buf[w.start..w.end];
    let mut fold = Fold::new(w, opts);
    let mut line_no = w.first_line;
    let mut start = 0;
    let ports = tally.group_mode() == GroupMode::PairPort;
    // The TSV fast path takes the plain rows; it hands every other line to the general parser.
    if let Some(plan) = tally
        .takes_pairs()
        .then(|| RowPlan::new(&w.header, ports))
        .flatten()
    {
        start = rows::for_each_row(&plan, bytes, |from, to, row| {
            let line = &bytes[from..to];
            match row {
                Some(row) => fold.pair(tally, row, line),
                None => fold.general(tally, line, line_no, false),
            }
            line_no += 1;
        });
    }
    // The rest line by line: plain JSON lines through their fast path, the others the general parser.
    let json_fast = tally.takes_pairs();
    let rest = &bytes[start..];
    let mut each = |tally: &mut Tally, line: &'w [u8], line_no: u64, last: bool| {
        let fast = if json_fast && LogParser::reads_as_json(&w.header, line) {
            json_rows::read(line, ports)
        } else {
            None
        };
        match fast {
            Some(row) => fold.pair(tally, row, line),
            None => fold.general(tally, line, line_no, last),
        }
    };
    let mut from = 0;
    for nl in memchr::memchr_iter(b'\n', rest) {
        each(tally, &rest[from..nl], line_no, false);
        line_no += 1;
        from = nl + 1;
    }
    if from < rest.len() {
        match w.last {
            LastLine::CutOff => tally.skip(w.file, line_no, SkipReason::Truncated),
            LastLine::Unterminated => each(tally, &rest[from..], line_no, true),
            LastLine::Complete => each(tally, &rest[from..], line_no, false),
        }
    }
    fold.finish(tally);
}

/// The fully parsed record of `line` (uid, proto, service, ts), for a row that enters the single table.
fn full_record(w: &Work, full: &ParseOptions, line: &[u8]) -> Option<ConnRecord> {
    match LogParser::parse_with(&w.header, full, line) {
        crate::zeek::Line::Record(r, _) => Some(r),
        _ => None,
    }
}

/// One line through the general parser: the record and its count of bad values, or `None` for a header,
/// an empty line or a skipped line (counted here; `last`: the input's unterminated last line).
fn parse_general(
    tally: &mut Tally,
    w: &Work,
    opts: &ParseOptions,
    line: &[u8],
    line_no: u64,
    last: bool,
) -> Option<(ConnRecord, u32)> {
    match LogParser::parse_with(&w.header, opts, line) {
        crate::zeek::Line::Record(rec, bad) => Some((rec, bad)),
        crate::zeek::Line::Meta => None,
        crate::zeek::Line::Skipped(reason) => {
            let reason = if last && reason != SkipReason::NoHeader {
                SkipReason::Truncated
            } else {
                reason
            };
            tally.skip(w.file, line_no, reason);
            None
        }
    }
}

/// Folds one run's records into a tally. Each record is added one line late: its group's slot is
/// prefetched first and loads from memory while the next line parses (the group table is far larger than
/// the cache). Fast-path rows and general records wait in separate slots (a row is a few words, a record
/// ~300 bytes: one shared slot would copy the large one for every row); the order between the two kinds
/// may shift by a line, which the sums do not see (fast rows exist only where order does not matter:
/// no interim input).
struct Fold<'w> {
    w: &'w Work,
    opts: &'w (ParseOptions, ParseOptions),
    row: Option<(PairRow, &'w [u8])>,
    record: Option<(ConnRecord, u32, &'w [u8])>,
    /// Records read by the fast paths (counted for their file at the end).
    fast_records: u64,
}

impl<'w> Fold<'w> {
    fn new(w: &'w Work, opts: &'w (ParseOptions, ParseOptions)) -> Fold<'w> {
        Fold {
            w,
            opts,
            row: None,
            record: None,
            fast_records: 0,
        }
    }

    /// A record a fast path read from `line`.
    #[inline]
    fn pair(&mut self, tally: &mut Tally, row: PairRow, line: &'w [u8]) {
        self.fast_records += 1;
        tally.prefetch_row(&row);
        if let Some(prev) = self.row.replace((row, line)) {
            self.add_row(tally, prev);
        }
    }

    /// A line for the general parser (`last`: the input's unterminated last line).
    fn general(&mut self, tally: &mut Tally, line: &'w [u8], line_no: u64, last: bool) {
        if let Some((rec, bad)) = parse_general(tally, self.w, &self.opts.0, line, line_no, last) {
            tally.prefetch(&rec);
            if let Some(prev) = self.record.replace((rec, bad, line)) {
                self.add_record(tally, prev);
            }
        }
    }

    #[inline]
    fn add_row(&self, tally: &mut Tally, (row, line): (PairRow, &'w [u8])) {
        let (w, full) = (self.w, &self.opts.1);
        tally.add_pair_line(&row, &w.header, line, || full_record(w, full, line));
    }

    fn add_record(&self, tally: &mut Tally, (rec, bad, line): (ConnRecord, u32, &'w [u8])) {
        let (w, full) = (self.w, &self.opts.1);
        tally.add(w.file, rec, bad, || full_record(w, full, line));
    }

    fn finish(mut self, tally: &mut Tally) {
        if let Some(prev) = self.row.take() {
            self.add_row(tally, prev);
        }
        if let Some(prev) = self.record.take() {
            self.add_record(tally, prev);
        }
        tally.add_file_records(self.w.file, self.fast_records);
    }
}

/// Reads every input and builds the report.
pub fn scan(inputs: &[InputPath], opts: &ScanOptions) -> ScanReport {
    let threads = opts.threads.max(1);
    let mut tally_opts = opts.tally.clone();
    tally_opts.interim_files = inputs
        .iter()
        .map(|i| opts.kind.unwrap_or_else(|| i.kind()).is_interim())
        .collect();
    let opts = &ScanOptions {
        tally: tally_opts,
        ..opts.clone()
    };
    let parse_opts = parse_options(opts.tally.by, opts.tally.any_interim());
    let (tx, rx) = crossbeam_channel::bounded::<Work>(threads * 4);
    let raw_bytes = Arc::new(AtomicU64::new(0));
    let total_bytes: u64 = inputs.iter().filter_map(InputPath::size).sum();
    let progress = progress_bar(opts.progress, total_bytes);

    let mut file_errors = Vec::new();
    // Indices of the inputs in `file_errors`, in the same order.
    let mut failed = Vec::new();
    let mut tally = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                let topts = opts.tally.clone();
                let parse_opts = &parse_opts;
                s.spawn(move || {
                    let mut t = new_tally(topts, opts.single_table);
                    t.read_lines_with(parse_opts.1);
                    for w in rx.iter() {
                        work(&mut t, &w, parse_opts);
                    }
                    t.resolve();
                    t
                })
            })
            .collect();
        drop(rx);
        // One pool for all inputs: the next input reuses the buffers of the last, so memory does not
        // depend on the number of inputs.
        let mut pool = BufPool::default();
        for (i, input) in inputs.iter().enumerate() {
            if let Err(e) = read_input(i, input, &tx, &raw_bytes, &progress, &mut pool) {
                failed.push(i);
                file_errors.push(FileError {
                    file: input.display(),
                    message: e.error.to_string(),
                    partly_read: e.partly_read,
                });
            }
        }
        drop(tx);
        let mut total = new_tally(opts.tally.clone(), opts.single_table);
        for w in workers {
            match w.join() {
                Ok(t) => total.merge(t),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        total.finish();
        total
    });
    if let Some(p) = progress {
        p.finish_and_clear();
    }

    // A file that yielded no record but rows before any header is not a Zeek TSV log with its header.
    for (i, input) in inputs.iter().enumerate() {
        let headerless = tally
            .issues
            .iter()
            .any(|x| x.file == i && x.reason == SkipReason::NoHeader);
        if headerless && tally.records_per_file.get(&i).copied().unwrap_or(0) == 0 {
            failed.push(i);
            file_errors.push(FileError {
                file: input.display(),
                message: "data rows but no #fields header: not a Zeek log with its header block \
                          (rows of a TSV log need the #separator/#fields lines Zeek writes first)"
                    .to_string(),
                partly_read: false,
            });
        }
    }
    let mut outcomes = vec![InputOutcome::Read; inputs.len()];
    for (&i, e) in failed.iter().zip(&file_errors) {
        outcomes[i] = match (outcomes[i], e.partly_read) {
            (InputOutcome::Failed, _) | (_, false) => InputOutcome::Failed,
            (_, true) => InputOutcome::ReadUpToError,
        };
    }
    let mut issues = std::mem::take(&mut tally.issues);
    issues.sort_by_key(|x| (x.file, x.line));
    ScanReport {
        singles: tally.singles(),
        groups: tally.groups(),
        counts: tally.counts.clone(),
        files: inputs.iter().map(InputPath::display).collect(),
        outcomes,
        issues,
        file_errors,
    }
}

fn new_tally(opts: TallyOptions, single_table: bool) -> Tally {
    let t = Tally::new(opts);
    if single_table {
        t
    } else {
        t.without_singles()
    }
}

fn progress_bar(enabled: bool, total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || total < 64 * 1024 * 1024 || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {bytes}/{total_bytes} {wide_bar} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// Chunk buffers handed out to the workers, taken back for the next chunks once every worker is done with
/// them: no allocation, page faults or zero-filling per chunk.
#[derive(Default)]
struct BufPool {
    /// Buffers sent, oldest first (our reference keeps them alive for reuse).
    sent: std::collections::VecDeque<Arc<Vec<u8>>>,
}

impl BufPool {
    /// Buffers kept in flight before the oldest is let go (more than the channel holds).
    const MAX: usize = 32;

    /// A buffer of at least `len` bytes (contents arbitrary).
    fn get(&mut self, len: usize) -> Vec<u8> {
        let free = self.sent.iter().position(|b| Arc::strong_count(b) == 1);
        let mut buf = free
            .and_then(|i| self.sent.remove(i))
            .and_then(|b| Arc::try_unwrap(b).ok())
            .unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf
    }

    fn sent(&mut self, buf: &Arc<Vec<u8>>) {
        if self.sent.len() >= Self::MAX {
            self.sent.pop_front();
        }
        self.sent.push_back(buf.clone());
    }
}

/// Why an input stopped, and whether its lines before that were read.
struct ReadError {
    error: std::io::Error,
    partly_read: bool,
}

/// Reads one input into chunks for the workers, applying header lines in order. A read error ends the
/// input like its end would, except that the partial line before it is skipped as cut off: every line
/// read before the error is used.
fn read_input(
    file: usize,
    input: &InputPath,
    tx: &crossbeam_channel::Sender<Work>,
    raw_bytes: &Arc<AtomicU64>,
    progress: &Option<indicatif::ProgressBar>,
    pool: &mut BufPool,
) -> Result<(), ReadError> {
    let mut reader = input::open(input, raw_bytes.clone()).map_err(|error| ReadError {
        error,
        partly_read: false,
    })?;
    let mut any_bytes = false;
    let mut header = Arc::new(TsvHeader::default());
    let mut carry: Vec<u8> = Vec::new();
    let mut line_no: u64 = 1;
    loop {
        // Each chunk: the partial line carried over, then CHUNK more bytes (or up to the end).
        let want = carry.len() + CHUNK;
        let mut buf = pool.get(want);
        buf[..carry.len()].copy_from_slice(&carry);
        let mut filled = carry.len();
        carry.clear();
        let mut eof = false;
        let mut error = None;
        while filled < want {
            match reader.read(&mut buf[filled..want]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    filled += n;
                    any_bytes = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eof = true;
                    error = Some(e);
                    break;
                }
            }
        }
        if let Some(p) = progress {
            p.set_position(raw_bytes.load(Ordering::Relaxed));
        }
        let data = &buf[..filled];
        let cut = if eof {
            filled
        } else {
            match memchr::memrchr(b'\n', data) {
                Some(p) => p + 1,
                None => {
                    // one enormous line: keep reading into it
                    carry.extend_from_slice(data);
                    continue;
                }
            }
        };
        carry.extend_from_slice(&data[cut..]);
        let last = match (
            eof && data[..cut].last().is_some_and(|b| *b != b'\n'),
            &error,
        ) {
            (false, _) => LastLine::Complete,
            (true, None) => LastLine::Unterminated,
            (true, Some(_)) => LastLine::CutOff,
        };
        let buf = Arc::new(buf);
        dispatch(file, &buf, cut, &mut header, &mut line_no, last, tx);
        pool.sent(&buf);
        if let Some(error) = error {
            return Err(ReadError {
                error,
                partly_read: any_bytes,
            });
        }
        if eof {
            return Ok(());
        }
    }
}

/// Splits `buf[..len]` at header lines: rows go to workers, header lines update `header`.
fn dispatch(
    file: usize,
    buf: &Arc<Vec<u8>>,
    len: usize,
    header: &mut Arc<TsvHeader>,
    line_no: &mut u64,
    last: LastLine,
    tx: &crossbeam_channel::Sender<Work>,
) {
    let mut seg_start = 0usize;
    let send =
        |start: usize, end: usize, header: &Arc<TsvHeader>, line_no: &mut u64, last: LastLine| {
            if start >= end {
                return;
            }
            let lines = memchr::memchr_iter(b'\n', &buf[start..end]).count() as u64;
            // A send fails only when every worker has gone, which happens only on a worker panic.
            let _ = tx.send(Work {
                file,
                header: header.clone(),
                buf: buf.clone(),
                start,
                end,
                first_line: *line_no,
                last,
            });
            *line_no += lines;
        };
    let mut header_starts: Vec<usize> = Vec::new();
    if len > 0 && buf[0] == b'#' {
        header_starts.push(0);
    }
    header_starts.extend(memchr::memmem::find_iter(&buf[..len], b"\n#").map(|p| p + 1));
    for h in header_starts {
        if h < seg_start {
            continue;
        }
        send(seg_start, h, header, line_no, LastLine::Complete);
        let eol = memchr::memchr(b'\n', &buf[h..len]).map_or(len, |p| h + p);
        let mut line = &buf[h..eol];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        Arc::make_mut(header).header_line(line);
        *line_no += 1;
        seg_start = (eol + 1).min(len);
    }
    send(seg_start, len, header, line_no, last);
}
