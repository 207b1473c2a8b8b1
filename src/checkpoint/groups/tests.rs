//! The group store against the JSON checkpoint: detector states built by the real detector (many groups,
//! IPv4 and IPv6, one and many connections, interim records, names from context, alerts and repeats,
//! evictions and expiries) saved in full and as deltas, restored, and compared with what the JSON round
//! trip restores; every byte flipped is caught; torn appends, unknown versions and foreign files.

use super::*;
use crate::detector::fixtures::{self, rec};
use crate::detector::{Detector, DetectorConfig, DetectorState};
use crate::zeek::context::{ContextKind, ContextRecord};
use crate::zeek::{ConnRecord, SourceKind};
use std::time::Duration;

const T0: f64 = 1_700_000_000.0;

/// A deterministic mixed stream: `pairs` host pairs (a tenth IPv6), mostly short connections with some long
/// ones, some records out of order, every seventh record of a pair an interim record of a connection
/// still open that its final record closes later, and TLS names for some servers.
fn stream(n: u32, pairs: u64, seed: u64) -> Vec<(ConnRecord, SourceKind)> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    for i in 0..n {
        let p = next() % pairs;
        let (orig, resp) = if p % 10 == 3 {
            (
                format!("fd00::{:x}", p / 7 + 1),
                format!("2001:db8::{:x}", p + 1),
            )
        } else {
            (
                format!("10.{}.{}.{}", p / 60_000, (p / 250) % 240, p % 250 + 1),
                format!("198.51.100.{}", p % 200 + 1),
            )
        };
        let ts = T0 + f64::from(i) * 20.0 - (next() % 600) as f64;
        let dur = if next() % 9 == 0 {
            (next() % (14 * 3600)) as f64 + 0.5
        } else {
            (next() % 1800) as f64 + 0.25
        };
        let uid = format!("C{:017x}", next() % (1 << 60));
        let mut r = rec(&uid, &orig, &resp, ts, dur);
        r.resp_p = Some([443, 22, 8443, 53][(p % 4) as usize]);
        if p % 13 == 5 {
            r.proto = "udp".into();
        }
        if i % 7 == 3 && dur > 600.0 {
            let mut open = r.clone();
            open.duration = Some(dur / 2.0);
            out.push((open, SourceKind::ConnLong));
        }
        out.push((r, SourceKind::Conn));
    }
    out
}

fn feed(d: &mut Detector, recs: &[(ConnRecord, SourceKind)]) -> Vec<crate::alert::Alert> {
    let mut out = Vec::new();
    for (i, (r, kind)) in recs.iter().enumerate() {
        if i % 11 == 0 {
            if let (Some(orig), Some(resp)) = (r.orig_h, r.resp_h) {
                d.process_context(&ContextRecord {
                    kind: ContextKind::Ssl,
                    ts: r.ts.unwrap_or(T0),
                    uid: r.uid.clone(),
                    orig_h: orig,
                    resp_h: Some(resp),
                    resp_p: r.resp_p,
                    name: Some(format!("s{}.example.com", i % 5).into()),
                    answers: Vec::new(),
                });
            }
        }
        d.process(r, *kind, &mut out);
    }
    out
}

fn config(max_groups: usize, window_h: u64, pair_port: bool) -> DetectorConfig {
    let mut cfg = fixtures::config();
    cfg.window.max_groups = max_groups;
    cfg.window.length = Duration::from_secs(window_h * 3600);
    if pair_port {
        cfg.window.group_by = crate::window::GroupBy::PairPort;
    }
    cfg.cumulative.realert_after = Some(Duration::from_secs(2 * 3600));
    cfg.source_kinds = vec![SourceKind::Conn, SourceKind::ConnLong];
    cfg
}

/// The detector the JSON checkpoint restores.
fn via_json(cfg: &DetectorConfig, d: &Detector) -> Detector {
    let json = serde_json::to_string(&d.snapshot()).expect("serialize");
    let state: DetectorState = serde_json::from_str(&json).expect("parse");
    Detector::restore(cfg, state)
}

/// The detector the store committed as `r` (with the header saved beside it) restores.
fn via_store(
    cfg: &DetectorConfig,
    dir: &Path,
    header: DetectorState,
    r: &StoreRef,
) -> Result<Detector, StoreError> {
    Detector::restore_with(cfg, header, |w, c, i| load(dir, r, w, c, i))
}

