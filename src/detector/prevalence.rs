//! Prevalence bookkeeping for the `common_destination` and `rare_destination` modifiers: which internal
//! sources were seen in the window, and which of them reached each destination (its name when known,
//! else its address), exact for the window at every query.
//!
//! Layout, for the detector's hot path (every outbound record updates two entries) and its memory: two
//! tables of slots, each a `Vec` with a list of its free slots and a `SlotIndex` (`src/index.rs`) by key: the sources
//! (address and when last, 24 bytes) and the (destination, source) entries (both keys and when last).
//! The index gives a key's bucket from its hash alone, so the detector fetches a record's two entries
//! into cache a few records ahead ([`Prevalence::prefetch`]), as it does its window group. A count of
//! entries per destination answers a query. An expiry queue per table holds, for every entry, at least
//! one item no later than the entry's: a min-heap of (time, slot number), 12 bytes, ordered by time
//! alone, so queue operations compare integers only. When an item is popped once older than the window,
//! its entry goes if it was not seen since, else the item is queued again at the entry's newer time. An
//! item whose slot is free is dropped; one whose slot was reused serves the slot's new entry (which has
//! its own item too): either way every entry older than the window goes, and no other. A query is then
//! two lookups, not a scan. Slot numbers are this process's own: checkpoints save entries by their keys.
//! For the incremental checkpoint, a written slot sets its bit in a bitmap and joins a list (a bit test
//! per record, no hashing), and a dropped entry's key joins a list of its own.
//!
//! Sources are kept as 16 bytes (`Host`, an IPv4 address in its IPv4-mapped IPv6 form, as Zeek holds
//! addresses), which makes every slot 8 bytes smaller than with `IpAddr` (17 bytes, padded).
//! An IPv6 address in `::ffff:0:0/96` is therefore the same source as its IPv4 address.

use super::context::Dest;
use crate::index::{tag, SlotIndex};
use rustc_hash::FxHashMap;
use std::collections::BinaryHeap;
use std::net::IpAddr;

/// A source address in 16 bytes (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Host([u8; 16]);

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        Host(match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        })
    }
}

impl From<Host> for IpAddr {
    fn from(h: Host) -> IpAddr {
        IpAddr::V6(std::net::Ipv6Addr::from(h.0)).to_canonical()
    }
}

/// `at` of a free slot. A time is stored as at least `FREE + 1` ([`when`]): a record ending at the
/// earliest time an `i64` of microseconds holds (292,000 years before 1970) counts as a microsecond later.
const FREE: i64 = i64::MIN;

fn when(at: i64) -> i64 {
    at.max(FREE + 1)
}

/// The index tag of the (destination, source) entry; hashes as the tuple `(Dest, Host)` does.
fn reach_tag(dest: &Dest, host: Host) -> u32 {
    tag(&(dest, host))
}

/// A source slot: `at` is [`FREE`] for a free slot.
#[derive(Debug, Clone, Copy)]
struct SourceSlot {
    host: Host,
    at: i64,
}

/// A (destination, source) slot: `at` is [`FREE`] for a free slot (whose `dest` is then an address,
/// holding no memory of its own).
#[derive(Debug, Clone)]
struct ReachSlot {
    dest: Dest,
    host: Host,
    at: i64,
}

/// A free slot's destination.
const NO_DEST: Dest = Dest::Addr(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));

/// A table of slots (see the module doc): the slots, those free, and an index of the others.
#[derive(Debug, Clone)]
struct Table<S> {
    slots: Vec<S>,
    free: Vec<u32>,
    index: SlotIndex,
}

impl<S> Default for Table<S> {
    fn default() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            index: SlotIndex::default(),
        }
    }
}

