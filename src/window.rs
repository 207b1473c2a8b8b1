//! The per-group sliding window on event time: how much connection time each group (a host pair, or a pair
//! plus port and protocol) has spent inside the last `length` of event time.
//!
//! Time is integer microseconds since the Unix epoch (Zeek's resolution), so sums are exact and a measure
//! that lands exactly on a threshold compares equal to it. A record contributes the interval `[s, e]` with
//! `s = ts` and `e = ts + duration`. The watermark `T` is the largest `e` given to [`Window::observe`] (every
//! parsed record, filtered or not), and the window is `[W, T]` with `W = T - length`. Because every `e <= T`,
//! an interval is never clipped on the right, so a group's measure is
//! `sum over its intervals of max(0, e - max(s, W))`.
//!
//! ## How it stays cheap
//! `W` only grows, so an interval, once `e <= W`, is gone for good. Each group keeps its live intervals in
//! an [`Accumulator`]: inline when it has one (most groups), else in one contiguous `Vec` sorted by start.
//! A record costs one pass over its own group's items, which drops the expired ones and yields both the
//! sum and the covered measure (see `accumulator.rs`); no record ever scans other groups, and groups are
//! advanced lazily, when one of their records arrives. The pass is O(n) for a group of n live items, which
//! [`EXACT_LIMIT`] bounds; it reads memory in order, which on a sensor's working set costs less than the
//! cache misses of the per-group heaps it replaced.
//!
//! ## Exactness and the approximation beyond [`EXACT_LIMIT`]
//! A group is exact while it holds at most [`EXACT_LIMIT`] (1,000) live intervals. When one more arrives,
//! the group is *compacted*: starts are clipped to `W` (exact, since `W` never falls), the window is cut into a
//! grid of cells of `g = length / GRID_CELLS` (32 cells), and all intervals whose (start cell, end cell) agree
//! are replaced by one item of multiplicity `n` at their mean start and mean end. This keeps every
//! connection's total length (up to 1 µs of rounding per item), and keeps each connection's start and end within
//! `g` of its true values; since one connection's contribution is 1-Lipschitz in its start and in its end,
//! **the measure error is at most `2g` (plus 1 µs) per connection that was folded into a merged item**, and
//! it is zero for connections whose merged item lies wholly inside the window: the error only appears while
//! merged items cross the left edge. At most 33·34/2 = 561 items survive a compaction, so memory per group
//! is bounded by about 1,000 items (16 or 24 bytes each). The `approximate` tests check the bound.
//!
//! ## Replacing a connection, and the covered measure
//! Zeek's interim logs (open_conn.log, conn_long.log) write the same connection (same uid) again and again
//! with a growing duration. [`Accumulator::replace`] removes the connection's previous interval and adds
//! the new one, so a connection is counted once with its latest interval; the uid -> interval map lives in
//! the detector. Removal is exact while the group is exact; after a compaction, one unit is taken from the
//! merged item nearest to the old interval (within the grid, so inside the `2g` bound above).
//! [`Accumulator::covered`] is the length of the union of the live intervals clipped to the window (the
//! wall-clock time during which the group had at least one connection up), computed in the same pass as
//! the sum; it is exact within [`EXACT_LIMIT`] and off by at most `2g` per merged item beyond.
//!
//! ## Memory
//! Groups live in a slab (`Vec<Slot>`), each slot holding its compact [`GroupKey`] (38 bytes); an index of
//! slot numbers (`window/index.rs`: 8-byte buckets, a tag of the key's hash and the slot number) finds them,
//! and the lookup's key compare reads the slot the record uses next. A freed slot is reset and reused. A
//! group with one live interval keeps it inline (no heap); from its second, its intervals take 16 bytes
//! each in one allocation (24 once compacted, with a multiplicity). What the detector keeps apart (older
//! uids, names) is allocated from a group's second connection or first name.
//!
//! ## Prefetching
//! The detector is bound by memory latency: a record's bucket, slot and intervals are three dependent
//! cache misses. [`Window::prefetch`] lets the caller fetch them for records a few ahead, in stages, so
//! those misses overlap the work on the current record (a hint only: no effect on any result).
//!
//! Groups whose measure is 0 (every interval ended at or before `W`) and that hold nothing else
//! ([`Hold::hold_until`], used by the rules for single-alert suppression) are treated as new when their next
//! record arrives and are dropped by a sweep that runs after as many records as there are groups (amortized
//! O(1) per record). When a new group would exceed `max_groups`, expired groups are swept and, if that is not
//! enough, the groups with the smallest measure (ties: smallest key) are evicted down to `max_groups -
//! max_groups/16` so that eviction is amortized; each eviction is counted. The slab does not shrink: its
//! high-water mark is bounded by `max_groups`.
//!
//! ## Changes, for an incremental checkpoint
//! When asked ([`Window::track_changes`], the daemon does), the window remembers which groups changed since
//! the last checkpoint: a flag per slot set by [`Window::touch`] and by an advance that dropped intervals (a
//! sweep, [`Window::measure`]), and the keys of the groups dropped (expired or evicted). The checkpoint saves
//! [`Window::changed`] and [`Window::removed`] and then calls [`Window::clear_changes`]; a new length or
//! grouping ([`Window::reconfigure`]) asks for a full one ([`Window::all_changed`]).

