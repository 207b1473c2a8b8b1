//! The pure part of `scan`: folding records into the two tables (longest single connections, time per group)
//! and the counters of the summary line. One `Tally` per worker thread; tallies merge at the end.
//!
//! Durations are summed as integer nanoseconds, so the totals do not depend on the order in which threads
//! saw the records: the same input always prints the same digits.
//!
//! ## Interim logs: one count per uid
//! Records of an interim-kind file (open_conn.log, conn_long.log: Zeek's snapshots of connections still
//! open, repeated with a growing running duration) are not summed as they come: per uid the record with the
//! largest duration is kept, and [`Tally::finish`] folds it in only if no conn-kind input held the final
//! record of that uid (the final one was counted instead). So a connection counts once, with its final
//! duration if known, else its largest interim duration. Records without a uid get no uid rules.
//!
//! ## The covered measure
//! With `measure = covered` the cumulative figure of a group is the length of the union of its
//! `[ts, ts + duration]` intervals (the wall-clock time with at least one connection up), from the
//! intervals kept per group (memory then grows with records, not groups). A record without a usable `ts`
//! (unset, or masked as in Zeek's test baselines) cannot be placed in time: its duration is added as if it
//! overlapped nothing (disjoint), so covered never drops below what such records alone give.
//!
//! ## The single table follows groups too
//! `--top N` keeps the N longest connections (a bounded heap). `--top 0` ("all rows") lists every group of
//! the cumulative table and, in the single table, the longest connection of each group (ties as the table
//! orders them): one row per group, never one per record, so memory follows groups in every mode. A
//! record's details (uid, ports, service, ts) are read only when it is at least as long as its group's
//! longest so far (the flat slot already holds that figure). With the single table off (`--only
//! cumulative`) no row is ever built.

use super::pairs::{FlatKey, FlatTable, PairAgg, PairTable, PortTable, NO_LEAD};
use crate::rules::Measure;
use crate::zeek::{transport, ConnRecord, LogParser, ParseOptions, SkipReason, TsvHeader};
use compact_str::CompactString;
use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHashSet};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::IpAddr;
use std::sync::Arc;

/// How the cumulative table groups connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupMode {
    /// (orig_h, resp_h)
    Pair,
    /// (orig_h, resp_h, resp_p, proto)
    PairPort,
}

/// What to keep.
#[derive(Debug, Clone)]
pub struct TallyOptions {
    /// Rows per table; 0 keeps all.
    pub top: usize,
    pub by: GroupMode,
    /// Connections shorter than this (seconds) are ignored.
    pub min_duration: f64,
    /// Connections with either end inside one of these are ignored.
    pub exclude: Vec<IpNet>,
    /// The cumulative figure the table is sorted by and prints.
    pub measure: Measure,
    /// Per input file index: true for an interim-kind file (uid rules apply). Empty: all conn.
    pub interim_files: Vec<bool>,
}

impl TallyOptions {
    fn is_interim(&self, file: usize) -> bool {
        self.interim_files.get(file).copied().unwrap_or(false)
    }
    /// Some input is interim: conn records must note their uids.
    pub fn any_interim(&self) -> bool {
        self.interim_files.iter().any(|b| *b)
    }
}

/// One row of the longest-connections table.
#[derive(Debug, Clone, PartialEq)]
pub struct SingleRow {
    pub duration_ns: u64,
    pub orig_h: IpAddr,
    pub resp_h: IpAddr,
    pub orig_p: Option<u16>,
    pub resp_p: Option<u16>,
    pub proto: CompactString,
    pub service: Option<CompactString>,
    pub uid: CompactString,
    pub ts: Option<f64>,
}

impl SingleRow {
    pub fn seconds(&self) -> f64 {
        self.duration_ns as f64 / 1e9
    }
}

/// Longest first; ties by orig_h, then resp_h as text, then uid and ts, so output is deterministic.
fn single_order(a: &SingleRow, b: &SingleRow) -> Ordering {
    b.duration_ns
        .cmp(&a.duration_ns)
        .then_with(|| text_order(&a.orig_h, &b.orig_h))
        .then_with(|| text_order(&a.resp_h, &b.resp_h))
        .then_with(|| a.uid.cmp(&b.uid))
        .then_with(|| a.ts.partial_cmp(&b.ts).unwrap_or(Ordering::Equal))
}

fn text_order(a: &IpAddr, b: &IpAddr) -> Ordering {
    if a == b {
        Ordering::Equal
    } else {
        a.to_string().cmp(&b.to_string())
    }
}