impl<S> Table<S> {
    /// Puts `v` (key tag `tag`) in the slot freed last, or in a new one at the end; returns its number.
    fn add(&mut self, tag: u32, v: S) -> u32 {
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = v;
                }
                i
            }
            None => {
                // A table of 2^32 - 1 slots (over 64 GiB) is out of reach of any window this process
                // could hold (slot `u32::MAX` marks the index's empty buckets).
                let i = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|i| *i != u32::MAX)
                    .expect("fewer than 2^32 - 1 slots");
                self.slots.push(v);
                i
            }
        };
        self.index.insert(tag, i);
        i
    }

    fn reserve(&mut self, n: usize) {
        self.slots.reserve(n.saturating_sub(self.free.len()));
        self.index.reserve(n);
    }

    /// Fetches into cache the bucket of `tag` (`slot` false) or the slot it likely names.
    fn prefetch(&self, tag: u32, slot: bool) {
        if !slot {
            self.index.prefetch(tag);
        } else if let Some(s) = self
            .index
            .likely(tag)
            .and_then(|i| self.slots.get(i as usize))
        {
            crate::prefetch::prefetch(s);
        }
    }
}

impl Table<SourceSlot> {
    fn find(&self, host: Host) -> Option<u32> {
        let slots = &self.slots;
        self.index.get(tag(&host), |i| {
            slots.get(i as usize).is_some_and(|s| s.host == host)
        })
    }

    /// Frees slot `i`, indexed under `host`.
    fn free(&mut self, i: u32, host: Host) {
        if self.index.remove(tag(&host), |j| j == i).is_some() {
            if let Some(s) = self.slots.get_mut(i as usize) {
                s.at = FREE;
            }
            self.free.push(i);
        }
    }
}

impl Table<ReachSlot> {
    fn find(&self, dest: &Dest, host: Host) -> Option<u32> {
        let slots = &self.slots;
        self.index.get(reach_tag(dest, host), |i| {
            slots
                .get(i as usize)
                .is_some_and(|s| s.host == host && s.dest == *dest)
        })
    }

    /// Frees slot `i`; returns its destination.
    fn free(&mut self, i: u32) -> Option<Dest> {
        let s = self.slots.get_mut(i as usize)?;
        let t = reach_tag(&s.dest, s.host);
        self.index.remove(t, |j| j == i)?;
        s.at = FREE;
        self.free.push(i);
        Some(std::mem::replace(&mut s.dest, NO_DEST))
    }
}

/// An item of an expiry queue: ordered by time only (the order among equal times does not matter: every
/// item older than the window is popped), reversed so that `BinaryHeap` (a max-heap) pops the oldest first.
/// 12 bytes (packed to 4-byte alignment).
#[repr(C, packed(4))]
#[derive(Debug, Clone, Copy)]
struct Expiring {
    at: i64,
    slot: u32,
}

impl PartialEq for Expiring {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.at, other.at);
        a == b
    }
}

impl Eq for Expiring {}

impl PartialOrd for Expiring {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Expiring {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (self.at, other.at);
        b.cmp(&a)
    }
}

/// The slots of one table written since the last checkpoint: a bit per slot, and the list of those set.
/// A slot's bit stays set when the slot is freed (its key goes to the dropped list), so a key that reuses
/// it is listed once; the list is read in the state the slots have then.
#[derive(Debug, Clone, Default)]
struct Marks {
    bits: Vec<u64>,
    list: Vec<u32>,
}

impl Marks {
    fn mark(&mut self, slot: u32) {
        let (word, bit) = ((slot / 64) as usize, 1u64 << (slot % 64));
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if let Some(w) = self.bits.get_mut(word) {
            if *w & bit == 0 {
                *w |= bit;
                self.list.push(slot);
            }
        }
    }

    fn clear(&mut self) {
        for &slot in &self.list {
            if let Some(w) = self.bits.get_mut((slot / 64) as usize) {
                *w = 0;
            }
        }
        self.list.clear();
    }
}

/// What changed since the last checkpoint: the slots written, and the keys dropped (in order).
#[derive(Debug, Clone, Default)]
struct Changes {
    sources: Marks,
    reach: Marks,
    dropped_sources: Vec<Host>,
    dropped_reach: Vec<(Dest, Host)>,
}