mod accumulator;
pub mod config;
mod index;

pub use accumulator::{union_length, Accumulator, AccumulatorState, Measures};

use index::Index;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;

/// How records are grouped: the key of a window entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// (orig_h, resp_h)
    Pair,
    /// (orig_h, resp_h, resp_p, proto)
    PairPort,
    /// (orig_h, server name) when the context names the server ([`GroupKey::named`]), across the
    /// server's addresses; (orig_h, resp_h) otherwise.
    Name,
}

/// `[window]`: the window's length, grouping and memory bound.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowConfig {
    pub length: Duration,
    pub group_by: GroupBy,
    pub max_groups: usize,
}

/// A group holding more live intervals than this is compacted (approximate from then on).
pub const EXACT_LIMIT: usize = 1000;
/// Number of grid cells per window length used by compaction.
pub const GRID_CELLS: i64 = 32;

/// Seconds (f64) to whole microseconds; `None` for NaN, infinities and values out of range.
pub fn micros(secs: f64) -> Option<i64> {
    if !secs.is_finite() {
        return None;
    }
    let v = (secs * 1e6).round();
    if v.abs() < 9.0e18 {
        Some(v as i64)
    } else {
        None
    }
}

/// `proto` of a key made by [`GroupKey::named`]: 255 is reserved by IANA, never a transport Zeek logs.
pub const NAMED_PROTO: u8 = 255;

/// The group a connection belongs to. With `group_by = "pair"`, `port` and `proto` are 0. A key of a
/// server name (`group_by = "name"`) holds a digest of the name in `resp` and [`NAMED_PROTO`] in `proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    pub orig: IpAddr,
    pub resp: IpAddr,
    pub port: u16,
    pub proto: u8,
}

impl Default for GroupKey {
    /// The key of a free slot (never looked up: the index holds only live slots).
    fn default() -> GroupKey {
        let zero = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        GroupKey {
            orig: zero,
            resp: zero,
            port: 0,
            proto: 0,
        }
    }
}

impl GroupKey {
    pub fn new(group_by: GroupBy, orig: IpAddr, resp: IpAddr, port: u16, proto: u8) -> GroupKey {
        match group_by {
            GroupBy::Pair | GroupBy::Name => GroupKey {
                orig,
                resp,
                port: 0,
                proto: 0,
            },
            GroupBy::PairPort => GroupKey {
                orig,
                resp,
                port,
                proto,
            },
        }
    }

    /// The key of (`orig`, server `name`): `resp` is the first 16 bytes of the SHA-1 of the name in
    /// lower case, as an IPv6 address (a stable, collision-free stand-in that keeps the key `Copy` and its
    /// size); `proto` is [`NAMED_PROTO`].
    pub fn named(orig: IpAddr, name: &str) -> GroupKey {
        use sha1::{Digest, Sha1};
        let mut h = Sha1::new();
        for chunk in name.as_bytes().chunks(64) {
            let mut lower = [0u8; 64];
            for (l, b) in lower.iter_mut().zip(chunk) {
                *l = b.to_ascii_lowercase();
            }
            h.update(&lower[..chunk.len()]);
        }
        let digest = h.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        GroupKey {
            orig,
            resp: IpAddr::V6(std::net::Ipv6Addr::from(bytes)),
            port: 0,
            proto: NAMED_PROTO,
        }
    }