/// `a == b`, naming the first group (or part) that differs rather than printing both states.
fn assert_same(a: &DetectorState, b: &DetectorState, what: &str) {
    if a == b {
        return;
    }
    let (ga, gb) = (&a.window.groups, &b.window.groups);
    assert_eq!(ga.len(), gb.len(), "{what}: group count");
    for (x, y) in ga.iter().zip(gb) {
        assert_eq!(x, y, "{what}: first group that differs");
    }
    assert_eq!(
        a.window.state_header_only(),
        b.window.state_header_only(),
        "{what}"
    );
    assert_eq!(a.stats, b.stats, "{what}");
    assert_eq!(a.interim, b.interim, "{what}");
    assert_eq!(a.context, b.context, "{what}");
    panic!("{what}: states differ");
}

trait HeaderOnly {
    fn state_header_only(&self) -> (i64, String, Option<i64>, u64, u64, u64);
}

impl<S> HeaderOnly for crate::window::WindowState<S> {
    fn state_header_only(&self) -> (i64, String, Option<i64>, u64, u64, u64) {
        (
            self.length_us,
            self.group_by.clone(),
            self.watermark_us,
            self.evictions,
            self.expired,
            self.since_sweep,
        )
    }
}

fn commit_write(store: &mut GroupStore, d: &mut Detector) -> (bool, u64) {
    let p = store.write(d).expect("write");
    let out = (p.full, p.bytes);
    store.commit(p);
    d.clear_changes();
    out
}

#[test]
fn full_write_restores_the_state_the_json_checkpoint_holds() {
    for pair_port in [false, true] {
        let cfg = config(1_000_000, 24, pair_port);
        let mut d = Detector::new(&cfg);
        let alerts = feed(&mut d, &stream(6_000, 900, 7));
        assert!(!alerts.is_empty());
        assert!(d.stats().groups_tracked > 500, "{:?}", d.stats());
        let dir = tempfile::tempdir().expect("tmp");
        let mut store = GroupStore::new(dir.path());
        let (full, _) = commit_write(&mut store, &mut d);
        assert!(full, "the first write is a full one");
        let r = store.current().expect("committed").clone();
        let back = via_store(&cfg, dir.path(), d.snapshot_header(), &r).expect("load");
        assert_same(&back.snapshot(), &d.snapshot(), "store");
        assert_same(&via_json(&cfg, &d).snapshot(), &d.snapshot(), "json");
        assert_same(
            &back.snapshot(),
            &via_json(&cfg, &d).snapshot(),
            "store vs json",
        );
        // And it goes on as the detector restored from JSON does, and as the one that never stopped.
        let more = stream(3_000, 900, 8);
        let (mut a, mut b) = (d, back);
        let mut j = via_json(&cfg, &a);
        let want = feed(&mut a, &more);
        assert_eq!(feed(&mut b, &more), want);
        assert_eq!(feed(&mut j, &more), want);
        assert_same(&b.snapshot(), &j.snapshot(), "after more records");
    }
}

/// Deltas between full writes: each restores the live state exactly, through evictions (a small
/// `max_groups`), expiries (a short window) and compactions.
#[test]
fn deltas_restore_the_live_state_exactly_and_compact() {
    let cfg = config(150, 6, false);
    let mut d = Detector::new(&cfg);
    d.track_changes();
    let recs = stream(24_000, 3_000, 11);
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = GroupStore::new(dir.path());
    let (mut fulls, mut deltas) = (0, 0);
    // The same restarts from the JSON checkpoint.
    let mut j = Detector::new(&cfg);
    let mut want = Vec::new();
    let mut got = Vec::new();
    for (round, chunk) in recs.chunks(300).enumerate() {
        got.extend(feed(&mut d, chunk));
        want.extend(feed(&mut j, chunk));
        let (full, _) = commit_write(&mut store, &mut d);
        if full {
            fulls += 1;
        } else {
            deltas += 1;
        }
        if round % 5 == 0 {
            let r = store.current().expect("committed").clone();
            let back = via_store(&cfg, dir.path(), d.snapshot_header(), &r).expect("load");
            assert_same(&back.snapshot(), &d.snapshot(), &format!("round {round}"));
            // Restarted from here, as from the JSON checkpoint: the same state, the same alerts.
            j = via_json(&cfg, &j);
            assert_same(
                &back.snapshot(),
                &j.snapshot(),
                &format!("json, round {round}"),
            );
            d = back;
            d.track_changes();
        }
    }
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "alert {i}");
    }
    assert!(
        d.stats().evictions > 0 && d.stats().groups_expired > 0,
        "{:?}",
        d.stats()
    );
    assert!(
        deltas > 20 && fulls > 1,
        "{fulls} full writes, {deltas} deltas"
    );
    let names: Vec<String> = fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(names.len(), 1, "old stores are removed: {names:?}");
}

