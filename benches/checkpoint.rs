//! Figures for the binary checkpoint (issue 13), printed, never asserted: at 1 million one-connection groups
//! (`LONGCONN_BENCH_GROUPS`), the bytes per group on disk, the time of a full write (encode, write, fsync,
//! and `checkpoint.json` beside it), the time and size of an incremental write after 1% of the groups were
//! touched, and the time to restore the window from `checkpoint.json` and the store (full write plus that
//! delta) as the daemon does at start; the JSON checkpoint of earlier builds beside it for comparison.
//!
//! Then the context's name maps (`LONGCONN_BENCH_NAMES`, default 500,000 ssl.log names, each a uid name
//! and a pair name, and as many DNS answers): the store's bytes per entry, the full and the incremental
//! write (1% of the names learnt again) with the size of `checkpoint.json` beside each, against the JSON
//! of the same maps that earlier builds wrote into every `checkpoint.json`, and the restore.
//!
//! Run: `cargo bench --bench checkpoint`. `LONGCONN_BENCH_RESTORES` (default 3) sets how many times the
//! restore is timed (the best and the median are printed); `LONGCONN_BENCH_JSON=0` leaves out the JSON
//! comparison.

use longconn::checkpoint::groups::{self, GroupStore, StoreRef};
use longconn::checkpoint::CheckpointStore;
use longconn::config::Config;
use longconn::detector::{Detector, DetectorState};
use longconn::zeek::context::{ContextKind, ContextRecord};
use longconn::zeek::{ConnRecord, SourceKind};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

/// What the daemon's `checkpoint.json` holds besides the file positions.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    detector: DetectorState,
    groups_store: Option<StoreRef>,
}

fn record(i: u64, ts: f64) -> ConnRecord {
    ConnRecord {
        ts: Some(ts),
        uid: format!("C{i:017}").into(),
        orig_h: Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32))),
        resp_h: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
        resp_p: Some(443),
        proto: "tcp".into(),
        duration: Some(60.0),
        orig_bytes: Some(100),
        resp_bytes: Some(1000),
        ..ConnRecord::default()
    }
}

fn main() {
    groups();
    names();
    closed_uids();
}

/// With an interim log configured, the uids of connections of a minute or more are remembered as closed
/// (`LONGCONN_BENCH_CLOSED`, default 500,000, all of one host pair): their bytes in the store against the
/// JSON earlier builds wrote into every `checkpoint.json`.
fn closed_uids() {
    let n = env_or("LONGCONN_BENCH_CLOSED", 500_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[sensor]\nname = \"bench\"\n[[source]]\npath = \"{0}/conn.log\"\n[[source]]\npath = \"{0}/conn_long.log\"\n[state]\ndir = \"{0}\"\n",
        dir.path().display(),
    );
    let cfg = Config::from_toml_str(&text).expect("config");
    let mut det = Detector::new(&cfg.detector());
    let mut out = Vec::new();
    let t0 = 1_713_484_795.0;
    for i in 0..n {
        let mut r = record(i, t0 + i as f64 * 0.01);
        r.orig_h = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        r.duration = Some(120.0);
        det.process(&r, SourceKind::Conn, &mut out);
        out.clear();
    }
    let closed = det.interim().len()[1];
    let gs = GroupStore::new(dir.path());
    let p = gs.write(&det).expect("full write");
    let json = serde_json::to_vec(&det.snapshot().interim).expect("json");
    println!(
        "closed interim uids: {closed}: {:.1} MB in the store ({:.1} bytes each, the one group included); as JSON in every checkpoint.json (earlier builds) {:.1} MB",
        p.bytes as f64 / 1e6,
        p.bytes as f64 / closed as f64,
        json.len() as f64 / 1e6
    );
}

