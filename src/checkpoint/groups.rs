//! The binary group store: the window's groups, the context's maps (prevalence entries, and uid, pair
//! and DNS names) and the interim-record bookkeeping (open and recently closed uids), saved apart from `checkpoint.json` in a compact, versioned, checksummed file that later checkpoints append to (what changed since the last one) and that is rewritten
//! whole (compacted) once what was appended outgrows a fraction of it.
//!
//! ## Files and the commit
//! `groups.<id>.bin` (`id`: 16 hex digits, random per file) holds a header and then chunks. Which file, and
//! how many of its bytes, make up the saved state is said by `checkpoint.json` ([`StoreRef`]), which stays the
//! one atomic commit point: a checkpoint appends a delta (or writes a new file), fsyncs it, and only then
//! renames the new `checkpoint.json` (with the file positions and the rest of the detector state) into place.
//! A crash before that rename leaves the previous `checkpoint.json`, naming the previous length (bytes of a
//! torn or uncommitted append beyond it are never read, and are cut by the next append) or the previous file
//! (a new file nobody names is removed by the next full write). So positions and groups always advance
//! together and a restore never sees a mix.
//!
//! ## Layout (all integers little-endian)
//! Header, 24 bytes: magic `LCGROUPS`, version (u32, [`STORE_VERSION`]), id (u64), CRC-32 of the 20 bytes
//! before it. A store of a version this build does not read is refused by name (it reads version 1, whose
//! `checkpoint.json` still holds the name maps, and writes version 2). Then chunks, each framed
//! `[payload length u32][CRC-32 of the payload u32][payload]`; a payload is `[kind u8][reference time i64]
//! [record count varint][records]`, at most [`CHUNK_GROUPS`] records. Kinds: 1 groups, 2 prevalence
//! sources, 3 (destination, source) entries, and from version 2: 4 uid names, 5 pair names, 6 DNS answers,
//! 7 DNS clients, 8 open interim uids, 9 closed uids (each with its number in the close order). A record is an entry upserted (its whole state) or removed (its key), applied in order: a
//! full write is upserts of every entry, a delta the entries written (a group touched or moved by the
//! window's advance) and dropped since the last checkpoint. Every chunk up to the committed length must be
//! whole and match its checksum, or the checkpoint is damaged.
//!
//! ## A record
//! Key byte (bit 0: originator is IPv6, bit 1: responder is IPv6, bit 2: port and proto follow, bit 3:
//! removal), the two addresses (4 or 16 bytes), then port (varint) and proto (u8). An upsert goes on with a
//! data byte (bits 0-1: accumulator empty, one interval or many; bit 2: rule state follows; bit 3: the episode
//! has a first record; bit 4: that record is the newest uid at `first_seen`; bit 5: older uids; bit 6: names;
//! bit 7: connections is not 1) and then varints, times as zigzag differences from a related time (first
//! seen from the chunk's reference time, last seen from first seen, an interval's start from first seen, ...),
//! strings as length and bytes. A one-connection group takes about 50 bytes, a third of them its uid.
//! A name record: a flag byte (address families, removal, whether a port follows), the key (uid, address
//! pair or address), the name, its source (SNI, Host, DNS), the port and when it was learnt; a uid's also
//! says when and in which place it joined the order uids expire in, so a restore rebuilds that order
//! exactly.
//!
//! ## Reading
//! A restore reads the header and then only each chunk's framing (8 bytes) to find the chunks up to the
//! committed length. The group chunks are then read and applied in order to the window while the other
//! chunks are read and applied in order to the context, on a second thread for a store of a megabyte or more:
//! the two never touch the same state, so the result is the one of applying every chunk in the file's order.
//! Each side reads its chunks into one buffer it reuses (the file is never held whole) and checks each
//! against its CRC before any of it is used. Of several damaged chunks, the first in the file's order is
//! reported (whether a chunk is damaged depends on its bytes alone).

use crate::detector::cold::{self, b62, Uid, B62};
use crate::detector::context::{Context, Dest, DomainSource, Named, UidEntry};
use crate::detector::interim::{Closed, Interim};
use crate::detector::{Detector, GroupData, OpenConn, SavedGroup, SavedRules, SavedUids};
use crate::rules::{Level, RuleState};
use crate::window::{Accumulator, AccumulatorState, GroupKey, Window};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The version of the store's layout this build writes. It reads this one and version 1 (no name maps:
/// their `checkpoint.json` holds them).
pub const STORE_VERSION: u32 = 2;
/// The oldest version this build reads.
const OLDEST_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"LCGROUPS";
const HEADER_LEN: usize = 24;
/// Records per chunk: a chunk is checked whole before any of it is used.
pub const CHUNK_GROUPS: usize = 65_536;
const KIND_GROUPS: u8 = 1;
const KIND_SOURCES: u8 = 2;
const KIND_REACH: u8 = 3;
/// The context's name maps (version 2): uid names, pair names, DNS answers, DNS clients.
const KIND_UIDS: u8 = 4;
const KIND_PAIRS: u8 = 5;
const KIND_DNS: u8 = 6;
const KIND_DNS_HOSTS: u8 = 7;
/// The interim-record bookkeeping (version 2): open uids, closed uids.
const KIND_OPEN: u8 = 8;
const KIND_CLOSED: u8 = 9;
const LAST_KIND: u8 = KIND_CLOSED;
/// A full write replaces the appended deltas once they exceed this fraction (1/2) of the full write plus
/// [`COMPACT_SLACK`] bytes (so a small window is not rewritten at every checkpoint).
const COMPACT_SLACK: u64 = 64 * 1024;

/// Which store file holds the groups and how much of it is committed: saved in `checkpoint.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRef {
    /// The file's name in the state directory.
    pub file: String,
    /// The id in the file's header (a file of the same name but another id is not ours).
    pub id: u64,
    /// Bytes committed: the header, the full write and the deltas appended since.
    pub len: u64,
    /// Bytes of the header and the full write.
    pub base_len: u64,
    /// Groups once every record is applied (room is reserved for them before reading).
    pub groups: u64,
    /// Prevalence sources and (destination, source) entries once every record is applied (room reserved).
    #[serde(default)]
    pub sources: u64,
    #[serde(default)]
    pub reach: u64,
    /// The store's version ([`STORE_VERSION`]; absent: 1, whose `checkpoint.json` holds the name maps).
    #[serde(default = "version_1")]
    pub version: u32,
    /// Entries of the context's name maps once every record is applied (uids, pair names, DNS answers,
    /// DNS clients; room reserved).
    #[serde(default)]
    pub names: [u64; 4],
    /// Open and closed interim uids once every record is applied (room reserved).
    #[serde(default)]
    pub interim: [u64; 2],
}

fn version_1() -> u32 {
    1
}

/// How much a restore makes room for, from the counts a [`StoreRef`] gives (bounded: these numbers come
/// from a file too).
struct Room {
    groups: usize,
    sources: usize,
    reach: usize,
    names: (usize, usize, usize, usize),
    interim: [usize; 2],
}

