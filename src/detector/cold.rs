//! What the detector keeps of a group besides its hot counters: the uids in the compact form a group
//! holds them in ([`Uid`]), and the part of a group that a one-connection group rarely or never needs
//! ([`ColdBox`]): the older uids, the server names and, when it is not the newest uid at `first_seen`, the
//! episode's first record. A group allocates its cold part the first time it needs any of these (its
//! second connection, a server name), in one allocation that holds the older uids inline.
//!
//! A [`Uid`] is 16 bytes: Zeek's uids (`C` and base-62 digits, 18 characters) are packed 6 bits a character
//! inline (up to [`PACKED_MAX`] characters); any other string (empty is packed; longer, or with another
//! character, as JSON logs may have) is kept exactly, boxed. Each string has one form, so two uids are
//! equal when their strings are.
//!
//! The older uids are a ring, oldest first, of at most [`MAX_OLDER`] (with the newest, [`MAX_UIDS`]): the
//! cold part grows through a few capacities (0, 4, 16, [`MAX_OLDER`]) by moving to a bigger allocation, and
//! once full the newest replaces the oldest.

use crate::alert::MAX_UIDS;
use compact_str::CompactString;

/// Base-62 digit of `c` (Zeek's uids are `C` and base-62 digits).
pub(crate) fn b62(c: u8) -> Option<u8> {
    let d = DIGITS[usize::from(c)];
    (d != NO_DIGIT).then_some(d)
}

/// [`DIGITS`] of a byte that is no base-62 digit: any value with one of the two upper bits set would do.
const NO_DIGIT: u8 = 0xff;