/// See the module doc.
#[derive(Debug, Clone, Default)]
pub struct Prevalence {
    /// Internal sources seen: when last.
    sources: Table<SourceSlot>,
    /// (destination, internal source): when last.
    reach: Table<ReachSlot>,
    /// destination -> entries of `reach` for it.
    counts: FxHashMap<Dest, u32>,
    /// At least one item per source, oldest first.
    source_expiry: BinaryHeap<Expiring>,
    /// At least one item per (destination, source) entry, oldest first.
    reach_expiry: BinaryHeap<Expiring>,
    changes: Option<Box<Changes>>,
}

impl Prevalence {
    /// Records that the internal source `src` was seen at `end`.
    pub fn source(&mut self, src: IpAddr, end: i64) {
        let src = Host::from(src);
        let end = when(end);
        let found = self.sources.find(src);
        let slot = match found.and_then(|i| self.sources.slots.get_mut(i as usize).map(|s| (i, s)))
        {
            Some((i, s)) => {
                s.at = s.at.max(end);
                i
            }
            None => {
                let slot = self
                    .sources
                    .add(tag(&src), SourceSlot { host: src, at: end });
                self.source_expiry.push(Expiring { at: end, slot });
                slot
            }
        };
        if let Some(c) = &mut self.changes {
            c.sources.mark(slot);
        }
    }

    /// Updates the entry (`dest`, `src`) if it exists; false if it does not.
    pub fn touch_reach(&mut self, dest: &Dest, src: IpAddr, end: i64) -> bool {
        let src = Host::from(src);
        let Some(i) = self.reach.find(dest, src) else {
            return false;
        };
        if let Some(s) = self.reach.slots.get_mut(i as usize) {
            s.at = s.at.max(when(end));
        }
        if let Some(c) = &mut self.changes {
            c.reach.mark(i);
        }
        true
    }

    /// Adds the entry (`dest`, `src`), which must not exist.
    pub fn add_reach(&mut self, dest: Dest, src: IpAddr, end: i64) {
        let host = Host::from(src);
        let at = when(end);
        *self.counts.entry(dest.clone()).or_insert(0) += 1;
        let t = reach_tag(&dest, host);
        let slot = self.reach.add(t, ReachSlot { dest, host, at });
        self.reach_expiry.push(Expiring { at, slot });
        if let Some(c) = &mut self.changes {
            c.reach.mark(slot);
        }
    }

