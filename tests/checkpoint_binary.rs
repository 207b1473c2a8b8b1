//! Issue 13, the binary checkpoint end to end, the daemon run in-process: a state directory holding a JSON
//! checkpoint as earlier builds wrote it (the whole window inline, written here by the same library calls the
//! daemon of those builds made) is upgraded, and every alert id afterwards is the one `replay` raises over
//! the whole input, across a second restart from the binary checkpoint; a byte flipped in the group store
//! is found and the checkpoint set aside, as a damaged `checkpoint.json` is (the daemon starts without it).

use crate::support::inproc::InProc;
use crate::support::sensor::{replay, row, Sensor};
use longconn::checkpoint::CheckpointStore;
use longconn::daemon::{RunOptions, SavedState};
use longconn::detector::{parse_options, Detector};
use longconn::tail::{TailEvent, Tailer};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// Rows of 40 sources to 7 servers: every fifth connection 2 h long (a single alert, suppressed for its
/// group afterwards), the others 25 min (cumulative sums that reach the levels over the rows).
fn rows(range: std::ops::Range<u32>) -> String {
    range
        .map(|n| {
            let orig = format!("10.0.{}.{}", n % 3, n % 40 + 1);
            let resp = format!("198.51.100.{}", n % 7 + 1);
            let dur = if n % 5 == 0 { 7200.0 } else { 1500.0 };
            row(n * 60, &orig, &resp, dur)
        })
        .collect()
}

/// The config: the sensor's, with the default cumulative levels (the sensor's switches them off).
fn write_config(s: &Sensor) {
    write_config_with(s, "");
}

fn write_config_with(s: &Sensor, extra: &str) {
    let text = format!(
        "[sensor]\nname = \"test\"\n[[source]]\npath = \"{}\"\n[state]\ndir = \"{}\"\ncheckpoint_interval = \"200ms\"\n[[output]]\ntype = \"file\"\npath = \"{}\"\n{extra}",
        s.log().display(),
        s.path("state").display(),
        s.path("alerts.json").display(),
    );
    fs::write(s.config(), text).expect("config");
}

fn id_of(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).expect("alert json");
    v["event"]["id"].as_str().expect("event.id").to_string()
}

fn delivered_ids(s: &Sensor) -> Vec<String> {
    fs::read_to_string(s.path("alerts.json"))
        .unwrap_or_default()
        .lines()
        .map(id_of)
        .collect()
}

/// What a daemon of an earlier build saved after reading the whole of `conn.log`: its file position and the
/// detector state, the window inline, as JSON (`CheckpointStore::save` of a `SavedState`); returns the ids of
/// the alerts it raised.
fn write_json_checkpoint(s: &Sensor) -> Vec<String> {
    let (cfg, _) = longconn::config::preflight::load(&s.config()).expect("config");
    let source = &cfg.sources[0];
    let mut detector = Detector::new(&cfg.detector());
    let mut tailer = Tailer::new(source, parse_options(), None);
    let mut alerts = Vec::new();
    loop {
        let stats = tailer
            .poll(&mut |ev| match ev {
                TailEvent::Record { rec, .. } => detector.process(&rec, source.kind, &mut alerts),
                TailEvent::Context { rec } => detector.process_context(&rec),
                _ => {}
            })
            .expect("poll");
        if stats.bytes == 0 {
            break;
        }
    }
    let state = SavedState {
        version: 1,
        sources: vec![tailer.checkpoint()],
        detector: detector.snapshot(),
    };
    let store = CheckpointStore::new(&cfg.state.dir);
    store.prepare().expect("state dir");
    store.save(&state).expect("save");
    alerts.iter().map(|a| id_of(&a.to_json())).collect()
}

async fn run_until_settled(s: &Sensor) {
    let mut d = InProc::start(&s.config(), RunOptions::default());
    let p = d.settle().await;
    let spooled = p.alerts_spooled;
    d.wait("every alert delivered", |p| p.alerts_delivered >= spooled)
        .await;
    d.stop().await.expect("clean stop");
}