    /// The key stands for a server name (made by [`GroupKey::named`]), not an address.
    pub fn is_named(&self) -> bool {
        self.proto == NAMED_PROTO
    }
}

/// What a group's data says about keeping the group after its measure fell to 0.
pub trait Hold {
    /// The group is kept (not expired) while this is after the left edge W, even with measure 0.
    fn hold_until(&self) -> i64 {
        i64::MIN
    }

    /// Prefetch hints for the heap memory the group's next record will use (see [`Window::prefetch`]).
    /// Must not read that memory: it is fetched now.
    fn prefetch(&self) {}

    /// Prefetch hints for memory found by reading what [`Hold::prefetch`] fetched (a record or two
    /// earlier).
    fn prefetch_inner(&self) {}
}

impl Hold for () {}

/// A stage of [`Window::prefetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    Bucket,
    Slot,
    Heap,
    /// What the data's heap memory points to ([`Hold::prefetch_inner`]).
    Inner,
}

/// One tracked group: its key, its intervals and what the rules keep for it.
#[derive(Debug, Clone, Default)]
pub struct Slot<T> {
    /// The group's key (the index finds a slot by it).
    pub key: GroupKey,
    pub acc: Accumulator,
    pub data: T,
}

impl<T: Hold> Slot<T> {
    /// Expired: nothing left in the window (the accumulator must be advanced to `w`) and nothing held.
    fn expired(&self, w: i64) -> bool {
        self.acc.is_empty() && self.data.hold_until() <= w
    }
}

/// What [`Window::touch`] returns: the group, advanced to the current left edge.
pub struct Touched<'a, T> {
    pub slot: &'a mut Slot<T>,
    /// Measure (sum) at the current watermark before the new record is added.
    pub measure_before: i64,
    /// Covered measure at the current watermark before the new record is added.
    pub covered_before: i64,
    /// True if the group was created (or had expired and was reset) by this call.
    pub fresh: bool,
    /// The current left edge W.
    pub left_edge: i64,
    /// Compaction cell size in µs.
    pub cell: i64,
}

/// The serialized form of a [`Window`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowState<S> {
    pub length_us: i64,
    pub group_by: String,
    pub watermark_us: Option<i64>,
    pub evictions: u64,
    pub expired: u64,
    pub since_sweep: u64,
    /// Absent from a checkpoint whose groups are in the binary store (an older build reading it then
    /// refuses it instead of starting with an empty window).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<(GroupKey, AccumulatorState, S)>,
}

/// All groups, the watermark and the memory cap.
#[derive(Debug, Clone)]
pub struct Window<T> {
    length: i64,
    group_by: GroupBy,
    max_groups: usize,
    watermark: Option<i64>,
    /// Group key -> index into `slots`, the keys kept in the slots.
    groups: Index,
    /// Group storage; freed entries are reset to default and listed in `free` for reuse.
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    evictions: u64,
    expired: u64,
    since_sweep: u64,
    /// What changed since the last checkpoint, for an incremental one; `None` unless asked for
    /// ([`Window::track_changes`]: the daemon does, `replay` does not pay for it).
    changes: Option<Box<Changes>>,
}

/// The groups changed since [`Window::clear_changes`]: a flag per slot (a slot is marked when its group is
/// touched or moved by an advance; a reused slot is marked anew by the touch that reuses it) and the keys of
/// groups dropped (expired or evicted). Keys, not slots, name removals, so a slot reused by another key
/// between two checkpoints cannot hide one.
#[derive(Debug, Clone, Default)]
struct Changes {
    dirty: Vec<bool>,
    removed: rustc_hash::FxHashSet<GroupKey>,
    /// Every group may have changed (a new length or grouping): the next checkpoint must be a full one.
    all: bool,
}

impl Changes {
    fn mark(&mut self, i: usize) {
        if i >= self.dirty.len() {
            self.dirty.resize(i + 1, false);
        }
        self.dirty[i] = true;
    }
}

fn group_by_name(g: GroupBy) -> &'static str {
    match g {
        GroupBy::Pair => "pair",
        GroupBy::PairPort => "pair_port",
        GroupBy::Name => "name",
    }
}

impl<T: Default + Hold> Window<T> {
    /// A window of `length_us` µs; `max_groups` of 0 is read as 1.
    pub fn new(length_us: i64, group_by: GroupBy, max_groups: usize) -> Window<T> {
        Window {
            length: length_us.max(0),
            group_by,
            max_groups: max_groups.max(1),
            watermark: None,
            groups: Index::default(),
            slots: Vec::new(),
            free: Vec::new(),
            evictions: 0,
            expired: 0,
            since_sweep: 0,
            changes: None,
        }
    }