/// Heap entry ordered so that the heap's top is the row that would be dropped first.
struct Worst(SingleRow);
impl PartialEq for Worst {
    fn eq(&self, o: &Self) -> bool {
        single_order(&self.0, &o.0) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Worst {
    fn cmp(&self, o: &Self) -> Ordering {
        single_order(&self.0, &o.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub orig_h: IpAddr,
    pub resp_h: IpAddr,
    pub resp_p: Option<u16>,
    pub proto: Option<CompactString>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupAgg {
    /// The configured measure (`sum` or `covered`), set by [`Tally::groups`].
    pub measure_ns: u64,
    /// Length of the union of the group's intervals (set by [`Tally::groups`] when measure = covered).
    pub covered_ns: u64,
    /// Summed durations of records without a usable ts (counted as disjoint by covered).
    pub loose_ns: u64,
    pub total_ns: u64,
    pub count: u64,
    pub longest_ns: u64,
    pub bytes: u64,
}

/// One row of the cumulative table.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub key: GroupKey,
    pub agg: GroupAgg,
}

/// A conn record as the fast paths (`rows.rs`, `json_rows.rs`) read it: only what the sums need, all of
/// it valid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairRow {
    pub orig_h: IpAddr,
    pub resp_h: IpAddr,
    pub duration: Option<f64>,
    /// orig_bytes + resp_bytes (unset as 0, saturating), as [`crate::zeek::ConnRecord::total_bytes`].
    pub bytes: u64,
    pub resp_p: Option<u16>,
    /// The tally's code of `proto` ([`crate::zeek::transport::code`]), read only by pair-port (else 0).
    pub proto: u8,
}

impl PairRow {
    /// The row of a record; `bytes` is `orig_bytes + resp_bytes` as [`ConnRecord::total_bytes`] adds them.
    pub fn new(
        (orig_h, resp_h): (IpAddr, IpAddr),
        duration: Option<f64>,
        (orig_bytes, resp_bytes): (Option<u64>, Option<u64>),
        resp_p: Option<u16>,
        proto: u8,
    ) -> PairRow {
        PairRow {
            orig_h,
            resp_h,
            duration,
            bytes: orig_bytes
                .unwrap_or(0)
                .saturating_add(resp_bytes.unwrap_or(0)),
            resp_p,
            proto,
        }
    }
}

/// The summary counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Records read: the data lines that parsed (skipped lines are counted in `skipped`, not here).
    pub read: u64,
    /// Records summed into the tables.
    pub used: u64,
    /// Records with an unset duration (never summed).
    pub unset: u64,
    /// Records below `--min-duration`.
    pub short: u64,
    /// Records with an end inside an `--exclude` network.
    pub excluded: u64,
    /// Values that failed to parse in fields scan does not need (read as unset).
    pub bad_values: u64,
    /// Interim records read (each connection's largest is kept, the others are not used).
    pub interim_read: u64,
    /// Connections of interim files counted (with their largest interim duration).
    pub interim_used: u64,
    /// Connections of interim files whose final conn record was among the inputs (that one counted).
    pub interim_closed: u64,
    /// Lines skipped, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
}

impl Counts {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// A skipped line, for the messages on stderr.
#[derive(Debug, Clone, PartialEq)]
pub struct LineIssue {
    pub file: usize,
    pub line: u64,
    pub reason: SkipReason,
}

/// Issues kept per tally for messages; the counters count them all.
const MAX_ISSUES: usize = 200;

/// What the single table keeps (see the module notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Singles {
    /// Not printed: no row is built.
    Off,
    /// The N longest connections.
    Top(usize),
    /// The longest connection of each group (`--top 0`).
    PerGroup,
}

pub struct Tally {
    opts: TallyOptions,
    singles: Singles,
    groups: FxHashMap<GroupKey, GroupAgg>,
    top: BinaryHeap<Worst>,
    /// With [`Singles::PerGroup`]: the longest connection of each group in `groups`, as its index in
    /// `best_rows`.
    best: FxHashMap<GroupKey, u32>,
    best_rows: Vec<SingleRow>,
    /// The same for the groups of the flat tables, indexed by their slots' leads (no second lookup).
    best4: Vec<Lead4>,
    /// The headers of the lines in `best4` (see [`Tally::read_lines_with`]).
    headers: Vec<Arc<TsvHeader>>,
    /// How to parse those lines; `None`: rows are built at once.
    line_opts: Option<ParseOptions>,
    pub counts: Counts,
    pub issues: Vec<LineIssue>,
    /// Per file index: records used (to tell a headerless file from one with a bad line).
    pub records_per_file: BTreeMap<usize, u64>,
    /// Interim records: per uid the one with the largest duration, with its file index.
    interim: FxHashMap<CompactString, (usize, ConnRecord)>,
    /// Uids of conn records (kept only when some input is interim).
    finals: FxHashSet<CompactString>,
    /// Per group, its [start, end] in ns (kept only for measure = covered).
    spans: FxHashMap<GroupKey, Vec<(i64, i64)>>,
    /// The common case kept compact (by = pair, measure = sum, two IPv4 ends): key `orig << 32 | resp`.
    /// Entries are a third the size of `groups`' ones and a lookup touches one cache line; folded into
    /// `groups` by [`Tally::groups`].
    pairs4: PairTable,
    /// The same for by = pair-port: key from [`port_key`].
    ports4: PortTable,
}

/// The [`PortTable`] key of an IPv4 group by pair-port: the pair, then whether `resp_p` is set, the port
/// and the protocol code (bits 25 to 63 stay zero, so it is never the table's empty key).
fn port_key(o: std::net::Ipv4Addr, r: std::net::Ipv4Addr, resp_p: Option<u16>, proto: u8) -> u128 {
    u128::from(pair_key(o, r)) << 64
        | u128::from(resp_p.is_some()) << 24
        | u128::from(resp_p.unwrap_or(0)) << 8
        | u128::from(proto)
}

/// The group of a [`port_key`].
fn port_group(k: u128) -> GroupKey {
    let pair = (k >> 64) as u64;
    let low = k as u32;
    GroupKey {
        orig_h: IpAddr::V4(std::net::Ipv4Addr::from((pair >> 32) as u32)),
        resp_h: IpAddr::V4(std::net::Ipv4Addr::from(pair as u32)),
        resp_p: (low >> 24 & 1 == 1).then_some((low >> 8) as u16),
        proto: Some(CompactString::from(transport::text(low as u8))),
    }
}

fn pair_key(o: std::net::Ipv4Addr, r: std::net::Ipv4Addr) -> u64 {
    u64::from(u32::from(o)) << 32 | u64::from(u32::from(r))
}

fn add_pair(p: PairAgg, g: &mut GroupAgg) {
    g.total_ns = g.total_ns.saturating_add(p.total_ns);
    g.count += p.count;
    g.longest_ns = g.longest_ns.max(p.longest_ns);
    g.bytes = g.bytes.saturating_add(p.bytes);
}

fn to_ns(seconds: f64) -> u64 {
    // Durations are non-negative (the parser rejects others); 1 ns resolution is far below Zeek's 1 µs.
    (seconds * 1e9).round() as u64
}

impl Tally {
    pub fn new(opts: TallyOptions) -> Tally {
        let singles = match opts.top {
            0 => Singles::PerGroup,
            n => Singles::Top(n),
        };
        Tally {
            opts,
            singles,
            groups: FxHashMap::default(),
            top: BinaryHeap::new(),
            best: FxHashMap::default(),
            best_rows: Vec::new(),
            best4: Vec::new(),
            headers: Vec::new(),
            line_opts: None,
            counts: Counts::default(),
            issues: Vec::new(),
            records_per_file: BTreeMap::new(),
            interim: FxHashMap::default(),
            finals: FxHashSet::default(),
            spans: FxHashMap::default(),
            pairs4: PairTable::default(),
            ports4: PortTable::default(),
        }
    }

    /// The same tally without the single table (`--only cumulative`): no row is built or kept.
    pub fn without_singles(mut self) -> Tally {
        self.singles = Singles::Off;
        self
    }

    /// Lets [`Tally::add_pair_line`] keep a group's longest record as its line, parsed with `full` only
    /// once the input is read ([`Tally::resolve`]): a group's longest changes about ln(records per group)
    /// times, and a copy of the line costs far less than parsing it each time.
    pub fn read_lines_with(&mut self, full: ParseOptions) {
        self.line_opts = Some(full);
    }

    /// Parses the lines kept for the single table into rows (see [`Tally::read_lines_with`]); each worker
    /// calls it at its end, so the parsing runs in parallel.
    pub fn resolve(&mut self) {
        let lines = Lines {
            headers: &self.headers,
            opts: self.line_opts.as_ref(),
        };
        for l in &mut self.best4 {
            if let Lead4::Line(x) = l {
                *l = Lead4::Row(lines.row(x));
            }
        }
        self.headers.clear();
    }

    /// Folds in the interim records whose final record was not among the inputs; call once, after the
    /// last merge.
    pub fn finish(&mut self) {
        let mut pending: Vec<(CompactString, (usize, ConnRecord))> =
            std::mem::take(&mut self.interim).into_iter().collect();
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        for (uid, (file, rec)) in pending {
            if self.finals.contains(&uid) {
                self.counts.interim_closed += 1;
                continue;
            }
            self.counts.interim_used += 1;
            let full = rec.clone();
            self.fold(file, rec, || Some(full));
        }
    }

    pub fn skip(&mut self, file: usize, line: u64, reason: SkipReason) {
        *self.counts.skipped.entry(reason.kind()).or_default() += 1;
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(LineIssue { file, line, reason });
        }
    }

    /// A hint that `rec` will be added next: starts loading its group's slot (see `work` in `scan`).
    #[inline]
    pub fn prefetch(&self, rec: &ConnRecord) {
        if let (Some(o), Some(r)) = (rec.orig_h, rec.resp_h) {
            self.prefetch_group(o, r, rec.resp_p, || transport::code(rec.proto.as_bytes()));
        }
    }

    /// [`Tally::prefetch`] for a record to come through [`Tally::add_pair`].
    #[inline]
    pub fn prefetch_row(&self, row: &PairRow) {
        self.prefetch_group(row.orig_h, row.resp_h, row.resp_p, || Some(row.proto));
    }

    #[inline]
    fn prefetch_group(
        &self,
        orig_h: IpAddr,
        resp_h: IpAddr,
        resp_p: Option<u16>,
        proto: impl FnOnce() -> Option<u8>,
    ) {
        if let (Measure::Sum, IpAddr::V4(o), IpAddr::V4(r)) = (self.opts.measure, orig_h, resp_h) {
            match self.opts.by {
                GroupMode::Pair => self.pairs4.prefetch(pair_key(o, r)),
                GroupMode::PairPort => {
                    if let Some(p) = proto() {
                        self.ports4.prefetch(port_key(o, r, resp_p, p));
                    }
                }
            }
        }
    }

    /// The flat table slot of a group with its lead, if it has one: two IPv4 ends, measure = sum, and for
    /// pair-port a known protocol. The same record always gets the same answer, whichever path read it.
    /// (A function of the fields it needs, so that the caller may use the others meanwhile.)
    #[inline]
    fn flat_slot<'t>(
        opts: &TallyOptions,
        pairs4: &'t mut PairTable,
        ports4: &'t mut PortTable,
        (orig_h, resp_h): (IpAddr, IpAddr),
        resp_p: Option<u16>,
        proto: impl FnOnce() -> Option<u8>,
    ) -> Option<(&'t mut PairAgg, &'t mut u32)> {
        let (Measure::Sum, IpAddr::V4(o), IpAddr::V4(r)) = (opts.measure, orig_h, resp_h) else {
            return None;
        };
        match opts.by {
            GroupMode::Pair => pairs4.slot_lead(pair_key(o, r)),
            GroupMode::PairPort => ports4.slot_lead(port_key(o, r, resp_p, proto()?)),
        }
    }

