//! Zeek's ASCII (TSV) log format, driven entirely by its header block.
//!
//! A block starts at `#separator` and declares `#set_separator`, `#empty_field`, `#unset_field`, `#fields` and
//! `#types`; `#fields` maps columns to names, so any field order and any extra column work. A new block
//! anywhere in the stream (concatenated rotated logs) replaces the previous one. `#open`, `#close`, `#path`
//! and any other `#` line carry nothing the reader needs.

use super::value::{
    parse_addr, parse_bool, parse_f64, parse_port, parse_time_text, parse_u64, unescape,
};
use super::{ConnRecord, Field, FieldSet, Line, ParseOptions, SkipReason};
use compact_str::CompactString;

const NFIELDS: usize = Field::ALL.len();

/// The state of one TSV header block.
#[derive(Debug, Clone, PartialEq)]
pub struct TsvHeader {
    separator: Vec<u8>,
    set_separator: Vec<u8>,
    empty_field: Vec<u8>,
    unset_field: Vec<u8>,
    /// For each column of `#fields`, the known field it holds.
    columns: Vec<Option<Field>>,
    /// Fields that are present in `#fields`.
    present: FieldSet,
    /// Per field, one past the last column that holds it (0: absent), so a row is split only as far as
    /// the wanted fields go.
    field_end: [usize; NFIELDS],
    /// `#fields` seen in this block.
    active: bool,
    /// The block's header lines as read, so the state can be saved in a checkpoint and rebuilt.
    lines: Vec<Vec<u8>>,
}

impl Default for TsvHeader {
    fn default() -> Self {
        TsvHeader {
            separator: b"\t".to_vec(),
            set_separator: b",".to_vec(),
            empty_field: b"(empty)".to_vec(),
            unset_field: b"-".to_vec(),
            columns: Vec::new(),
            present: FieldSet::EMPTY,
            field_end: [0; NFIELDS],
            active: false,
            lines: Vec::new(),
        }
    }
}

impl TsvHeader {
    /// Rebuilds a header from lines saved with [`TsvHeader::lines`].
    pub fn from_lines<I: IntoIterator<Item = Vec<u8>>>(lines: I) -> TsvHeader {
        let mut h = TsvHeader::default();
        for l in lines {
            h.header_line(&l);
        }
        h
    }

    /// The header lines of the current block, to save and later rebuild with [`TsvHeader::from_lines`].
    pub fn lines(&self) -> &[Vec<u8>] {
        &self.lines
    }

    /// True once a `#fields` line has been seen.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The number of columns `#fields` declares.
    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    pub fn has_field(&self, f: Field) -> bool {
        self.present.contains(f)
    }

    pub fn set_separator(&self) -> &[u8] {
        &self.set_separator
    }

    /// The column separator of this block.
    pub fn separator(&self) -> &[u8] {
        &self.separator
    }

    /// The text that marks an empty value (`(empty)` by default).
    pub fn empty_field(&self) -> &[u8] {
        &self.empty_field
    }

    /// The text that marks an unset value (`-` by default).
    pub fn unset_field(&self) -> &[u8] {
        &self.unset_field
    }

    /// For each column of `#fields`, the known field it holds.
    pub fn columns(&self) -> &[Option<Field>] {
        &self.columns
    }

    pub fn has_separator(&self, line: &[u8]) -> bool {
        match self.separator.as_slice() {
            [b] => memchr::memchr(*b, line).is_some(),
            sep => memchr::memmem::find(line, sep).is_some(),
        }
    }

    /// Applies one `#...` line.
    pub fn header_line(&mut self, line: &[u8]) {
        if let Some(rest) = line.strip_prefix(b"#separator") {
            // `#separator \x09` (Zeek) or `#separator<TAB>\x09` (seen in the wild): the value follows one
            // space or tab and is itself escaped.
            let value = match rest.first() {
                Some(b' ') | Some(b'\t') => &rest[1..],
                _ => return,
            };
            let sep = unescape(value).into_owned();
            if sep.is_empty() {
                return;
            }
            *self = TsvHeader {
                separator: sep,
                ..TsvHeader::default()
            };
            self.lines.push(line.to_vec());
            return;
        }
        let Some((key, value)) = self.split_key(line) else {
            return;
        };
        match key {
            b"#set_separator" => self.set_separator = unescape(value).into_owned(),
            b"#empty_field" => self.empty_field = unescape(value).into_owned(),
            b"#unset_field" => self.unset_field = unescape(value).into_owned(),
            b"#fields" => {
                let columns: Vec<Option<Field>> = split(value, &self.separator)
                    .map(Field::from_name)
                    .collect();
                self.present = FieldSet::EMPTY;
                self.field_end = [0; NFIELDS];
                for (col, f) in columns.iter().enumerate() {
                    if let Some(f) = f {
                        self.present = self.present.with(*f);
                        self.field_end[*f as usize] = col + 1;
                    }
                }
                self.columns = columns;
                self.active = true;
            }
            b"#types" => {}
            _ => return,
        }
        self.lines.push(line.to_vec());
    }

    fn split_key<'a>(&self, line: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
        let pos = memchr::memmem::find(line, &self.separator)?;
        Some((&line[..pos], &line[pos + self.separator.len()..]))
    }
}

