//! Several sources of one stream read in event-time order: the loggers of a Zeek cluster (each log record
//! goes to the next logger in turn, `Cluster::rr_log_topic`, so one host pair's connections are split over
//! their conn.log files), and the context logs (ssl, http, dns) that name the servers of those connections.
//!
//! The sources of one [`Group`] (every conn source and every context source; each interim kind, open_conn
//! and conn_long, is a group of its own) are merged as `replay` merges files, so that N files holding a
//! round-robin split of one stream give the alerts (and `event.id`s) of the joined stream:
//!
//! - A conn source's key is its *clock*: the latest end (`ts + duration`) among its records handed to the
//!   detector, including the next one. Each source's clock only grows, so the merged stream's running
//!   largest end, the detector's watermark, is always the key of the record just handed over.
//! - A context source's key is its next record's `ts`; on equal keys context records go first. So a
//!   context record is handed over before the first conn record whose end, or an earlier one's, reaches
//!   its `ts`: the rule of `replay` (a conn record is written at its end, a context record at its `ts`).
//! - Among the sources that have a next record, the smallest (key, context first, source index) goes first.
//!
//! Catching up (every source has records to read) this is an exact merge. A conn source that has nothing
//! to read (at the end of its file, or no file yet) is either *live*, its clock within [`LATENESS`] of the
//! present (the wall clock): then it holds nobody back, and its next records are at most about that late
//! against the others'; or *behind* (or it has given no record since the start): then the others' records
//! past its clock wait for it, for at most [`IDLE_WAIT`] of wall-clock time after it ran dry, so that a
//! logger whose file grows or appears a little later still merges exactly. After that wait the others go
//! on, and its records that come later are read late against the watermark, as they would have been
//! without the merge. A context source with nothing to read holds nobody back: a connection is never
//! delayed for its name.
//!
//! Nothing here is saved in the checkpoint: a record held is not consumed (the tail's position stays
//! before it, see [`crate::tail::Gate`]), so a restart reads it again, and the clocks are rebuilt from what
//! is read.

use std::cmp::Ordering;
use std::time::{Duration, Instant};

/// A conn source with nothing to read whose latest record ended within this long (seconds) of the present
/// is live: the others do not wait for it, so its next records may come up to about this late against
/// theirs. More than Zeek's log flush (a second) and the spread of its loggers; far less than a window.
pub const LATENESS: f64 = 60.0;

/// How long (wall clock) the other sources wait for a conn source that has nothing to read and is behind
/// (its latest record ended more than [`LATENESS`] before the present).
pub const IDLE_WAIT: Duration = Duration::from_secs(5);

/// What a source is to the merge. Context records go first on equal keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Context,
    Conn,
}

/// A position in the merged order: (key, role, member index). Keys are seconds, without time -inf.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rank {
    pub key: f64,
    pub role: Role,
    pub member: usize,
}

impl Rank {
    fn cmp(&self, other: &Rank) -> Ordering {
        self.key
            .total_cmp(&other.key)
            .then(self.role.cmp(&other.role))
            .then(self.member.cmp(&other.member))
    }
}

/// One source in a group.
#[derive(Debug, Clone)]
struct Member {
    role: Role,
    /// The key of its next record, read and held (None: nothing to read when last looked).
    head: Option<f64>,
    /// Conn sources: the latest end handed over (None: nothing yet since the start).
    clock: Option<f64>,
    /// When it last ran dry (None while it has a next record).
    dry_since: Option<Instant>,
}

/// The next step of a merge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Read member `member` on while its records' ranks are below `limit` (see [`Limit::admits`]).
    Read { member: usize, limit: Limit },
    /// Every next record waits for a source with nothing to read, at most until this instant.
    Wait(Instant),
    /// No member has a next record.
    Done,
}

/// How far one member may be read on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// The smallest rank among the other members' next records.
    pub before: Option<Rank>,
    /// The largest key allowed by the members with nothing to read that are waited for (+inf: none).
    pub bound: f64,
}

impl Limit {
    /// True if a record of rank `r` may be handed over now.
    pub fn admits(&self, r: &Rank) -> bool {
        r.key <= self.bound && self.before.map_or(true, |b| r.cmp(&b) == Ordering::Less)
    }
}

/// The merge state of one group of sources.
#[derive(Debug, Clone)]
pub struct Group {
    members: Vec<Member>,
}

impl Group {
    pub fn new(roles: &[Role]) -> Group {
        Group {
            members: roles
                .iter()
                .map(|&role| Member {
                    role,
                    head: None,
                    clock: None,
                    dry_since: None,
                })
                .collect(),
        }
    }