    /// Adds a used record's figures to its flat slot; true when the record may be its group's longest
    /// (at least as long as every earlier one).
    #[inline]
    fn merge_flat(g: &mut PairAgg, add: &PairAgg) -> bool {
        let may_lead = g.count == 0 || add.longest_ns >= g.longest_ns;
        g.merge(add);
        may_lead
    }

    /// Folds one record in. `rec` needs only addresses, ports, duration, bytes and ts; `details` gives the
    /// fully parsed record (uid, proto, service), asked for only when the record enters the single table.
    pub fn add(
        &mut self,
        file: usize,
        rec: ConnRecord,
        bad_values: u32,
        details: impl FnOnce() -> Option<ConnRecord>,
    ) {
        self.counts.read += 1;
        self.counts.bad_values += u64::from(bad_values);
        *self.records_per_file.entry(file).or_default() += 1;
        if self.opts.is_interim(file) && !rec.uid.is_empty() && rec.duration.is_some() {
            self.counts.interim_read += 1;
            let dur = rec.duration.unwrap_or(0.0);
            let keep = match self.interim.get(&rec.uid) {
                Some((_, old)) => old.duration.is_some_and(|d| dur > d),
                None => true,
            };
            if keep {
                let full = details().unwrap_or(rec);
                self.interim.insert(full.uid.clone(), (file, full));
            }
            return;
        }
        if !self.opts.is_interim(file) && self.opts.any_interim() && !rec.uid.is_empty() {
            self.finals.insert(rec.uid.clone());
        }
        self.fold(file, rec, details);
    }

