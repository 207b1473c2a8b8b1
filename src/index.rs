//! An open-addressing index from a key's 32-bit hash tag to a slot number, for tables that keep their
//! entries in a `Vec` of slots: the window's groups and the prevalence entries. It is built so that a
//! record's bucket and slot can be fetched into cache *before* the record is processed
//! ([`SlotIndex::prefetch`], [`SlotIndex::likely`]).
//!
//! Why not `hashbrown`: the detector is bound by memory latency (a profile of `replay` puts most of a
//! lookup's time on two loads: the control bytes and the slot's key), and hiding that latency means
//! prefetching a record's bucket a few records ahead, which needs the bucket's address from the hash
//! alone. `hashbrown`'s `HashTable` does not expose it. This table does, and stays small:
//!
//! - A bucket is 8 bytes: the tag (the upper 32 bits of the key's hash, [`tag`]) and the slot number
//!   ([`EMPTY`], all ones, marks an empty bucket: slot `u32::MAX` is never used). Empty buckets are
//!   written, not zero: a fresh table's pages are then the process's own from the start. With zero as
//!   empty the allocator hands out untouched zero pages, and the first insert into each page after a
//!   lookup read it takes a copy-on-write fault with a TLB flush on every core the process runs on (a
//!   third of a 1 M-group restore's time, window and prevalence restored side by side). A key's home bucket is `tag & mask`, so one cache line read from
//!   the home on holds the record's bucket in nearly every case (linear probing, at most 3/4 full).
//! - The table never sees a key: a lookup gives the tag and a predicate on slot numbers, which the caller
//!   answers by comparing the slot's key, only for buckets whose 32-bit tag matches. So a lookup touches
//!   one bucket line and the slot the caller uses next anyway.
//! - Removal shifts the following buckets back (no tombstones), so lookups never slow down with churn.
//! - Growing rehashes from the stored tags alone, without reading a slot.

use std::hash::{BuildHasher, Hash};

/// The tag of a key: the upper half of its FxHash (the lower bits of FxHash mix less well).
pub(crate) fn tag<K: Hash + ?Sized>(k: &K) -> u32 {
    (rustc_hash::FxBuildHasher.hash_one(k) >> 32) as u32
}

/// See the module doc.
#[derive(Debug, Clone, Default)]
pub(crate) struct SlotIndex {
    /// `tag << 32 | slot`, or [`EMPTY`]. Length 0 or a power of two.
    buckets: Vec<u64>,
    len: usize,
}

/// An empty bucket.
const EMPTY: u64 = u64::MAX;

/// The bucket of slot `slot` (below `u32::MAX`) under `tag`.
fn bucket(tag: u32, slot: u32) -> u64 {
    debug_assert_ne!(slot, u32::MAX, "slot u32::MAX marks empty buckets");
    (u64::from(tag) << 32) | u64::from(slot)
}

fn tag_of(b: u64) -> u32 {
    (b >> 32) as u32
}

fn slot_of(b: u64) -> u32 {
    b as u32
}

impl SlotIndex {
    fn mask(&self) -> usize {
        self.buckets.len().wrapping_sub(1)
    }

