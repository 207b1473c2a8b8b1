//! Interim records (open_conn.log, conn_long.log): the detector's per-uid bookkeeping.
//!
//! [`Detector::process`](super::Detector::process) takes the record's `SourceKind`. Zeek's interim logs
//! repeat a connection that is still open (same uid and ts as its final conn.log record) with a growing
//! running duration. Per uid the detector keeps the latest interim record ([`OpenConn`]): a newer one (a
//! later end) *replaces* the connection's interval in its group ([`crate::window::Accumulator::replace`])
//! and never adds to it; an older or equal one is ignored (running totals only grow, so re-reads and
//! out-of-order files are harmless). The final conn record replaces the interim interval and closes the
//! uid; interim records of a closed uid are ignored for `[cumulative] interim_timeout` of event time after
//! the close. Closed uids are remembered when the uid was open, or, when interim records are expected at
//! all (an interim source is configured, one was seen, or replay has interim files), when its final
//! duration is at least [`CLOSED_MIN_US`] (interim logs only ever hold connections up for minutes); at most
//! [`MAX_CLOSED`] of them, oldest forgotten first. An open uid whose latest record ended more than
//! `interim_timeout` (default 25h) before the watermark is forgotten (its last interval stays counted until
//! it leaves the window). A uid closed again is remembered from its latest close. All of this is saved as
//! [`InterimState`] in the detector's state, or entry by entry in the binary checkpoint store (each closed
//! uid with its number in the close order, from which a restore rebuilds that order).
//!
//! A single alert fires at the first interim record whose duration reaches a level, with
//! `longconn.open = true`; later records of the same connection (interim or final) alert only at a higher
//! level than the connection already alerted at. A record without a uid gets no uid rules.

use super::tracked::Tracked;
use crate::rules::Level;
use crate::window::GroupKey;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Final records at least this long (µs) have their uid remembered as closed, so that a late interim
/// record of the same connection is ignored (interim logs write connections only after minutes).
pub const CLOSED_MIN_US: i64 = 60_000_000;
/// At most this many closed uids are remembered (oldest forgotten first).
pub const MAX_CLOSED: usize = 1_000_000;

/// The latest interim record of a connection that is still open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenConn {
    pub key: GroupKey,
    pub ts: i64,
    pub end: i64,
    pub bytes: u64,
    /// Highest single level alerted for this connection.
    pub level: Option<Level>,
}

/// Interim-record bookkeeping: open uids and recently closed ones.
#[derive(Debug, Clone, Default)]
pub struct Interim {
    open: Tracked<CompactString, OpenConn>,
    closed: Tracked<CompactString, Closed>,
    /// Closes in order (the watermark only grows, so also in time order): uid, watermark, number. An
    /// entry whose number is not its uid's in `closed` (the uid closed again since) is passed over.
    closed_order: VecDeque<(CompactString, i64, u64)>,
    /// The number of the next close.
    next_close: u64,
    since_sweep: u64,
}

/// A closed uid: the watermark at its (latest) close and that close's number in the close order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Closed {
    pub at: i64,
    pub seq: u64,
}

/// The serialized form of the interim bookkeeping (sorted, so equal states serialize equally).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InterimState {
    pub open: Vec<(CompactString, OpenConn)>,
    pub closed: Vec<(CompactString, i64)>,
    pub since_sweep: u64,
}

/// What the uid rules make of one record with a uid.
#[derive(Debug, PartialEq)]
pub(super) enum Admit {
    /// An interim record of a closed uid, or one not newer than the latest seen: ignored.
    Ignored,
    /// Used; with the connection's latest interim record if it had one (the record replaces it).
    Use(Option<OpenConn>),
}

impl Interim {
    pub(super) fn state(&self) -> InterimState {
        let mut open: Vec<_> = self
            .open
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        open.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        InterimState {
            open,
            closed: self
                .closed_uids()
                .map(|(uid, c)| (uid.clone(), c.at))
                .collect(),
            since_sweep: self.since_sweep,
        }
    }

    /// [`Interim::state`] without the uids (saved apart, in the binary checkpoint store).
    pub(super) fn state_counters(&self) -> InterimState {
        InterimState {
            since_sweep: self.since_sweep,
            ..InterimState::default()
        }
    }

