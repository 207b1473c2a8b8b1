//! Alerts per second through `HttpOutput` over loopback: 200,000 synthetic alerts (about 1 KB each, the
//! size of a real cumulative alert) in batches of 500, to the test receiver on its own thread, for each
//! format (Elasticsearch `_bulk`, Elasticsearch with gzip, Splunk HEC, NDJSON). The receiver parses every
//! bulk action and HEC envelope but only checks the shape of Elasticsearch documents, so the figure is
//! the sender's. Target: at least 50,000 alerts/s for Elasticsearch bulk.
//!
//! Run: `cargo bench --bench http` (`LONGCONN_BENCH_ALERTS=N` to change the count).

#[path = "../tests/support/receiver.rs"]
mod receiver;

use longconn::output::http::{HttpConfig, HttpOutput};
use longconn::output::Deliver;
use longconn::spool::Spooled;
use receiver::{Mode, Receiver};
use std::sync::Arc;
use std::time::Instant;

const BATCH: usize = 500;

fn alerts(n: usize) -> Vec<Spooled> {
    (0..n as u64)
        .map(|seq| {
            let id = format!("{:032x}", seq.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let ts = format!("2024-03-01T10:{:02}:{:02}.{:06}Z", (seq / 60) % 60, seq % 60, seq % 1_000_000);
            let uids: Vec<String> = (0..12).map(|i| format!("C{seq:x}u{i}AbCdEf")).collect();
            let doc = serde_json::json!({
                "@timestamp": ts,
                "event": {"kind": "alert", "category": ["network"], "id": id, "severity": 3,
                          "duration": 36_000_000_000_000u64, "start": "2024-03-01T00:00:00.000000Z", "end": ts},
                "rule": {"name": "longconn cumulative high"},
                "source": {"ip": "10.1.2.3"},
                "destination": {"ip": format!("198.51.100.{}", seq % 250)},
                "related": {"ip": ["10.1.2.3", format!("198.51.100.{}", seq % 250)]},
                "observer": {"name": "sensor-1"},
                "zeek": {"session_id": uids},
                "longconn": {"trigger": "cumulative", "level": "high", "threshold_seconds": 28800.0,
                             "measure_seconds": 36000.5, "window_seconds": 86400.0, "connection_count": 12,
                             "longest_seconds": 7200.25, "total_bytes": 987654321u64,
                             "first_seen": "2024-03-01T00:00:00.000000Z", "last_seen": ts, "uids_total": 12,
                             "message": "10.1.2.3 and 198.51.100.7 were connected for 10h 0m 0s of the last 24h in 12 connections"}
            });
            Spooled {
                seq,
                event_id: id,
                timestamp: ts,
                severity: 3,
                json: Arc::from(doc.to_string()),
            }
        })
        .collect()
}

/// Runs the receiver on its own thread and runtime; returns its base URL.
fn spawn_receiver(mode: Mode) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let r = Receiver::start(mode).await;
            r.state().light = true;
            tx.send(r.url("")).expect("send url");
            // Keep the receiver alive until the process ends.
            std::future::pending::<()>().await;
            drop(r);
        });
    });
    rx.recv().expect("receiver url")
}

fn run(label: &str, mode: Mode, extra: &str, batch: &[Spooled], rt: &tokio::runtime::Runtime) {
    let url = spawn_receiver(mode);
    let text = format!("url = {url:?}\nbatch_size = {BATCH}\n{extra}");
    let table: toml::Table = text.parse().expect("toml");
    let cfg = HttpConfig::from_raw(&table, "output[0]").expect("config");
    let mut out = HttpOutput::new(label.to_string(), &cfg).expect("output");
    let bytes: usize = batch.iter().map(|s| s.json.len() + 1).sum();
    let started = Instant::now();
    rt.block_on(async {
        for chunk in batch.chunks(BATCH) {
            out.deliver(chunk).await.expect("delivered");
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{label:<24} {:>9} alerts in {secs:>6.2} s = {:>9.0} alerts/s ({:.0} MB/s of alert JSON)",
        batch.len(),
        batch.len() as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

fn main() {
    let n: usize = std::env::var("LONGCONN_BENCH_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let batch = alerts(n);
    let avg = batch.iter().map(|s| s.json.len()).sum::<usize>() / batch.len().max(1);
    println!("{n} alerts of {avg} bytes on average, batches of {BATCH}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    run(
        "elasticsearch",
        Mode::Elastic { auth: None },
        "format = \"elasticsearch\"\n",
        &batch,
        &rt,
    );
    run(
        "elasticsearch gzip",
        Mode::Elastic { auth: None },
        "format = \"elasticsearch\"\ngzip = true\n",
        &batch,
        &rt,
    );
    run(
        "splunk_hec",
        Mode::Hec {
            token: "t".into(),
            ack_delay: None,
        },
        "format = \"splunk_hec\"\ntoken = \"t\"\n",
        &batch,
        &rt,
    );
    run("ndjson", Mode::Ndjson, "", &batch, &rt);
}
