//! One group's live intervals and the two measures over them (see the window's module doc for the
//! semantics): the *sum* `Σ n·max(0, e - max(s, W))` and the *covered* length of their union clipped to
//! `[W, ..]`.
//!
//! Layout, for the detector's hot path: a group with one live interval keeps it inline; from the second,
//! the intervals live in one contiguous `Vec` sorted by start, 16 bytes each while the group is exact, so
//! a record costs one pass over its group's items, which are next to each other in memory. That pass drops
//! the intervals that left the window and yields both measures at once ([`Accumulator::measures`]):
//! the sum directly, the covered length by a sweep over the starts (clipping every start to `W` keeps
//! them sorted). Starts are kept as they were given, not clipped, so the saved form only changes when an
//! interval expires, is added or is replaced. A group compacted beyond [`EXACT_LIMIT`] keeps its merged
//! items, which carry a multiplicity, apart ([`Items::Merged`]).
//!
//! Cost: O(n) per record for a group of n live items (n is at most [`EXACT_LIMIT`] + 1), with no
//! allocation once the group's `Vec` has grown; an interval is inserted by a search from the back, since
//! Zeek writes a connection when it ends and starts mostly grow.

use super::EXACT_LIMIT;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// A start for an interval whose true start is unknown but was before the left edge when it was saved
/// (a straddling item of an [`AccumulatorState`]): clipping makes it `W`, which is all it ever counted as.
const CLIPPED: i64 = i64::MIN;

/// Lazily advanced intervals of one group (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    items: Items,
}

#[derive(Debug, Clone, Default)]
enum Items {
    #[default]
    Empty,
    One(i64, i64),
    /// Exact: (start, end), sorted by start.
    Many(Vec<(i64, i64)>),
    /// Compacted: merged items with multiplicities.
    Merged(Box<Merged>),
}

#[derive(Debug, Clone, Default)]
struct Merged {
    /// (start, end, multiplicity), sorted by start.
    items: Vec<(i64, i64, u32)>,
    /// Connections held in merged items at the last compaction.
    merged: u64,
}

/// An interval item: exact ones have multiplicity 1.
trait Item: Copy {
    fn s(&self) -> i64;
    fn e(&self) -> i64;
    fn n(&self) -> u32;
}

impl Item for (i64, i64) {
    fn s(&self) -> i64 {
        self.0
    }
    fn e(&self) -> i64 {
        self.1
    }
    fn n(&self) -> u32 {
        1
    }
}

impl Item for (i64, i64, u32) {
    fn s(&self) -> i64 {
        self.0
    }
    fn e(&self) -> i64 {
        self.1
    }
    fn n(&self) -> u32 {
        self.2
    }
}

/// The measures of a group at one left edge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measures {
    /// Σ n·(e - max(s, W)) over live items.
    pub sum: i64,
    /// Length of the union of the live items clipped to `[W, ..]`.
    pub covered: i64,
}

/// Drops items that ended at or before `w` and returns whether any did.
fn expire<T: Item>(v: &mut Vec<T>, w: i64) -> bool {
    let before = v.len();
    v.retain(|x| x.e() > w);
    v.len() != before
}

/// Both measures of live items sorted by start (items must have been expired at `w`).
fn measures_of<T: Item>(v: &[T], w: i64) -> Measures {
    let mut sum: i128 = 0;
    let mut covered: i64 = 0;
    let mut cur: Option<(i64, i64)> = None;
    for x in v {
        let (s, e) = (x.s().max(w), x.e());
        if e <= s {
            continue;
        }
        sum += i128::from(x.n()) * i128::from(e - s);
        match &mut cur {
            Some((_, ce)) if s <= *ce => *ce = (*ce).max(e),
            _ => {
                if let Some((cs, ce)) = cur {
                    covered = covered.saturating_add(ce - cs);
                }
                cur = Some((s, e));
            }
        }
    }
    if let Some((cs, ce)) = cur {
        covered = covered.saturating_add(ce - cs);
    }
    Measures {
        sum: sum.clamp(0, i128::from(i64::MAX)) as i64,
        covered,
    }
}

/// Inserts `x` keeping the order by start, searching from the back (starts mostly grow).
fn insert_sorted<T: Item>(v: &mut Vec<T>, x: T) {
    let mut i = v.len();
    while i > 0 && v[i - 1].s() > x.s() {
        i -= 1;
    }
    v.insert(i, x);
}

