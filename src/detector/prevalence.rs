//! Prevalence bookkeeping for the `common_destination` and `rare_destination` modifiers: which internal
//! sources were seen in the window, and which of them reached each destination (its name when known,
//! else its address), exact for the window at every query.
//!
//! Layout, for the detector's hot path (every outbound record updates two entries): one flat map from
//! (destination, source) to when last, a count of sources per destination, and a map of sources. An
//! expiry queue holds, for every entry, one item at a time no later than the entry's: a min-heap ordered by
//! time alone (the key rides along, uncompared), so queue operations compare integers only. When
//! an item is popped once older than the window, its entry goes if it was not seen since, else the item
//! is queued again at the entry's newer time. A query is then two lookups, not a scan.
//!
//! Sources are kept as 16 bytes ([`Host`], an IPv4 address in its IPv4-mapped IPv6 form, as Zeek holds
//! addresses), which makes every entry and queue item 8 bytes smaller than with `IpAddr` (17 bytes, padded).
//! An IPv6 address in `::ffff:0:0/96` is therefore the same source as its IPv4 address.

use super::context::Dest;
use rustc_hash::{FxHashMap, FxHashSet};
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

/// The (destination, source) map: `hashbrown`'s, so that [`ReachRef`] looks entries up by reference.
type ReachMap = hashbrown::HashMap<(Dest, Host), i64, rustc_hash::FxBuildHasher>;

/// A key of [`ReachMap`] by reference: a lookup does not clone the destination (a name longer than 24
/// bytes would be an allocation per record). Hashes as the tuple does: the destination, then the host.
#[derive(Hash)]
struct ReachRef<'a>(&'a Dest, Host);

impl hashbrown::Equivalent<(Dest, Host)> for ReachRef<'_> {
    fn equivalent(&self, key: &(Dest, Host)) -> bool {
        *self.0 == key.0 && self.1 == key.1
    }
}

/// An item of an expiry queue: ordered by time only (the order among equal times does not matter: every
/// item older than the window is popped), reversed so that `BinaryHeap` (a max-heap) pops the oldest first.
#[derive(Debug, Clone)]
struct Expiring<K> {
    at: i64,
    key: K,
}

impl<K> PartialEq for Expiring<K> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl<K> Eq for Expiring<K> {}

impl<K> PartialOrd for Expiring<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Expiring<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at)
    }
}

/// Keys of entries written, updated or dropped since the last checkpoint.
#[derive(Debug, Clone, Default)]
struct Changes {
    sources: FxHashSet<Host>,
    reach: hashbrown::HashSet<(Dest, Host), rustc_hash::FxBuildHasher>,
}

/// See the module doc.
#[derive(Debug, Clone, Default)]
pub struct Prevalence {
    /// Internal sources seen: when last.
    sources: FxHashMap<Host, i64>,
    /// (destination, internal source) -> when last.
    reach: ReachMap,
    /// destination -> entries of `reach` for it.
    counts: FxHashMap<Dest, u32>,
    /// One item per source, oldest first.
    source_expiry: BinaryHeap<Expiring<Host>>,
    /// One item per (destination, source) entry, oldest first.
    reach_expiry: BinaryHeap<Expiring<(Dest, Host)>>,
    changes: Option<Box<Changes>>,
}

impl Prevalence {
    /// Records that the internal source `src` was seen at `end`.
    pub fn source(&mut self, src: IpAddr, end: i64) {
        let src = Host::from(src);
        match self.sources.get_mut(&src) {
            Some(at) => *at = (*at).max(end),
            None => {
                self.sources.insert(src, end);
                self.source_expiry.push(Expiring { at: end, key: src });
            }
        }
        if let Some(c) = &mut self.changes {
            c.sources.insert(src);
        }
    }

    /// Updates the entry (`dest`, `src`) if it exists; false if it does not.
    pub fn touch_reach(&mut self, dest: &Dest, src: IpAddr, end: i64) -> bool {
        let src = Host::from(src);
        if let Some(c) = &mut self.changes {
            if !c.reach.contains(&ReachRef(dest, src)) {
                c.reach.insert((dest.clone(), src));
            }
        }
        match self.reach.get_mut(&ReachRef(dest, src)) {
            Some(at) => {
                *at = (*at).max(end);
                true
            }
            None => false,
        }
    }

    /// Adds the entry (`dest`, `src`), which must not exist.
    pub fn add_reach(&mut self, dest: Dest, src: IpAddr, end: i64) {
        let src = Host::from(src);
        *self.counts.entry(dest.clone()).or_insert(0) += 1;
        self.reach.insert((dest.clone(), src), end);
        self.reach_expiry.push(Expiring {
            at: end,
            key: (dest, src),
        });
    }

