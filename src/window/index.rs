//! The window's group index: group key -> slot number, an open-addressing table built so that a record's
//! bucket and slot can be fetched into cache *before* the record is processed ([`Index::prefetch`],
//! [`Index::likely`]).
//!
//! Why not `hashbrown`: the detector is bound by memory latency (a profile of `replay` puts most of the
//! index lookup's time on two loads: the control bytes and the slot's key), and hiding that latency
//! means prefetching a record's bucket a few records ahead, which needs the bucket's address from the
//! hash alone. `hashbrown`'s `HashTable` does not expose it. This table does, and stays small:
//!
//! - A bucket is 8 bytes: the upper 32 bits of the key's hash (the *tag*) and the slot number plus one
//!   (0 marks an empty bucket). A key's home bucket is `tag & mask`, so one cache line read from the home
//!   on holds the record's bucket in nearly every case (linear probing, at most 3/4 full).
//! - A key compare reads the slot only when the 32-bit tag matches, so a lookup touches one bucket line
//!   and the slot the record uses next anyway.
//! - Removal shifts the following buckets back (no tombstones), so lookups never slow down with churn.
//! - Growing rehashes from the stored tags alone, without reading a slot.

use super::{GroupKey, Slot};

/// Hash of a group key: the upper half of its FxHash (the lower bits of FxHash mix less well).
pub(super) fn hash_key(k: &GroupKey) -> u32 {
    use std::hash::BuildHasher;
    (rustc_hash::FxBuildHasher.hash_one(k) >> 32) as u32
}

/// See the module doc.
#[derive(Debug, Clone, Default)]
pub(super) struct Index {
    /// `tag << 32 | (slot + 1)`; 0 is empty. Length 0 or a power of two.
    buckets: Vec<u64>,
    len: usize,
}

fn bucket(tag: u32, slot: u32) -> u64 {
    (u64::from(tag) << 32) | (u64::from(slot) + 1)
}

fn tag_of(b: u64) -> u32 {
    (b >> 32) as u32
}

fn slot_of(b: u64) -> u32 {
    (b as u32).wrapping_sub(1)
}

impl Index {
    fn mask(&self) -> usize {
        self.buckets.len().wrapping_sub(1)
    }