/// A delta after a small share of the groups changed is that share of the full write. With conn.log as
/// the only source (the store also holds the uids of long connections closed when interim logs are read:
/// see `interim_uids_restore_exactly_and_a_uid_closed_again_is_forgotten_after_its_last_close`).
#[test]
fn a_delta_is_as_large_as_what_changed() {
    let mut cfg = config(1_000_000, 24, false);
    cfg.source_kinds = vec![SourceKind::Conn];
    let mut d = Detector::new(&cfg);
    d.track_changes();
    let mut recs = Vec::new();
    for i in 0..20_000u32 {
        let orig = format!("10.{}.{}.{}", i / 62_500, (i / 250) % 250, i % 250 + 1);
        let r = rec(
            &format!("C{i:017}"),
            &orig,
            "203.0.113.7",
            T0 + f64::from(i) * 0.01,
            60.0,
        );
        recs.push(r);
    }
    let mut out = Vec::new();
    for r in &recs {
        d.process(r, SourceKind::Conn, &mut out);
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = GroupStore::new(dir.path());
    let (_, full_bytes) = commit_write(&mut store, &mut d);
    let per_group = full_bytes as f64 / 20_000.0;
    assert!(
        per_group <= 64.0,
        "{per_group} bytes per one-connection group"
    );
    for r in recs.iter().step_by(100) {
        let mut r = r.clone();
        r.ts = r.ts.map(|t| t + 300.0);
        r.uid = format!("D{}", &r.uid[1..]).into();
        d.process(&r, SourceKind::Conn, &mut out);
    }
    let (full, delta_bytes) = commit_write(&mut store, &mut d);
    assert!(!full);
    let share = delta_bytes as f64 / full_bytes as f64;
    assert!(
        (0.005..0.03).contains(&share),
        "{delta_bytes} of {full_bytes}"
    );
    let r = store.current().expect("committed").clone();
    let back = via_store(&cfg, dir.path(), d.snapshot_header(), &r).expect("load");
    assert_eq!(back.snapshot(), d.snapshot());
}

/// A small store with a full write and two deltas.
fn small_store() -> (tempfile::TempDir, DetectorConfig, Detector, StoreRef) {
    let cfg = config(1_000, 24, false);
    let mut d = Detector::new(&cfg);
    d.track_changes();
    let recs = stream(90, 40, 3);
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = GroupStore::new(dir.path());
    for chunk in recs.chunks(30) {
        feed(&mut d, chunk);
        commit_write(&mut store, &mut d);
    }
    let r = store.current().expect("committed").clone();
    (dir, cfg, d, r)
}

#[test]
fn any_byte_flipped_is_caught() {
    let (dir, cfg, d, r) = small_store();
    let path = dir.path().join(&r.file);
    let good = fs::read(&path).expect("read");
    assert_eq!(good.len() as u64, r.len);
    for at in 0..good.len() {
        for flip in [0x01u8, 0x80] {
            let mut bytes = good.clone();
            bytes[at] ^= flip;
            fs::write(&path, &bytes).expect("write");
            let mut w = Window::<GroupData>::new(1, crate::window::GroupBy::Pair, 10);
            let mut c = Context::default();
            let mut i = Interim::default();
            match load(dir.path(), &r, &mut w, &mut c, &mut i) {
                Err(StoreError::Damaged(m)) => assert!(m.contains(&r.file), "{m}"),
                Err(e) => panic!("byte {at} ^ {flip:#x}: {e:?}"),
                Ok(_) => panic!("byte {at} ^ {flip:#x} was not caught"),
            }
        }
    }
    fs::write(&path, &good).expect("write");
    let back = via_store(&cfg, dir.path(), d.snapshot_header(), &r).expect("load");
    assert_eq!(back.snapshot(), d.snapshot());
}

/// Bytes after the committed length (a crash mid-append, before checkpoint.json named them) are not
/// read, and the next append replaces them.
#[test]
fn a_torn_append_is_ignored_and_cut_by_the_next() {
    let (dir, cfg, mut d, r) = small_store();
    let path = dir.path().join(&r.file);
    let committed = d.snapshot();
    let mut f = OpenOptions::new().append(true).open(&path).expect("open");
    f.write_all(&[0x40, 0, 0, 0, 1, 2, 3]).expect("torn");
    drop(f);
    let back = via_store(&cfg, dir.path(), d.snapshot_header(), &r).expect("load");
    assert_eq!(back.snapshot(), committed);
    // A delta written but never committed (checkpoint.json not saved): the old ref still loads.
    d.track_changes();
    feed(&mut d, &stream(20, 40, 5));
    let mut store = GroupStore::new(dir.path());
    store.adopt(r.clone());
    let p = store.write(&d).expect("write");
    assert!(!p.full);
    let header_then = back.snapshot_header();
    assert_eq!(
        via_store(&cfg, dir.path(), header_then, &r)
            .expect("load")
            .snapshot(),
        committed
    );
    store.commit(p);
    let r2 = store.current().expect("committed").clone();
    assert!(r2.len > r.len);
    let back = via_store(&cfg, dir.path(), d.snapshot_header(), &r2).expect("load");
    assert_eq!(back.snapshot(), d.snapshot());
}

/// A compaction (a full write to a new file) that checkpoint.json never named: the previous store still
/// loads whole; once committed, the previous file goes.
#[test]
fn an_uncommitted_compaction_leaves_the_previous_store() {
    let (dir, cfg, mut d, r) = small_store();
    let committed = d.snapshot();
    let header = d.snapshot_header();
    feed(&mut d, &stream(30, 40, 9));
    let store = GroupStore::new(dir.path());
    // No current store: a full write, to a new file.
    let p = store.write(&d).expect("write");
    assert!(p.is_full());
    assert_ne!(p.store.file, r.file);
    let back = via_store(&cfg, dir.path(), header.clone(), &r).expect("load");
    assert_eq!(
        back.snapshot(),
        committed,
        "the crash case: the old one stands"
    );
    // Checkpoint.json could not be saved: the new file goes, the old one stands.
    let new_file = dir.path().join(&p.store.file);
    store.abandon(p);
    assert!(!new_file.exists());
    let back = via_store(&cfg, dir.path(), header, &r).expect("load");
    assert_eq!(back.snapshot(), committed);
    // Committed: the old file goes.
    let mut store = GroupStore::new(dir.path());
    let p = store.write(&d).expect("write");
    let r2 = p.store.clone();
    store.commit(p);
    assert!(!dir.path().join(&r.file).exists());
    let back = via_store(&cfg, dir.path(), d.snapshot_header(), &r2).expect("load");
    assert_eq!(back.snapshot(), d.snapshot());
}

#[test]
fn a_store_of_another_version_is_refused_by_name() {
    let (dir, cfg, d, r) = small_store();
    let path = dir.path().join(&r.file);
    let mut bytes = fs::read(&path).expect("read");
    bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..20]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    fs::write(&path, &bytes).expect("write");
    match via_store(&cfg, dir.path(), d.snapshot_header(), &r) {
        Err(StoreError::Damaged(m)) => {
            assert!(
                m.contains("checkpoint store version 9 is not supported (this build reads 1 to 2)"),
                "{m}"
            );
            assert!(m.contains(&path.display().to_string()), "{m}");
        }
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("version 9 was read"),
    }
}