    /// Frees reach slot `i` and counts its destination out.
    fn drop_reach_slot(&mut self, i: u32) -> Option<(Dest, Host)> {
        let host = self.reach.slots.get(i as usize)?.host;
        let dest = self.reach.free(i)?;
        if let Some(n) = self.counts.get_mut(&dest) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&dest);
            }
        }
        Some((dest, host))
    }

    /// Fetches into cache what [`Prevalence::source`] and [`Prevalence::touch_reach`] will read for
    /// (`dest`, `src`): the index buckets (`slot` false), or the slots they likely name. A hint only.
    pub fn prefetch(&self, dest: &Dest, src: IpAddr, slot: bool) {
        let host = Host::from(src);
        self.sources.prefetch(tag(&host), slot);
        self.reach.prefetch(reach_tag(dest, host), slot);
    }

    /// Fetches into cache the index bucket [`Prevalence::restore_source`] reads for `src` (a hint).
    pub fn prefetch_source(&self, src: IpAddr) {
        self.sources.prefetch(tag(&Host::from(src)), false);
    }

    /// Fetches into cache the index bucket [`Prevalence::restore_reach`] reads for (`dest`, `src`).
    pub fn prefetch_reach(&self, dest: &Dest, src: IpAddr) {
        self.reach.prefetch(reach_tag(dest, Host::from(src)), false);
    }

    /// Drops entries last seen before `oldest`; returns how many reach entries went.
    pub fn sweep(&mut self, oldest: i64) -> usize {
        let mut gone = 0;
        while self.source_expiry.peek().is_some_and(|x| x.at < oldest) {
            let Some(Expiring { slot, .. }) = self.source_expiry.pop() else {
                break;
            };
            let Some(s) = self.sources.slots.get(slot as usize).copied() else {
                continue;
            };
            if s.at == FREE {
                continue;
            }
            if s.at >= oldest {
                // Seen since: queued again, at its newer time.
                self.source_expiry.push(Expiring { at: s.at, slot });
            } else {
                self.sources.free(slot, s.host);
                if let Some(c) = &mut self.changes {
                    c.dropped_sources.push(s.host);
                }
            }
        }
        while self.reach_expiry.peek().is_some_and(|x| x.at < oldest) {
            let Some(Expiring { slot, .. }) = self.reach_expiry.pop() else {
                break;
            };
            let Some(at) = self.reach.slots.get(slot as usize).map(|s| s.at) else {
                continue;
            };
            if at == FREE {
                continue;
            }
            if at >= oldest {
                self.reach_expiry.push(Expiring { at, slot });
            } else if let Some(key) = self.drop_reach_slot(slot) {
                gone += 1;
                if let Some(c) = &mut self.changes {
                    c.dropped_reach.push(key);
                }
            }
        }
        gone
    }

    /// (sources that reached `dest`, internal sources): exact once swept to the window's oldest time.
    pub fn counts(&self, dest: &Dest) -> (usize, usize) {
        let reached = self.counts.get(dest).map_or(0, |n| *n as usize);
        (reached, self.sources.index.len())
    }

    pub fn sources_len(&self) -> usize {
        self.sources.index.len()
    }

    pub fn reach_len(&self) -> usize {
        self.reach.index.len()
    }

    /// Room for `sources` more sources and `reach` more (destination, source) entries.
    pub fn reserve(&mut self, sources: usize, reach: usize) {
        self.sources.reserve(sources);
        self.source_expiry.reserve(sources);
        self.reach.reserve(reach);
        self.reach_expiry.reserve(reach);
    }

    /// Every internal source seen, with when last.
    pub fn sources(&self) -> impl Iterator<Item = (IpAddr, i64)> + '_ {
        self.sources
            .slots
            .iter()
            .filter(|s| s.at != FREE)
            .map(|s| (IpAddr::from(s.host), s.at))
    }

    /// Every (destination, source) reached, with when last.
    pub fn reach(&self) -> impl Iterator<Item = (&Dest, IpAddr, i64)> + '_ {
        self.reach
            .slots
            .iter()
            .filter(|s| s.at != FREE)
            .map(|s| (&s.dest, IpAddr::from(s.host), s.at))
    }

    pub fn track_changes(&mut self) {
        if self.changes.is_none() {
            self.changes = Some(Box::default());
        }
    }

    pub fn clear_changes(&mut self) {
        if let Some(c) = &mut self.changes {
            c.sources.clear();
            c.reach.clear();
            c.dropped_sources.clear();
            c.dropped_reach.clear();
        }
    }

    /// The sources changed since [`Prevalence::clear_changes`], to apply in this order: those dropped,
    /// as they are now (`None` unless written again since), then those written.
    pub fn changed_sources(&self) -> impl Iterator<Item = (IpAddr, Option<i64>)> + '_ {
        let c = self.changes.as_deref();
        let dropped = c.into_iter().flat_map(|c| c.dropped_sources.iter());
        let written = c.into_iter().flat_map(|c| c.sources.list.iter());
        let now = |h: Host| {
            let i = self.sources.find(h)?;
            self.sources.slots.get(i as usize).map(|s| s.at)
        };
        dropped.map(move |h| (IpAddr::from(*h), now(*h))).chain(
            written
                .filter_map(|&i| self.sources.slots.get(i as usize))
                .filter(|s| s.at != FREE)
                .map(|s| (IpAddr::from(s.host), Some(s.at))),
        )
    }

    /// The (destination, source) entries changed since [`Prevalence::clear_changes`], to apply in this
    /// order: those dropped, as they are now (`None` unless written again since), then those written.
    pub fn changed_reach(&self) -> impl Iterator<Item = (&Dest, IpAddr, Option<i64>)> + '_ {
        let c = self.changes.as_deref();
        let dropped = c.into_iter().flat_map(|c| c.dropped_reach.iter());
        let written = c.into_iter().flat_map(|c| c.reach.list.iter());
        let now = |d: &Dest, h: Host| {
            let i = self.reach.find(d, h)?;
            self.reach.slots.get(i as usize).map(|s| s.at)
        };
        dropped
            .map(move |(d, h)| (d, IpAddr::from(*h), now(d, *h)))
            .chain(
                written
                    .filter_map(|&i| self.reach.slots.get(i as usize))
                    .filter(|s| s.at != FREE)
                    .map(|s| (&s.dest, IpAddr::from(s.host), Some(s.at))),
            )
    }

    /// Puts a saved source back (`None`: drops it), restoring a checkpoint.
    pub fn restore_source(&mut self, src: IpAddr, at: Option<i64>) {
        let host = Host::from(src);
        let found = self.sources.find(host);
        match at.map(when) {
            Some(at) => match found {
                Some(slot) => {
                    if let Some(s) = self.sources.slots.get_mut(slot as usize) {
                        // A queue item is needed unless one at or before `at` exists (the key was there,
                        // newer).
                        let older = at < s.at;
                        s.at = at;
                        if older {
                            self.source_expiry.push(Expiring { at, slot });
                        }
                    }
                }
                None => {
                    let slot = self.sources.add(tag(&host), SourceSlot { host, at });
                    self.source_expiry.push(Expiring { at, slot });
                }
            },
            None => {
                if let Some(i) = found {
                    self.sources.free(i, host);
                }
            }
        }
    }

    /// Puts a saved (destination, source) entry back (`None`: drops it), restoring a checkpoint.
    pub fn restore_reach(&mut self, dest: Dest, src: IpAddr, at: Option<i64>) {
        let host = Host::from(src);
        let found = self.reach.find(&dest, host);
        match at.map(when) {
            Some(at) => match found {
                Some(slot) => {
                    if let Some(s) = self.reach.slots.get_mut(slot as usize) {
                        let older = at < s.at;
                        s.at = at;
                        if older {
                            self.reach_expiry.push(Expiring { at, slot });
                        }
                    }
                }
                None => self.add_reach(dest, src, at),
            },
            None => {
                if let Some(i) = found {
                    self.drop_reach_slot(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_round_trip_and_a_mapped_address_is_its_ipv4_source() {
        for ip in [
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().expect("address");
            assert_eq!(IpAddr::from(Host::from(ip)), ip);
        }
        let mut p = Prevalence::default();
        let dest = Dest::Addr("198.51.100.1".parse().expect("address"));
        for (src, end) in [("10.0.0.1", 5), ("::ffff:10.0.0.1", 7), ("::1", 6)] {
            let src: IpAddr = src.parse().expect("address");
            p.source(src, end);
            if !p.touch_reach(&dest, src, end) {
                p.add_reach(dest.clone(), src, end);
            }
        }
        assert_eq!(p.counts(&dest), (2, 2));
        let mut sources: Vec<(IpAddr, i64)> = p.sources().collect();
        sources.sort();
        let v4: IpAddr = "10.0.0.1".parse().expect("address");
        let v6: IpAddr = "::1".parse().expect("address");
        assert_eq!(sources, vec![(v4, 7), (v6, 6)]);
        // Both expire by their own time.
        p.sweep(7);
        assert_eq!(p.counts(&dest), (1, 1));
    }

    /// What a detector's record does: the source seen, and its entry updated or added.
    fn see(p: &mut Prevalence, dest: &Dest, src: IpAddr, end: i64) {
        p.source(src, end);
        if !p.touch_reach(dest, src, end) {
            p.add_reach(dest.clone(), src, end);
        }
    }

    type Content = (Vec<(IpAddr, i64)>, Vec<(Dest, IpAddr, i64)>);

    /// The sources and entries, sorted: what two states compare by.
    fn content(p: &Prevalence) -> Content {
        let mut s: Vec<_> = p.sources().collect();
        s.sort();
        let mut r: Vec<_> = p.reach().map(|(d, s, at)| (d.clone(), s, at)).collect();
        r.sort();
        (s, r)
    }

    /// Whether queue `q` holds an item for slot `i` no later than `at`.
    fn queued(q: &BinaryHeap<Expiring>, i: u32, at: i64) -> bool {
        q.iter().any(|x| {
            let (slot, t) = (x.slot, x.at);
            slot == i && t <= at
        })
    }

    /// The tables agree: every slot in use is indexed, has a queue item no later than its time and is
    /// counted; every other is listed free.
    fn check(p: &Prevalence) {
        for (i, s) in p.sources.slots.iter().enumerate() {
            let i = i as u32;
            if s.at == FREE {
                assert!(
                    p.sources.free.contains(&i),
                    "source slot {i} neither used nor free"
                );
            } else {
                assert_eq!(p.sources.find(s.host), Some(i));
                assert!(
                    queued(&p.source_expiry, i, s.at),
                    "source slot {i} not queued"
                );
            }
        }
        assert_eq!(
            p.sources.index.len() + p.sources.free.len(),
            p.sources.slots.len()
        );
        let mut counts: FxHashMap<Dest, u32> = FxHashMap::default();
        for (i, s) in p.reach.slots.iter().enumerate() {
            let i = i as u32;
            if s.at == FREE {
                assert!(
                    p.reach.free.contains(&i),
                    "entry slot {i} neither used nor free"
                );
                assert_eq!(s.dest, NO_DEST, "a free slot keeps no name");
            } else {
                assert_eq!(p.reach.find(&s.dest, s.host), Some(i));
                assert!(
                    queued(&p.reach_expiry, i, s.at),
                    "entry slot {i} not queued"
                );
                *counts.entry(s.dest.clone()).or_insert(0) += 1;
            }
        }
        assert_eq!(counts, p.counts);
        assert_eq!(
            p.reach.index.len() + p.reach.free.len(),
            p.reach.slots.len()
        );
    }

    fn dest(i: u8) -> Dest {
        match i % 3 {
            0 => Dest::Addr(format!("198.51.100.{i}").parse().expect("address")),
            1 => Dest::Addr(format!("2001:db8::{i}").parse().expect("address")),
            // Longer than a `CompactString` holds inline.
            _ => Dest::Name(format!("a-name-longer-than-twenty-four-bytes-{i}.example").into()),
        }
    }

    fn src(i: u8) -> IpAddr {
        if i % 2 == 0 {
            format!("10.0.0.{i}").parse().expect("address")
        } else {
            format!("fd00::{i}").parse().expect("address")
        }
    }

    #[test]
    fn freed_slots_are_reused_and_their_old_queue_items_do_no_harm() {
        let mut p = Prevalence::default();
        let (a, b) = (dest(2), dest(0));
        see(&mut p, &a, src(1), 1);
        see(&mut p, &a, src(2), 2);
        see(&mut p, &a, src(2), 4);
        assert_eq!(p.counts(&a), (2, 2));
        check(&p);
        assert_eq!(p.sweep(3), 1);
        assert_eq!(p.counts(&a), (1, 1));
        assert_eq!(p.sweep(5), 1);
        assert_eq!(p.counts(&a), (0, 0));
        check(&p);
        // New keys take the freed slots.
        see(&mut p, &b, src(3), 6);
        see(&mut p, &a, src(3), 6);
        assert_eq!((p.sources.slots.len(), p.reach.slots.len()), (2, 2));
        assert_eq!(p.counts(&a), (1, 1));
        assert_eq!(p.counts(&b), (1, 1));
        check(&p);
        // A restore drops entries; a restore to an older time queues again; old items stay harmless.
        p.restore_reach(a.clone(), src(3), None);
        p.restore_reach(b.clone(), src(3), Some(2));
        check(&p);
        see(&mut p, &a, src(4), 7);
        // src(3) (last at 6) goes with its entry; src(4)'s entry takes the slot a restore freed.
        assert_eq!(p.sweep(7), 1);
        assert_eq!(p.counts(&b), (0, 1));
        assert_eq!(p.counts(&a), (1, 1));
        check(&p);
    }

    #[derive(Debug, Clone)]
    enum Op {
        See(u8, u8, i64),
        Sweep(i64),
        Source(u8, Option<i64>),
        Reach(u8, u8, Option<i64>),
        /// Saves the changes into the copy a checkpoint restores, and clears them.
        Save,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let at = || 0i64..40;
        prop_oneof![
            4 => (0u8..6, 0u8..8, at()).prop_map(|(d, s, t)| Op::See(d, s, t)),
            1 => at().prop_map(Op::Sweep),
            1 => (0u8..8, proptest::option::of(at())).prop_map(|(s, t)| Op::Source(s, t)),
            1 => (0u8..6, 0u8..8, proptest::option::of(at())).prop_map(|(d, s, t)| Op::Reach(d, s, t)),
            1 => Just(Op::Save),
        ]
    }

    proptest::proptest! {
        /// Whatever the operations (records in any time order, sweeps to any time, restores of any entry),
        /// the tables hold exactly the entries of a model of plain maps, sweeps drop exactly those last
        /// seen before their time, and a copy restored from the changes (and one from a full save) equals
        /// the state by content.
        #[test]
        fn prevalence_matches_a_brute_force_model(ops in proptest::collection::vec(op(), 1..300)) {
            use std::collections::BTreeMap;
            let mut p = Prevalence::default();
            p.track_changes();
            let mut copy = Prevalence::default();
            let mut sources: BTreeMap<IpAddr, i64> = BTreeMap::new();
            let mut reach: BTreeMap<(Dest, IpAddr), i64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::See(d, s, t) => {
                        see(&mut p, &dest(d), src(s), t);
                        let at = sources.entry(src(s)).or_insert(t);
                        *at = (*at).max(t);
                        let at = reach.entry((dest(d), src(s))).or_insert(t);
                        *at = (*at).max(t);
                    }
                    Op::Sweep(oldest) => {
                        let before = reach.len();
                        sources.retain(|_, at| *at >= oldest);
                        reach.retain(|_, at| *at >= oldest);
                        proptest::prop_assert_eq!(p.sweep(oldest), before - reach.len());
                    }
                    // Restores are not changes: the copy takes them too.
                    Op::Source(s, t) => {
                        p.restore_source(src(s), t);
                        copy.restore_source(src(s), t);
                        match t {
                            Some(t) => sources.insert(src(s), t),
                            None => sources.remove(&src(s)),
                        };
                    }
                    Op::Reach(d, s, t) => {
                        p.restore_reach(dest(d), src(s), t);
                        copy.restore_reach(dest(d), src(s), t);
                        match t {
                            Some(t) => reach.insert((dest(d), src(s)), t),
                            None => reach.remove(&(dest(d), src(s))),
                        };
                    }
                    Op::Save => {
                        for (s, at) in p.changed_sources() {
                            copy.restore_source(s, at);
                        }
                        for (d, s, at) in p.changed_reach() {
                            copy.restore_reach(d.clone(), s, at);
                        }
                        p.clear_changes();
                        proptest::prop_assert_eq!(content(&copy), content(&p));
                        check(&copy);
                    }
                }
                check(&p);
                let want: Content = (
                    sources.iter().map(|(s, at)| (*s, *at)).collect(),
                    reach.iter().map(|((d, s), at)| (d.clone(), *s, *at)).collect(),
                );
                proptest::prop_assert_eq!(content(&p), want);
                for d in 0..6 {
                    let n = reach.keys().filter(|k| k.0 == dest(d)).count();
                    proptest::prop_assert_eq!(p.counts(&dest(d)), (n, sources.len()));
                }
            }
            // A full save restored in another order (other slot numbers) equals the state by content.
            let mut full = Prevalence::default();
            let mut r: Vec<_> = p.reach().map(|(d, s, at)| (d.clone(), s, at)).collect();
            r.reverse();
            for (d, s, at) in r {
                full.restore_reach(d, s, Some(at));
            }
            for (s, at) in p.sources() {
                full.restore_source(s, Some(at));
            }
            check(&full);
            proptest::prop_assert_eq!(content(&full), content(&p));
        }
    }
}
