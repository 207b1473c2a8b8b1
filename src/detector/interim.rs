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
//! it leaves the window). All of this is saved as [`InterimState`] in the detector's state.
//!
//! A single alert fires at the first interim record whose duration reaches a level, with
//! `longconn.open = true`; later records of the same connection (interim or final) alert only at a higher
//! level than the connection already alerted at. A record without a uid gets no uid rules.

use crate::rules::Level;
use crate::window::GroupKey;
use compact_str::CompactString;
use rustc_hash::FxHashMap;
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
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Interim {
    open: FxHashMap<CompactString, OpenConn>,
    /// Closed uid -> watermark at its close.
    closed: FxHashMap<CompactString, i64>,
    /// Closed uids in close order (the watermark only grows, so also in time order).
    closed_order: VecDeque<(CompactString, i64)>,
    since_sweep: u64,
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
            closed: self.closed_order.iter().cloned().collect(),
            since_sweep: self.since_sweep,
        }
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

    fn close(&mut self, uid: &CompactString, at: i64) {
        if self.closed.insert(uid.clone(), at).is_none() {
            self.closed_order.push_back((uid.clone(), at));
        }
        while self.closed_order.len() > MAX_CLOSED {
            self.pop_closed();
        }
    }

    fn pop_closed(&mut self) {
        if let Some((uid, at)) = self.closed_order.pop_front() {
            if self.closed.get(&uid) == Some(&at) {
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
            .is_some_and(|(_, at)| t.saturating_sub(*at) > timeout)
        {
            self.pop_closed();
        }
        self.since_sweep += 1;
        if self.since_sweep < (self.open.len() as u64).max(1024) {
            return 0;
        }
        self.since_sweep = 0;
        let before = self.open.len();
        self.open.retain(|_, o| t.saturating_sub(o.end) <= timeout);
        (before - self.open.len()) as u64
    }
}
