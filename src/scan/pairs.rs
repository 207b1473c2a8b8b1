//! A flat open-addressing table for the common grouping cases (two IPv4 ends): the key is `orig << 32 |
//! resp` for `by = pair` ([`PairTable`]), with `resp_p` and the protocol below it for `by = pair-port`
//! ([`PortTable`]), and lives in the slot next to its sums, so a lookup touches one cache line where a
//! general hash map touches its control bytes and then the entry. With ~100k groups per worker the table
//! does not fit in cache, and this lookup is most of a worker's cost.
//!
//! Each slot also holds a `lead`: the index of its group's row in the single table when `scan --top 0`
//! keeps the longest connection of each group ([`NO_LEAD`] otherwise), so that keeping it costs no
//! second lookup.

/// The `lead` of a slot without a row.
pub const NO_LEAD: u32 = u32::MAX;

/// The sums of one IPv4 pair.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairAgg {
    pub total_ns: u64,
    pub count: u64,
    pub longest_ns: u64,
    pub bytes: u64,
}

impl PairAgg {
    pub fn merge(&mut self, o: &PairAgg) {
        self.total_ns = self.total_ns.saturating_add(o.total_ns);
        self.count += o.count;
        self.longest_ns = self.longest_ns.max(o.longest_ns);
        self.bytes = self.bytes.saturating_add(o.bytes);
    }
}

/// A key of a [`FlatTable`]: `EMPTY` marks a free slot, so that one key cannot be stored (see
/// [`FlatTable::slot`]).
pub trait FlatKey: Copy + Eq {
    const EMPTY: Self;
    /// 64 bits that depend on every bit of the key, for the slot index.
    fn fold(self) -> u64;
}

impl FlatKey for u64 {
    /// 255.255.255.255 to itself.
    const EMPTY: u64 = u64::MAX;
    #[inline]
    fn fold(self) -> u64 {
        self
    }
}

impl FlatKey for u128 {
    /// Never a [`PortTable`] key (bits 25 to 63 are always zero there).
    const EMPTY: u128 = u128::MAX;
    #[inline]
    fn fold(self) -> u64 {
        ((self >> 64) as u64) ^ (self as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)
    }
}

/// IPv4 pairs.
pub type PairTable = FlatTable<u64>;
/// IPv4 pairs with the responder port and protocol (see `port_key` in the tally).
pub type PortTable = FlatTable<u128>;

/// One slot: key, sums, lead.
type Slot<K> = (K, PairAgg, u32);

#[derive(Debug, Clone)]
pub struct FlatTable<K> {
    slots: Vec<Slot<K>>,
    len: usize,
}

impl<K> Default for FlatTable<K> {
    fn default() -> Self {
        FlatTable {
            slots: Vec::new(),
            len: 0,
        }
    }
}

impl<K: FlatKey> FlatTable<K> {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sums of `key`, inserted as zero if new; `None` for the one key the table cannot hold.
    #[cfg(test)]
    pub fn slot(&mut self, key: K) -> Option<&mut PairAgg> {
        self.slot_lead(key).map(|(agg, _)| agg)
    }

    /// [`FlatTable::slot`] with the slot's lead.
    #[inline]
    pub fn slot_lead(&mut self, key: K) -> Option<(&mut PairAgg, &mut u32)> {
        if key == K::EMPTY {
            return None;
        }
        // Grow at 3/4 full (linear probing stays short).
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = index(key, mask);
        loop {
            let k = self.slots[i].0;
            if k == key {
                let (_, agg, lead) = &mut self.slots[i];
                return Some((agg, lead));
            }
            if k == K::EMPTY {
                self.len += 1;
                self.slots[i] = (key, PairAgg::default(), NO_LEAD);
                let (_, agg, lead) = &mut self.slots[i];
                return Some((agg, lead));
            }
            i = (i + 1) & mask;
        }
    }

    /// Asks the CPU to start loading `key`'s slot now, so a later [`PairTable::slot`] finds it in cache
    /// (a hint only: no effect on results).
    #[inline]
    pub fn prefetch(&self, key: K) {
        if self.slots.is_empty() {
            return;
        }
        let slot = &self.slots[index(key, self.slots.len() - 1)];
        crate::prefetch::prefetch(slot);
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(1024);
        let empty = (K::EMPTY, PairAgg::default(), NO_LEAD);
        let old = std::mem::replace(&mut self.slots, vec![empty; cap]);
        self.len = 0;
        for (k, v, l) in old {
            if k != K::EMPTY {
                if let Some((s, lead)) = self.slot_lead(k) {
                    *s = v;
                    *lead = l;
                }
            }
        }
    }

    /// The stored pairs, in no particular order.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, PairAgg)> {
        self.drain_leads().map(|(k, v, _)| (k, v))
    }

    /// The stored pairs with their leads, in no particular order.
    pub fn drain_leads(&mut self) -> impl Iterator<Item = (K, PairAgg, u32)> {
        self.len = 0;
        std::mem::take(&mut self.slots)
            .into_iter()
            .filter(|(k, _, _)| *k != K::EMPTY)
    }
}

/// Fibonacci hashing: the high bits of the product mix every bit of the key.
#[inline]
fn index<K: FlatKey>(key: K, mask: usize) -> usize {
    (key.fold().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn same_sums_as_a_hash_map() {
        let mut t = PairTable::default();
        let mut m: HashMap<u64, PairAgg> = HashMap::new();
        let mut x: u64 = 1;
        for i in 0..50_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = (x >> 40) << 32 | (x >> 50); // many repeats, some collisions in the low bits
            let add = PairAgg {
                total_ns: i,
                count: 1,
                longest_ns: i % 97,
                bytes: i * 3,
            };
            if let Some(s) = t.slot(key) {
                s.merge(&add);
            }
            m.entry(key).or_default().merge(&add);
        }
        assert_eq!(t.slot(u64::EMPTY), None);
        let mut got: Vec<_> = t.drain().collect();
        got.sort_by_key(|(k, _)| *k);
        let m_len = m.len();
        let mut want: Vec<_> = m.into_iter().collect();
        want.sort_by_key(|(k, _)| *k);
        assert_eq!(got.len(), m_len);
        assert_eq!(got, want);
        assert!(t.is_empty());
    }
}