#[test]
fn missing_short_foreign_or_misnamed_stores_are_damaged() {
    let (dir, cfg, d, r) = small_store();
    let damaged = |r: &StoreRef| match via_store(&cfg, dir.path(), d.snapshot_header(), r) {
        Err(StoreError::Damaged(m)) => m,
        other => panic!("{:?}", other.map(|_| ())),
    };
    let m = damaged(&StoreRef {
        len: r.len + 1,
        ..r.clone()
    });
    assert!(m.contains("shorter"), "{m}");
    let m = damaged(&StoreRef {
        id: r.id ^ 1,
        ..r.clone()
    });
    assert!(m.contains("id"), "{m}");
    let m = damaged(&StoreRef {
        file: "../../etc/passwd".into(),
        ..r.clone()
    });
    assert!(m.contains("not one this build writes"), "{m}");
    let m = damaged(&StoreRef {
        file: file_name(r.id ^ 1),
        ..r.clone()
    });
    assert!(m.contains("missing"), "{m}");
    // A length that cuts a chunk.
    let m = damaged(&StoreRef {
        len: r.len - 3,
        ..r.clone()
    });
    assert!(m.contains("cut short"), "{m}");
}

#[test]
fn varints_round_trip_at_their_edges() {
    let mut buf = Vec::new();
    let us = [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX];
    let is = [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN];
    for v in us {
        put_u(&mut buf, v);
    }
    for v in is {
        put_i(&mut buf, v);
    }
    let mut r = Reader { b: &buf, pos: 0 };
    for v in us {
        assert_eq!(r.u(), Ok(v));
    }
    for v in is {
        assert_eq!(r.i(), Ok(v));
    }
    assert_eq!(r.pos, buf.len());
    let mut r = Reader {
        b: &[0xff; 11],
        pos: 0,
    };
    assert!(r.u().is_err());
}