    /// From now on, remember which groups change, for [`Window::changed`] and [`Window::removed`].
    pub fn track_changes(&mut self) {
        if self.changes.is_none() {
            self.changes = Some(Box::default());
        }
    }

    /// Whether every group must be saved again (changes not tracked, or a new length or grouping).
    pub fn all_changed(&self) -> bool {
        match &self.changes {
            Some(c) => c.all,
            None => true,
        }
    }

    /// The groups touched (or moved by an advance) since [`Window::clear_changes`] that are still tracked.
    pub fn changed(&self) -> impl Iterator<Item = (&GroupKey, &Slot<T>)> {
        let dirty: &[bool] = self.changes.as_ref().map_or(&[], |c| &c.dirty);
        self.groups.iter().filter_map(move |i| {
            let i = i as usize;
            if dirty.get(i).copied().unwrap_or(false) {
                let slot = self.slots.get(i)?;
                Some((&slot.key, slot))
            } else {
                None
            }
        })
    }

    /// The groups dropped since [`Window::clear_changes`] and not tracked again since.
    pub fn removed(&self) -> impl Iterator<Item = &GroupKey> {
        self.changes
            .iter()
            .flat_map(|c| c.removed.iter())
            .filter(|k| self.groups.get(&self.slots, k).is_none())
    }

    /// The state saved now covers every change: start counting again.
    pub fn clear_changes(&mut self) {
        if let Some(c) = &mut self.changes {
            c.dirty.clear();
            c.removed.clear();
            c.all = false;
        }
    }

    fn mark(&mut self, i: usize) {
        if let Some(c) = &mut self.changes {
            c.mark(i);
        }
    }

    /// Puts a saved group back (restoring a checkpoint), replacing one of the same key.
    pub fn restore_group(&mut self, key: GroupKey, acc: Accumulator, data: T) {
        let slot = Slot { key, acc, data };
        match self.groups.get(&self.slots, &key) {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = slot;
                }
            }
            None => {
                let i = match self.free.pop() {
                    Some(i) => {
                        if let Some(s) = self.slots.get_mut(i as usize) {
                            *s = slot;
                        }
                        i
                    }
                    None => {
                        self.slots.push(slot);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.groups.insert(&key, i);
            }
        }
    }

    /// Drops a saved group (restoring a checkpoint that recorded its removal).
    pub fn restore_removal(&mut self, key: &GroupKey) {
        if let Some(i) = self.groups.remove(&self.slots, key) {
            self.release(i);
        }
    }

    /// Room for `n` more groups (restoring a checkpoint).
    pub fn reserve(&mut self, n: usize) {
        self.groups.reserve(n);
        self.slots.reserve(n);
    }