    /// The position of the first bucket, from `key`'s home up to an empty one, whose tag is `key`'s and
    /// for which `is` holds.
    fn probe(&self, tag: u32, mut is: impl FnMut(u32) -> bool) -> Option<usize> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = tag as usize & mask;
        loop {
            let b = *self.buckets.get(i)?;
            if b == EMPTY {
                return None;
            }
            if tag_of(b) == tag && is(slot_of(b)) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The slot indexed under `tag` for which `is` holds (the caller compares the slot's key).
    pub(crate) fn get(&self, tag: u32, is: impl FnMut(u32) -> bool) -> Option<u32> {
        let i = self.probe(tag, is)?;
        self.buckets.get(i).map(|&b| slot_of(b))
    }

    /// The slot of the first bucket from `tag`'s home whose tag matches, without reading any slot: the
    /// key's slot in nearly every case (a different key with the same 32-bit tag is the exception), for
    /// a prefetch hint only.
    pub(crate) fn likely(&self, tag: u32) -> Option<u32> {
        let i = self.probe(tag, |_| true)?;
        self.buckets.get(i).map(|&b| slot_of(b))
    }

    /// Asks the CPU to fetch `tag`'s home bucket into cache (a hint: no effect on the table).
    pub(crate) fn prefetch(&self, tag: u32) {
        if self.buckets.is_empty() {
            return;
        }
        let i = tag as usize & self.mask();
        if let Some(b) = self.buckets.get(i) {
            crate::prefetch::prefetch(b);
        }
    }

    /// Indexes slot `i` under `tag` (its key's); the key must not be indexed yet.
    pub(crate) fn insert(&mut self, tag: u32, i: u32) {
        self.reserve(1);
        self.place(bucket(tag, i));
        self.len += 1;
    }

    /// Puts a bucket in the first empty place from its home (room must exist).
    fn place(&mut self, b: u64) {
        let mask = self.mask();
        let mut i = tag_of(b) as usize & mask;
        while let Some(x) = self.buckets.get_mut(i) {
            if *x == EMPTY {
                *x = b;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Removes the slot indexed under `tag` for which `is` holds; returns it.
    pub(crate) fn remove(&mut self, tag: u32, is: impl FnMut(u32) -> bool) -> Option<u32> {
        let i = self.probe(tag, is)?;
        let b = self.buckets.get(i).copied()?;
        self.erase(i);
        self.len -= 1;
        Some(slot_of(b))
    }

    /// Empties bucket `i` and shifts back the buckets after it that were placed past their home, so
    /// that every bucket stays reachable from its home without a gap (backward-shift deletion).
    fn erase(&mut self, mut i: usize) {
        let mask = self.mask();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let b = match self.buckets.get(j) {
                Some(&b) if b != EMPTY => b,
                _ => break,
            };
            let home = tag_of(b) as usize & mask;
            // Bucket `b` may move to `i` if its home is not in the cyclic range (i, j].
            let home_in_range = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !home_in_range {
                self.buckets[i] = b;
                i = j;
            }
        }
        self.buckets[i] = EMPTY;
    }

    /// Room for `n` more keys without growing (at most 3/4 full).
    pub(crate) fn reserve(&mut self, n: usize) {
        let need = self.len.saturating_add(n);
        if need.saturating_mul(4) <= self.buckets.len().saturating_mul(3) {
            return;
        }
        let mut cap = self.buckets.len().max(16);
        while need.saturating_mul(4) > cap.saturating_mul(3) {
            cap = cap.saturating_mul(2);
        }
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY; cap]);
        for b in old.into_iter().filter(|&b| b != EMPTY) {
            self.place(b);
        }
    }

    /// Keeps the slots for which `f` is true.
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&mut u32) -> bool) {
        let mut kept = Vec::with_capacity(self.len);
        for b in self.buckets.iter_mut() {
            if *b != EMPTY {
                let mut slot = slot_of(*b);
                if f(&mut slot) {
                    kept.push(bucket(tag_of(*b), slot));
                }
                *b = EMPTY;
            }
        }
        self.len = kept.len();
        for b in kept {
            self.place(b);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets
            .iter()
            .filter(|&&b| b != EMPTY)
            .map(|&b| slot_of(b))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A table of keys in slots, indexed: the way the window and prevalence use the index.
    struct Table {
        slots: Vec<u32>,
        index: SlotIndex,
    }

    impl Table {
        fn get(&self, k: u32) -> Option<u32> {
            let slots = &self.slots;
            self.index.get(tag(&k), |i| slots[i as usize] == k)
        }
        fn remove(&mut self, k: u32) -> Option<u32> {
            let slots = &self.slots;
            self.index.remove(tag(&k), |i| slots[i as usize] == k)
        }
    }

    /// Random inserts, removals and retains against a `HashMap`, on a table small enough that probe
    /// runs wrap around its end and collide often.
    #[test]
    fn agrees_with_a_hash_map_under_churn() {
        let mut t = Table {
            slots: Vec::new(),
            index: SlotIndex::default(),
        };
        let mut model: HashMap<u32, u32> = HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for round in 0..20_000u32 {
            let k = rnd(300) as u32;
            match rnd(10) {
                0..=5 => {
                    if let std::collections::hash_map::Entry::Vacant(e) = model.entry(k) {
                        t.slots.push(k);
                        let i = (t.slots.len() - 1) as u32;
                        t.index.insert(tag(&k), i);
                        e.insert(i);
                    }
                }
                6..=8 => {
                    assert_eq!(t.remove(k), model.remove(&k));
                }
                _ => {
                    let drop_odd = round % 2 == 0;
                    t.index.retain(|i| !(drop_odd && *i % 2 == 1));
                    if drop_odd {
                        model.retain(|_, i| *i % 2 == 0);
                    }
                }
            }
            assert_eq!(t.index.len(), model.len());
            if round % 97 == 0 {
                for k in 0..300 {
                    assert_eq!(t.get(k), model.get(&k).copied(), "key {k}");
                    if let Some(&i) = model.get(&k) {
                        assert_eq!(t.index.likely(tag(&k)), Some(i));
                    }
                }
                let mut all: Vec<u32> = t.index.iter().collect();
                all.sort_unstable();
                let mut want: Vec<u32> = model.values().copied().collect();
                want.sort_unstable();
                assert_eq!(all, want);
            }
        }
    }

    #[test]
    fn grows_and_stays_at_most_three_quarters_full() {
        let mut t = Table {
            slots: Vec::new(),
            index: SlotIndex::default(),
        };
        for k in 0..10_000 {
            t.slots.push(k);
            t.index.insert(tag(&k), k);
            assert!(t.index.len() * 4 <= t.index.buckets.len() * 3);
        }
        assert!((0..10_000).all(|k| t.get(k) == Some(k)));
        t.index.clear();
        assert!(t.index.is_empty() && t.get(1).is_none());
    }
}