pub(crate) fn split<'a>(line: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let cur = rest?;
        match memchr::memmem::find(cur, sep) {
            Some(p) => {
                rest = Some(&cur[p + sep.len()..]);
                Some(&cur[..p])
            }
            None => {
                rest = None;
                Some(cur)
            }
        }
    })
}

/// Parses one TSV data row under `header`.
pub fn parse_row(header: &TsvHeader, line: &[u8], opts: &ParseOptions) -> Line {
    if !header.active {
        return Line::Skipped(SkipReason::NoHeader);
    }
    let mut slots: [Option<&[u8]>; NFIELDS] = [None; NFIELDS];
    let mut ncols = 0usize;
    if let [sep] = header.separator.as_slice() {
        // Columns past the last wanted one are only counted (a vectorised count, not a split).
        let need = Field::ALL
            .iter()
            .filter(|f| opts.wanted.contains(**f))
            .map(|f| header.field_end[*f as usize])
            .max()
            .unwrap_or(0);
        let mut start = 0;
        let mut done = false;
        for pos in memchr::memchr_iter(*sep, line) {
            record_col(header, opts, ncols, &line[start..pos], &mut slots);
            ncols += 1;
            start = pos + 1;
            if ncols == need {
                done = true;
                break;
            }
        }
        if done {
            ncols += memchr::memchr_iter(*sep, &line[start..]).count() + 1;
        } else {
            record_col(header, opts, ncols, &line[start..], &mut slots);
            ncols += 1;
        }
    } else {
        for v in split(line, &header.separator) {
            record_col(header, opts, ncols, v, &mut slots);
            ncols += 1;
        }
    }
    if ncols != header.columns.len() {
        return Line::Skipped(SkipReason::ColumnCount {
            expected: header.columns.len(),
            found: ncols,
        });
    }
    build(header, &slots, opts)
}

#[inline]
fn record_col<'l>(
    header: &TsvHeader,
    opts: &ParseOptions,
    col: usize,
    value: &'l [u8],
    slots: &mut [Option<&'l [u8]>; NFIELDS],
) {
    if let Some(Some(f)) = header.columns.get(col) {
        if opts.wanted.contains(*f) {
            slots[*f as usize] = Some(value);
        }
    }
}

fn build(header: &TsvHeader, slots: &[Option<&[u8]>; NFIELDS], opts: &ParseOptions) -> Line {
    let mut rec = ConnRecord::default();
    let mut bad = 0u32;
    for f in Field::ALL {
        if !opts.wanted.contains(f) {
            continue;
        }
        let raw = match slots[f as usize] {
            Some(r) if r != header.unset_field.as_slice() => r,
            _ => {
                if opts.required.contains(f) {
                    return Line::Skipped(if header.present.contains(f) {
                        SkipReason::Missing { field: f }
                    } else {
                        SkipReason::HeaderLacks { field: f }
                    });
                }
                continue;
            }
        };
        let ok = set_field(&mut rec, f, raw, header);
        if !ok {
            if opts.required.contains(f) || opts.strict.contains(f) {
                return Line::Skipped(SkipReason::BadValue { field: f });
            }
            bad += 1;
        }
    }
    Line::Record(rec, bad)
}

fn text(raw: &[u8], header: &TsvHeader) -> CompactString {
    if raw == header.empty_field.as_slice() {
        return CompactString::default();
    }
    let v = unescape(raw);
    match std::str::from_utf8(&v) {
        Ok(s) => CompactString::new(s),
        Err(_) => CompactString::from_utf8_lossy(&v),
    }
}

/// Sets one field from its raw text; false when the text does not parse.
fn set_field(rec: &mut ConnRecord, f: Field, raw: &[u8], header: &TsvHeader) -> bool {
    fn put<T>(slot: &mut Option<T>, v: Option<T>) -> bool {
        let ok = v.is_some();
        *slot = v;
        ok
    }
    match f {
        Field::Ts => put(&mut rec.ts, parse_time_text(raw)),
        Field::Duration => put(&mut rec.duration, parse_f64(raw).filter(|d| *d >= 0.0)),
        Field::OrigH => put(&mut rec.orig_h, parse_addr(raw)),
        Field::RespH => put(&mut rec.resp_h, parse_addr(raw)),
        Field::OrigP => put(&mut rec.orig_p, parse_port(raw)),
        Field::RespP => put(&mut rec.resp_p, parse_port(raw)),
        Field::OrigBytes => put(&mut rec.orig_bytes, parse_u64(raw)),
        Field::RespBytes => put(&mut rec.resp_bytes, parse_u64(raw)),
        Field::OrigPkts => put(&mut rec.orig_pkts, parse_u64(raw)),
        Field::RespPkts => put(&mut rec.resp_pkts, parse_u64(raw)),
        Field::LocalOrig => put(&mut rec.local_orig, parse_bool(raw)),
        Field::LocalResp => put(&mut rec.local_resp, parse_bool(raw)),
        Field::Uid => {
            rec.uid = text(raw, header);
            true
        }
        Field::Proto => {
            rec.proto = text(raw, header);
            true
        }
        Field::Service => {
            rec.service = Some(text(raw, header));
            true
        }
        Field::ConnState => {
            rec.conn_state = Some(text(raw, header));
            true
        }
        Field::History => {
            rec.history = Some(text(raw, header));
            true
        }
        Field::CommunityId => {
            rec.community_id = Some(text(raw, header));
            true
        }
    }
}