    pub fn open_uids(&self) -> impl Iterator<Item = (&CompactString, &OpenConn)> + '_ {
        self.open.iter()
    }

    pub fn changed_open_uids(
        &self,
    ) -> impl Iterator<Item = (&CompactString, Option<&OpenConn>)> + '_ {
        self.open.changed()
    }

    /// The closed uids, in their close order.
    pub fn closed_uids(&self) -> impl Iterator<Item = (&CompactString, &Closed)> + '_ {
        self.closed_order.iter().filter_map(|(uid, _, seq)| {
            self.closed
                .get(uid)
                .filter(|c| c.seq == *seq)
                .map(|c| (uid, c))
        })
    }

    pub fn changed_closed_uids(
        &self,
    ) -> impl Iterator<Item = (&CompactString, Option<&Closed>)> + '_ {
        self.closed.changed()
    }

    /// Entries: open uids, closed uids.
    pub fn len(&self) -> [u64; 2] {
        [self.open.len() as u64, self.closed.len() as u64]
    }

    pub fn reserve(&mut self, n: [usize; 2]) {
        self.open.reserve(n[0]);
        self.closed.reserve(n[1]);
    }

    /// Puts a saved open uid back, or drops it (`None`).
    pub fn restore_open(&mut self, uid: CompactString, o: Option<OpenConn>) {
        self.open.restore(uid, o);
    }

    pub fn restore_closed(&mut self, uid: CompactString, c: Option<Closed>) {
        self.closed.restore(uid, c);
    }

    /// Rebuilds the close order from the closed uids put back (by their numbers).
    pub(super) fn finish_restore(&mut self) {
        let mut order: Vec<(u64, i64, &CompactString)> =
            self.closed.iter().map(|(u, c)| (c.seq, c.at, u)).collect();
        order.sort_unstable_by_key(|o| o.0);
        self.next_close = order.last().map_or(0, |o| o.0.saturating_add(1));
        self.closed_order = order
            .into_iter()
            .map(|(seq, at, u)| (u.clone(), at, seq))
            .collect();
    }

    /// From now on, remember what changes (for an incremental checkpoint).
    pub fn track_changes(&mut self) {
        self.open.track();
        self.closed.track();
    }

    /// A checkpoint saved every change so far.
    pub fn clear_changes(&mut self) {
        self.open.clear_changes();
        self.closed.clear_changes();
    }

    /// Changes are not tracked: everything must be written.
    pub fn all_changed(&self) -> bool {
        self.open.all_changed() || self.closed.all_changed()
    }

    /// Everything held, in a fixed order (more than [`Interim::state`] says): for tests that a restore
    /// is exact.
    #[cfg(test)]
    pub(crate) fn exact(&self) -> String {
        let mut open: Vec<_> = self.open.iter().collect();
        open.sort_by(|a, b| a.0.cmp(b.0));
        let closed: Vec<_> = self.closed_uids().collect();
        format!(
            "open {open:?}\nclosed {closed:?}\nnext {}\nsince {}",
            self.next_close, self.since_sweep
        )
    }

    pub(super) fn from_state(st: &InterimState) -> Interim {
        let mut i = Interim {
            open: st.open.iter().cloned().collect(),
            since_sweep: st.since_sweep,
            ..Interim::default()
        };
        for (uid, at) in &st.closed {
            i.close(uid, *at);
        }
        i
    }

    /// Open uids tracked now.
    pub(super) fn open_len(&self) -> usize {
        self.open.len()
    }

    /// The uid rules for a record with a (non-empty) uid: an `interim` one whose end is `end`, or a final
    /// one of duration `dur` (closed at watermark `t`; remembered as closed if it was open, or if
    /// `remember` and it lasted at least [`CLOSED_MIN_US`]).
    pub(super) fn admit(
        &mut self,
        uid: &CompactString,
        interim: bool,
        end: i64,
        dur: i64,
        t: i64,
        remember: bool,
    ) -> Admit {
        if interim {
            if self.closed.contains_key(uid) {
                return Admit::Ignored;
            }
            match self.open.get(uid) {
                Some(o) if end <= o.end => Admit::Ignored,
                Some(o) => Admit::Use(Some(o.clone())),
                None => Admit::Use(None),
            }
        } else {
            let prev = self.open.remove(uid);
            if prev.is_some() || (remember && dur >= CLOSED_MIN_US) {
                self.close(uid, t);
            }
            Admit::Use(prev)
        }
    }

    /// Keeps `conn` as the latest interim record of `uid`.
    pub(super) fn keep_open(&mut self, uid: CompactString, conn: OpenConn) {
        self.open.insert(uid, conn);
    }

    /// Remembers `uid` as closed at watermark `at` (again: from this close on).
    fn close(&mut self, uid: &CompactString, at: i64) {
        let seq = self.next_close;
        self.next_close += 1;
        self.closed.insert(uid.clone(), Closed { at, seq });
        self.closed_order.push_back((uid.clone(), at, seq));
        while self.closed.len() > MAX_CLOSED && !self.closed_order.is_empty() {
            self.pop_closed();
        }
    }

    /// Forgets the oldest close (nothing if its uid was closed again since).
    fn pop_closed(&mut self) {
        if let Some((uid, _, seq)) = self.closed_order.pop_front() {
            if self.closed.get(&uid).is_some_and(|c| c.seq == seq) {
                self.closed.remove(&uid);
            }
        }
    }

    /// Forgets open uids with no news and closed uids older than `timeout` before watermark `t`;
    /// amortized O(1) per record. Returns how many open uids were dropped.
    pub(super) fn sweep(&mut self, t: i64, timeout: i64) -> u64 {
        while self
            .closed_order
            .front()
            .is_some_and(|(_, at, _)| t.saturating_sub(*at) > timeout)
        {
            self.pop_closed();
        }
        self.since_sweep += 1;
        if self.since_sweep < (self.open.len() as u64).max(1024) {
            return 0;
        }
        self.since_sweep = 0;
        self.open.retain(|_, o| t.saturating_sub(o.end) <= timeout) as u64
    }
}