    /// Sums one record into the tables (after the uid rules).
    fn fold(&mut self, file: usize, rec: ConnRecord, details: impl FnOnce() -> Option<ConnRecord>) {
        let _ = file;
        let (Some(orig_h), Some(resp_h)) = (rec.orig_h, rec.resp_h) else {
            // The parser requires both addresses; a record without them cannot be grouped.
            *self.counts.skipped.entry("missing_value").or_default() += 1;
            return;
        };
        let bytes = rec.total_bytes();
        let Some(ns) = self.admit(orig_h, resp_h, rec.duration) else {
            return;
        };
        let add = PairAgg {
            total_ns: ns,
            count: 1,
            longest_ns: ns,
            bytes,
        };
        let per_group = self.singles == Singles::PerGroup;
        let proto = || transport::code(rec.proto.as_bytes());
        let pair = (orig_h, resp_h);
        let target = match Self::flat_slot(
            &self.opts,
            &mut self.pairs4,
            &mut self.ports4,
            pair,
            rec.resp_p,
            proto,
        ) {
            Some((g, lead)) => Target::flat(Self::merge_flat(g, &add), per_group, lead),
            None => match self.fold_group(&rec, orig_h, resp_h, ns) {
                Some(key) => Target::Group(key),
                None => Target::group_none(per_group),
            },
        };
        let full = || single_row(orig_h, resp_h, ns, details().unwrap_or(rec));
        let lines = Lines {
            headers: &self.headers,
            opts: self.line_opts.as_ref(),
        };
        match target {
            Target::Nothing => {}
            Target::Flat(lead) => keep_lead(&mut self.best4, lead, Cand::Row(full()), &lines),
            Target::Group(key) => keep_better(&mut self.best, &mut self.best_rows, key, full()),
            Target::Top => self.offer_single(ns, full),
        }
    }

    /// True when records may go through [`Tally::add_pair`]: summing, no interim input.
    pub fn takes_pairs(&self) -> bool {
        self.opts.measure == Measure::Sum && !self.opts.any_interim()
    }

    /// How the groups are made (fast paths read `resp_p` and `proto` only for pair-port).
    pub fn group_mode(&self) -> GroupMode {
        self.opts.by
    }

    /// [`Tally::add`] for a record a fast path read (`bad_values` = 0), when [`Tally::takes_pairs`]; its
    /// `resp_p` and `proto` count only by pair-port. The caller counts the record for its file with
    /// [`Tally::add_file_records`].
    #[inline]
    pub fn add_pair(&mut self, row: &PairRow, details: impl FnOnce() -> Option<ConnRecord>) {
        self.add_pair_with(row, None, details);
    }

    /// [`Tally::add_pair`] for a record read from `line` under `header`: with `--top 0`, the line is kept
    /// as it is for the single table (see [`Tally::read_lines_with`]).
    #[inline]
    pub fn add_pair_line(
        &mut self,
        row: &PairRow,
        header: &Arc<TsvHeader>,
        line: &[u8],
        details: impl FnOnce() -> Option<ConnRecord>,
    ) {
        self.add_pair_with(row, Some((header, line)), details);
    }

    #[inline]
    fn add_pair_with(
        &mut self,
        row: &PairRow,
        line: Option<(&Arc<TsvHeader>, &[u8])>,
        details: impl FnOnce() -> Option<ConnRecord>,
    ) {
        let PairRow {
            orig_h,
            resp_h,
            duration,
            bytes,
            resp_p,
            proto,
        } = *row;
        debug_assert!(self.takes_pairs());
        self.counts.read += 1;
        let Some(ns) = self.admit(orig_h, resp_h, duration) else {
            return;
        };
        let add = PairAgg {
            total_ns: ns,
            count: 1,
            longest_ns: ns,
            bytes,
        };
        let pair_port = self.opts.by == GroupMode::PairPort;
        let per_group = self.singles == Singles::PerGroup;
        let target = match Self::flat_slot(
            &self.opts,
            &mut self.pairs4,
            &mut self.ports4,
            (orig_h, resp_h),
            resp_p,
            || Some(proto),
        ) {
            Some((g, lead)) => Target::flat(Self::merge_flat(g, &add), per_group, lead),
            None => {
                let key = GroupKey {
                    orig_h,
                    resp_h,
                    resp_p: if pair_port { resp_p } else { None },
                    proto: pair_port.then(|| CompactString::from(transport::text(proto))),
                };
                let best_key = per_group.then(|| key.clone());
                let g = self.groups.entry(key).or_default();
                let may_lead = g.count == 0 || ns >= g.longest_ns;
                add_pair(add, g);
                match best_key.filter(|_| may_lead) {
                    Some(key) => Target::Group(key),
                    None => Target::group_none(per_group),
                }
            }
        };
        let full = || {
            let rec = details().unwrap_or_else(|| ConnRecord {
                orig_h: Some(orig_h),
                resp_h: Some(resp_h),
                duration,
                ..ConnRecord::default()
            });
            single_row(orig_h, resp_h, ns, rec)
        };
        // The line's header, by its index in `headers` (a new header is rare: one per header block).
        let header = match (&target, line, self.line_opts) {
            (Target::Flat(_), Some((h, _)), Some(_)) => {
                if !self.headers.last().is_some_and(|last| Arc::ptr_eq(last, h)) {
                    self.headers.push(h.clone());
                }
                u32::try_from(self.headers.len() - 1).ok()
            }
            _ => None,
        };
        let lines = Lines {
            headers: &self.headers,
            opts: self.line_opts.as_ref(),
        };
        match target {
            Target::Nothing => {}
            Target::Flat(lead) => {
                let cand = match (header, line) {
                    (Some(header), Some((_, line))) => Cand::Line {
                        ns,
                        pair: (orig_h, resp_h),
                        header,
                        line,
                    },
                    _ => Cand::Row(full()),
                };
                keep_lead(&mut self.best4, lead, cand, &lines)
            }
            Target::Group(key) => keep_better(&mut self.best, &mut self.best_rows, key, full()),
            Target::Top => self.offer_single(ns, full),
        }
    }

    /// Counts `n` records read from `file` (see [`Tally::add_pair`]).
    pub fn add_file_records(&mut self, file: usize, n: u64) {
        if n > 0 {
            *self.records_per_file.entry(file).or_default() += n;
        }
    }