/// The index of the item that is `[s, e]` at left edge `w`: the same end and the same start once both are
/// clipped to `w` (a straddling interval is known only by its end); failing that, the item nearest to it
/// (merged by a compaction).
fn find_nearest<T: Item>(v: &[T], w: i64, s: i64, e: i64) -> Option<usize> {
    let sc = s.max(w);
    v.iter()
        .rposition(|x| x.e() == e && x.s().max(w) == sc)
        .or_else(|| {
            v.iter()
                .enumerate()
                .map(|(i, x)| {
                    let d = (x.s().max(w) - sc).abs().saturating_add((x.e() - e).abs());
                    (d, i)
                })
                .min()
                .map(|(_, i)| i)
        })
}

impl Accumulator {
    /// Drops intervals that left the window at left edge `w` (which must not be below any earlier `w`).
    /// Returns whether anything was dropped (the saved form of the accumulator changed).
    pub fn advance(&mut self, w: i64) -> bool {
        let moved = match &mut self.items {
            Items::Empty => false,
            Items::One(_, e) => {
                let gone = *e <= w;
                if gone {
                    self.items = Items::Empty;
                }
                gone
            }
            Items::Many(v) => expire(v, w),
            Items::Merged(m) => expire(&mut m.items, w),
        };
        if moved {
            self.shrink();
        }
        moved
    }

    /// Both measures at `w`; the accumulator must have been advanced to `w`.
    pub fn measures(&self, w: i64) -> Measures {
        match &self.items {
            Items::Empty => Measures::default(),
            Items::One(s, e) => {
                let m = (*e - (*s).max(w)).max(0);
                Measures { sum: m, covered: m }
            }
            Items::Many(v) => measures_of(v, w),
            Items::Merged(m) => measures_of(&m.items, w),
        }
    }

    /// A group left with no item, or with one exact item, takes the smaller form.
    fn shrink(&mut self) {
        match &self.items {
            Items::Many(v) => match v.as_slice() {
                [] => self.items = Items::Empty,
                [(s, e)] => self.items = Items::One(*s, *e),
                _ => {}
            },
            Items::Merged(m) if m.items.is_empty() => self.items = Items::Empty,
            _ => {}
        }
    }

    /// The one live interval `(start, end)` of a group that holds exactly one (the common case), without
    /// building its [`AccumulatorState`].
    pub fn single(&self) -> Option<(i64, i64)> {
        match self.items {
            Items::One(s, e) => Some((s, e)),
            _ => None,
        }
    }

    /// An accumulator holding the one interval `[s, e]`: what [`Accumulator::from_state`] makes of a state
    /// with one full item of multiplicity 1, without building that state.
    pub fn one(s: i64, e: i64) -> Accumulator {
        Accumulator {
            items: Items::One(s.min(e), e),
        }
    }

    /// The sum measure at left edge `w`; the accumulator must have been advanced to `w`.
    pub fn measure(&self, w: i64) -> i64 {
        self.measures(w).sum
    }

    /// The *covered* measure at left edge `w` (advanced): the length of the union of the live intervals
    /// inside the window, the wall-clock time during which at least one connection was up. Exact while
    /// the group is exact; after a compaction a merged item stands for its connections at their mean
    /// start and end, all of which lie in the same start and end grid cells, so the union is off by at
    /// most `2g` per merged item.
    pub fn covered(&self, w: i64) -> i64 {
        self.measures(w).covered
    }

    /// Adds `[s, e]` at left edge `w` (advanced); compacts when the exact limit is passed.
    pub fn insert(&mut self, w: i64, s: i64, e: i64, cell: i64) {
        let s = s.min(e);
        if e <= w {
            return;
        }
        match &mut self.items {
            Items::Empty => self.items = Items::One(s, e),
            Items::One(s0, e0) => {
                let mut v = Vec::with_capacity(4);
                v.push((*s0, *e0));
                insert_sorted(&mut v, (s, e));
                self.items = Items::Many(v);
            }
            Items::Many(v) => {
                insert_sorted(v, (s, e));
                if v.len() > EXACT_LIMIT {
                    let items = v.iter().map(|&(s, e)| (s, e, 1)).collect();
                    self.items = Items::Merged(Box::new(compact(items, w, cell)));
                }
            }
            Items::Merged(m) => {
                insert_sorted(&mut m.items, (s, e, 1));
                if m.items.len() > EXACT_LIMIT {
                    **m = compact(std::mem::take(&mut m.items), w, cell);
                }
            }
        }
    }