/// The base-62 digit of every byte ([`NO_DIGIT`] for the others): a table, so that packing a uid takes
/// no branch per character (random characters mispredict a range test about every other time).
static DIGITS: [u8; 256] = {
    let mut t = [NO_DIGIT; 256];
    let mut i = 0;
    while i < B62.len() {
        t[B62[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// The base-62 digits, by value.
pub(crate) const B62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Longest uid packed inline: 20 characters of 6 bits fill 15 bytes.
pub const PACKED_MAX: usize = 20;

/// Older uids kept besides the newest.
pub const MAX_OLDER: usize = MAX_UIDS - 1;

/// The length of a packed uid: an enum so that [`Uid`]'s boxed form fits in the values it leaves free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Len {
    L0,
    L1,
    L2,
    L3,
    L4,
    L5,
    L6,
    L7,
    L8,
    L9,
    L10,
    L11,
    L12,
    L13,
    L14,
    L15,
    L16,
    L17,
    L18,
    L19,
    L20,
}

const LENS: [Len; PACKED_MAX + 1] = [
    Len::L0,
    Len::L1,
    Len::L2,
    Len::L3,
    Len::L4,
    Len::L5,
    Len::L6,
    Len::L7,
    Len::L8,
    Len::L9,
    Len::L10,
    Len::L11,
    Len::L12,
    Len::L13,
    Len::L14,
    Len::L15,
    Len::L16,
    Len::L17,
    Len::L18,
    Len::L19,
    Len::L20,
];

/// A uid as a group keeps it (see the module doc).
#[derive(Clone, PartialEq, Eq)]
pub struct Uid(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    /// Base-62 digits, the first character in the highest bits of a little-endian 120-bit number; unused
    /// bits zero.
    Packed([u8; 15], Len),
    /// Anything else, exactly.
    Other(Box<CompactString>),
}

impl Default for Uid {
    fn default() -> Uid {
        Uid::EMPTY
    }
}

impl std::fmt::Debug for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_str(|s| std::fmt::Debug::fmt(s, f))
    }
}

impl Uid {
    /// The empty uid (records without one).
    pub const EMPTY: Uid = Uid(Repr::Packed([0; 15], Len::L0));

    pub fn new(s: &str) -> Uid {
        let b = s.as_bytes();
        if b.len() <= PACKED_MAX {
            let mut v = 0u128;
            // The upper two bits of any byte that is no digit.
            let mut bad = 0u8;
            for &c in b {
                let d = DIGITS[usize::from(c)];
                bad |= d & 0xc0;
                v = (v << 6) | u128::from(d & 0x3f);
            }
            if bad == 0 {
                let mut bytes = [0u8; 15];
                bytes.copy_from_slice(&v.to_le_bytes()[..15]);
                return Uid(Repr::Packed(bytes, LENS[b.len()]));
            }
        }
        Uid(Repr::Other(Box::new(CompactString::from(s))))
    }

    /// The uid of the base-62 digits `digits` (values below 62), without going through its text: the
    /// binary checkpoint's packed uids. `None` if a digit is out of range or there are more than
    /// [`PACKED_MAX`].
    pub fn from_digits(digits: &[u8]) -> Option<Uid> {
        if digits.len() > PACKED_MAX || digits.iter().any(|&d| usize::from(d) >= B62.len()) {
            return None;
        }
        let v = digits.iter().fold(0u128, |v, &d| (v << 6) | u128::from(d));
        let mut bytes = [0u8; 15];
        bytes.copy_from_slice(&v.to_le_bytes()[..15]);
        Some(Uid(Repr::Packed(bytes, LENS[digits.len()])))
    }

    /// The base-62 digits of a packed uid (the first `n` of the array), `None` for one kept as text.
    pub fn digits(&self) -> Option<([u8; PACKED_MAX], usize)> {
        let Repr::Packed(bytes, len) = &self.0 else {
            return None;
        };
        let n = *len as usize;
        let mut le = [0u8; 16];
        le[..15].copy_from_slice(bytes);
        let mut v = u128::from_le_bytes(le);
        let mut out = [0u8; PACKED_MAX];
        for o in out[..n].iter_mut().rev() {
            *o = (v & 63) as u8;
            v >>= 6;
        }
        Some((out, n))
    }

    /// Packed inline (no allocation of its own).
    pub fn is_packed(&self) -> bool {
        matches!(self.0, Repr::Packed(..))
    }

    /// Calls `f` with the uid's text (unpacked on the stack).
    pub fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match (&self.0, self.digits()) {
            (_, Some((mut out, n))) => {
                for o in &mut out[..n] {
                    *o = B62[usize::from(*o) % B62.len()];
                }
                // Base-62 digits are ASCII.
                f(std::str::from_utf8(&out[..n]).unwrap_or_default())
            }
            (Repr::Other(s), None) => f(s),
            (Repr::Packed(..), None) => f(""),
        }
    }

    pub fn to_compact(&self) -> CompactString {
        self.with_str(|s| CompactString::from(s))
    }
}

/// The cold part of a group (see the module doc), behind one pointer; `S` is the ring's storage, sized
/// when allocated.
struct Cold<S: ?Sized> {
    /// Server names seen for the group's connections, for cumulative alerts.
    names: Vec<CompactString>,
    /// The episode's first record (uid, ts µs), when the group's rule state says it is kept here.
    episode_first: Option<(Uid, i64)>,
    /// Ring of the older uids: the oldest at `head`, `len` of them.
    head: u8,
    len: u8,
    older: S,
}

/// A group's cold part (see the module doc).
pub struct ColdBox(Box<Cold<[Uid]>>);

/// Capacities of the ring, smallest first.
const CAPACITIES: [usize; 4] = [0, 4, 16, MAX_OLDER];

fn alloc(cap: usize) -> Box<Cold<[Uid]>> {
    fn with<const N: usize>() -> Box<Cold<[Uid]>> {
        Box::new(Cold {
            names: Vec::new(),
            episode_first: None,
            head: 0,
            len: 0,
            older: [const { Uid::EMPTY }; N],
        })
    }
    match cap {
        0 => with::<0>(),
        1..=4 => with::<4>(),
        5..=16 => with::<16>(),
        _ => with::<MAX_OLDER>(),
    }
}

impl ColdBox {
    /// An empty cold part with room for `older` older uids (at most [`MAX_OLDER`]).
    pub fn new(older: usize) -> ColdBox {
        ColdBox(alloc(older))
    }