impl Room {
    fn of(r: &StoreRef) -> Room {
        let n = |n: u64| usize::try_from(n).unwrap_or(0).min(1 << 26);
        Room {
            groups: n(r.groups),
            sources: n(r.sources),
            reach: n(r.reach),
            names: (n(r.names[0]), n(r.names[1]), n(r.names[2]), n(r.names[3])),
            interim: [n(r.interim[0]), n(r.interim[1])],
        }
    }
}

/// Why the store could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Damaged, missing, or of another version: the checkpoint is set aside.
    Damaged(String),
    /// There but unreadable (permission, I/O): not absence.
    Unreadable(String),
}

fn file_name(id: u64) -> String {
    format!("groups.{id:016x}.bin")
}

/// Whether `name` is a store file's name (and nothing that could leave the state directory).
fn is_store_name(name: &str) -> bool {
    name.strip_prefix("groups.")
        .and_then(|r| r.strip_suffix(".bin"))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn header(id: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&STORE_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

// ---------------------------------------------------------------------------------------------------------
// Encoding.

fn put_u(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_i(buf: &mut Vec<u8>, v: i64) {
    put_u(buf, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_u(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Longest uid packed 6 bits a character.
const MAX_PACKED: usize = 64;

/// A uid: `(len << 1) | 1` and 6 bits a character when it is all base-62 digits (an 18-character Zeek
/// uid takes 15 bytes), else `len << 1` and its bytes.
fn put_uid(buf: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if b.len() > MAX_PACKED || !b.iter().all(|c| b62(*c).is_some()) {
        put_u(buf, (b.len() as u64) << 1);
        buf.extend_from_slice(b);
        return;
    }
    put_digits(buf, b.iter().map(|c| b62(*c).unwrap_or(0)), b.len());
}

/// The packed form of `n` base-62 digits (see [`put_uid`]).
fn put_digits(buf: &mut Vec<u8>, digits: impl Iterator<Item = u8>, n: usize) {
    put_u(buf, ((n as u64) << 1) | 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for d in digits {
        acc = (acc << 6) | u32::from(d);
        bits += 6;
        while bits >= 8 {
            bits -= 8;
            buf.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        buf.push((acc << (8 - bits)) as u8);
    }
}

/// [`put_uid`] of a uid as a group keeps it.
fn put_packed_uid(buf: &mut Vec<u8>, u: &Uid) {
    match u.digits() {
        Some((d, n)) => put_digits(buf, d[..n].iter().copied(), n),
        None => u.with_str(|s| put_uid(buf, s)),
    }
}

fn put_addr(buf: &mut Vec<u8>, a: &IpAddr) {
    match a {
        IpAddr::V4(v) => buf.extend_from_slice(&v.octets()),
        IpAddr::V6(v) => buf.extend_from_slice(&v.octets()),
    }
}

fn source_code(s: DomainSource) -> u8 {
    match s {
        DomainSource::Sni => 0,
        DomainSource::HttpHost => 1,
        DomainSource::Dns => 2,
    }
}

/// A name (its port, when it has one, after its source: the record's flag byte says whether).
fn put_named(buf: &mut Vec<u8>, t: i64, n: &Named) {
    put_str(buf, &n.name);
    buf.push(source_code(n.source));
    if let Some(port) = n.port {
        put_u(buf, u64::from(port));
    }
    put_i(buf, n.at.wrapping_sub(t));
}

fn level_code(l: Option<Level>) -> u8 {
    l.map_or(0, |l| l as u8 + 1)
}

fn put_key(buf: &mut Vec<u8>, k: &GroupKey, removal: bool) {
    let mut b = 0u8;
    if k.orig.is_ipv6() {
        b |= 1;
    }
    if k.resp.is_ipv6() {
        b |= 2;
    }
    let port_proto = k.port != 0 || k.proto != 0;
    if port_proto {
        b |= 4;
    }
    if removal {
        b |= 8;
    }
    buf.push(b);
    put_addr(buf, &k.orig);
    put_addr(buf, &k.resp);
    if port_proto {
        put_u(buf, u64::from(k.port));
        buf.push(k.proto);
    }
}

fn rules_present(r: &RuleState) -> bool {
    r.single_level.is_some()
        || r.episode_level.is_some()
        || r.single_at != 0
        || r.last_alert_at != 0
        || r.repeats != 0
}

/// Appends one group's upsert record; `t` is the chunk's reference time.
fn put_group(buf: &mut Vec<u8>, t: i64, k: &GroupKey, acc: &Accumulator, d: &GroupData) {
    put_key(buf, k, false);
    let single = acc.single();
    let mut f = match (single, acc.is_empty()) {
        (_, true) => 0u8,
        (Some(_), _) => 1,
        (None, false) => 2,
    };
    let rules = rules_present(&d.rules);
    if rules {
        f |= 4;
    }
    let first = d.episode_first_uid();
    let newest = d.newest_uid();
    let first_is_newest = first.is_some_and(|(u, ts)| u == newest && ts == d.first_seen);
    if first.is_some() {
        f |= 8;
    }
    if first_is_newest {
        f |= 16;
    }
    let older = d.older_len();
    if older > 0 {
        f |= 32;
    }
    let names = d.names();
    if !names.is_empty() {
        f |= 64;
    }
    if d.connections != 1 {
        f |= 128;
    }
    buf.push(f);
    put_i(buf, d.first_seen.wrapping_sub(t));
    let span = d.last_seen.wrapping_sub(d.first_seen);
    put_i(buf, span);
    put_i(buf, d.longest_us.wrapping_sub(span));
    if d.connections != 1 {
        put_u(buf, d.connections);
    }
    put_u(buf, d.total_bytes);
    put_packed_uid(buf, newest);
    if older > 0 {
        put_u(buf, older as u64);
        for u in d.older_uids() {
            put_packed_uid(buf, u);
        }
    }
    if !names.is_empty() {
        put_u(buf, names.len() as u64);
        for n in names {
            put_str(buf, n);
        }
    }
    if let (Some((u, ts)), false) = (first, first_is_newest) {
        put_packed_uid(buf, u);
        put_i(buf, ts.wrapping_sub(d.first_seen));
    }
    if rules {
        let r = &d.rules;
        buf.push(level_code(r.single_level) | (level_code(r.episode_level) << 3));
        put_i(buf, r.single_at.wrapping_sub(t));
        put_i(buf, r.last_alert_at.wrapping_sub(t));
        put_u(buf, u64::from(r.repeats));
    }
    match single {
        Some((s, e)) => {
            put_i(buf, s.wrapping_sub(d.first_seen));
            put_i(buf, e.wrapping_sub(d.last_seen));
        }
        None if !acc.is_empty() => {
            let st = acc.state();
            put_u(buf, st.full.len() as u64);
            let mut prev = d.first_seen;
            for &(s, e, n) in &st.full {
                put_i(buf, s.wrapping_sub(prev));
                put_i(buf, e.wrapping_sub(s));
                put_u(buf, u64::from(n));
                prev = s;
            }
            put_u(buf, st.straddling.len() as u64);
            let mut prev = d.last_seen;
            for &(e, n) in &st.straddling {
                put_i(buf, e.wrapping_sub(prev));
                put_u(buf, u64::from(n));
                prev = e;
            }
            put_u(buf, st.merged);
        }
        None => {}
    }
}

/// Builds chunks of records and writes them framed.
struct ChunkWriter {
    kind: u8,
    t: i64,
    records: usize,
    payload: Vec<u8>,
    out: Vec<u8>,
}

impl ChunkWriter {
    fn new(kind: u8, t: i64) -> ChunkWriter {
        ChunkWriter {
            kind,
            t,
            records: 0,
            payload: Vec::new(),
            out: Vec::new(),
        }
    }

    fn upsert(&mut self, k: &GroupKey, acc: &Accumulator, d: &GroupData) {
        put_group(&mut self.payload, self.t, k, acc, d);
        self.count();
    }

    fn removal(&mut self, k: &GroupKey) {
        put_key(&mut self.payload, k, true);
        self.count();
    }

    /// A prevalence source: bit 0 of the flag byte IPv6, bit 1 removal.
    fn source(&mut self, src: IpAddr, at: Option<i64>) {
        let p = &mut self.payload;
        p.push(u8::from(src.is_ipv6()) | if at.is_none() { 2 } else { 0 });
        put_addr(p, &src);
        if let Some(at) = at {
            put_i(p, at.wrapping_sub(self.t));
        }
        self.count();
    }

    /// A prevalence entry: bit 0 of the flag byte the source is IPv6, bit 1 removal, bit 2 the destination
    /// is a name (else an address; bit 3: IPv6).
    fn reach(&mut self, dest: &Dest, src: IpAddr, at: Option<i64>) {
        let p = &mut self.payload;
        let mut f = u8::from(src.is_ipv6()) | if at.is_none() { 2 } else { 0 };
        match dest {
            Dest::Name(_) => f |= 4,
            Dest::Addr(a) if a.is_ipv6() => f |= 8,
            Dest::Addr(_) => {}
        }
        p.push(f);
        match dest {
            Dest::Name(n) => put_str(p, n),
            Dest::Addr(a) => put_addr(p, a),
        }
        put_addr(p, &src);
        if let Some(at) = at {
            put_i(p, at.wrapping_sub(self.t));
        }
        self.count();
    }

    /// A uid name: bit 0 of the flag byte removal, bit 1 a port follows the name's source; then the
    /// uid and, for an upsert, the name, when it was learnt, when it joined the expiry order (from when
    /// learnt) and its place in that order.
    fn uid(&mut self, uid: &str, e: Option<&UidEntry>) {
        let p = &mut self.payload;
        match e {
            None => {
                p.push(1);
                put_uid(p, uid);
            }
            Some(e) => {
                p.push(if e.named.port.is_some() { 2 } else { 0 });
                put_uid(p, uid);
                put_named(p, self.t, &e.named);
                put_i(p, e.queued_at.wrapping_sub(e.named.at));
                put_u(p, e.seq);
            }
        }
        self.count();
    }

    /// A pair name or DNS answer: bits 0 and 1 of the flag byte the originator and responder are IPv6,
    /// bit 2 removal, bit 3 a port follows the name's source.
    fn pair_name(&mut self, pair: &(IpAddr, IpAddr), n: Option<&Named>) {
        let p = &mut self.payload;
        let mut f = u8::from(pair.0.is_ipv6()) | u8::from(pair.1.is_ipv6()) << 1;
        match n {
            None => f |= 4,
            Some(n) if n.port.is_some() => f |= 8,
            Some(_) => {}
        }
        p.push(f);
        put_addr(p, &pair.0);
        put_addr(p, &pair.1);
        if let Some(n) = n {
            put_named(p, self.t, n);
        }
        self.count();
    }

    /// An open interim uid: a flag byte (bit 0 removal), the uid, and for an upsert the connection's group
    /// key, start, end (from start), bytes and the level it alerted at.
    fn open_uid(&mut self, uid: &str, o: Option<&OpenConn>) {
        let p = &mut self.payload;
        p.push(u8::from(o.is_none()));
        put_uid(p, uid);
        if let Some(o) = o {
            put_key(p, &o.key, false);
            put_i(p, o.ts.wrapping_sub(self.t));
            put_i(p, o.end.wrapping_sub(o.ts));
            put_u(p, o.bytes);
            p.push(level_code(o.level));
        }
        self.count();
    }

    /// A closed interim uid: a flag byte (bit 0 removal), the uid, and for an upsert the watermark at
    /// its close and the close's number in the close order.
    fn closed_uid(&mut self, uid: &str, c: Option<&Closed>) {
        let p = &mut self.payload;
        p.push(u8::from(c.is_none()));
        put_uid(p, uid);
        if let Some(c) = c {
            put_i(p, c.at.wrapping_sub(self.t));
            put_u(p, c.seq);
        }
        self.count();
    }

    /// A DNS client: bit 0 of the flag byte IPv6, bit 1 removal.
    fn dns_host(&mut self, host: &IpAddr, at: Option<i64>) {
        let p = &mut self.payload;
        p.push(u8::from(host.is_ipv6()) | if at.is_none() { 2 } else { 0 });
        put_addr(p, host);
        if let Some(at) = at {
            put_i(p, at.wrapping_sub(self.t));
        }
        self.count();
    }

    fn count(&mut self) {
        self.records += 1;
        if self.records >= CHUNK_GROUPS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.records == 0 {
            return;
        }
        let mut p = Vec::with_capacity(self.payload.len() + 19);
        p.push(self.kind);
        p.extend_from_slice(&self.t.to_le_bytes());
        put_u(&mut p, self.records as u64);
        p.extend_from_slice(&self.payload);
        self.out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        self.out
            .extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
        self.out.extend_from_slice(&p);
        self.payload.clear();
        self.records = 0;
    }

    fn finish(mut self) -> Vec<u8> {
        self.flush();
        self.out
    }
}

/// Every group of the detector's window and every prevalence entry of its context, as the chunks of a full
/// write.
pub fn encode_full(d: &Detector) -> Vec<u8> {
    let (w, ctx) = (d.window(), d.context());
    let t = w.watermark().unwrap_or(0);
    let mut c = ChunkWriter::new(KIND_GROUPS, t);
    for (k, slot) in w.groups() {
        c.upsert(k, &slot.acc, &slot.data);
    }
    let mut out = c.finish();
    let mut c = ChunkWriter::new(KIND_SOURCES, t);
    for (src, at) in ctx.prevalence().sources() {
        c.source(src, Some(at));
    }
    out.extend_from_slice(&c.finish());
    let mut c = ChunkWriter::new(KIND_REACH, t);
    for (dest, src, at) in ctx.prevalence().reach() {
        c.reach(dest, src, Some(at));
    }
    out.extend_from_slice(&c.finish());
    let mut c = ChunkWriter::new(KIND_UIDS, t);
    for (uid, e) in ctx.uid_entries() {
        c.uid(uid, Some(e));
    }
    out.extend_from_slice(&c.finish());
    for (kind, dns) in [(KIND_PAIRS, false), (KIND_DNS, true)] {
        let mut c = ChunkWriter::new(kind, t);
        for (pair, n) in ctx.pair_names(dns) {
            c.pair_name(pair, Some(n));
        }
        out.extend_from_slice(&c.finish());
    }
    let mut c = ChunkWriter::new(KIND_DNS_HOSTS, t);
    for (host, at) in ctx.dns_hosts() {
        c.dns_host(host, Some(*at));
    }
    out.extend_from_slice(&c.finish());
    let interim = d.interim();
    let mut c = ChunkWriter::new(KIND_OPEN, t);
    for (uid, o) in interim.open_uids() {
        c.open_uid(uid, Some(o));
    }
    out.extend_from_slice(&c.finish());
    let mut c = ChunkWriter::new(KIND_CLOSED, t);
    for (uid, closed) in interim.closed_uids() {
        c.closed_uid(uid, Some(closed));
    }
    out.extend_from_slice(&c.finish());
    out
}

/// What changed since the detector's changes were last cleared, as the chunks of a delta: the groups
/// removed, then those touched, then the prevalence entries written or dropped.
pub fn encode_delta(d: &Detector) -> Vec<u8> {
    let (w, ctx) = (d.window(), d.context());
    let t = w.watermark().unwrap_or(0);
    let mut c = ChunkWriter::new(KIND_GROUPS, t);
    for k in w.removed() {
        c.removal(k);
    }
    for (k, slot) in w.changed() {
        c.upsert(k, &slot.acc, &slot.data);
    }
    let mut out = c.finish();
    let mut c = ChunkWriter::new(KIND_SOURCES, t);
    for (src, at) in ctx.prevalence().changed_sources() {
        c.source(src, at);
    }
    out.extend_from_slice(&c.finish());
    let mut c = ChunkWriter::new(KIND_REACH, t);
    for (dest, src, at) in ctx.prevalence().changed_reach() {
        c.reach(dest, src, at);
    }
    out.extend_from_slice(&c.finish());
    let mut c = ChunkWriter::new(KIND_UIDS, t);
    for (uid, e) in ctx.changed_uids() {
        c.uid(uid, e);
    }
    out.extend_from_slice(&c.finish());
    for (kind, dns) in [(KIND_PAIRS, false), (KIND_DNS, true)] {
        let mut c = ChunkWriter::new(kind, t);
        for (pair, n) in ctx.changed_pair_names(dns) {
            c.pair_name(pair, n);
        }
        out.extend_from_slice(&c.finish());
    }
    let mut c = ChunkWriter::new(KIND_DNS_HOSTS, t);
    for (host, at) in ctx.changed_dns_hosts() {
        c.dns_host(host, at.copied());
    }
    out.extend_from_slice(&c.finish());
    let interim = d.interim();
    let mut c = ChunkWriter::new(KIND_OPEN, t);
    for (uid, o) in interim.changed_open_uids() {
        c.open_uid(uid, o);
    }
    out.extend_from_slice(&c.finish());
    let mut c = ChunkWriter::new(KIND_CLOSED, t);
    for (uid, closed) in interim.changed_closed_uids() {
        c.closed_uid(uid, closed);
    }
    out.extend_from_slice(&c.finish());
    out
}

// ---------------------------------------------------------------------------------------------------------
// Decoding.

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

type R<T> = Result<T, String>;

impl<'a> Reader<'a> {
    fn u8(&mut self) -> R<u8> {
        let v = *self.b.get(self.pos).ok_or("a record is cut short")?;
        self.pos += 1;
        Ok(v)
    }

    fn bytes(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or("a length is out of range")?;
        let v = self.b.get(self.pos..end).ok_or("a record is cut short")?;
        self.pos = end;
        Ok(v)
    }

    fn u(&mut self) -> R<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a number is too long".into())
    }

    fn i(&mut self) -> R<i64> {
        let u = self.u()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn len(&mut self) -> R<usize> {
        let n = self.u()?;
        let n = usize::try_from(n).map_err(|_| "a length is out of range")?;
        if n > self.b.len() - self.pos {
            return Err("a length runs past its chunk".into());
        }
        Ok(n)
    }

    fn string(&mut self) -> R<CompactString> {
        let n = self.len()?;
        let b = self.bytes(n)?;
        let s = std::str::from_utf8(b).map_err(|_| "a string is not UTF-8")?;
        Ok(CompactString::from(s))
    }

    fn uid(&mut self) -> R<CompactString> {
        let h = self.u()?;
        let n = usize::try_from(h >> 1).map_err(|_| "a length is out of range")?;
        if h & 1 == 0 {
            if n > self.b.len() - self.pos {
                return Err("a length runs past its chunk".into());
            }
            let b = self.bytes(n)?;
            let s = std::str::from_utf8(b).map_err(|_| "a uid is not UTF-8")?;
            return Ok(CompactString::from(s));
        }
        if n > MAX_PACKED {
            return Err("a packed uid is too long".into());
        }
        let mut out = [0u8; MAX_PACKED];
        self.digits(&mut out[..n])?;
        for o in &mut out[..n] {
            *o = *B62
                .get(usize::from(*o))
                .ok_or("a packed uid holds a character out of range")?;
        }
        let s = std::str::from_utf8(&out[..n]).map_err(|_| "a uid is not UTF-8")?;
        Ok(CompactString::from(s))
    }

    /// The 6-bit codes of a packed uid of `out.len()` characters, into `out` (not checked against the
    /// base-62 range).
    fn digits(&mut self, out: &mut [u8]) -> R<()> {
        let b = self.bytes((out.len() * 6).div_ceil(8))?;
        let (mut acc, mut bits, mut i) = (0u32, 0u32, 0usize);
        for d in out.iter_mut() {
            if bits < 6 {
                acc = (acc << 8) | u32::from(*b.get(i).ok_or("a packed uid is cut short")?);
                i += 1;
                bits += 8;
            }
            bits -= 6;
            *d = ((acc >> bits) & 63) as u8;
            acc &= (1 << bits) - 1;
        }
        Ok(())
    }

    /// A uid in the form a group keeps it: a packed one of at most [`cold::PACKED_MAX`] characters goes
    /// from its digits to a [`Uid`] without its text; any other through [`Reader::uid`].
    fn kept_uid(&mut self) -> R<Uid> {
        let start = self.pos;
        let h = self.u()?;
        let n = usize::try_from(h >> 1).map_err(|_| "a length is out of range")?;
        if h & 1 == 0 || n > cold::PACKED_MAX {
            self.pos = start;
            return Ok(Uid::new(&self.uid()?));
        }
        let mut digits = [0u8; cold::PACKED_MAX];
        self.digits(&mut digits[..n])?;
        Uid::from_digits(&digits[..n])
            .ok_or_else(|| "a packed uid holds a character out of range".into())
    }

    fn addr(&mut self, v6: bool) -> R<IpAddr> {
        Ok(if v6 {
            let b: [u8; 16] = self.bytes(16)?.try_into().map_err(|_| "an address")?;
            IpAddr::V6(Ipv6Addr::from(b))
        } else {
            let b: [u8; 4] = self.bytes(4)?.try_into().map_err(|_| "an address")?;
            IpAddr::V4(Ipv4Addr::from(b))
        })
    }

    fn level(code: u8) -> R<Option<Level>> {
        match code {
            0 => Ok(None),
            c => Level::ALL
                .get(usize::from(c) - 1)
                .copied()
                .map(Some)
                .ok_or_else(|| format!("level code {c} is unknown")),
        }
    }
}

/// One record read back.
enum Record {
    Upsert(GroupKey, Accumulator, GroupData),
    Removal(GroupKey),
}

/// A group key as [`put_key`] wrote it, and whether it is a removal.
fn read_record_key(r: &mut Reader<'_>) -> R<(GroupKey, bool)> {
    let kb = r.u8()?;
    if kb & !15 != 0 {
        return Err(format!("key byte {kb:#x} is unknown"));
    }
    let orig = r.addr(kb & 1 != 0)?;
    let resp = r.addr(kb & 2 != 0)?;
    let (port, proto) = if kb & 4 != 0 {
        let p = u16::try_from(r.u()?).map_err(|_| "a port is out of range")?;
        (p, r.u8()?)
    } else {
        (0, 0)
    };
    let key = GroupKey {
        orig,
        resp,
        port,
        proto,
    };
    Ok((key, kb & 8 != 0))
}

fn read_record(r: &mut Reader<'_>, t: i64) -> R<Record> {
    let (key, removal) = read_record_key(r)?;
    if removal {
        return Ok(Record::Removal(key));
    }
    let f = r.u8()?;
    let first_seen = r.i()?.wrapping_add(t);
    let span = r.i()?;
    let last_seen = first_seen.wrapping_add(span);
    let longest_us = r.i()?.wrapping_add(span);
    let connections = if f & 128 != 0 { r.u()? } else { 1 };
    let total_bytes = r.u()?;
    let newest = r.kept_uid()?;
    let older = if f & 32 != 0 {
        let n = r.len()?;
        let mut o = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            o.push(r.kept_uid()?);
        }
        Some(o)
    } else {
        None
    };
    let mut names = Vec::new();
    if f & 64 != 0 {
        let n = r.len()?;
        for _ in 0..n {
            names.push(r.string()?);
        }
    }
    let episode_first = match (f & 8 != 0, f & 16 != 0) {
        (false, _) => None,
        (true, true) => Some((newest.clone(), first_seen)),
        (true, false) => {
            let u = r.kept_uid()?;
            Some((u, r.i()?.wrapping_add(first_seen)))
        }
    };
    let mut rules = SavedRules {
        episode_first,
        ..SavedRules::default()
    };
    if f & 4 != 0 {
        let lv = r.u8()?;
        rules.single_level = Reader::level(lv & 7)?;
        rules.episode_level = Reader::level(lv >> 3)?;
        rules.single_at = r.i()?.wrapping_add(t);
        rules.last_alert_at = r.i()?.wrapping_add(t);
        rules.repeats = u32::try_from(r.u()?).map_err(|_| "a repeat count is out of range")?;
    }
    let acc = match f & 3 {
        0 => Accumulator::default(),
        1 => {
            let s = r.i()?.wrapping_add(first_seen);
            let e = r.i()?.wrapping_add(last_seen);
            Accumulator::one(s, e)
        }
        2 => {
            let n = r.len()?;
            let mut full = Vec::with_capacity(n);
            let mut prev = first_seen;
            for _ in 0..n {
                let s = r.i()?.wrapping_add(prev);
                let e = r.i()?.wrapping_add(s);
                let m = u32::try_from(r.u()?).map_err(|_| "a multiplicity is out of range")?;
                full.push((s, e, m));
                prev = s;
            }
            let n = r.len()?;
            let mut straddling = Vec::with_capacity(n);
            let mut prev = last_seen;
            for _ in 0..n {
                let e = r.i()?.wrapping_add(prev);
                let m = u32::try_from(r.u()?).map_err(|_| "a multiplicity is out of range")?;
                straddling.push((e, m));
                prev = e;
            }
            let merged = r.u()?;
            Accumulator::from_state(&AccumulatorState {
                full,
                straddling,
                merged,
            })
        }
        _ => return Err("an accumulator kind is unknown".into()),
    };
    let data = GroupData::from(SavedGroup {
        rules,
        connections,
        longest_us,
        total_bytes,
        first_seen,
        last_seen,
        uids: SavedUids { newest, older },
        names,
    });
    Ok(Record::Upsert(key, acc, data))
}

/// A prevalence record, decoded.
enum Saved {
    Source(IpAddr, Option<i64>),
    Reach(Dest, IpAddr, Option<i64>),
    Uid(CompactString, Option<UidEntry>),
    /// A pair name (`false`) or a DNS answer (`true`).
    PairName(bool, (IpAddr, IpAddr), Option<Named>),
    DnsHost(IpAddr, Option<i64>),
    Open(CompactString, Option<OpenConn>),
    Closed(CompactString, Option<Closed>),
}

impl Saved {
    /// Fetches the index bucket this record's restore looks up into cache (a hint).
    fn prefetch(&self, ctx: &Context) {
        match self {
            Saved::Source(src, _) => ctx.prevalence().prefetch_source(*src),
            Saved::Reach(dest, src, _) => ctx.prevalence().prefetch_reach(dest, *src),
            _ => {}
        }
    }

    fn apply(self, ctx: &mut Context, interim: &mut Interim) {
        match self {
            Saved::Source(src, at) => ctx.prevalence_mut().restore_source(src, at),
            Saved::Reach(dest, src, at) => ctx.prevalence_mut().restore_reach(dest, src, at),
            Saved::Uid(uid, e) => ctx.restore_uid(uid, e),
            Saved::PairName(dns, pair, n) => ctx.restore_pair_name(dns, pair, n),
            Saved::DnsHost(host, at) => ctx.restore_dns_host(host, at),
            Saved::Open(uid, o) => interim.restore_open(uid, o),
            Saved::Closed(uid, c) => interim.restore_closed(uid, c),
        }
    }
}

fn read_source(r: &mut Reader<'_>, t: i64) -> R<Saved> {
    let f = r.u8()?;
    if f & !3 != 0 {
        return Err(format!("source flags {f:#x} are unknown"));
    }
    let src = r.addr(f & 1 != 0)?;
    let at = if f & 2 != 0 {
        None
    } else {
        Some(r.i()?.wrapping_add(t))
    };
    Ok(Saved::Source(src, at))
}

fn read_reach(r: &mut Reader<'_>, t: i64) -> R<Saved> {
    let f = r.u8()?;
    if f & !15 != 0 || f & 12 == 12 {
        return Err(format!("reach flags {f:#x} are unknown"));
    }
    let dest = if f & 4 != 0 {
        Dest::Name(r.string()?)
    } else {
        Dest::Addr(r.addr(f & 8 != 0)?)
    };
    let src = r.addr(f & 1 != 0)?;
    let at = if f & 2 != 0 {
        None
    } else {
        Some(r.i()?.wrapping_add(t))
    };
    Ok(Saved::Reach(dest, src, at))
}

/// A name as [`put_named`] wrote it (`port`: the flag byte says one follows).
fn read_named(r: &mut Reader<'_>, t: i64, port: bool) -> R<Named> {
    let name = r.string()?;
    let source = match r.u8()? {
        0 => DomainSource::Sni,
        1 => DomainSource::HttpHost,
        2 => DomainSource::Dns,
        c => return Err(format!("name source code {c} is unknown")),
    };
    let port = if port {
        let p = r.u()?;
        Some(u16::try_from(p).map_err(|_| format!("port {p} is out of range"))?)
    } else {
        None
    };
    let at = r.i()?.wrapping_add(t);
    Ok(Named {
        name,
        source,
        port,
        at,
    })
}

fn read_uid_name(r: &mut Reader<'_>, t: i64) -> R<Saved> {
    let f = r.u8()?;
    if f & !3 != 0 || f == 3 {
        return Err(format!("uid flags {f:#x} are unknown"));
    }
    let uid = r.uid()?;
    if f & 1 != 0 {
        return Ok(Saved::Uid(uid, None));
    }
    let named = read_named(r, t, f & 2 != 0)?;
    let queued_at = r.i()?.wrapping_add(named.at);
    let seq = r.u()?;
    Ok(Saved::Uid(
        uid,
        Some(UidEntry {
            named,
            queued_at,
            seq,
        }),
    ))
}

fn read_pair_name(r: &mut Reader<'_>, t: i64, dns: bool) -> R<Saved> {
    let f = r.u8()?;
    if f & !15 != 0 || f & 12 == 12 {
        return Err(format!("pair name flags {f:#x} are unknown"));
    }
    let pair = (r.addr(f & 1 != 0)?, r.addr(f & 2 != 0)?);
    let n = if f & 4 != 0 {
        None
    } else {
        Some(read_named(r, t, f & 8 != 0)?)
    };
    Ok(Saved::PairName(dns, pair, n))
}

fn read_open(r: &mut Reader<'_>, t: i64) -> R<Saved> {
    let f = r.u8()?;
    if f > 1 {
        return Err(format!("open uid flags {f:#x} are unknown"));
    }
    let uid = r.uid()?;
    if f == 1 {
        return Ok(Saved::Open(uid, None));
    }
    let key = match read_record_key(r)? {
        (key, false) => key,
        (_, true) => return Err("an open uid's key says removal".into()),
    };
    let ts = r.i()?.wrapping_add(t);
    let end = r.i()?.wrapping_add(ts);
    let bytes = r.u()?;
    let level = Reader::level(r.u8()?)?;
    Ok(Saved::Open(
        uid,
        Some(OpenConn {
            key,
            ts,
            end,
            bytes,
            level,
        }),
    ))
}

fn read_closed(r: &mut Reader<'_>, t: i64) -> R<Saved> {
    let f = r.u8()?;
    if f > 1 {
        return Err(format!("closed uid flags {f:#x} are unknown"));
    }
    let uid = r.uid()?;
    let c = if f == 1 {
        None
    } else {
        let at = r.i()?.wrapping_add(t);
        Some(Closed { at, seq: r.u()? })
    };
    Ok(Saved::Closed(uid, c))
}

fn read_dns_host(r: &mut Reader<'_>, t: i64) -> R<Saved> {
    let f = r.u8()?;
    if f & !3 != 0 {
        return Err(format!("DNS client flags {f:#x} are unknown"));
    }
    let host = r.addr(f & 1 != 0)?;
    let at = if f & 2 != 0 {
        None
    } else {
        Some(r.i()?.wrapping_add(t))
    };
    Ok(Saved::DnsHost(host, at))
}

/// One framed chunk: where it starts in the file, its checksum, its payload's length and first byte (the
/// chunk's kind, not checked yet: a damaged one fails the checksum wherever the chunk is applied).
#[derive(Debug)]
struct Frame {
    at: u64,
    crc: u32,
    len: usize,
    kind: Option<u8>,
}

/// Why a chunk could not be applied.
#[derive(Debug)]
enum ChunkError {
    /// Damaged at byte `.0` (of several, the earliest is reported: the first a reading in order meets).
    Damaged(u64, String),
    /// An I/O error reading the file.
    Unreadable(String),
}

fn cut_short(at: u64) -> ChunkError {
    ChunkError::Damaged(at, format!("the chunk at byte {at} is cut short"))
}

/// An error reading the chunk at `at`: the end of the file (it shrank since its length was read) is a
/// chunk cut short, anything else unreadable.
fn read_error(at: u64, e: io::Error) -> ChunkError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        cut_short(at)
    } else {
        ChunkError::Unreadable(format!("cannot read the group store: {e}"))
    }
}

/// The frames of the chunks between the header and `len` (the committed length) in order, read from their
/// 8-byte framing alone, and the first one cut short, if any (frames after it are not read).
fn split_frames(f: &File, len: u64) -> Result<(Vec<Frame>, Option<ChunkError>), ChunkError> {
    let mut frames = Vec::new();
    let mut pos = HEADER_LEN as u64;
    let mut head = [0u8; 9];
    while pos < len {
        let avail = (len - pos).min(9) as usize;
        if avail < 8 {
            return Ok((frames, Some(cut_short(pos))));
        }
        f.read_exact_at(&mut head[..avail], pos)
            .map_err(|e| read_error(pos, e))?;
        let plen = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if plen > len - pos - 8 {
            return Ok((frames, Some(cut_short(pos))));
        }
        frames.push(Frame {
            at: pos,
            crc,
            len: usize::try_from(plen).map_err(|_| cut_short(pos))?,
            // `avail` is 9 when the payload is not empty.
            kind: (plen > 0).then_some(head[8]),
        });
        pos += 8 + plen;
    }
    Ok((frames, None))
}

/// Checks the payload of the chunk at `at` against `crc`, then reads its kind, reference time and records,
/// `each` reading one record.
fn apply_payload(
    at: u64,
    crc: u32,
    payload: &[u8],
    mut each: impl FnMut(u8, &mut Reader<'_>, i64) -> R<()>,
) -> Result<(), ChunkError> {
    if crc32fast::hash(payload) != crc {
        return Err(ChunkError::Damaged(
            at,
            format!("the chunk at byte {at}: its checksum does not match"),
        ));
    }
    let mut r = Reader { b: payload, pos: 0 };
    let mut body = || -> R<()> {
        let kind = r.u8()?;
        if !(KIND_GROUPS..=LAST_KIND).contains(&kind) {
            return Err(format!("chunk kind {kind} is unknown"));
        }
        let t = i64::from_le_bytes(r.bytes(8)?.try_into().map_err(|_| "a time")?);
        let n = r.u()?;
        for _ in 0..n {
            each(kind, &mut r, t)?;
        }
        if r.pos != r.b.len() {
            return Err("bytes after the last record".into());
        }
        Ok(())
    };
    body().map_err(|e| ChunkError::Damaged(at, format!("the chunk at byte {at}: {e}")))
}

/// Reads the chunks `frames` name from `f` in order (into one buffer, reused) and applies each with
/// `apply`; stops at the first that cannot be read or is wrong.
fn apply_frames(
    f: &File,
    frames: &[Frame],
    mut apply: impl FnMut(&Frame, &[u8]) -> Result<(), ChunkError>,
) -> Result<(), ChunkError> {
    let mut buf = Vec::new();
    for fr in frames {
        if buf.len() < fr.len {
            buf.resize(fr.len, 0);
        }
        let payload = &mut buf[..fr.len];
        f.read_exact_at(payload, fr.at + 8)
            .map_err(|e| read_error(fr.at, e))?;
        apply(fr, payload)?;
    }
    Ok(())
}

/// Applies the group chunks `frames` of `f`, in order, to `w`.
/// Records are decoded this many ahead of the one applied, their index buckets fetched into cache as they
/// are decoded: a restore looks every key up in a table far larger than the cache, and the lookups would
/// otherwise wait on memory one after the other.
const RESTORE_AHEAD: usize = 16;

/// Applies the records of one chunk in order to `state` with `apply`, each `RESTORE_AHEAD` records after
/// `hint` saw it. On a record that does not decode, the records before it are applied and its error
/// returned (as without the lookahead).
fn apply_ahead<S, T>(
    fr: &Frame,
    payload: &[u8],
    state: &mut S,
    mut read: impl FnMut(u8, &mut Reader<'_>, i64) -> R<T>,
    hint: impl Fn(&S, &T),
    mut apply: impl FnMut(&mut S, T),
) -> Result<(), ChunkError> {
    let mut ahead: std::collections::VecDeque<T> =
        std::collections::VecDeque::with_capacity(RESTORE_AHEAD + 1);
    let result = apply_payload(fr.at, fr.crc, payload, |kind, r, t| {
        let rec = read(kind, r, t)?;
        hint(state, &rec);
        ahead.push_back(rec);
        if ahead.len() > RESTORE_AHEAD {
            if let Some(rec) = ahead.pop_front() {
                apply(state, rec);
            }
        }
        Ok(())
    });
    for rec in ahead {
        apply(state, rec);
    }
    result
}

fn apply_groups(f: &File, frames: &[Frame], w: &mut Window<GroupData>) -> Result<(), ChunkError> {
    apply_frames(f, frames, |fr, payload| {
        apply_ahead(
            fr,
            payload,
            w,
            |_, r, t| read_record(r, t),
            |w, rec| {
                let k = match rec {
                    Record::Upsert(k, ..) | Record::Removal(k) => k,
                };
                w.prefetch(k, crate::window::Prefetch::Bucket);
            },
            |w, rec| match rec {
                Record::Upsert(k, acc, d) => w.restore_group(k, acc, d),
                Record::Removal(k) => w.restore_removal(&k),
            },
        )
    })
}

/// Applies the other chunks `frames` of `f` (prevalence sources and entries, or of a kind unknown), in
/// order, to `ctx`.
fn apply_context(
    f: &File,
    frames: &[Frame],
    ctx: &mut Context,
    interim: &mut Interim,
) -> Result<(), ChunkError> {
    let mut side = (ctx, interim);
    apply_frames(f, frames, |fr, payload| {
        apply_ahead(
            fr,
            payload,
            &mut side,
            |kind, r, t| match kind {
                KIND_SOURCES => read_source(r, t),
                KIND_REACH => read_reach(r, t),
                KIND_UIDS => read_uid_name(r, t),
                KIND_PAIRS => read_pair_name(r, t, false),
                KIND_DNS => read_pair_name(r, t, true),
                KIND_DNS_HOSTS => read_dns_host(r, t),
                KIND_OPEN => read_open(r, t),
                _ => read_closed(r, t),
            },
            |side, rec| rec.prefetch(side.0),
            |side, rec| rec.apply(side.0, side.1),
        )
    })
}

/// Below this many bytes of chunks a restore runs on one thread (a second one is not worth starting).
const PARALLEL_MIN_BYTES: u64 = 1 << 20;

/// Applies the chunks of `f` between the header and `len` to `w` and `ctx`. Of the chunks that are wrong
/// (cut short, failing their checksum or not decoding), the first in the file's order is reported; an I/O
/// error before any.
///
/// Group records touch only the window and prevalence records only the context, so the group chunks are
/// applied in order to `w` while the others are applied in order to `ctx` (on a second thread when
/// `parallel`), each side reading its own chunks: the result is the one of applying every chunk in the
/// file's order. Each side stops at its first wrong chunk; whether a chunk is wrong depends on its bytes
/// alone, so the earliest of those is the first in the file's order.
/// Each side first makes room for what the store says it holds (`room`: groups, sources, entries), on its
/// own thread when there are two.
fn apply_chunks(
    f: &File,
    len: u64,
    w: &mut Window<GroupData>,
    ctx: &mut Context,
    interim: &mut Interim,
    parallel: bool,
    room: Room,
) -> Result<(), ChunkError> {
    let (frames, cut) = split_frames(f, len)?;
    let (groups, others): (Vec<Frame>, Vec<Frame>) = frames
        .into_iter()
        .partition(|fr| fr.kind == Some(KIND_GROUPS));
    let side_by_side = if parallel && !groups.is_empty() && !others.is_empty() {
        std::thread::scope(|s| {
            let side = std::thread::Builder::new()
                .name("restore-context".into())
                .spawn_scoped(s, || {
                    ctx.prevalence_mut().reserve(room.sources, room.reach);
                    ctx.reserve_maps(room.names);
                    interim.reserve(room.interim);
                    apply_context(f, &others, ctx, interim)
                })
                .ok()?;
            w.reserve(room.groups);
            let on_groups = apply_groups(f, &groups, w);
            let on_others = side.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            Some((on_groups, on_others))
        })
    } else {
        None
    };
    // One thread: asked for, not worth a second, or a second could not be started.
    let (on_groups, on_others) = match side_by_side {
        Some(both) => both,
        None => {
            w.reserve(room.groups);
            ctx.prevalence_mut().reserve(room.sources, room.reach);
            ctx.reserve_maps(room.names);
            interim.reserve(room.interim);
            (
                apply_groups(f, &groups, w),
                apply_context(f, &others, ctx, interim),
            )
        }
    };
    let mut first: Option<ChunkError> = None;
    for e in [on_groups.err(), on_others.err(), cut]
        .into_iter()
        .flatten()
    {
        first = match (first, e) {
            (Some(u @ ChunkError::Unreadable(_)), _) => Some(u),
            (Some(ChunkError::Damaged(a, m)), ChunkError::Damaged(b, _)) if a <= b => {
                Some(ChunkError::Damaged(a, m))
            }
            (_, e) => Some(e),
        };
    }
    first.map_or(Ok(()), Err)
}

/// Reads the store `r` names from `dir` into `w`, `ctx` and `interim` (restored from `checkpoint.json`,
/// without the groups, map entries and interim uids the store holds).
pub fn load(
    dir: &Path,
    r: &StoreRef,
    w: &mut Window<GroupData>,
    ctx: &mut Context,
    interim: &mut Interim,
) -> Result<(), StoreError> {
    let parallel = r.len.saturating_sub(HEADER_LEN as u64) >= PARALLEL_MIN_BYTES
        && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    load_with(dir, r, w, ctx, interim, parallel)
}

/// [`load`], the window's chunks and the others applied side by side on two threads when `parallel`.
fn load_with(
    dir: &Path,
    r: &StoreRef,
    w: &mut Window<GroupData>,
    ctx: &mut Context,
    interim: &mut Interim,
    parallel: bool,
) -> Result<(), StoreError> {
    if !is_store_name(&r.file) {
        return Err(StoreError::Damaged(format!(
            "the group store's name {:?} is not one this build writes",
            r.file
        )));
    }
    let path = dir.join(&r.file);
    let damaged = |what: String| StoreError::Damaged(format!("{}: {what}", path.display()));
    let unreadable = |e: io::Error| {
        StoreError::Unreadable(format!(
            "{}: cannot read the group store: {e}",
            path.display()
        ))
    };
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(damaged("the group store is missing".into()))
        }
        Err(e) => return Err(unreadable(e)),
    };
    let meta = f.metadata().map_err(unreadable)?;
    if meta.is_dir() {
        return Err(unreadable(io::Error::other("it is a directory")));
    }
    let file_len = meta.len();
    if file_len < r.len || r.len < HEADER_LEN as u64 {
        return Err(damaged(format!(
            "{file_len} bytes, shorter than the {} the checkpoint names",
            r.len
        )));
    }
    // Bytes past the committed length (an append that was never committed, cut at the next append) are
    // not read.
    let mut h = [0u8; HEADER_LEN];
    f.read_exact_at(&mut h, 0).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            damaged("the header is cut short".into())
        } else {
            unreadable(e)
        }
    })?;
    if &h[..8] != MAGIC {
        return Err(damaged("not a longconn group store".into()));
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let crc = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
    if crc32fast::hash(&h[..20]) != crc {
        return Err(damaged("its header's checksum does not match".into()));
    }
    if !(OLDEST_VERSION..=STORE_VERSION).contains(&version) {
        return Err(damaged(format!(
            "checkpoint store version {version} is not supported (this build reads {OLDEST_VERSION} to {STORE_VERSION})"
        )));
    }
    if version != r.version {
        return Err(damaged(format!(
            "its version {version} is not the {} the checkpoint names",
            r.version
        )));
    }
    let id = u64::from_le_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]);
    if id != r.id {
        return Err(damaged(format!(
            "its id {id:016x} is not the {:016x} the checkpoint names",
            r.id
        )));
    }
    // Room for what the checkpoint says is there.
    apply_chunks(&f, r.len, w, ctx, interim, parallel, Room::of(r)).map_err(|e| match e {
        ChunkError::Damaged(_, m) => damaged(m),
        ChunkError::Unreadable(m) => StoreError::Unreadable(format!("{}: {m}", path.display())),
    })
}

// ---------------------------------------------------------------------------------------------------------
// Writing.

/// A write done but not yet committed by `checkpoint.json`: [`GroupStore::commit`] it once that is saved,
/// [`GroupStore::abandon`] it if not.
#[derive(Debug)]
pub struct Pending {
    pub store: StoreRef,
    /// Bytes written.
    pub bytes: u64,
    /// A new file (a full write), not an append.
    full: bool,
}

impl Pending {
    /// A full write (a new file), not a delta.
    pub fn is_full(&self) -> bool {
        self.full
    }
}

/// The store files of one state directory and the one committed now.
#[derive(Debug)]
pub struct GroupStore {
    dir: PathBuf,
    current: Option<StoreRef>,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl GroupStore {
    pub fn new(dir: &Path) -> GroupStore {
        GroupStore {
            dir: dir.to_path_buf(),
            current: None,
        }
    }

    /// The store committed now (restored, or written by this process).
    pub fn current(&self) -> Option<&StoreRef> {
        self.current.as_ref()
    }

    /// Continues the store a restored checkpoint named.
    pub fn adopt(&mut self, r: StoreRef) {
        self.current = Some(r);
    }

    /// Whether the next write must be full: no store yet, the window says every group changed, or the
    /// deltas appended outgrew half the full write.
    pub fn wants_full(&self, d: &Detector) -> bool {
        match &self.current {
            None => true,
            Some(r) => {
                d.window().all_changed()
                    || d.context().maps_all_changed()
                    || d.interim().all_changed()
                    || r.version < STORE_VERSION
                    || r.len.saturating_sub(r.base_len) > r.base_len / 2 + COMPACT_SLACK
            }
        }
    }

    /// Writes the window's groups: a full write to a new file when [`GroupStore::wants_full`], else a
    /// delta appended to the current file; fsynced either way. Nothing is committed yet.
    pub fn write(&self, d: &Detector) -> io::Result<Pending> {
        match (&self.current, self.wants_full(d)) {
            (Some(r), false) => self.append(r, d),
            _ => self.write_full(d),
        }
    }

    fn write_full(&self, d: &Detector) -> io::Result<Pending> {
        let id = uuid::Uuid::new_v4().as_u64_pair().0;
        let name = file_name(id);
        let path = self.dir.join(&name);
        let mut bytes = header(id).to_vec();
        bytes.extend_from_slice(&encode_full(d));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            sync_dir(&self.dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let len = bytes.len() as u64;
        Ok(Pending {
            store: StoreRef {
                file: name,
                id,
                len,
                base_len: len,
                groups: d.window().len() as u64,
                sources: d.context().prevalence().sources_len() as u64,
                reach: d.context().prevalence().reach_len() as u64,
                version: STORE_VERSION,
                names: d.context().names_len(),
                interim: d.interim().len(),
            },
            bytes: len,
            full: true,
        })
    }

    fn append(&self, r: &StoreRef, d: &Detector) -> io::Result<Pending> {
        let delta = encode_delta(d);
        let mut f = OpenOptions::new()
            .write(true)
            .open(self.dir.join(&r.file))?;
        // What a failed or uncommitted append left after the committed length goes.
        if f.metadata()?.len() != r.len {
            f.set_len(r.len)?;
        }
        f.seek(SeekFrom::Start(r.len))?;
        f.write_all(&delta)?;
        f.sync_data()?;
        Ok(Pending {
            store: StoreRef {
                len: r.len + delta.len() as u64,
                groups: d.window().len() as u64,
                sources: d.context().prevalence().sources_len() as u64,
                reach: d.context().prevalence().reach_len() as u64,
                names: d.context().names_len(),
                interim: d.interim().len(),
                ..r.clone()
            },
            bytes: delta.len() as u64,
            full: false,
        })
    }

    /// `checkpoint.json` now names `p.store`: it is the current one; after a full write, every other
    /// store file in the directory goes (the previous one, and any a crash left unnamed).
    pub fn commit(&mut self, p: Pending) {
        if p.full {
            self.remove_others(&p.store.file);
        }
        self.current = Some(p.store);
    }

    /// `checkpoint.json` could not be saved: a new file goes (an append is cut by the next one).
    pub fn abandon(&self, p: Pending) {
        if p.full {
            let _ = fs::remove_file(self.dir.join(&p.store.file));
        }
    }

    fn remove_others(&self, keep: &str) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.filter_map(Result::ok) {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_store_name(name) && name != keep {
                if let Err(err) = fs::remove_file(e.path()) {
                    tracing::warn!(file = %e.path().display(), "cannot remove an old group store: {err}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