    /// The rank a record of member `m` with event time `time` (a conn record's end, a context record's
    /// `ts`) would have.
    pub fn rank(&self, m: usize, time: Option<f64>) -> Rank {
        let member = &self.members[m];
        let t = time.filter(|t| !t.is_nan());
        let key = match member.role {
            Role::Context => t.unwrap_or(f64::NEG_INFINITY),
            Role::Conn => match (member.clock, t) {
                (Some(c), Some(t)) => c.max(t),
                (c, t) => c.or(t).unwrap_or(f64::NEG_INFINITY),
            },
        };
        Rank {
            key,
            role: member.role,
            member: m,
        }
    }

    /// Member `m`'s record of event time `time` was handed over.
    pub fn taken(&mut self, m: usize, time: Option<f64>) {
        let key = self.rank(m, time).key;
        let member = &mut self.members[m];
        if member.role == Role::Conn && key > f64::NEG_INFINITY {
            member.clock = Some(key);
        }
        member.head = None;
    }

    /// Member `m` holds its next record, of event time `time`.
    pub fn holds(&mut self, m: usize, time: Option<f64>) {
        let key = self.rank(m, time).key;
        let member = &mut self.members[m];
        member.head = Some(key);
        member.dry_since = None;
    }

    /// Member `m` has nothing more to read (at `now`).
    pub fn dry(&mut self, m: usize, now: Instant) {
        let member = &mut self.members[m];
        member.head = None;
        member.dry_since.get_or_insert(now);
    }