    /// Removes one connection's interval `[s, e]` at left edge `w` (advanced): the inverse of
    /// [`Accumulator::insert`], used when a newer record of the same connection (same uid) replaces it.
    /// Exact while the group is exact. After a compaction the connection may sit in a merged item: one
    /// unit of multiplicity is taken from the item nearest to `[s, e]` (within the compaction grid of it),
    /// so the error stays within the bound of the module doc. Returns false if nothing was removed (the
    /// interval had already left the window).
    pub fn remove(&mut self, w: i64, s: i64, e: i64) -> bool {
        let s = s.min(e);
        if e <= w {
            return false;
        }
        let done = match &mut self.items {
            Items::Empty => false,
            Items::One(s0, e0) => {
                if *e0 == e && (*s0 == s || *s0 <= w) {
                    self.items = Items::Empty;
                    return true;
                }
                false
            }
            Items::Many(v) => match find_nearest(v, w, s, e) {
                Some(i) => {
                    v.remove(i);
                    true
                }
                None => false,
            },
            Items::Merged(m) => match find_nearest(&m.items, w, s, e) {
                Some(i) => {
                    let v = &mut m.items;
                    if v[i].2 > 1 {
                        v[i].2 -= 1;
                    } else {
                        v.remove(i);
                    }
                    true
                }
                None => false,
            },
        };
        if done {
            self.shrink();
        }
        done
    }

    /// Replaces a connection's interval `[s0, e0]` by `[s, e]` (a newer record of the same uid).
    pub fn replace(&mut self, w: i64, old: (i64, i64), new: (i64, i64), cell: i64) {
        self.remove(w, old.0, old.1);
        self.insert(w, new.0, new.1, cell);
    }

    /// Live items (merged items count once).
    pub fn len(&self) -> usize {
        match &self.items {
            Items::Empty => 0,
            Items::One(..) => 1,
            Items::Many(v) => v.len(),
            Items::Merged(m) => m.items.len(),
        }
    }