    /// The filters every record passes before it counts: set duration, `--exclude`, `--min-duration`.
    /// Counts the record where it stops; `Some(duration in ns)` when it is used.
    #[inline]
    fn admit(&mut self, orig_h: IpAddr, resp_h: IpAddr, duration: Option<f64>) -> Option<u64> {
        let Some(duration) = duration else {
            self.counts.unset += 1;
            return None;
        };
        if !self.opts.exclude.is_empty()
            && self
                .opts
                .exclude
                .iter()
                .any(|n| n.contains(&orig_h) || n.contains(&resp_h))
        {
            self.counts.excluded += 1;
            return None;
        }
        if duration < self.opts.min_duration {
            self.counts.short += 1;
            return None;
        }
        self.counts.used += 1;
        Some(to_ns(duration))
    }

    /// Offers a used record to the table of the N longest; `full` (its row) is asked for only if it ranks.
    #[inline]
    fn offer_single(&mut self, ns: u64, full: impl FnOnce() -> SingleRow) {
        let Singles::Top(n) = self.singles else {
            return;
        };
        if self.top.len() >= n && self.top.peek().is_some_and(|w| w.0.duration_ns > ns) {
            return; // cannot enter the table: no need to build the row
        }
        self.push_single(full());
    }

    /// Sums one used record into `groups` (and `spans` for measure = covered); the group's key when the
    /// record may be its longest and the single table keeps one row per group.
    fn fold_group(
        &mut self,
        rec: &ConnRecord,
        orig_h: IpAddr,
        resp_h: IpAddr,
        ns: u64,
    ) -> Option<GroupKey> {
        let key = match self.opts.by {
            GroupMode::Pair => GroupKey {
                orig_h,
                resp_h,
                resp_p: None,
                proto: None,
            },
            GroupMode::PairPort => GroupKey {
                orig_h,
                resp_h,
                resp_p: rec.resp_p,
                proto: Some(rec.proto.clone()),
            },
        };
        if self.opts.measure == Measure::Covered {
            let start = rec.ts.and_then(|t| {
                let v = (t * 1e9).round();
                (v.is_finite() && v.abs() < 9.0e18).then_some(v as i64)
            });
            match start {
                Some(s0) => self
                    .spans
                    .entry(key.clone())
                    .or_default()
                    .push((s0, s0.saturating_add(ns.min(i64::MAX as u64) as i64))),
                None => {
                    let g = self.groups.entry(key.clone()).or_default();
                    g.loose_ns = g.loose_ns.saturating_add(ns);
                }
            }
        }
        let best_key = (self.singles == Singles::PerGroup).then(|| key.clone());
        let g = self.groups.entry(key).or_default();
        let may_lead = g.count == 0 || ns >= g.longest_ns;
        g.total_ns = g.total_ns.saturating_add(ns);
        g.count += 1;
        g.longest_ns = g.longest_ns.max(ns);
        g.bytes = g.bytes.saturating_add(rec.total_bytes());
        best_key.filter(|_| may_lead)
    }
}

/// Calls `sort` on each run of two or more neighbours with the same `key` (in rows sorted by it).
fn sort_tie_runs<T>(rows: &mut [T], key: impl Fn(&T) -> u64, mut sort: impl FnMut(&mut [T])) {
    let mut start = 0;
    while start < rows.len() {
        let k = key(&rows[start]);
        let end = start + rows[start..].iter().take_while(|r| key(r) == k).count();
        if end - start > 1 {
            sort(&mut rows[start..end]);
        }
        start = end;
    }
}

/// Where a used record's row may go.
enum Target<'t> {
    /// Nowhere: no single table, or shorter than its group's longest.
    Nothing,
    /// The longest of its flat group so far: the lead of that group's slot.
    Flat(&'t mut u32),
    /// The longest of its group in `groups` so far.
    Group(GroupKey),
    /// The table of the N longest, if it ranks.
    Top,
}

impl<'t> Target<'t> {
    /// For a record summed into a flat slot.
    #[inline]
    fn flat(may_lead: bool, per_group: bool, lead: &'t mut u32) -> Target<'t> {
        match (per_group, may_lead) {
            (false, _) => Target::Top,
            (true, true) => Target::Flat(lead),
            (true, false) => Target::Nothing,
        }
    }

    /// For a record summed into `groups` that cannot lead its group.
    fn group_none(per_group: bool) -> Target<'t> {
        if per_group {
            Target::Nothing
        } else {
            Target::Top
        }
    }
}

/// The longest record of a flat group so far: its row, or (in a worker, until [`Tally::resolve`]) the line
/// it was read from.
enum Lead4 {
    Row(SingleRow),
    Line(LeadLine),
}

struct LeadLine {
    ns: u64,
    pair: (IpAddr, IpAddr),
    /// Index in the tally's `headers`.
    header: u32,
    line: Vec<u8>,
}

impl Lead4 {
    fn ns(&self) -> u64 {
        match self {
            Lead4::Row(r) => r.duration_ns,
            Lead4::Line(l) => l.ns,
        }
    }
}

/// A record offered as its group's longest.
enum Cand<'a> {
    Row(SingleRow),
    Line {
        ns: u64,
        pair: (IpAddr, IpAddr),
        header: u32,
        line: &'a [u8],
    },
}

impl Cand<'_> {
    fn ns(&self) -> u64 {
        match self {
            Cand::Row(r) => r.duration_ns,
            Cand::Line { ns, .. } => *ns,
        }
    }

    /// Puts the candidate in `slot` (reusing a kept line's buffer).
    fn store(self, slot: &mut Lead4) {
        match (self, slot) {
            (
                Cand::Line {
                    ns,
                    pair,
                    header,
                    line,
                },
                Lead4::Line(old),
            ) => {
                old.ns = ns;
                old.pair = pair;
                old.header = header;
                old.line.clear();
                old.line.extend_from_slice(line); // within its capacity, mostly (see `owned`)
            }
            (cand, slot) => *slot = cand.owned(),
        }
    }

    fn owned(self) -> Lead4 {
        match self {
            Cand::Row(r) => Lead4::Row(r),
            Cand::Line {
                ns,
                pair,
                header,
                line,
            } => {
                // Room for the group's later lines, which differ in length by a few bytes: no
                // reallocation each time the group's longest changes.
                let mut buf = Vec::with_capacity(line.len() + 64);
                buf.extend_from_slice(line);
                Lead4::Line(LeadLine {
                    ns,
                    pair,
                    header,
                    line: buf,
                })
            }
        }
    }
}

