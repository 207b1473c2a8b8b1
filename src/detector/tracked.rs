//! A hash map that can remember which of its keys changed, for the incremental checkpoint of the context
//! maps (uid, pair and DNS names, DNS clients): every write goes through it, so no caller can change an
//! entry without the next checkpoint seeing it.
//!
//! Tracking is off until [`Tracked::track`] (the daemon turns it on; `replay` and `scan` never pay for it).
//! While on, each insert or removal puts its key in a set, and the checkpoint writes each key in the set as
//! it is then: its value, or a removal when it is gone. A key is in the set once however often it changed,
//! so a checkpoint writes at most one record per key.

use rustc_hash::{FxHashMap, FxHashSet};
use std::borrow::Borrow;
use std::hash::Hash;

/// See the module doc.
#[derive(Debug, Clone)]
pub struct Tracked<K, V> {
    map: FxHashMap<K, V>,
    /// Keys written or removed since [`Tracked::clear_changes`]; `None` when not tracking.
    changed: Option<FxHashSet<K>>,
}

impl<K, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Tracked {
            map: FxHashMap::default(),
            changed: None,
        }
    }
}

impl<K: Hash + Eq, V> FromIterator<(K, V)> for Tracked<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(it: I) -> Self {
        Tracked {
            map: it.into_iter().collect(),
            ..Tracked::default()
        }
    }
}

impl<K: Hash + Eq + Clone, V> Tracked<K, V> {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(k)
    }

    pub fn contains_key<Q>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(k)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.map.iter()
    }

    fn mark(&mut self, k: &K) {
        if let Some(c) = &mut self.changed {
            if !c.contains(k) {
                c.insert(k.clone());
            }
        }
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.mark(&k);
        self.map.insert(k, v)
    }

    /// The value of `k` to change in place (marked changed).
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        if self.map.contains_key(k) {
            self.mark(k);
        }
        self.map.get_mut(k)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let v = self.map.remove(k);
        if v.is_some() {
            self.mark(k);
        }
        v
    }

    /// Keeps the entries for which `keep` holds; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) -> usize {
        let before = self.map.len();
        match &mut self.changed {
            Some(c) => self.map.retain(|k, v| {
                let kept = keep(k, v);
                if !kept {
                    c.insert(k.clone());
                }
                kept
            }),
            None => self.map.retain(|k, v| keep(k, v)),
        }
        before - self.map.len()
    }

    /// From now on, remember the keys that change.
    pub fn track(&mut self) {
        if self.changed.is_none() {
            self.changed = Some(FxHashSet::default());
        }
    }

    /// A checkpoint saved every change so far.
    pub fn clear_changes(&mut self) {
        if let Some(c) = &mut self.changed {
            c.clear();
            c.shrink_to(1024);
        }
    }

    /// Changes are not tracked: any key may have changed.
    pub fn all_changed(&self) -> bool {
        self.changed.is_none()
    }

    /// The keys changed since [`Tracked::clear_changes`], each with its value now (`None`: removed).
    pub fn changed(&self) -> impl Iterator<Item = (&K, Option<&V>)> + '_ {
        self.changed.iter().flatten().map(|k| (k, self.map.get(k)))
    }

    /// Puts a saved entry back (a restore: not a change).
    pub fn restore(&mut self, k: K, v: Option<V>) {
        match v {
            Some(v) => {
                self.map.insert(k, v);
            }
            None => {
                self.map.remove(&k);
            }
        }
    }

    /// Room for `n` more entries.
    pub fn reserve(&mut self, n: usize) {
        self.map.reserve(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_and_removal_is_seen_once_and_only_while_tracking() {
        let mut m: Tracked<u32, &str> = Tracked::default();
        m.insert(1, "a");
        assert_eq!(m.changed().count(), 0);
        assert!(m.all_changed());
        m.track();
        assert!(!m.all_changed());
        m.insert(2, "b");
        m.insert(2, "c");
        m.remove(&1);
        m.remove(&9);
        if let Some(v) = m.get_mut(&2) {
            *v = "d";
        }
        let mut seen: Vec<_> = m.changed().map(|(k, v)| (*k, v.copied())).collect();
        seen.sort();
        assert_eq!(seen, vec![(1, None), (2, Some("d"))]);
        m.clear_changes();
        m.insert(3, "x");
        m.insert(4, "y");
        assert_eq!(m.retain(|k, _| *k != 3), 1);
        let mut seen: Vec<_> = m.changed().map(|(k, v)| (*k, v.copied())).collect();
        seen.sort();
        assert_eq!(seen, vec![(3, None), (4, Some("y"))]);
        m.restore(5, Some("z"));
        assert_eq!(m.changed().count(), 2);
        assert_eq!(m.get(&5), Some(&"z"));
    }
}
