//! The Zeek conn.log reader: the pure, header-driven parser that turns lines of Zeek TSV or JSON into
//! typed [`ConnRecord`]s.
//!
//! The parser knows nothing of files, sockets or clocks: it is fed one line at a time (without its newline)
//! by whoever owns the bytes (`scan`'s chunked reader, the daemon's tail) and keeps only the per-file state
//! a Zeek log needs: the current TSV header block. Format is decided from content, per line: `#` lines are
//! TSV headers (each `#fields` re-maps the columns), a `{` line is JSON, and any other line is a TSV row that
//! needs a header before it. A line that cannot be turned into a record is reported as a [`SkipReason`] and
//! never stops the caller; a bad value in a field the caller did not mark as required is counted and read as
//! unset, so Zeek's masked test baselines (`XXXXXXXXXX.XXXXXX`) still count.

pub mod community_id;
pub mod context;
mod json;
mod skipped;
pub mod transport;
mod tsv;
mod value;

pub use skipped::{Show, SkippedLines, SHOWN_PER_FILE};
pub use tsv::TsvHeader;
/// The value parsers, for readers that split lines themselves (`scan`'s fast path) and must accept exactly
/// what [`LogParser`] accepts.
pub use value::{fast_decimal, parse_addr, parse_port, parse_u64};

use compact_str::CompactString;
use std::fmt;
use std::net::IpAddr;

/// Which kind of Zeek log a source is (issue 6 adds the interim kinds, issue 12 the context logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Conn,
    OpenConn,
    ConnLong,
    Ssl,
    Http,
    Dns,
}

impl SourceKind {
    /// The kind a source has when `kind` is not given, from its file name: `open_conn` and `conn_long`
    /// name Zeek's interim logs, anything else is a conn log.
    pub fn from_path(path: &std::path::Path) -> SourceKind {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.contains("open_conn") {
            SourceKind::OpenConn
        } else if name.contains("conn_long") {
            SourceKind::ConnLong
        } else if name.contains("conn") {
            SourceKind::Conn
        } else {
            match context::ContextKind::from_file_name(&name) {
                Some(k) => SourceKind::from(k),
                None => SourceKind::Conn,
            }
        }
    }

    /// open_conn and conn_long: records of connections still open.
    pub fn is_interim(self) -> bool {
        matches!(self, SourceKind::OpenConn | SourceKind::ConnLong)
    }

    /// The context log kind (ssl, http, dns), if this is one.
    pub fn context(self) -> Option<context::ContextKind> {
        match self {
            SourceKind::Ssl => Some(context::ContextKind::Ssl),
            SourceKind::Http => Some(context::ContextKind::Http),
            SourceKind::Dns => Some(context::ContextKind::Dns),
            _ => None,
        }
    }
}

impl From<context::ContextKind> for SourceKind {
    fn from(k: context::ContextKind) -> SourceKind {
        match k {
            context::ContextKind::Ssl => SourceKind::Ssl,
            context::ContextKind::Http => SourceKind::Http,
            context::ContextKind::Dns => SourceKind::Dns,
        }
    }
}

/// One conn.log record, with the fields longconn uses. Everything but the two addresses may be unset.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnRecord {
    /// Time of the first packet, seconds since the Unix epoch.
    pub ts: Option<f64>,
    pub uid: CompactString,
    pub orig_h: Option<IpAddr>,
    pub orig_p: Option<u16>,
    pub resp_h: Option<IpAddr>,
    pub resp_p: Option<u16>,
    pub proto: CompactString,
    pub service: Option<CompactString>,
    /// Seconds; unset for one-packet and state-less connections.
    pub duration: Option<f64>,
    pub orig_bytes: Option<u64>,
    pub resp_bytes: Option<u64>,
    pub conn_state: Option<CompactString>,
    pub history: Option<CompactString>,
    pub local_orig: Option<bool>,
    pub local_resp: Option<bool>,
    pub orig_pkts: Option<u64>,
    pub resp_pkts: Option<u64>,
    pub community_id: Option<CompactString>,
}

impl ConnRecord {
    /// `ts + duration` (an unset duration counts as 0), the end of the record's interval.
    pub fn end(&self) -> Option<f64> {
        self.ts.map(|ts| ts + self.duration.unwrap_or(0.0))
    }
    /// orig_bytes + resp_bytes, unset counted as 0.
    pub fn total_bytes(&self) -> u64 {
        self.orig_bytes
            .unwrap_or(0)
            .saturating_add(self.resp_bytes.unwrap_or(0))
    }
}