    pub fn names(&self) -> &[CompactString] {
        &self.0.names
    }

    pub fn names_mut(&mut self) -> &mut Vec<CompactString> {
        &mut self.0.names
    }

    pub fn episode_first(&self) -> Option<&(Uid, i64)> {
        self.0.episode_first.as_ref()
    }

    pub fn set_episode_first(&mut self, first: Option<(Uid, i64)>) {
        self.0.episode_first = first;
    }

    /// No older uid, name or first record.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0 && self.0.names.is_empty() && self.0.episode_first.is_none()
    }

    /// Prefetch hint for the header, which [`ColdBox::prefetch_ring`] and the group's next uid read.
    /// Reads nothing of the box.
    pub fn prefetch(&self) {
        crate::prefetch::prefetch::<Cold<[Uid]>>(&*self.0);
    }

    /// Prefetch hint for the ring's next place (the oldest uid, once the ring is full). Reads the header:
    /// give [`ColdBox::prefetch`] first, a record or two earlier.
    pub fn prefetch_ring(&self) {
        let c = &*self.0;
        let cap = c.older.len();
        if cap > 0 {
            let at = (usize::from(c.head) + usize::from(c.len)) % cap;
            if let Some(u) = c.older.get(at) {
                crate::prefetch::prefetch(u);
            }
        }
    }

    pub fn older_len(&self) -> usize {
        usize::from(self.0.len)
    }

    /// The older uids, oldest first.
    pub fn older(&self) -> impl Iterator<Item = &Uid> + '_ {
        let c = &*self.0;
        let cap = c.older.len();
        (0..usize::from(c.len)).map(move |i| &c.older[(usize::from(c.head) + i) % cap])
    }

    /// Adds `uid` as the newest of the older uids; the oldest goes once there are [`MAX_OLDER`].
    pub fn push_older(&mut self, uid: Uid) {
        let cap = self.0.older.len();
        let len = usize::from(self.0.len);
        if len == cap {
            if cap >= MAX_OLDER {
                let head = usize::from(self.0.head);
                self.0.older[head] = uid;
                self.0.head = ((head + 1) % cap) as u8;
                return;
            }
            self.grow();
        }
        let c = &mut *self.0;
        let at = (usize::from(c.head) + len) % c.older.len();
        c.older[at] = uid;
        c.len += 1;
    }

    /// Moves to the next capacity, the older uids first in the ring.
    fn grow(&mut self) {
        let cap = self.0.older.len();
        let next = CAPACITIES
            .iter()
            .copied()
            .find(|c| *c > cap)
            .unwrap_or(MAX_OLDER);
        let mut bigger = alloc(next);
        let old = &mut *self.0;
        bigger.names = std::mem::take(&mut old.names);
        bigger.episode_first = old.episode_first.take();
        let len = usize::from(old.len);
        for i in 0..len {
            let from = (usize::from(old.head) + i) % cap;
            bigger.older[i] = std::mem::take(&mut old.older[from]);
        }
        bigger.len = old.len;
        self.0 = bigger;
    }

    /// Forgets the older uids and the names (the group starts over), keeping the episode's first record.
    pub fn clear_figures(&mut self) {
        let c = &mut *self.0;
        c.names.clear();
        for u in c.older.iter_mut() {
            *u = Uid::EMPTY;
        }
        c.head = 0;
        c.len = 0;
    }
}

impl Clone for ColdBox {
    fn clone(&self) -> ColdBox {
        let mut c = alloc(self.0.older.len());
        c.names = self.0.names.clone();
        c.episode_first = self.0.episode_first.clone();
        for (to, from) in c.older.iter_mut().zip(self.older()) {
            *to = from.clone();
        }
        c.len = self.0.len;
        ColdBox(c)
    }
}

impl std::fmt::Debug for ColdBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdBox")
            .field("names", &self.0.names)
            .field("episode_first", &self.0.episode_first)
            .field("older", &self.older().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests;