    /// The heap memory holding the items, if any: its address and length in bytes (for a prefetch hint).
    pub fn heap(&self) -> Option<(*const u8, usize)> {
        match &self.items {
            Items::Many(v) => Some((v.as_ptr().cast(), std::mem::size_of_val(v.as_slice()))),
            Items::Merged(m) => Some((
                m.items.as_ptr().cast(),
                std::mem::size_of_val(m.items.as_slice()),
            )),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections held in merged items at the last compaction (0 while the group is exact).
    pub fn merged(&self) -> u64 {
        match &self.items {
            Items::Merged(m) => m.merged,
            _ => 0,
        }
    }

    /// Forgets the true starts of intervals that began before `w_old`, setting them to `w_old`, so that a
    /// new window length (an earlier left edge) cannot bring back time that already left the old window;
    /// used only on reconfiguration.
    pub(super) fn unclip(&mut self, w_old: i64) {
        self.advance(w_old);
        match &mut self.items {
            Items::Empty => {}
            Items::One(s, _) => *s = (*s).max(w_old),
            Items::Many(v) => v.iter_mut().for_each(|x| x.0 = x.0.max(w_old)),
            Items::Merged(m) => m.items.iter_mut().for_each(|x| x.0 = x.0.max(w_old)),
        }
    }

    /// The saved form: items as given (`full`, by start), except those restored from a saved straddling
    /// item, whose start is unknown (`straddling`, by end).
    pub fn state(&self) -> AccumulatorState {
        let mut st = AccumulatorState {
            full: Vec::new(),
            straddling: Vec::new(),
            merged: self.merged(),
        };
        let mut put = |s: i64, e: i64, n: u32| {
            if s == CLIPPED {
                st.straddling.push((e, n));
            } else {
                st.full.push((s, e, n));
            }
        };
        match &self.items {
            Items::Empty => {}
            Items::One(s, e) => put(*s, *e, 1),
            Items::Many(v) => v.iter().for_each(|x| put(x.0, x.1, 1)),
            Items::Merged(m) => m.items.iter().for_each(|x| put(x.0, x.1, x.2)),
        }
        st.full.sort_unstable();
        st.straddling.sort_unstable();
        st
    }

    pub fn from_state(st: &AccumulatorState) -> Accumulator {
        let mut items: Vec<(i64, i64, u32)> = st
            .full
            .iter()
            .map(|&(s, e, n)| (s.min(e), e, n))
            .chain(st.straddling.iter().map(|&(e, n)| (CLIPPED, e, n)))
            .filter(|x| x.2 > 0)
            .collect();
        items.sort_unstable();
        let exact = st.merged == 0 && items.iter().all(|x| x.2 == 1);
        let items = match items.as_slice() {
            [] => Items::Empty,
            [(s, e, 1)] if st.merged == 0 => Items::One(*s, *e),
            _ if exact => Items::Many(items.iter().map(|x| (x.0, x.1)).collect()),
            _ => Items::Merged(Box::new(Merged {
                items,
                merged: st.merged,
            })),
        };
        Accumulator { items }
    }
}

/// Merges items that share (start cell, end cell) on a grid of `cell` µs (see the window's module doc).
fn compact(items: Vec<(i64, i64, u32)>, w: i64, cell: i64) -> Merged {
    let cell = cell.max(1);
    let mut cells: FxHashMap<(i64, i64), (i128, i128, u64)> = FxHashMap::default();
    for (s, e, n) in items {
        if e <= w {
            continue;
        }
        let s = s.max(w);
        let c = cells
            .entry((s.div_euclid(cell), e.div_euclid(cell)))
            .or_default();
        c.0 += i128::from(n) * i128::from(s);
        c.1 += i128::from(n) * i128::from(e);
        c.2 += u64::from(n);
    }
    let mut merged: Vec<(i64, i64, u64)> = cells
        .into_values()
        .map(|(ss, se, n)| {
            let d = n as i128;
            let s = ((ss + d / 2).div_euclid(d)) as i64;
            let e = ((se + d / 2).div_euclid(d)) as i64;
            (s.min(e), e, n)
        })
        .collect();
    merged.sort_unstable();
    let mut out = Merged::default();
    for (s, e, n) in merged {
        if n > 1 {
            out.merged += n;
        }
        let mut left = n;
        while left > 0 {
            let k = left.min(u64::from(u32::MAX)) as u32;
            out.items.push((s, e, k));
            left -= u64::from(k);
        }
    }
    out
}

/// The serialized form of an [`Accumulator`]: its items (`full`: start, end, multiplicity; `straddling`:
/// end and multiplicity of items whose start is only known to be before the left edge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccumulatorState {
    pub full: Vec<(i64, i64, u32)>,
    pub straddling: Vec<(i64, u32)>,
    pub merged: u64,
}

/// Length of the union of intervals `(start, end)` (brute force would give the same; see the tests).
pub fn union_length(mut v: Vec<(i64, i64)>) -> i64 {
    v.sort_unstable();
    measures_of(&v, i64::MIN).covered
}
#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    #[test]
    fn a_saved_straddling_item_restores_clipped_and_saves_the_same() {
        // Saved at W = 10h: one interval straddling the edge (known by its end), one inside.
        let st = AccumulatorState {
            full: vec![(11 * H, 13 * H, 1)],
            straddling: vec![(12 * H, 1)],
            merged: 0,
        };
        let mut acc = Accumulator::from_state(&st);
        assert_eq!(acc.state(), st, "round trip");
        assert!(!acc.advance(10 * H));
        let m = acc.measures(10 * H);
        assert_eq!(
            m,
            Measures {
                sum: 4 * H,
                covered: 3 * H
            }
        );
        // A later edge clips the restored item as it would have clipped the original.
        assert!(acc.advance(12 * H), "the straddling item ended at the edge");
        let m = acc.measures(12 * H);
        assert_eq!(m, Measures { sum: H, covered: H });
        assert_eq!(
            acc.single(),
            Some((11 * H, 13 * H)),
            "back to the inline form"
        );
        // Removing the restored interval by its end (its start unknown, before the edge) is exact.
        let mut acc = Accumulator::from_state(&st);
        assert!(acc.remove(10 * H, 9 * H, 12 * H));
        assert_eq!(acc.measures(10 * H).sum, 2 * H);
    }

    #[test]
    fn intervals_stay_sorted_by_start_whatever_the_order_they_come_in() {
        let mut acc = Accumulator::default();
        for (s, e) in [(5, 9), (1, 3), (7, 8), (2, 6), (0, 1)] {
            acc.insert(0, s * H, e * H, H);
        }
        let st = acc.state();
        let starts: Vec<i64> = st.full.iter().map(|x| x.0 / H).collect();
        assert_eq!(starts, vec![0, 1, 2, 5, 7]);
        assert_eq!(
            acc.measures(0),
            Measures {
                sum: 12 * H,
                covered: 9 * H
            }
        );
        assert_eq!(union_length(vec![(5, 9), (1, 3), (2, 6), (0, 1)]), 9);
    }
}