/// The window's chunks applied beside the context's, on two threads, restore what one thread does, and
/// every byte flipped is reported the same way (the first damaged chunk in the file's order).
#[test]
fn two_threads_restore_and_report_damage_as_one_does() {
    let (dir, cfg, d, r) = small_store();
    let path = dir.path().join(&r.file);
    let good = fs::read(&path).expect("read");
    let f = File::open(&path).expect("open");
    let (frames, cut) = split_frames(&f, r.len).expect("frames");
    assert!(cut.is_none());
    let kinds: Vec<_> = frames.iter().map(|fr| fr.kind).collect();
    assert!(kinds.contains(&Some(KIND_GROUPS)), "{kinds:?}");
    assert!(kinds.contains(&Some(KIND_REACH)), "{kinds:?}");
    drop(f);
    let run = |parallel: bool| {
        Detector::restore_with(&cfg, d.snapshot_header(), |w, c, i| {
            load_with(dir.path(), &r, w, c, i, parallel)
        })
    };
    let (Ok(one), Ok(two)) = (run(false), run(true)) else {
        panic!("not restored");
    };
    assert_same(&one.snapshot(), &d.snapshot(), "one thread");
    assert_same(&two.snapshot(), &d.snapshot(), "two threads");
    let mut caught = 0;
    for at in 0..good.len() {
        for flip in [0x01u8, 0x80] {
            let mut bytes = good.clone();
            bytes[at] ^= flip;
            fs::write(&path, &bytes).expect("write");
            let one = run(false).map(|_| ()).expect_err("caught by one thread");
            let two = run(true).map(|_| ()).expect_err("caught by two threads");
            assert_eq!(one, two, "byte {at} ^ {flip:#x}");
            caught += 1;
        }
    }
    assert_eq!(caught, good.len() * 2);
}

