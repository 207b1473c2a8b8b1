//! The window's group index: group key -> slot number, a [`SlotIndex`] whose slots are the window's
//! [`Slot`]s, compared by their key. See `src/index.rs` for the table and why it is the crate's own.

use super::{GroupKey, Slot};
use crate::index::{tag, SlotIndex};

/// See the module doc.
#[derive(Debug, Clone, Default)]
pub(super) struct Index(SlotIndex);

/// Whether slot `i` of `slots` holds `key`.
fn holds<'a, T>(slots: &'a [Slot<T>], key: &GroupKey) -> impl Fn(u32) -> bool + 'a {
    let key = *key;
    move |i| slots.get(i as usize).is_some_and(|s| s.key == key)
}

impl Index {
    pub(super) fn get<T>(&self, slots: &[Slot<T>], key: &GroupKey) -> Option<u32> {
        self.0.get(tag(key), holds(slots, key))
    }

    /// A prefetch hint: the slot of `key` in nearly every case, read from the buckets alone.
    pub(super) fn likely(&self, key: &GroupKey) -> Option<u32> {
        self.0.likely(tag(key))
    }

    pub(super) fn prefetch(&self, key: &GroupKey) {
        self.0.prefetch(tag(key));
    }

    /// Adds `key` at slot `i` (whose key it must be); the key must not be indexed yet.
    pub(super) fn insert(&mut self, key: &GroupKey, i: u32) {
        self.0.insert(tag(key), i);
    }

    pub(super) fn remove<T>(&mut self, slots: &[Slot<T>], key: &GroupKey) -> Option<u32> {
        self.0.remove(tag(key), holds(slots, key))
    }

    pub(super) fn reserve(&mut self, n: usize) {
        self.0.reserve(n);
    }

    pub(super) fn retain(&mut self, f: impl FnMut(&mut u32) -> bool) {
        self.0.retain(f);
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}
