//! Figures for the binary checkpoint (issue 13), printed, never asserted: at 1 million one-connection groups
//! (`LONGCONN_BENCH_GROUPS`), the bytes per group on disk, the time of a full write (encode, write, fsync,
//! and `checkpoint.json` beside it), the time and size of an incremental write after 1% of the groups were
//! touched, and the time to restore the window from `checkpoint.json` and the store (full write plus that
//! delta) as the daemon does at start; the JSON checkpoint of earlier builds beside it for comparison.
//!
//! Run: `cargo bench --bench checkpoint`. `LONGCONN_BENCH_RESTORES` (default 3) sets how many times the
//! restore is timed (the best and the median are printed); `LONGCONN_BENCH_JSON=0` leaves out the JSON
//! comparison.

use longconn::checkpoint::groups::{self, GroupStore, StoreRef};
use longconn::checkpoint::CheckpointStore;
use longconn::config::Config;
use longconn::detector::{Detector, DetectorState};
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
    let save = |det: &Detector, r: &StoreRef| -> u64 {
        store
            .save(&Saved {
                version: 1,
                detector: det.snapshot_header(),
                groups_store: Some(r.clone()),
            })
            .expect("save checkpoint.json")
    };

    // Full write.
    let t = Instant::now();
    let p = gs.write(&det).expect("full write");
    let json_len = save(&det, &p.store);
    let full_secs = t.elapsed().as_secs_f64();
    let full_bytes = p.bytes;
    gs.commit(p);
    det.clear_changes();
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
    let t = Instant::now();
    let p = gs.write(&det).expect("delta write");
    let json_len = save(&det, &p.store);
    let delta_secs = t.elapsed().as_secs_f64();
    let delta_bytes = p.bytes;
    gs.commit(p);
    det.clear_changes();
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
        let restored = store
            .load_then::<Saved, _>(1, |s| {
                let r = s.groups_store.clone().expect("store named");
                Detector::restore_with(&dcfg, s.detector, |w, c| groups::load(dir.path(), &r, w, c))
                    .map_err(|e| longconn::checkpoint::LoadError::SetAside(format!("{e:?}")))
            })
            .expect("load")
            .expect("there");
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