/// Groups whose uids are of every form (Zeek's, packed; empty; too long; other characters), with more
/// connections than uids are kept, names and an episode's first record apart: one record each, read
/// back equal, in the same bytes the JSON layout gives.
#[test]
fn uids_of_every_form_round_trip_through_a_record() {
    let mut d = Detector::new(&config(100, 24, false));
    let mut out = Vec::new();
    for i in 0..180u32 {
        let uid = match i % 5 {
            0 => format!("C{i:017}"),
            1 => String::new(),
            2 => format!("C{i}abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
            3 => format!("not-base-62 {i}"),
            _ => format!("Cé{i}"),
        };
        let host = format!("10.0.0.{}", i % 3 + 1);
        let ts = T0 + f64::from(i) * 30.0 - f64::from(i % 4) * 100.0;
        if i % 9 < 3 {
            d.process_context(&ContextRecord {
                kind: ContextKind::Ssl,
                ts,
                uid: uid.clone().into(),
                orig_h: host.parse().expect("addr"),
                resp_h: Some("198.51.100.7".parse().expect("addr")),
                resp_p: Some(443),
                name: Some(format!("n{}.example.com", i % 4).into()),
                answers: Vec::new(),
            });
        }
        let r = rec(&uid, &host, "198.51.100.7", ts, 3600.0 + f64::from(i));
        d.process(&r, SourceKind::Conn, &mut out);
    }
    assert!(!out.is_empty(), "alerts were raised");
    let t = d.window().watermark().unwrap_or(0);
    let mut n = 0;
    for (k, slot) in d.window().groups() {
        let mut buf = Vec::new();
        put_group(&mut buf, t, k, &slot.acc, &slot.data);
        let mut r = Reader { b: &buf, pos: 0 };
        let Ok(Record::Upsert(k2, _, back)) = read_record(&mut r, t) else {
            panic!("not read back");
        };
        assert_eq!(r.pos, buf.len());
        assert_eq!(&k2, k);
        assert_eq!(back, slot.data);
        assert_eq!(back.older_len(), crate::alert::MAX_UIDS - 1);
        assert!(!back.names().is_empty());
        assert_eq!(
            serde_json::to_string(&back).expect("json"),
            serde_json::to_string(&slot.data).expect("json")
        );
        let mut again = Vec::new();
        put_group(&mut again, t, &k2, &slot.acc, &back);
        assert_eq!(again, buf);
        n += 1;
    }
    assert_eq!(n, 3);
}

/// A stream of conn records with the ssl, http and dns records that name them: uids named twice (ssl and
/// then http, the name changing), DNS answers of one to three addresses, and names for pairs learnt
/// through a uid.
fn named_stream(n: u32, seed: u64) -> Vec<(Option<ContextRecord>, ConnRecord)> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    let mut uids: Vec<String> = Vec::new();
    for i in 0..n {
        let p = next() % 400;
        let orig = if p % 9 == 2 {
            format!("fd00::{:x}", p + 1)
        } else {
            format!("10.1.{}.{}", p / 200, p % 200 + 1)
        };
        let resp = format!("198.51.100.{}", p % 150 + 1);
        let ts = T0 + f64::from(i) * 30.0 - (next() % 300) as f64;
        let name = format!("h{}.example.org", next() % 60);
        let (Ok(o), Ok(r)) = (orig.parse(), resp.parse()) else {
            panic!("addresses")
        };
        let uid = match uids.get((next() % 50) as usize) {
            Some(u) if next() % 4 == 0 => u.clone(),
            _ => format!("C{:017x}", next() % (1 << 60)),
        };
        uids.push(uid.clone());
        if uids.len() > 50 {
            uids.remove(0);
        }
        let ctx = match next() % 4 {
            0 => Some(ContextRecord {
                kind: ContextKind::Ssl,
                ts,
                uid: uid.as_str().into(),
                orig_h: o,
                resp_h: Some(r),
                resp_p: Some(443),
                name: Some(name.into()),
                answers: Vec::new(),
            }),
            1 => Some(ContextRecord {
                kind: ContextKind::Http,
                ts,
                uid: uid.as_str().into(),
                orig_h: o,
                resp_h: Some(r),
                resp_p: if next() % 2 == 0 { Some(80) } else { None },
                name: Some(name.into()),
                answers: Vec::new(),
            }),
            2 => Some(ContextRecord {
                kind: ContextKind::Dns,
                ts,
                uid: CompactString::default(),
                orig_h: o,
                resp_h: None,
                resp_p: Some(53),
                name: Some(name.into()),
                answers: (0..=next() % 3)
                    .map(|k| IpAddr::V4(Ipv4Addr::new(198, 51, 100, ((p + k) % 150 + 1) as u8)))
                    .collect(),
            }),
            _ => None,
        };
        let mut c = rec(&uid, &orig, &resp, ts + 1.0, (next() % 7200) as f64 + 0.5);
        c.resp_p = Some(443);
        out.push((ctx, c));
    }
    out
}

fn feed_named(
    d: &mut Detector,
    recs: &[(Option<ContextRecord>, ConnRecord)],
) -> Vec<crate::alert::Alert> {
    let mut out = Vec::new();
    for (ctx, r) in recs {
        if let Some(c) = ctx {
            d.process_context(c);
        }
        d.process(r, SourceKind::Conn, &mut out);
    }
    out
}