/// The conn.log fields the reader knows, in a fixed order (used as bit positions in [`FieldSet`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Field {
    Ts = 0,
    Uid,
    OrigH,
    OrigP,
    RespH,
    RespP,
    Proto,
    Service,
    Duration,
    OrigBytes,
    RespBytes,
    ConnState,
    History,
    LocalOrig,
    LocalResp,
    OrigPkts,
    RespPkts,
    CommunityId,
}

impl Field {
    pub const ALL: [Field; 18] = [
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
        Field::ConnState,
        Field::History,
        Field::LocalOrig,
        Field::LocalResp,
        Field::OrigPkts,
        Field::RespPkts,
        Field::CommunityId,
    ];

    /// The Zeek name, with `.` as the scope separator.
    pub fn name(self) -> &'static str {
        match self {
            Field::Ts => "ts",
            Field::Uid => "uid",
            Field::OrigH => "id.orig_h",
            Field::OrigP => "id.orig_p",
            Field::RespH => "id.resp_h",
            Field::RespP => "id.resp_p",
            Field::Proto => "proto",
            Field::Service => "service",
            Field::Duration => "duration",
            Field::OrigBytes => "orig_bytes",
            Field::RespBytes => "resp_bytes",
            Field::ConnState => "conn_state",
            Field::History => "history",
            Field::LocalOrig => "local_orig",
            Field::LocalResp => "local_resp",
            Field::OrigPkts => "orig_pkts",
            Field::RespPkts => "resp_pkts",
            Field::CommunityId => "community_id",
        }
    }

    /// Looks a column name up, accepting `_` as the scope separator (`id_orig_h`).
    pub fn from_name(name: &[u8]) -> Option<Field> {
        Some(match name {
            b"ts" => Field::Ts,
            b"uid" => Field::Uid,
            b"id.orig_h" | b"id_orig_h" => Field::OrigH,
            b"id.orig_p" | b"id_orig_p" => Field::OrigP,
            b"id.resp_h" | b"id_resp_h" => Field::RespH,
            b"id.resp_p" | b"id_resp_p" => Field::RespP,
            b"proto" => Field::Proto,
            b"service" => Field::Service,
            b"duration" => Field::Duration,
            b"orig_bytes" => Field::OrigBytes,
            b"resp_bytes" => Field::RespBytes,
            b"conn_state" => Field::ConnState,
            b"history" => Field::History,
            b"local_orig" => Field::LocalOrig,
            b"local_resp" => Field::LocalResp,
            b"orig_pkts" => Field::OrigPkts,
            b"resp_pkts" => Field::RespPkts,
            b"community_id" => Field::CommunityId,
            _ => return None,
        })
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A small set of [`Field`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldSet(u32);

impl FieldSet {
    pub const EMPTY: FieldSet = FieldSet(0);
    pub const ALL: FieldSet = FieldSet((1 << 18) - 1);

    pub const fn of(fields: &[Field]) -> FieldSet {
        let mut bits = 0u32;
        let mut i = 0;
        while i < fields.len() {
            bits |= 1 << fields[i] as u8;
            i += 1;
        }
        FieldSet(bits)
    }
    pub fn contains(self, f: Field) -> bool {
        self.0 & (1 << f as u8) != 0
    }
    /// The set without `f`.
    pub const fn without(self, f: Field) -> FieldSet {
        FieldSet(self.0 & !(1 << f as u8))
    }
    pub fn with(self, f: Field) -> FieldSet {
        FieldSet(self.0 | (1 << f as u8))
    }
}

/// Why a line did not become a record. Each is counted separately.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// A TSV row whose column count differs from its `#fields` header.
    ColumnCount { expected: usize, found: usize },
    /// A required field could not be parsed (address, port, number, time).
    BadValue { field: Field },
    /// A required field is unset (`-`, absent or `null`), e.g. an address.
    Missing { field: Field },
    /// A line starting with `{` that is not a JSON object.
    InvalidJson,
    /// A TSV row with no `#fields` header before it in the same file.
    NoHeader,
    /// The last line of the input ended without a newline (cut off).
    Truncated,
    /// A line longer than the configured maximum.
    TooLong,
    /// A header block whose `#fields` lack a column every record needs.
    HeaderLacks { field: Field },
}

impl SkipReason {
    /// A short stable name, used for counters and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            SkipReason::ColumnCount { .. } => "column_count",
            SkipReason::BadValue { .. } => "bad_value",
            SkipReason::Missing { .. } => "missing_value",
            SkipReason::InvalidJson => "invalid_json",
            SkipReason::NoHeader => "no_header",
            SkipReason::Truncated => "truncated",
            SkipReason::TooLong => "too_long",
            SkipReason::HeaderLacks { .. } => "header_lacks_field",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::ColumnCount { expected, found } => {
                write!(
                    f,
                    "expected {expected} columns as #fields says, found {found}"
                )
            }
            SkipReason::BadValue { field } => write!(f, "field {field}: unparsable value"),
            SkipReason::Missing { field } => write!(f, "field {field}: unset"),
            SkipReason::InvalidJson => f.write_str("invalid JSON"),
            SkipReason::NoHeader => f.write_str(
                "data row before any #fields header: a Zeek TSV log needs its header block",
            ),
            SkipReason::Truncated => f.write_str("last line cut off (no newline at the end)"),
            SkipReason::TooLong => f.write_str("line longer than the maximum"),
            SkipReason::HeaderLacks { field } => {
                write!(f, "field {field}: not in this block's #fields")
            }
        }
    }
}