    pub fn group_by(&self) -> GroupBy {
        self.group_by
    }
    pub fn length_us(&self) -> i64 {
        self.length
    }
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }
    /// `T - length`, once a record has been observed.
    pub fn left_edge(&self) -> Option<i64> {
        self.watermark.map(|t| t.saturating_sub(self.length))
    }
    pub fn len(&self) -> usize {
        self.groups.len()
    }
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
    /// Groups dropped because their measure reached 0.
    pub fn expired(&self) -> u64 {
        self.expired
    }
    fn cell(&self) -> i64 {
        (self.length / GRID_CELLS).max(1)
    }

    /// Advances the watermark to `end` if it is later.
    pub fn observe(&mut self, end: i64) {
        self.watermark = Some(self.watermark.map_or(end, |t| t.max(end)));
    }

    /// Applies a new length, group_by and cap (SIGHUP). A changed `group_by` empties the window; a longer
    /// length cannot bring back intervals that already left the old window.
    pub fn reconfigure(&mut self, length_us: i64, group_by: GroupBy, max_groups: usize) {
        let length_us = length_us.max(0);
        if group_by != self.group_by {
            self.groups.clear();
            self.slots.clear();
            self.free.clear();
            self.group_by = group_by;
            if let Some(c) = &mut self.changes {
                c.all = true;
            }
        }
        if length_us != self.length {
            if let Some(c) = &mut self.changes {
                c.all = true;
            }
            if let Some(w_old) = self.left_edge() {
                for slot in &mut self.slots {
                    slot.acc.unclip(w_old);
                }
            }
            self.length = length_us;
        }
        self.max_groups = max_groups.max(1);
    }

    /// The measure of `key` at the current watermark, if tracked (advances the group).
    pub fn measure(&mut self, key: &GroupKey) -> Option<i64> {
        let w = self.left_edge()?;
        let i = self.groups.get(&self.slots, key)?;
        let slot = self.slots.get_mut(i as usize)?;
        let moved = slot.acc.advance(w);
        let m = slot.acc.measure(w);
        if moved {
            self.mark(i as usize);
        }
        Some(m)
    }

    /// A hint, no effect on the window: asks the CPU to fetch what [`Window::touch`] of `key` will read,
    /// so that the memory latency of a record a few ahead overlaps the work on this one. Four stages,
    /// each reading only what the one before fetched: [`Prefetch::Bucket`] for a record about 12 ahead,
    /// [`Prefetch::Slot`] (the bucket is read) about 6 ahead, [`Prefetch::Heap`] (the slot is read:
    /// its intervals' and data's heap memory) about 3 ahead, [`Prefetch::Inner`] (the data's heap
    /// memory is read: what it points to) for the next record. A wrong guess (another key with the same
    /// tag, a key that changes before the record's turn) costs a wasted fetch, nothing else.
    pub fn prefetch(&self, key: &GroupKey, stage: Prefetch) {
        match stage {
            Prefetch::Bucket => self.groups.prefetch(key),
            Prefetch::Slot => {
                if let Some(slot) = self
                    .groups
                    .likely(key)
                    .and_then(|i| self.slots.get(i as usize))
                {
                    let p: *const u8 = (slot as *const Slot<T>).cast();
                    let size = std::mem::size_of::<Slot<T>>();
                    for off in (0..size).step_by(64).chain([size.saturating_sub(1)]) {
                        crate::prefetch::prefetch(p.wrapping_add(off));
                    }
                }
            }
            Prefetch::Heap => {
                if let Some(slot) = self
                    .groups
                    .likely(key)
                    .and_then(|i| self.slots.get(i as usize))
                {
                    // The items a record's pass reads, up to four cache lines (most groups hold few).
                    if let Some((p, len)) = slot.acc.heap() {
                        for off in (0..len.min(256)).step_by(64) {
                            crate::prefetch::prefetch(p.wrapping_add(off));
                        }
                    }
                    slot.data.prefetch();
                }
            }
            Prefetch::Inner => {
                if let Some(slot) = self
                    .groups
                    .likely(key)
                    .and_then(|i| self.slots.get(i as usize))
                {
                    slot.data.prefetch_inner();
                }
            }
        }
    }

    /// The group of `key`, if tracked (not advanced).
    pub fn get(&self, key: &GroupKey) -> Option<&Slot<T>> {
        self.slots.get(self.groups.get(&self.slots, key)? as usize)
    }

    fn release(&mut self, i: u32) {
        if let Some(slot) = self.slots.get_mut(i as usize) {
            *slot = Slot::default();
            self.free.push(i);
        }
    }

    /// Finds or creates the group for `key`, advanced to the current left edge. Call [`Window::observe`]
    /// first; returns `None` only if no record was ever observed.
    pub fn touch(&mut self, key: GroupKey) -> Option<Touched<'_, T>> {
        let w = self.left_edge()?;
        let cell = self.cell();
        self.since_sweep += 1;
        if self.since_sweep >= (self.groups.len() as u64).max(1024) {
            self.sweep(usize::MAX);
        }
        if self.groups.len() >= self.max_groups && self.groups.get(&self.slots, &key).is_none() {
            let target = self.max_groups - (self.max_groups / 16).max(1);
            self.sweep(target);
        }
        let mut fresh = false;
        let i = match self.groups.get(&self.slots, &key) {
            Some(i) => i as usize,
            None => {
                fresh = true;
                let i = match self.free.pop() {
                    Some(i) => i as usize,
                    None => {
                        self.slots.push(Slot::default());
                        self.slots.len() - 1
                    }
                };
                if let Some(slot) = self.slots.get_mut(i) {
                    slot.key = key;
                }
                self.groups.insert(&key, i as u32);
                i
            }
        };
        if let Some(c) = &mut self.changes {
            c.mark(i);
        }
        let slot = self.slots.get_mut(i)?;
        slot.acc.advance(w);
        if !fresh && slot.expired(w) {
            *slot = Slot {
                key,
                ..Slot::default()
            };
            fresh = true;
        }
        let before = slot.acc.measures(w);
        Some(Touched {
            slot,
            measure_before: before.sum,
            covered_before: before.covered,
            fresh,
            left_edge: w,
            cell,
        })
    }

    /// Drops expired groups, then evicts the smallest-measure groups until at most `target` remain.
    fn sweep(&mut self, target: usize) {
        self.since_sweep = 0;
        let Some(w) = self.left_edge() else { return };
        let before = self.groups.len();
        let slots = &mut self.slots;
        let free = &mut self.free;
        let mut changes = self.changes.as_deref_mut();
        self.groups.retain(|i| match slots.get_mut(*i as usize) {
            Some(slot) => {
                let moved = slot.acc.advance(w);
                if slot.expired(w) {
                    if let Some(c) = changes.as_deref_mut() {
                        c.removed.insert(slot.key);
                    }
                    *slot = Slot::default();
                    free.push(*i);
                    false
                } else {
                    if moved {
                        if let Some(c) = changes.as_deref_mut() {
                            c.mark(*i as usize);
                        }
                    }
                    true
                }
            }
            None => false,
        });
        self.expired += (before - self.groups.len()) as u64;
        if self.groups.len() <= target {
            return;
        }
        let mut by_measure: Vec<(i64, GroupKey)> = self
            .groups
            .iter()
            .filter_map(|i| {
                let s = self.slots.get(i as usize)?;
                Some((s.acc.measure(w), s.key))
            })
            .collect();
        let n = self.groups.len() - target;
        by_measure.select_nth_unstable(n - 1);
        for (_, k) in &by_measure[..n] {
            if let Some(i) = self.groups.remove(&self.slots, k) {
                self.release(i);
                if let Some(c) = &mut self.changes {
                    c.removed.insert(*k);
                }
            }
        }
        self.evictions += n as u64;
    }

    /// Iterates over groups (unordered).
    pub fn groups(&self) -> impl Iterator<Item = (&GroupKey, &Slot<T>)> {
        self.groups.iter().filter_map(|i| {
            let slot = self.slots.get(i as usize)?;
            Some((&slot.key, slot))
        })
    }

    /// [`Window::state`] without its groups (saved apart, in the binary checkpoint store).
    pub fn state_header<S>(&self) -> WindowState<S> {
        WindowState {
            length_us: self.length,
            group_by: group_by_name(self.group_by).to_string(),
            watermark_us: self.watermark,
            evictions: self.evictions,
            expired: self.expired,
            since_sweep: self.since_sweep,
            groups: Vec::new(),
        }
    }

    /// Serializable state with groups sorted by key, `state_of` mapping each group's data.
    pub fn state<S>(&self, state_of: impl Fn(&T) -> S) -> WindowState<S> {
        let mut groups: Vec<_> = self
            .groups()
            .map(|(k, s)| (*k, s.acc.state(), state_of(&s.data)))
            .collect();
        groups.sort_unstable_by_key(|g| g.0);
        WindowState {
            groups,
            ..self.state_header()
        }
    }

    /// Rebuilds a window from [`Window::state`]; the caller applies the current config afterwards.
    pub fn from_state<S>(
        st: &WindowState<S>,
        max_groups: usize,
        data_of: impl Fn(&S) -> T,
    ) -> Window<T> {
        let group_by = match st.group_by.as_str() {
            "pair_port" => GroupBy::PairPort,
            "name" => GroupBy::Name,
            _ => GroupBy::Pair,
        };
        let mut w = Window::new(st.length_us, group_by, max_groups);
        w.watermark = st.watermark_us;
        w.evictions = st.evictions;
        w.expired = st.expired;
        w.since_sweep = st.since_sweep;
        w.slots.reserve_exact(st.groups.len());
        w.groups.reserve(st.groups.len());
        for (k, acc, data) in &st.groups {
            if w.groups.get(&w.slots, k).is_some() {
                continue;
            }
            w.slots.push(Slot {
                key: *k,
                acc: Accumulator::from_state(acc),
                data: data_of(data),
            });
            w.groups.insert(k, (w.slots.len() - 1) as u32);
        }
        w
    }
}

#[cfg(test)]
mod tests;