/// The context's name maps (uid, pair and DNS names, DNS clients) through full writes and deltas, with
/// evictions (`max_entries`), expiries (a short window) and uids named again: each restore holds exactly
/// what the live detector held (the uids' expiry order too), and a detector restarted from the store at
/// every fifth checkpoint raises the alerts of one that never stopped. `checkpoint.json` holds none of
/// the maps.
#[test]
fn name_maps_restore_exactly_through_deltas_evictions_and_expiries() {
    let mut cfg = config(1_000_000, 4, false);
    cfg.context.max_entries = 150;
    let recs = named_stream(12_000, 5);
    let mut never = Detector::new(&cfg);
    let want = feed_named(&mut never, &recs);
    let mut d = Detector::new(&cfg);
    d.track_changes();
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = GroupStore::new(dir.path());
    let (mut deltas, mut got) = (0, Vec::new());
    for (round, chunk) in recs.chunks(200).enumerate() {
        got.extend(feed_named(&mut d, chunk));
        let header = d.snapshot_header();
        let c = &header.context;
        assert!(
            c.uids.is_empty() && c.pairs.is_empty() && c.dns.is_empty() && c.dns_hosts.is_empty()
        );
        let (full, _) = commit_write(&mut store, &mut d);
        deltas += usize::from(!full);
        let r = store.current().expect("committed").clone();
        let back = via_store(&cfg, dir.path(), header, &r).expect("load");
        assert_maps_same(&back, &d, &format!("round {round}"));
        assert_same(&back.snapshot(), &d.snapshot(), &format!("round {round}"));
        if round % 5 == 0 {
            d = back;
            d.track_changes();
        }
    }
    let s = d.context().stats();
    assert!(
        s.evictions > 0 && s.named_uid > 0 && s.named_pair > 0 && s.named_dns > 0,
        "{s:?}"
    );
    assert!(deltas > 30, "{deltas} deltas");
    assert_eq!(got, want);
    assert_maps_same(&d, &never, "at the end");
}

/// The name maps of `a` and `b` are the same; else the first place they differ, briefly.
fn assert_maps_same(a: &Detector, b: &Detector, what: &str) {
    let (x, y) = (a.context().name_maps_exact(), b.context().name_maps_exact());
    if x == y {
        return;
    }
    let at = x.bytes().zip(y.bytes()).take_while(|(p, q)| p == q).count();
    let from = x[..at].rfind('(').unwrap_or(0);
    let end = |s: &str| (from + 240).min(s.len());
    panic!(
        "{what}: the name maps differ at byte {at}:\n  restored: {}\n  live:     {}",
        x.get(from..end(&x)).unwrap_or(""),
        y.get(from..end(&y)).unwrap_or("")
    );
}