/// What parses kept lines: the tally's headers and full parse options.
struct Lines<'a> {
    headers: &'a [Arc<TsvHeader>],
    opts: Option<&'a ParseOptions>,
}

impl Lines<'_> {
    /// The row of a kept line, as [`Tally::add_pair`] would have built it from the fully parsed record.
    fn row(&self, l: &LeadLine) -> SingleRow {
        self.row_of(l.ns, l.pair, l.header, &l.line)
    }

    fn row_of(
        &self,
        ns: u64,
        (orig_h, resp_h): (IpAddr, IpAddr),
        header: u32,
        line: &[u8],
    ) -> SingleRow {
        let parsed = match (self.headers.get(header as usize), self.opts) {
            (Some(h), Some(opts)) => match LogParser::parse_with(h, opts, line) {
                crate::zeek::Line::Record(r, _) => Some(r),
                _ => None,
            },
            _ => None,
        };
        let rec = parsed.unwrap_or_else(|| ConnRecord {
            orig_h: Some(orig_h),
            resp_h: Some(resp_h),
            ..ConnRecord::default()
        });
        single_row(orig_h, resp_h, ns, rec)
    }

    fn lead_row(&self, l: &Lead4) -> SingleRow {
        match l {
            Lead4::Row(r) => r.clone(),
            Lead4::Line(x) => self.row(x),
        }
    }

    fn cand_row(&self, c: Cand) -> SingleRow {
        match c {
            Cand::Row(r) => r,
            Cand::Line {
                ns,
                pair,
                header,
                line,
            } => self.row_of(ns, pair, header, line),
        }
    }
}

/// Keeps `cand` as the longest record of a flat slot whose lead is `lead`, if it orders before the slot's
/// record so far (longer; on equal durations the table's order by text, uid and ts decides).
#[inline]
fn keep_lead(best: &mut Vec<Lead4>, lead: &mut u32, cand: Cand, lines: &Lines) {
    let Some(old) = best.get_mut(*lead as usize) else {
        // One row per group: more than 4 billion groups would not fit in memory anyway.
        if let Some(i) = u32::try_from(best.len()).ok().filter(|i| *i != NO_LEAD) {
            *lead = i;
            best.push(cand.owned());
        }
        return;
    };
    let (was, now) = (old.ns(), cand.ns());
    if now < was {
        return;
    }
    if now > was {
        cand.store(old);
        return;
    }
    if let (Lead4::Line(a), Cand::Line { header, line, .. }) = (&*old, &cand) {
        if a.header == *header && a.line == *line {
            return; // the same record again
        }
    }
    let (old_row, new_row) = (lines.lead_row(old), lines.cand_row(cand));
    *old = Lead4::Row(if single_order(&new_row, &old_row) == Ordering::Less {
        new_row
    } else {
        old_row
    });
}

/// Merges the flat table `theirs` (with the rows its leads point to) into `mine`.
fn merge_table<K: FlatKey>(
    mine: &mut FlatTable<K>,
    theirs: &mut FlatTable<K>,
    my_rows: &mut Vec<Lead4>,
    their_rows: &mut Vec<Lead4>,
) {
    if mine.is_empty() {
        // Rows belong to a table's leads: an empty table has none.
        std::mem::swap(mine, theirs);
        std::mem::swap(my_rows, their_rows);
        return;
    }
    // Both sides are resolved (rows only), so no line is parsed here.
    let lines = Lines {
        headers: &[],
        opts: None,
    };
    let mut rows: Vec<Option<Lead4>> = std::mem::take(their_rows).into_iter().map(Some).collect();
    for (k, v, l) in theirs.drain_leads() {
        if let Some((g, lead)) = mine.slot_lead(k) {
            g.merge(&v);
            if let Some(r) = rows.get_mut(l as usize).and_then(Option::take) {
                let cand = match r {
                    Lead4::Row(r) => Cand::Row(r),
                    Lead4::Line(x) => Cand::Row(lines.row(&x)),
                };
                keep_lead(my_rows, lead, cand, &lines);
            }
        }
    }
}

fn single_row(orig_h: IpAddr, resp_h: IpAddr, ns: u64, full: ConnRecord) -> SingleRow {
    SingleRow {
        duration_ns: ns,
        orig_h,
        resp_h,
        orig_p: full.orig_p,
        resp_p: full.resp_p,
        proto: full.proto,
        service: full.service,
        uid: full.uid,
        ts: full.ts,
    }
}

/// Keeps `row` for its group if it orders before the group's row so far.
fn keep_better<K: std::hash::Hash + Eq>(
    map: &mut FxHashMap<K, u32>,
    rows: &mut Vec<SingleRow>,
    k: K,
    row: SingleRow,
) {
    match map.entry(k) {
        std::collections::hash_map::Entry::Occupied(e) => {
            if let Some(old) = rows.get_mut(*e.get() as usize) {
                if single_order(&row, old) == Ordering::Less {
                    *old = row;
                }
            }
        }
        std::collections::hash_map::Entry::Vacant(e) => {
            // One row per group: more than 4 billion groups would not fit in memory anyway.
            if let Ok(i) = u32::try_from(rows.len()) {
                e.insert(i);
                rows.push(row);
            }
        }
    }
}

impl Tally {
    /// Offers a row to the table of the N longest ([`Singles::Top`]).
    fn push_single(&mut self, row: SingleRow) {
        let Singles::Top(n) = self.singles else {
            return;
        };
        self.top.push(Worst(row));
        if self.top.len() > n {
            self.top.pop();
        }
    }