fn store_files(state: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(state)
        .expect("state dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("groups."))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn an_upgrade_from_the_json_checkpoint_keeps_every_alert_id() {
    let s = Sensor::new("");
    write_config(&s);
    s.append(&rows(0..400));
    let before = write_json_checkpoint(&s);
    assert!(!before.is_empty(), "the first part raises alerts");
    let json = fs::read_to_string(s.path("state/checkpoint.json")).expect("checkpoint");
    assert!(json.contains("\"groups\":[["), "the window inline");

    // The upgrade: the JSON checkpoint is read, the records after it raise their alerts.
    s.append(&rows(400..800));
    run_until_settled(&s).await;
    let json = fs::read_to_string(s.path("state/checkpoint.json")).expect("checkpoint");
    assert!(json.contains("\"groups_store\""), "{json}");
    assert!(
        !json.contains("\"groups\":["),
        "the groups are in the store now"
    );
    assert_eq!(store_files(&s.path("state")).len(), 1);

    // A restart from the binary checkpoint.
    s.append(&rows(800..1200));
    run_until_settled(&s).await;

    let want: Vec<String> = replay(&s.config(), &s.log())
        .iter()
        .map(|l| id_of(l))
        .collect();
    let after = delivered_ids(&s);
    let mut got = before.clone();
    got.extend(after.iter().cloned());
    let (got_set, want_set): (BTreeSet<_>, BTreeSet<_>) =
        (got.iter().collect(), want.iter().collect());
    assert_eq!(got.len(), got_set.len(), "no alert raised twice");
    assert_eq!(
        got_set, want_set,
        "the alert ids of replay over the whole input"
    );
    assert!(
        !after.is_empty(),
        "the daemon raised alerts after the upgrade ({} before it)",
        before.len()
    );
}

#[tokio::test]
async fn a_byte_flipped_in_the_group_store_sets_the_checkpoint_aside() {
    let s = Sensor::new("");
    write_config(&s);
    s.append(&rows(0..300));
    run_until_settled(&s).await;
    let state = s.path("state");
    let files = store_files(&state);
    assert_eq!(files.len(), 1, "{files:?}");
    let store = state.join(&files[0]);
    let mut bytes = fs::read(&store).expect("store");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    fs::write(&store, bytes).expect("write");

    // Started without it, loudly: everything is read again and the checkpoint is kept aside.
    let mut d = InProc::start(&s.config(), RunOptions::default());
    let p = d.settle().await;
    assert_eq!(p.records, 300, "read from the start");
    d.stop().await.expect("clean stop");
    let aside: Vec<String> = fs::read_dir(&state)
        .expect("state")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("checkpoint.json.bad"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    // The next checkpoint wrote a new store and removed the damaged one.
    let now = store_files(&state);
    assert_eq!(now.len(), 1);
    assert_ne!(now, files);
}

/// A restart under another grouping empties the window: the store no longer holds its groups, so the first
/// checkpoint writes a new one whole (a delta on the old one would mix old keys into the new window).
#[tokio::test]
async fn a_restart_under_another_grouping_writes_the_store_whole() {
    let s = Sensor::new("");
    write_config(&s);
    s.append(&rows(0..200));
    run_until_settled(&s).await;
    let state = s.path("state");
    let first = store_files(&state);
    assert_eq!(first.len(), 1);

    write_config_with(&s, "[window]\ngroup_by = \"pair_port\"\n");
    s.append(&rows(200..260));
    run_until_settled(&s).await;
    let second = store_files(&state);
    assert_eq!(second.len(), 1);
    assert_ne!(second, first, "a new store, written whole");

    // And it restores: nothing is read again, the next records go on from there.
    let mut d = InProc::start(&s.config(), RunOptions::default());
    let p = d.settle().await;
    assert_eq!(p.records, 0, "nothing read twice");
    d.stop().await.expect("clean stop");
}

/// Waits until two checkpoints have been saved since the call: the second one started after the call.
async fn two_more_checkpoints(d: &mut InProc) {
    let c = d.now().checkpoints;
    d.wait("two more checkpoints", |p| p.checkpoints >= c + 2)
        .await;
}

/// A reload (SIGHUP) that changes the window's length or grouping forces the next checkpoint to write the
/// store whole, into a new file: every group's saved form may have changed, a delta would not say so. A
/// reload that leaves the window alone goes on appending deltas to the same store.
#[tokio::test]
async fn a_reload_changing_window_length_or_grouping_writes_the_store_whole() {
    let s = Sensor::new("");
    write_config(&s);
    s.append(&rows(0..200));
    let state = s.path("state");
    let mut d = InProc::start(&s.config(), RunOptions::default());
    d.settle().await;
    two_more_checkpoints(&mut d).await;
    let first = store_files(&state);
    assert_eq!(first.len(), 1);
    let size = |files: &[String]| fs::metadata(state.join(&files[0])).map_or(0, |m| m.len());
    let first_size = size(&first);

    // Thresholds only: the same store, grown by the deltas of the new records.
    write_config_with(&s, "[single]\nlevels = { low = \"3h\" }\n");
    d.reload().await;
    s.append(&rows(200..220));
    d.settle().await;
    two_more_checkpoints(&mut d).await;
    assert_eq!(store_files(&state), first, "the same store");
    assert!(size(&first) > first_size, "deltas appended");

    // A longer window: a new store, written whole.
    write_config_with(&s, "[window]\nlength = \"36h\"\n");
    d.reload().await;
    two_more_checkpoints(&mut d).await;
    let second = store_files(&state);
    assert_eq!(second.len(), 1);
    assert_ne!(second, first, "a new store after the length changed");

    // Another grouping: a new store again.
    write_config_with(&s, "[window]\nlength = \"36h\"\ngroup_by = \"pair_port\"\n");
    d.reload().await;
    s.append(&rows(220..240));
    d.settle().await;
    two_more_checkpoints(&mut d).await;
    let third = store_files(&state);
    assert_eq!(third.len(), 1);
    assert_ne!(third, second, "a new store after the grouping changed");
    d.stop().await.expect("clean stop");

    // It restores: nothing is read twice.
    let mut d = InProc::start(&s.config(), RunOptions::default());
    let p = d.settle().await;
    assert_eq!(p.records, 0, "nothing read twice");
    d.stop().await.expect("clean stop");
}