    /// The position of the first bucket, from `key`'s home up to an empty one, whose tag is `key`'s and
    /// for which `is` holds.
    fn probe(&self, key: &GroupKey, mut is: impl FnMut(u64) -> bool) -> Option<usize> {
        if self.buckets.is_empty() {
            return None;
        }
        let tag = hash_key(key);
        let mask = self.mask();
        let mut i = tag as usize & mask;
        loop {
            let b = *self.buckets.get(i)?;
            if b == 0 {
                return None;
            }
            if tag_of(b) == tag && is(b) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The bucket position holding `key`, if indexed.
    fn position<T>(&self, slots: &[Slot<T>], key: &GroupKey) -> Option<usize> {
        self.probe(key, |b| {
            slots
                .get(slot_of(b) as usize)
                .is_some_and(|s| s.key == *key)
        })
    }

    pub(super) fn get<T>(&self, slots: &[Slot<T>], key: &GroupKey) -> Option<u32> {
        let i = self.position(slots, key)?;
        self.buckets.get(i).map(|&b| slot_of(b))
    }

    /// The slot of the first bucket from `key`'s home whose tag matches, without reading any slot: the
    /// group's slot in nearly every case (a different key with the same 32-bit tag is the exception), for
    /// a prefetch hint only.
    pub(super) fn likely(&self, key: &GroupKey) -> Option<u32> {
        let i = self.probe(key, |_| true)?;
        self.buckets.get(i).map(|&b| slot_of(b))
    }

    /// Asks the CPU to fetch `key`'s home bucket into cache (a hint: no effect on the table).
    pub(super) fn prefetch(&self, key: &GroupKey) {
        if self.buckets.is_empty() {
            return;
        }
        let i = hash_key(key) as usize & self.mask();
        if let Some(b) = self.buckets.get(i) {
            crate::prefetch::prefetch(b);
        }
    }

    /// Adds `key` at slot `i` (whose key it must be); the key must not be indexed yet.
    pub(super) fn insert(&mut self, key: &GroupKey, i: u32) {
        self.reserve(1);
        self.place(bucket(hash_key(key), i));
        self.len += 1;
    }

    /// Puts a bucket in the first empty place from its home (room must exist).
    fn place(&mut self, b: u64) {
        let mask = self.mask();
        let mut i = tag_of(b) as usize & mask;
        while let Some(x) = self.buckets.get_mut(i) {
            if *x == 0 {
                *x = b;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    pub(super) fn remove<T>(&mut self, slots: &[Slot<T>], key: &GroupKey) -> Option<u32> {
        let i = self.position(slots, key)?;
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
                Some(&b) if b != 0 => b,
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
        self.buckets[i] = 0;
    }

    /// Room for `n` more keys without growing (at most 3/4 full).
    pub(super) fn reserve(&mut self, n: usize) {
        let need = self.len.saturating_add(n);
        if need.saturating_mul(4) <= self.buckets.len().saturating_mul(3) {
            return;
        }
        let mut cap = self.buckets.len().max(16);
        while need.saturating_mul(4) > cap.saturating_mul(3) {
            cap = cap.saturating_mul(2);
        }
        let old = std::mem::replace(&mut self.buckets, vec![0; cap]);
        for b in old.into_iter().filter(|&b| b != 0) {
            self.place(b);
        }
    }

    /// Keeps the slots for which `f` is true.
    pub(super) fn retain(&mut self, mut f: impl FnMut(&mut u32) -> bool) {
        let mut kept = Vec::with_capacity(self.len);
        for b in self.buckets.iter_mut() {
            if *b != 0 {
                let mut slot = slot_of(*b);
                if f(&mut slot) {
                    kept.push(bucket(tag_of(*b), slot));
                }
                *b = 0;
            }
        }
        self.len = kept.len();
        for b in kept {
            self.place(b);
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets
            .iter()
            .filter(|&&b| b != 0)
            .map(|&b| slot_of(b))
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn clear(&mut self) {
        self.buckets.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    fn key(n: u32) -> GroupKey {
        GroupKey {
            orig: IpAddr::V4(Ipv4Addr::from(n)),
            resp: IpAddr::V4(Ipv4Addr::from(n.wrapping_mul(7))),
            port: 0,
            proto: 0,
        }
    }

    /// Random inserts, removals and retains against a `HashMap`, on a table small enough that probe
    /// runs wrap around its end and collide often.
    #[test]
    fn agrees_with_a_hash_map_under_churn() {
        let mut slots: Vec<Slot<()>> = Vec::new();
        let mut index = Index::default();
        let mut model: HashMap<GroupKey, u32> = HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for round in 0..20_000u32 {
            let k = key(rnd(300) as u32);
            match rnd(10) {
                0..=5 => {
                    if let std::collections::hash_map::Entry::Vacant(e) = model.entry(k) {
                        slots.push(Slot {
                            key: k,
                            ..Slot::default()
                        });
                        let i = (slots.len() - 1) as u32;
                        index.insert(&k, i);
                        e.insert(i);
                    }
                }
                6..=8 => {
                    assert_eq!(index.remove(&slots, &k), model.remove(&k));
                }
                _ => {
                    let drop_odd = round % 2 == 0;
                    index.retain(|i| !(drop_odd && *i % 2 == 1));
                    if drop_odd {
                        model.retain(|_, i| *i % 2 == 0);
                    }
                }
            }
            assert_eq!(index.len(), model.len());
            if round % 97 == 0 {
                for n in 0..300 {
                    let k = key(n);
                    assert_eq!(index.get(&slots, &k), model.get(&k).copied(), "key {n}");
                    if let Some(&i) = model.get(&k) {
                        assert_eq!(index.likely(&k), Some(i));
                    }
                }
                let mut all: Vec<u32> = index.iter().collect();
                all.sort_unstable();
                let mut want: Vec<u32> = model.values().copied().collect();
                want.sort_unstable();
                assert_eq!(all, want);
            }
        }
    }

    #[test]
    fn grows_and_stays_at_most_three_quarters_full() {
        let mut slots: Vec<Slot<()>> = Vec::new();
        let mut index = Index::default();
        for n in 0..10_000 {
            slots.push(Slot {
                key: key(n),
                ..Slot::default()
            });
            index.insert(&key(n), n);
            assert!(index.len() * 4 <= index.buckets.len() * 3);
        }
        assert!((0..10_000).all(|n| index.get(&slots, &key(n)) == Some(n)));
        index.clear();
        assert!(index.is_empty() && index.get(&slots, &key(1)).is_none());
    }
}
