//! The daemon driven in-process through the library call (`tests/support/inproc.rs`): scenarios that need
//! no separate process await the daemon's progress (ready, caught up, alerts spooled and delivered) instead
//! of sleeping, and stop and reload it with control requests instead of signals.

use crate::support::inproc::InProc;
use crate::support::sensor::{row, Sensor, HEADER};
use longconn::daemon::RunOptions;
use std::fs;

/// Rows of distinct pairs, each one connection long enough for a single-connection alert (default low:
/// 1 h).
fn long_rows(range: std::ops::Range<u32>) -> String {
    range
        .map(|n| {
            // One destination each: ten sources to one address would be a common destination, whose
            // alerts the context modifiers lower (issue 12).
            let orig = format!("10.0.{}.{}", n / 200, n % 200 + 1);
            let resp = format!("198.51.{}.{}", 100 + n / 200, n % 200 + 1);
            row(n, &orig, &resp, 2.0 * 3600.0)
        })
        .collect()
}

fn alert_lines(sensor: &Sensor) -> Vec<String> {
    fs::read_to_string(sensor.path("alerts.json"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn scenario_2_rename_rotation_in_process_reads_both_files_once() {
    let sensor = Sensor::new("");
    sensor.append(&long_rows(0..10));
    let mut d = InProc::start(&sensor.config(), RunOptions::default());
    let p = d.ready().await;
    assert!(p.rounds >= 1);
    let p = d.settle().await;
    assert_eq!(p.records, 10);
    assert_eq!(p.alerts_spooled, 10);

    // Rename rotation: the rest of the old file through the open handle, then the new one from 0.
    sensor.append(&long_rows(10..15));
    fs::rename(sensor.log(), sensor.path("conn.2024-01-01-00-00-00.log")).expect("rotate");
    fs::write(sensor.log(), format!("{HEADER}{}", long_rows(15..20))).expect("new conn.log");
    let p = d
        .wait("both files read", |p| p.records >= 20 && p.caught_up)
        .await;
    assert_eq!(p.records, 20, "every record once");
    let p = d
        .wait("every alert delivered", |p| p.alerts_delivered >= 20)
        .await;
    assert_eq!(p.alerts_spooled, 20);
    d.stop().await.expect("clean stop");
    let alerts = alert_lines(&sensor);
    assert_eq!(alerts.len(), 20, "{alerts:#?}");
    let mut ids: Vec<String> = alerts
        .iter()
        .map(|a| {
            let v: serde_json::Value = serde_json::from_str(a).expect("alert json");
            v["event"]["id"].as_str().expect("event.id").to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "no alert twice");
}

#[tokio::test]
async fn scenario_20_restart_with_nothing_new_raises_nothing_in_process() {
    let sensor = Sensor::new("");
    sensor.append(&long_rows(0..5));
    let mut d = InProc::start(&sensor.config(), RunOptions::default());
    let p = d.settle().await;
    assert_eq!((p.records, p.alerts_spooled), (5, 5));
    d.stop().await.expect("clean stop");

    // Restarted on the same state: caught up in a round that started after the start, nothing re-read.
    let mut d = InProc::start(&sensor.config(), RunOptions::default());
    let p = d.settle().await;
    assert_eq!((p.records, p.alerts_spooled), (0, 0), "nothing read twice");
    sensor.append(&long_rows(5..7));
    let p = d.settle().await;
    assert_eq!((p.records, p.alerts_spooled), (2, 2));
    d.stop().await.expect("clean stop");
    assert_eq!(alert_lines(&sensor).len(), 7);
}

#[tokio::test]
async fn reload_and_fresh_start_in_process() {
    let sensor = Sensor::new("");
    sensor.append(&long_rows(0..3));
    let mut d = InProc::start(&sensor.config(), RunOptions::default());
    d.settle().await;
    // A higher single threshold, applied by a reload request: the next records raise nothing.
    sensor.write_config("[single]\nlevels = { low = \"3h\" }\n");
    let p = d.reload().await;
    assert_eq!(p.reloads, 1);
    sensor.append(&long_rows(3..6));
    let p = d.settle().await;
    assert_eq!((p.records, p.alerts_spooled), (6, 3));
    // A config that does not load is refused and counted; the running one stays.
    fs::write(sensor.config(), "[sensor\n").expect("bad config");
    let p = d.reload().await;
    assert_eq!(p.reloads, 2);
    d.stop().await.expect("clean stop");

    // --fresh ignores the checkpoint: everything is read again (with the original config).
    sensor.write_config("");
    let mut d = InProc::start(&sensor.config(), RunOptions { fresh: true });
    let p = d.settle().await;
    assert_eq!((p.records, p.alerts_spooled), (6, 6));
    d.stop().await.expect("clean stop");
}