    pub fn merge(&mut self, mut other: Tally) {
        // One of the two flat tables is in use (the one of the grouping); the rows are its leads'.
        self.resolve();
        other.resolve();
        let (mine, theirs) = (&mut self.best4, &mut other.best4);
        match self.opts.by {
            GroupMode::Pair => merge_table(&mut self.pairs4, &mut other.pairs4, mine, theirs),
            GroupMode::PairPort => merge_table(&mut self.ports4, &mut other.ports4, mine, theirs),
        }
        for (k, v) in other.groups {
            let g = self.groups.entry(k).or_default();
            g.total_ns = g.total_ns.saturating_add(v.total_ns);
            g.count += v.count;
            g.longest_ns = g.longest_ns.max(v.longest_ns);
            g.bytes = g.bytes.saturating_add(v.bytes);
            g.loose_ns = g.loose_ns.saturating_add(v.loose_ns);
        }
        for (k, mut v) in other.spans {
            self.spans.entry(k).or_default().append(&mut v);
        }
        for (uid, (file, rec)) in other.interim {
            let newer = match self.interim.get(&uid) {
                Some((f0, old)) => {
                    (rec.duration, std::cmp::Reverse(file)) > (old.duration, std::cmp::Reverse(*f0))
                }
                None => true,
            };
            if newer {
                self.interim.insert(uid, (file, rec));
            }
        }
        self.finals.extend(other.finals);
        for w in other.top {
            self.push_single(w.0);
        }
        if self.best_rows.is_empty() {
            std::mem::swap(&mut self.best, &mut other.best);
            std::mem::swap(&mut self.best_rows, &mut other.best_rows);
        } else {
            let mut rows: Vec<Option<SingleRow>> = std::mem::take(&mut other.best_rows)
                .into_iter()
                .map(Some)
                .collect();
            for (k, i) in std::mem::take(&mut other.best) {
                if let Some(r) = rows.get_mut(i as usize).and_then(Option::take) {
                    keep_better(&mut self.best, &mut self.best_rows, k, r);
                }
            }
        }
        let c = other.counts;
        self.counts.read += c.read;
        self.counts.used += c.used;
        self.counts.unset += c.unset;
        self.counts.short += c.short;
        self.counts.excluded += c.excluded;
        self.counts.bad_values += c.bad_values;
        self.counts.interim_read += c.interim_read;
        self.counts.interim_used += c.interim_used;
        self.counts.interim_closed += c.interim_closed;
        for (k, v) in c.skipped {
            *self.counts.skipped.entry(k).or_default() += v;
        }
        self.issues.extend(other.issues);
        for (f, n) in other.records_per_file {
            *self.records_per_file.entry(f).or_default() += n;
        }
    }

    /// The longest single connections, longest first (with `--top 0`, the longest of each group).
    pub fn singles(&mut self) -> Vec<SingleRow> {
        self.resolve();
        let lines = Lines {
            headers: &[],
            opts: None,
        };
        let best4: Vec<SingleRow> = std::mem::take(&mut self.best4)
            .into_iter()
            .map(|l| match l {
                Lead4::Row(r) => r,
                Lead4::Line(x) => lines.row(&x),
            })
            .collect();
        let rows = std::mem::take(&mut self.top)
            .into_iter()
            .map(|w| w.0)
            .chain(best4)
            .chain(std::mem::take(&mut self.best_rows));
        self.best.clear();
        // The flat slots' leads now point nowhere: the tables are read only for their sums from here.
        // The order of [`single_order`]: by duration, then each run of equal durations with the addresses'
        // text forms made once, not per comparison (and not at all for a row without a tie).
        let mut rows: Vec<SingleRow> = rows.collect();
        rows.sort_unstable_by_key(|r| std::cmp::Reverse(r.duration_ns));
        sort_tie_runs(
            &mut rows,
            |r| r.duration_ns,
            |run| {
                let mut keyed: Vec<(String, String, SingleRow)> = run
                    .iter()
                    .map(|r| (r.orig_h.to_string(), r.resp_h.to_string(), r.clone()))
                    .collect();
                keyed.sort_by(|a, b| {
                    a.0.cmp(&b.0)
                        .then_with(|| a.1.cmp(&b.1))
                        .then_with(|| a.2.uid.cmp(&b.2.uid))
                        .then_with(|| a.2.ts.partial_cmp(&b.2.ts).unwrap_or(Ordering::Equal))
                });
                for (slot, (_, _, r)) in run.iter_mut().zip(keyed) {
                    *slot = r;
                }
            },
        );
        if let Singles::Top(n) = self.singles {
            rows.truncate(n);
        }
        rows
    }