/// A checkpoint as the daemon writes one: the store (full or delta), then `checkpoint.json` naming it;
/// committed. Returns the store's bytes written, `checkpoint.json`'s size and the seconds both took.
fn checkpoint(det: &mut Detector, gs: &mut GroupStore, store: &CheckpointStore) -> (u64, u64, f64) {
    let t = Instant::now();
    let p = gs.write(det).expect("store write");
    let json_len = store
        .save(&Saved {
            version: 1,
            detector: det.snapshot_header(),
            groups_store: Some(p.store.clone()),
        })
        .expect("save checkpoint.json");
    let secs = t.elapsed().as_secs_f64();
    let bytes = p.bytes;
    gs.commit(p);
    det.clear_changes();
    (bytes, json_len, secs)
}

/// The detector restored as the daemon does at start: `checkpoint.json`, then the store it names.
fn restore(
    store: &CheckpointStore,
    dcfg: &longconn::detector::DetectorConfig,
    dir: &std::path::Path,
) -> Detector {
    store
        .load_then::<Saved, _>(1, |s| {
            let r = s.groups_store.clone().expect("store named");
            Detector::restore_with(dcfg, s.detector, |w, c, i| groups::load(dir, &r, w, c, i))
                .map_err(|e| longconn::checkpoint::LoadError::SetAside(format!("{e:?}")))
        })
        .expect("load")
        .expect("there")
}

fn env_or(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// An ssl.log record naming connection `i` (its uid and its pair), or a dns.log answer to client `i`.
fn named(i: u64, ts: f64, dns: bool) -> ContextRecord {
    let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32));
    let server = IpAddr::V4(Ipv4Addr::from(0xcb00_7100 + (i % 50_000) as u32));
    ContextRecord {
        kind: if dns {
            ContextKind::Dns
        } else {
            ContextKind::Ssl
        },
        ts,
        uid: if dns {
            Default::default()
        } else {
            format!("C{i:017}").into()
        },
        orig_h: client,
        resp_h: (!dns).then_some(server),
        resp_p: Some(if dns { 53 } else { 443 }),
        name: Some(format!("host{}.example.com", i % 50_000).into()),
        answers: if dns { vec![server] } else { Vec::new() },
    }
}