/// What one line was.
// Records are the common case: boxing them would cost an allocation per line on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A record, with the number of non-required fields that failed to parse and were read as unset.
    Record(ConnRecord, u32),
    /// A header or comment line (`#...`), or an empty line.
    Meta,
    Skipped(SkipReason),
}

/// Parser settings: which fields to fill, and which must parse for the record to count.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    /// Fields to decode; the rest are left unset (faster).
    pub wanted: FieldSet,
    /// Fields that must be present and valid, else the line is skipped.
    pub required: FieldSet,
    /// Fields that may be unset but, when set, must parse, else the line is skipped (a command's inputs).
    pub strict: FieldSet,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            wanted: FieldSet::ALL,
            required: FieldSet::of(&[Field::OrigH, Field::RespH]),
            strict: FieldSet::of(&[Field::Duration]),
        }
    }
}

/// The per-file parser state: the current TSV header block, if any.
#[derive(Debug, Clone, Default)]
pub struct LogParser {
    opts: ParseOptions,
    header: TsvHeader,
}

impl LogParser {
    pub fn new(opts: ParseOptions) -> Self {
        LogParser {
            opts,
            header: TsvHeader::default(),
        }
    }

    /// The current header block (to checkpoint or to hand to another thread).
    pub fn header(&self) -> &TsvHeader {
        &self.header
    }

    pub fn set_header(&mut self, header: TsvHeader) {
        self.header = header;
    }

    pub fn options(&self) -> ParseOptions {
        self.opts
    }

    /// Parses one line (without its `\n`; a trailing `\r` is ignored).
    pub fn parse_line(&mut self, line: &[u8]) -> Line {
        let line = match line.last() {
            Some(b'\r') => &line[..line.len() - 1],
            _ => line,
        };
        match line.first() {
            None => Line::Meta,
            Some(b'#') => {
                self.header.header_line(line);
                Line::Meta
            }
            Some(b'{') if Self::reads_as_json(&self.header, line) => json::parse(line, &self.opts),
            _ => tsv::parse_row(&self.header, line, &self.opts),
        }
    }

    /// True for a line read as JSON: it starts with `{` and no TSV header is active or the line lacks the
    /// header's separator (a TSV value may start with `{`).
    pub fn reads_as_json(header: &TsvHeader, line: &[u8]) -> bool {
        line.first() == Some(&b'{') && (!header.is_active() || !header.has_separator(line))
    }

    /// Parses a data line with a fixed header, without touching parser state (for worker threads).
    pub fn parse_with(header: &TsvHeader, opts: &ParseOptions, line: &[u8]) -> Line {
        let line = match line.last() {
            Some(b'\r') => &line[..line.len() - 1],
            _ => line,
        };
        match line.first() {
            None | Some(b'#') => Line::Meta,
            Some(b'{') if Self::reads_as_json(header, line) => json::parse(line, opts),
            _ => tsv::parse_row(header, line, opts),
        }
    }
}

#[cfg(test)]
mod tests;