    /// The groups with the most cumulative time, most first; ties by orig_h, resp_h (as text), resp_p, proto.
    pub fn groups(&mut self) -> Vec<GroupRow> {
        let mut spans = std::mem::take(&mut self.spans);
        let covered = self.opts.measure == Measure::Covered;
        // The maps hold different keys: a key goes to a flat table exactly when [`Tally::flat_slot`] gives
        // it one, whatever worker or path saw it.
        let pairs4 = self.pairs4.drain().map(|(k, v)| {
            let key = GroupKey {
                orig_h: IpAddr::V4(std::net::Ipv4Addr::from((k >> 32) as u32)),
                resp_h: IpAddr::V4(std::net::Ipv4Addr::from(k as u32)),
                resp_p: None,
                proto: None,
            };
            (key, v)
        });
        let ports4 = self.ports4.drain().map(|(k, v)| (port_group(k), v));
        let flat = pairs4.chain(ports4).map(|(key, v)| {
            let mut agg = GroupAgg::default();
            add_pair(v, &mut agg);
            (key, agg)
        });
        let mut rows: Vec<GroupRow> = std::mem::take(&mut self.groups)
            .into_iter()
            .chain(flat)
            .map(|(key, mut agg)| {
                if covered {
                    let union = spans.remove(&key).map_or(0, crate::window::union_length);
                    agg.covered_ns = (union.max(0) as u64).saturating_add(agg.loose_ns);
                    agg.measure_ns = agg.covered_ns;
                } else {
                    agg.measure_ns = agg.total_ns;
                }
                GroupRow { key, agg }
            })
            .collect();
        // Only the top rows and their ties need the full order (which formats addresses as text).
        let top = self.opts.top;
        if top > 0 && rows.len() > top {
            rows.select_nth_unstable_by(top - 1, |a, b| b.agg.measure_ns.cmp(&a.agg.measure_ns));
            let floor = rows[top - 1].agg.measure_ns;
            rows.retain(|r| r.agg.measure_ns >= floor);
        }
        // By the measure, then each run of equal measures with the text forms made once, not per
        // comparison (and not at all for a row without a tie).
        rows.sort_unstable_by_key(|r| std::cmp::Reverse(r.agg.measure_ns));
        sort_tie_runs(
            &mut rows,
            |r| r.agg.measure_ns,
            |run| {
                let mut keyed: Vec<(String, String, GroupRow)> = run
                    .iter()
                    .map(|r| {
                        (
                            r.key.orig_h.to_string(),
                            r.key.resp_h.to_string(),
                            r.clone(),
                        )
                    })
                    .collect();
                keyed.sort_by(|a, b| {
                    a.0.cmp(&b.0)
                        .then_with(|| a.1.cmp(&b.1))
                        .then_with(|| a.2.key.resp_p.cmp(&b.2.key.resp_p))
                        .then_with(|| a.2.key.proto.cmp(&b.2.key.proto))
                });
                for (slot, (_, _, r)) in run.iter_mut().zip(keyed) {
                    *slot = r;
                }
            },
        );
        if self.opts.top > 0 {
            rows.truncate(self.opts.top);
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(o: &str, r: &str, d: Option<f64>, uid: &str) -> ConnRecord {
        ConnRecord {
            orig_h: o.parse().ok(),
            resp_h: r.parse().ok(),
            duration: d,
            uid: uid.into(),
            proto: "tcp".into(),
            resp_p: Some(443),
            orig_bytes: Some(10),
            resp_bytes: Some(5),
            ..ConnRecord::default()
        }
    }

    fn opts(top: usize) -> TallyOptions {
        TallyOptions {
            top,
            by: GroupMode::Pair,
            min_duration: 0.0,
            exclude: vec![],
            measure: Measure::Sum,
            interim_files: vec![],
        }
    }

    #[test]
    fn sums_counts_and_skips_unset() {
        let mut t = Tally::new(opts(10));
        t.add(0, rec("10.0.0.1", "10.0.0.2", Some(1.5), "a"), 0, || None);
        t.add(0, rec("10.0.0.1", "10.0.0.2", Some(2.25), "b"), 0, || None);
        t.add(0, rec("10.0.0.1", "10.0.0.2", None, "c"), 0, || None);
        t.add(0, rec("10.0.0.3", "10.0.0.2", Some(10.0), "d"), 0, || None);
        let g = t.groups();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].agg.total_ns, 10_000_000_000);
        assert_eq!(g[1].agg.total_ns, 3_750_000_000);
        assert_eq!(g[1].agg.count, 2);
        assert_eq!(g[1].agg.longest_ns, 2_250_000_000);
        assert_eq!(g[1].agg.bytes, 30);
        assert_eq!(t.counts.unset, 1);
        assert_eq!(t.counts.used, 3);
    }

    #[test]
    fn top_n_ties_by_text_and_merge_is_order_independent() {
        let mut a = Tally::new(opts(2));
        let mut b = Tally::new(opts(2));
        a.add(0, rec("10.0.0.9", "10.0.0.1", Some(5.0), "x"), 0, || None);
        b.add(0, rec("10.0.0.10", "10.0.0.1", Some(5.0), "y"), 0, || None);
        b.add(0, rec("10.0.0.2", "10.0.0.1", Some(1.0), "z"), 0, || None);
        a.merge(b);
        let s = a.singles();
        // "10.0.0.10" < "10.0.0.9" as text.
        assert_eq!(s[0].uid, "y");
        assert_eq!(s[1].uid, "x");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn exclude_and_min_duration() {
        let mut t = Tally::new(TallyOptions {
            exclude: vec!["10.0.0.0/24".parse().unwrap()],
            min_duration: 2.0,
            ..opts(0)
        });
        t.add(0, rec("10.0.0.1", "192.0.2.1", Some(9.0), "a"), 0, || None);
        t.add(0, rec("192.0.2.2", "192.0.2.1", Some(1.0), "b"), 0, || None);
        t.add(0, rec("192.0.2.2", "192.0.2.1", Some(3.0), "c"), 0, || None);
        assert_eq!(
            (t.counts.excluded, t.counts.short, t.counts.used),
            (1, 1, 1)
        );
        assert_eq!(t.singles().len(), 1);
    }

    #[test]
    fn pair_port_groups_by_port_and_proto() {
        let mut t = Tally::new(TallyOptions {
            by: GroupMode::PairPort,
            ..opts(0)
        });
        let mut r = rec("10.0.0.1", "10.0.0.2", Some(1.0), "a");
        t.add(0, r.clone(), 0, || None);
        r.resp_p = Some(22);
        t.add(0, r, 0, || None);
        assert_eq!(t.groups().len(), 2);
    }

    #[test]
    fn top_groups_with_many_ties_match_the_full_order() {
        // Totals drawn from few values (many ties), IPv4 and IPv6 ends, and the fast-path entry point.
        let fill = |top: usize| {
            let mut t = Tally::new(opts(top));
            let mut x: u64 = 3;
            for i in 0..3000u64 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let o = format!("10.0.{}.{}", (x >> 40) % 3, (x >> 50) % 40);
                let r = if i % 7 == 0 {
                    format!("2001:db8::{:x}", (x >> 20) % 9)
                } else {
                    format!("192.0.2.{}", (x >> 30) % 11)
                };
                let d = ((x >> 33) % 4) as f64;
                match (o.parse(), r.parse()) {
                    (Ok(orig_h), Ok(resp_h)) if i % 2 == 0 => {
                        let row = PairRow {
                            orig_h,
                            resp_h,
                            duration: Some(d),
                            bytes: 1,
                            resp_p: None,
                            proto: 0,
                        };
                        t.add_pair(&row, || None)
                    }
                    _ => t.add(0, rec(&o, &r, Some(d), "u"), 0, || None),
                }
            }
            t.groups()
        };
        let all = fill(0);
        assert!(all.len() > 500);
        for top in [1, 2, 5, 17, 100, all.len(), all.len() + 3] {
            let want = &all[..top.min(all.len())];
            assert_eq!(fill(top), want, "top {top}");
        }
    }
}