/// The context's name maps in the store against the JSON earlier builds wrote into `checkpoint.json`.
fn names() {
    let n = env_or("LONGCONN_BENCH_NAMES", 500_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[sensor]\nname = \"bench\"\n[[source]]\npath = \"{0}/conn.log\"\n[[source]]\npath = \"{0}/ssl.log\"\n[[source]]\npath = \"{0}/dns.log\"\n[state]\ndir = \"{0}\"\n",
        dir.path().display(),
    );
    let cfg = Config::from_toml_str(&text).expect("config");
    let dcfg = cfg.detector();
    let mut det = Detector::new(&dcfg);
    det.track_changes();
    let t0 = 1_713_484_795.0;
    for i in 0..n {
        det.process_context(&named(i, t0 + i as f64 * 0.001, false));
        det.process_context(&named(i, t0 + i as f64 * 0.001, true));
    }
    let entries: u64 = det.context().names_len().iter().sum();
    let store = CheckpointStore::new(dir.path());
    let mut gs = GroupStore::new(dir.path());
    let (full_bytes, json_len, full_secs) = checkpoint(&mut det, &mut gs, &store);
    println!(
        "name maps: {entries} entries (uid names, pair names, DNS answers, DNS clients: {:?})",
        det.context().names_len()
    );
    println!(
        "name maps, full write: {:.1} MB ({:.1} bytes per entry; checkpoint.json {json_len} bytes) in {full_secs:.3} s",
        full_bytes as f64 / 1e6,
        full_bytes as f64 / entries as f64,
    );
    let later = t0 + n as f64 * 0.001 + 10.0;
    for i in (0..n).step_by(100) {
        det.process_context(&named(i, later + i as f64 * 1e-6, false));
        det.process_context(&named(i, later + i as f64 * 1e-6, true));
    }
    let (delta_bytes, json_len, delta_secs) = checkpoint(&mut det, &mut gs, &store);
    println!(
        "name maps, incremental write, 1% learnt again: {:.3} MB ({:.2}% of the full write; checkpoint.json {json_len} bytes) in {delta_secs:.3} s",
        delta_bytes as f64 / 1e6,
        delta_bytes as f64 * 100.0 / full_bytes as f64,
    );
    let t = Instant::now();
    let json = serde_json::to_vec(&det.context().state_without_prevalence()).expect("json");
    println!(
        "name maps as JSON in every checkpoint.json (earlier builds): {:.1} MB ({:.1} bytes per entry), serialized in {:.3} s (without writing)",
        json.len() as f64 / 1e6,
        json.len() as f64 / entries as f64,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let restored = restore(&store, &dcfg, dir.path());
    assert_eq!(restored.context().names_len(), det.context().names_len());
    println!("name maps, restore: {:.3} s", t.elapsed().as_secs_f64());
}

fn groups() {
    let n: u64 = std::env::var("LONGCONN_BENCH_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[sensor]\nname = \"bench\"\n[[source]]\npath = \"{0}/conn.log\"\n[state]\ndir = \"{0}\"\n[window]\nmax_groups = {1}\n",
        dir.path().display(),
        n * 2
    );
    let cfg = Config::from_toml_str(&text).expect("config");
    let dcfg = cfg.detector();
    let mut det = Detector::new(&dcfg);
    det.track_changes();
    let mut out = Vec::new();
    let t0 = 1_713_484_795.0;
    for i in 0..n {
        det.process(
            &record(i, t0 + i as f64 * 0.001),
            SourceKind::Conn,
            &mut out,
        );
    }
    out.clear();
    println!(
        "checkpoint bench: {} one-connection groups",
        det.stats().groups_tracked
    );

    let store = CheckpointStore::new(dir.path());
    let mut gs = GroupStore::new(dir.path());

    // Full write.
    let (full_bytes, json_len, full_secs) = checkpoint(&mut det, &mut gs, &store);
    println!(
        "full write: {:.1} MB ({:.1} bytes per group; checkpoint.json {} bytes) in {:.3} s",
        full_bytes as f64 / 1e6,
        full_bytes as f64 / n as f64,
        json_len,
        full_secs
    );

    // 1% of the groups touched, then an incremental write.
    let later = t0 + n as f64 * 0.001 + 10.0;
    for i in (0..n).step_by(100) {
        det.process(
            &record(i, later + i as f64 * 1e-6),
            SourceKind::Conn,
            &mut out,
        );
    }
    let (delta_bytes, json_len, delta_secs) = checkpoint(&mut det, &mut gs, &store);
    println!(
        "incremental write, 1% of the groups touched: {:.2} MB ({:.2}% of the full write; checkpoint.json {} bytes) in {:.3} s",
        delta_bytes as f64 / 1e6,
        delta_bytes as f64 * 100.0 / full_bytes as f64,
        json_len,
        delta_secs
    );

    // Restore, as the daemon does: checkpoint.json, then the store it names (three times: the machine
    // may be shared; the best is the figure).
    let want = det.stats().groups_tracked;
    let mut times = Vec::new();
    let restores: usize = std::env::var("LONGCONN_BENCH_RESTORES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for _ in 0..restores.max(1) {
        let t = Instant::now();
        let restored = restore(&store, &dcfg, dir.path());
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(restored.stats().groups_tracked, want);
        drop(restored);
    }
    let best = times.iter().copied().fold(f64::MAX, f64::min);
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "restore {want} groups (full write + one delta): {best:.3} s, median {median:.3} s (runs: {})",
        times
            .iter()
            .map(|t| format!("{t:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The JSON checkpoint of earlier builds, for comparison.
    if std::env::var("LONGCONN_BENCH_JSON").is_ok_and(|v| v == "0") {
        return;
    }
    let t = Instant::now();
    let json = serde_json::to_vec(&det.snapshot()).expect("json");
    let json_write = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let back: DetectorState = serde_json::from_slice(&json).expect("parse");
    let _ = Detector::restore(&dcfg, back);
    println!(
        "JSON checkpoint (earlier builds), for comparison: {:.0} bytes per group, serialized in {:.2} s (without writing), restored in {:.2} s",
        json.len() as f64 / n as f64,
        json_write,
        t.elapsed().as_secs_f64()
    );
}