/// A delta after 1% of 20,000 uid names changed is about 1% of the full write.
#[test]
fn a_delta_of_the_name_maps_is_as_large_as_what_changed() {
    let cfg = config(1_000_000, 24, false);
    let mut d = Detector::new(&cfg);
    d.track_changes();
    let ssl = |i: u32, ts: f64| ContextRecord {
        kind: ContextKind::Ssl,
        ts,
        uid: format!("C{i:017}").into(),
        orig_h: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
        resp_h: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
        resp_p: Some(443),
        name: Some(format!("s{}.example.com", i % 1000).into()),
        answers: Vec::new(),
    };
    for i in 0..20_000u32 {
        d.process_context(&ssl(i, T0 + f64::from(i) * 0.01));
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = GroupStore::new(dir.path());
    let (_, full_bytes) = commit_write(&mut store, &mut d);
    assert_eq!(d.context().names_len()[..2], [20_000, 20_000]);
    for i in (0..20_000u32).step_by(100) {
        d.process_context(&ssl(i, T0 + 300.0 + f64::from(i) * 0.01));
    }
    let (full, delta_bytes) = commit_write(&mut store, &mut d);
    assert!(!full);
    let share = delta_bytes as f64 / full_bytes as f64;
    assert!(
        (0.005..0.03).contains(&share),
        "{delta_bytes} of {full_bytes}"
    );
    let r = store.current().expect("committed").clone();
    let back = via_store(&cfg, dir.path(), d.snapshot_header(), &r).expect("load");
    assert_maps_same(&back, &d, "after the delta");
}

/// A version 1 store (before the name maps moved into it: `checkpoint.json` holds them) is read, and the
/// next write is a full one in this build's version.
#[test]
fn a_version_1_store_is_read_with_the_maps_of_its_checkpoint_and_rewritten_whole() {
    let cfg = config(1_000_000, 24, false);
    let mut d = Detector::new(&cfg);
    feed(&mut d, &stream(3_000, 300, 3));
    assert!(d.context().names_len()[0] > 0);
    // What the version 1 writer left: the groups and prevalence chunks, the maps in the JSON header.
    let dir = tempfile::tempdir().expect("tmp");
    let id = 0x1234_5678_9abc_def0u64;
    let mut bytes = header(id).to_vec();
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..20]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    let all = encode_full(&d);
    // The first three kinds only (groups, sources, entries): drop the chunks of kinds 4 to 7.
    let mut at = 0;
    while at < all.len() {
        let len = u32::from_le_bytes(all[at..at + 4].try_into().expect("len")) as usize;
        if all[at + 8] <= KIND_REACH {
            bytes.extend_from_slice(&all[at..at + 8 + len]);
        }
        at += 8 + len;
    }
    let name = file_name(id);
    fs::write(dir.path().join(&name), &bytes).expect("write");
    let mut header = d.snapshot_header();
    header.context = d.context().state_without_prevalence();
    header.interim = d.snapshot().interim;
    let json = serde_json::json!({
        "file": name, "id": id, "len": bytes.len(), "base_len": bytes.len(),
        "groups": d.window().len(), "sources": 0, "reach": 0
    });
    let r: StoreRef = serde_json::from_value(json).expect("a version 1 reference");
    assert_eq!(r.version, 1);
    let mut back = via_store(&cfg, dir.path(), header, &r).expect("load");
    assert_same(&back.snapshot(), &d.snapshot(), "version 1");
    back.track_changes();
    let mut store = GroupStore::new(dir.path());
    store.adopt(r);
    assert!(store.wants_full(&back));
    let (full, _) = commit_write(&mut store, &mut back);
    assert!(full);
    let r2 = store.current().expect("committed").clone();
    assert_eq!(r2.version, STORE_VERSION);
    let again = via_store(&cfg, dir.path(), back.snapshot_header(), &r2).expect("load");
    assert_same(&again.snapshot(), &d.snapshot(), "version 2");
}

/// The interim bookkeeping (open uids and the uids of closed long connections) through full writes and
/// deltas with expiries (a short `interim_timeout`): each restore holds exactly what the live detector
/// held (the close order too), a detector restarted from the store at every fifth checkpoint raises the
/// alerts of one that never stopped, and `checkpoint.json` holds none of the uids.
#[test]
fn interim_uids_restore_exactly_through_deltas_and_expiries() {
    let mut cfg = config(1_000_000, 24, false);
    cfg.cumulative.interim_timeout = Duration::from_secs(3 * 3600);
    let recs = stream(20_000, 2_000, 21);
    // Fed the same chunks (`feed` names every eleventh record of what it is given).
    let mut never = Detector::new(&cfg);
    let mut want = Vec::new();
    let mut d = Detector::new(&cfg);
    d.track_changes();
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = GroupStore::new(dir.path());
    let (mut deltas, mut got) = (0, Vec::new());
    for (round, chunk) in recs.chunks(400).enumerate() {
        got.extend(feed(&mut d, chunk));
        want.extend(feed(&mut never, chunk));
        assert_same(
            &d.snapshot(),
            &never.snapshot(),
            &format!("never stopped, round {round}"),
        );
        let header = d.snapshot_header();
        assert!(header.interim.open.is_empty() && header.interim.closed.is_empty());
        let (full, _) = commit_write(&mut store, &mut d);
        deltas += usize::from(!full);
        let r = store.current().expect("committed").clone();
        let back = via_store(&cfg, dir.path(), header, &r).expect("load");
        assert_eq!(back.interim().exact(), d.interim().exact(), "round {round}");
        assert_same(&back.snapshot(), &d.snapshot(), &format!("round {round}"));
        if round % 5 == 0 {
            d = back;
            d.track_changes();
        }
    }
    let st = d.stats();
    let [_, closed] = d.interim().len();
    assert!(
        st.interim_expired > 0 && closed > 100,
        "{st:?}, {closed} closed"
    );
    assert!(deltas > 30, "{deltas} deltas");
    assert_eq!(got, want);
    assert_eq!(d.interim().exact(), never.interim().exact());
}