    /// What to do next at `now`, the present being `wall` (seconds since the epoch).
    pub fn next(&self, now: Instant, wall: f64) -> Next {
        let ranks = || {
            self.members.iter().enumerate().filter_map(|(i, m)| {
                m.head.map(|key| Rank {
                    key,
                    role: m.role,
                    member: i,
                })
            })
        };
        let Some(first) = ranks().min_by(Rank::cmp) else {
            return Next::Done;
        };
        let before = ranks()
            .filter(|r| r.member != first.member)
            .min_by(Rank::cmp);
        // The conn sources with nothing to read, still waited for.
        let mut bound = f64::INFINITY;
        let mut until: Option<Instant> = None;
        for (i, m) in self.members.iter().enumerate() {
            let Some(since) = m.dry_since else { continue };
            if i == first.member || m.role != Role::Conn || m.head.is_some() {
                continue;
            }
            let end = since + IDLE_WAIT;
            let live = m.clock.is_some_and(|c| c >= wall - LATENESS);
            if now >= end || live {
                continue;
            }
            let b = m.clock.unwrap_or(f64::NEG_INFINITY);
            if first.key > b {
                until = Some(until.map_or(end, |u| u.min(end)));
            }
            bound = bound.min(b);
        }
        if let Some(until) = until {
            return Next::Wait(until);
        }
        Next::Read {
            member: first.member,
            limit: Limit { before, bound },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (what, roles, event times per member in file order, merged order as (member, index)).
    type Case<'a> = (&'a str, &'a [Role], &'a [&'a [f64]], &'a [(usize, usize)]);

    /// The present in these tests: long after every event time in them.
    const PRESENT: f64 = 2e9;

    /// Merges `streams` (event times per member, in file order) with every member's records available
    /// from the start (complete files: a wait for one that ran dry is waited out); returns (member,
    /// record index) in the merged order.
    fn merge_all(roles: &[Role], streams: &[Vec<f64>]) -> Vec<(usize, usize)> {
        let mut now = Instant::now();
        let mut g = Group::new(roles);
        let mut pos = vec![0usize; streams.len()];
        for (m, s) in streams.iter().enumerate() {
            match s.first() {
                Some(&t) => g.holds(m, Some(t)),
                None => g.dry(m, now),
            }
        }
        let mut out = Vec::new();
        loop {
            match g.next(now, PRESENT) {
                Next::Done => return out,
                Next::Wait(until) => {
                    assert!(until > now);
                    now = until;
                }
                Next::Read { member, limit } => {
                    // Read on as the tail does: admit while the gate says so.
                    loop {
                        let Some(&t) = streams[member].get(pos[member]) else {
                            g.dry(member, now);
                            break;
                        };
                        if !limit.admits(&g.rank(member, Some(t))) {
                            g.holds(member, Some(t));
                            break;
                        }
                        g.taken(member, Some(t));
                        out.push((member, pos[member]));
                        pos[member] += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn merge_order_table() {
        use Role::{Conn, Context};
        let cases: &[Case] = &[
            (
                "round-robin split of a stream in end order: the stream again",
                &[Conn, Conn],
                &[&[1.0, 3.0, 5.0], &[2.0, 4.0, 6.0]],
                &[(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)],
            ),
            (
                "three files, one far behind the others",
                &[Conn, Conn, Conn],
                &[&[100.0, 103.0], &[1.0, 2.0], &[101.0, 104.0]],
                &[(1, 0), (1, 1), (0, 0), (2, 0), (0, 1), (2, 1)],
            ),
            (
                "a late record keeps its source's clock: it does not jump ahead",
                &[Conn, Conn],
                &[&[10.0, 30.0, 5.0, 40.0], &[20.0, 35.0]],
                &[(0, 0), (1, 0), (0, 1), (0, 2), (1, 1), (0, 3)],
            ),
            (
                "equal keys: the lower source first",
                &[Conn, Conn],
                &[&[7.0], &[7.0]],
                &[(0, 0), (1, 0)],
            ),
            (
                "a context record goes before the first conn record whose end reaches its ts",
                &[Conn, Context],
                &[&[10.0, 20.0, 30.0], &[10.0, 15.0, 31.0]],
                &[(1, 0), (0, 0), (1, 1), (0, 1), (0, 2), (1, 2)],
            ),
            (
                "context files among themselves by ts",
                &[Context, Conn, Context],
                &[&[5.0, 9.0], &[100.0], &[4.0, 6.0]],
                &[(2, 0), (0, 0), (2, 1), (0, 1), (1, 0)],
            ),
        ];
        for (what, roles, streams, want) in cases {
            let streams: Vec<Vec<f64>> = streams.iter().map(|s| s.to_vec()).collect();
            assert_eq!(&merge_all(roles, &streams), want, "{what}");
        }
    }

    #[test]
    fn a_dry_conn_source_behind_the_present_holds_others_back_for_a_while_only() {
        let t0 = Instant::now();
        let mut g = Group::new(&[Role::Conn, Role::Conn, Role::Context]);
        // Member 0 gave records up to 1000 s, then ran dry, long before the present.
        g.holds(0, Some(1000.0));
        g.taken(0, Some(1000.0));
        g.dry(0, t0);
        // Records up to its clock go on, bounded by it.
        g.holds(1, Some(1000.0));
        match g.next(t0, PRESENT) {
            Next::Read { member: 1, limit } => {
                assert_eq!(limit.bound, 1000.0);
                assert!(!limit.admits(&g.rank(1, Some(1000.5))));
            }
            other => panic!("{other:?}"),
        }
        // Past it: wait, until IDLE_WAIT after it ran dry.
        g.holds(1, Some(1000.5));
        assert_eq!(g.next(t0, PRESENT), Next::Wait(t0 + IDLE_WAIT));
        assert_eq!(
            g.next(t0 + IDLE_WAIT / 2, PRESENT),
            Next::Wait(t0 + IDLE_WAIT)
        );
        // Then the others go on.
        assert!(matches!(
            g.next(t0 + IDLE_WAIT, PRESENT),
            Next::Read {
                member: 1,
                limit: Limit { bound, .. }
            } if bound == f64::INFINITY
        ));
        // Once it has a record again and runs dry again, it is waited for again.
        g.holds(0, Some(1001.0));
        g.taken(0, Some(1001.0));
        let later = t0 + IDLE_WAIT * 2;
        g.dry(0, later);
        g.holds(1, Some(1002.0));
        assert_eq!(g.next(later, PRESENT), Next::Wait(later + IDLE_WAIT));
        // Live (its clock within LATENESS of the present) it holds nobody back.
        assert!(matches!(
            g.next(later, 1001.0 + LATENESS),
            Next::Read { member: 1, .. }
        ));
        assert_eq!(
            g.next(later, 1001.0 + LATENESS + 1.0),
            Next::Wait(later + IDLE_WAIT)
        );
        // A dry context source holds nobody back.
        let mut g = Group::new(&[Role::Context, Role::Conn]);
        g.dry(0, t0);
        g.holds(1, Some(5000.0));
        assert!(matches!(g.next(t0, PRESENT), Next::Read { member: 1, .. }));
        // A conn source that has given nothing since the start is waited for too (its file may come).
        let mut g = Group::new(&[Role::Conn, Role::Conn]);
        g.dry(0, t0);
        g.holds(1, Some(5000.0));
        assert_eq!(g.next(t0, PRESENT), Next::Wait(t0 + IDLE_WAIT));
        // Records without a time never wait.
        g.holds(1, None);
        assert!(matches!(g.next(t0, PRESENT), Next::Read { member: 1, .. }));
    }
}