    fn drop_reach(&mut self, dest: &Dest, src: Host) -> bool {
        if self.reach.remove(&ReachRef(dest, src)).is_none() {
            return false;
        }
        if let Some(n) = self.counts.get_mut(dest) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(dest);
            }
        }
        true
    }

    /// Drops entries last seen before `oldest`; returns how many reach entries went.
    pub fn sweep(&mut self, oldest: i64) -> usize {
        let mut gone = 0;
        while self.source_expiry.peek().is_some_and(|x| x.at < oldest) {
            let Some(Expiring { key: src, .. }) = self.source_expiry.pop() else {
                break;
            };
            match self.sources.get(&src).copied() {
                // Seen since: queued again, at its newer time.
                Some(at) if at >= oldest => self.source_expiry.push(Expiring { at, key: src }),
                Some(_) => {
                    self.sources.remove(&src);
                    if let Some(c) = &mut self.changes {
                        c.sources.insert(src);
                    }
                }
                None => {}
            }
        }
        while self.reach_expiry.peek().is_some_and(|x| x.at < oldest) {
            let Some(Expiring { key, .. }) = self.reach_expiry.pop() else {
                break;
            };
            match self.reach.get(&key).copied() {
                Some(at) if at >= oldest => self.reach_expiry.push(Expiring { at, key }),
                Some(_) => {
                    if self.drop_reach(&key.0, key.1) {
                        gone += 1;
                    }
                    if let Some(c) = &mut self.changes {
                        c.reach.insert(key);
                    }
                }
                None => {}
            }
        }
        gone
    }

    /// (sources that reached `dest`, internal sources): exact once swept to the window's oldest time.
    pub fn counts(&self, dest: &Dest) -> (usize, usize) {
        let reached = self.counts.get(dest).map_or(0, |n| *n as usize);
        (reached, self.sources.len())
    }

    pub fn sources_len(&self) -> usize {
        self.sources.len()
    }

    pub fn reach_len(&self) -> usize {
        self.reach.len()
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
        self.sources.iter().map(|(k, v)| (IpAddr::from(*k), *v))
    }

    /// Every (destination, source) reached, with when last.
    pub fn reach(&self) -> impl Iterator<Item = (&Dest, IpAddr, i64)> + '_ {
        self.reach
            .iter()
            .map(|((d, s), at)| (d, IpAddr::from(*s), *at))
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
        }
    }

    /// The sources changed since [`Prevalence::clear_changes`]: `None` for one dropped.
    pub fn changed_sources(&self) -> impl Iterator<Item = (IpAddr, Option<i64>)> + '_ {
        self.changes
            .iter()
            .flat_map(|c| c.sources.iter())
            .map(|s| (IpAddr::from(*s), self.sources.get(s).copied()))
    }

    /// The (destination, source) entries changed since [`Prevalence::clear_changes`]: `None` for one
    /// dropped.
    pub fn changed_reach(&self) -> impl Iterator<Item = (&Dest, IpAddr, Option<i64>)> + '_ {
        self.changes
            .iter()
            .flat_map(|c| c.reach.iter())
            .map(|(d, s)| {
                let at = self.reach.get(&ReachRef(d, *s)).copied();
                (d, IpAddr::from(*s), at)
            })
    }

    /// Puts a saved source back (`None`: drops it), restoring a checkpoint.
    pub fn restore_source(&mut self, src: IpAddr, at: Option<i64>) {
        let src = Host::from(src);
        match at {
            Some(at) => {
                // A queue item is needed unless one at or before `at` exists (the key was there, newer).
                if self
                    .sources
                    .insert(src, at)
                    .map_or(true, |before| at < before)
                {
                    self.source_expiry.push(Expiring { at, key: src });
                }
            }
            None => {
                self.sources.remove(&src);
            }
        }
    }

    /// Puts a saved (destination, source) entry back (`None`: drops it), restoring a checkpoint.
    pub fn restore_reach(&mut self, dest: Dest, src: IpAddr, at: Option<i64>) {
        match at {
            Some(at) => match self.reach.get_mut(&ReachRef(&dest, Host::from(src))) {
                Some(before) => {
                    let older = at < *before;
                    *before = at;
                    if older {
                        self.reach_expiry.push(Expiring {
                            at,
                            key: (dest, Host::from(src)),
                        });
                    }
                }
                None => self.add_reach(dest, src, at),
            },
            None => {
                self.drop_reach(&dest, Host::from(src));
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
}
