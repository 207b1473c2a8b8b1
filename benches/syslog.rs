//! Benchmark: alerts/s delivered over TCP syslog (RFC 5424, octet counting) on loopback, through the whole
//! delivery path: alerts appended to a spool and synced, read by a delivery task, formatted and written by the
//! syslog output, received and de-framed by a simple TCP receiver in this bench. Target: at least 50,000/s.
//!
//! Run: `cargo bench --bench syslog` (ALERTS=N changes the count, default 200000).

use longconn::config::{Batching, Framing, SyslogConfig, SyslogTransport};
use longconn::output::delivery::{self, OutputStats};
use longconn::output::SyslogOutput;
use longconn::spool::{Spool, SpoolOptions};
use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A realistic alert line (about 900 bytes, like a single-connection alert with one uid).
fn alert_json(i: u64) -> String {
    format!(
        concat!(
            r#"{{"@timestamp":"2024-03-01T12:00:00.{:06}Z","event":{{"kind":"alert","category":["network"],"id":"{:032x}","#,
            r#""severity":3,"duration":30600000000000,"start":"2024-03-01T03:30:00.000000Z","end":"2024-03-01T12:00:00.000000Z"}},"#,
            r#""rule":{{"name":"longconn single connection high"}},"source":{{"ip":"10.1.2.3"}},"destination":{{"ip":"203.0.113.7","port":443}},"#,
            r#""network":{{"transport":"tcp"}},"related":{{"ip":["10.1.2.3","203.0.113.7"]}},"observer":{{"name":"sensor01"}},"#,
            r#""zeek":{{"session_id":["CxpZ9z3BBU37vjbCV4"]}},"longconn":{{"trigger":"single","level":"high","threshold_seconds":28800.0,"#,
            r#""measure_seconds":30600.0,"window_seconds":86400.0,"connection_count":1,"longest_seconds":30600.0,"total_bytes":123456,"#,
            r#""first_seen":"2024-03-01T03:30:00.000000Z","last_seen":"2024-03-01T12:00:00.000000Z","uids_total":1,"#,
            r#""message":"10.1.2.3 -> 203.0.113.7:443/tcp: one connection lasted 8h 30m 0s (high, threshold 8h 0m 0s)"}}}}"#
        ),
        i % 1_000_000,
        i
    )
}

/// Counts octet-counted frames until `n` arrived; returns the bytes received.
fn receive(listener: TcpListener, n: u64) -> u64 {
    let (mut s, _) = listener.accept().expect("accept");
    let mut buf = vec![0u8; 1 << 20];
    let mut pending: Vec<u8> = Vec::new();
    let (mut frames, mut bytes) = (0u64, 0u64);
    while frames < n {
        let k = s.read(&mut buf).expect("read");
        assert!(k > 0, "sender closed after {frames} frames");
        bytes += k as u64;
        pending.extend_from_slice(&buf[..k]);
        let mut pos = 0;
        while let Some(sp) = pending[pos..].iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&pending[pos..pos + sp])
                .expect("utf8")
                .parse()
                .expect("length");
            if pending.len() < pos + sp + 1 + len {
                break;
            }
            assert!(
                pending[pos + sp + 1..].starts_with(b"<131>1 "),
                "PRI: local0.error"
            );
            pos += sp + 1 + len;
            frames += 1;
        }
        pending.drain(..pos);
    }
    bytes
}

fn main() {
    let n: u64 = std::env::var("ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = Spool::open(
        dir.path(),
        SpoolOptions {
            max_bytes: 1 << 32,
            segment_bytes: 16 << 20,
        },
    )
    .expect("spool");
    let t = Instant::now();
    for i in 0..n {
        spool.append_json(&alert_json(i)).expect("append");
    }
    spool.sync().expect("sync");
    let spool_time = t.elapsed();

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let receiver = std::thread::spawn(move || receive(listener, n));
    let cfg = SyslogConfig {
        transport: SyslogTransport::Tcp {
            address: addr.to_string(),
        },
        facility: 16,
        framing: Framing::OctetCounting,
        app_name: "longconn".into(),
    };
    let out = SyslogOutput::new("bench".into(), &cfg).expect("output");
    let reader = spool.reader("bench").expect("reader");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stats = Arc::new(OutputStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let batching = Batching {
        size: 1000,
        flush_interval: Duration::from_millis(1),
    };
    let t = Instant::now();
    let bytes = rt.block_on(async {
        let task = tokio::spawn(delivery::run(
            Box::new(out),
            reader,
            batching,
            stop_rx,
            stats.clone(),
        ));
        let bytes = tokio::task::spawn_blocking(move || receiver.join().expect("receiver"))
            .await
            .expect("join");
        let _ = stop_tx.send(true);
        let _ = task.await;
        bytes
    });
    let secs = t.elapsed().as_secs_f64();
    println!(
        "syslog tcp: {n} alerts delivered in {secs:.3} s = {:.0} alerts/s ({:.1} MB/s on the wire); spool append+sync {:.0} alerts/s",
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        n as f64 / spool_time.as_secs_f64()
    );
}
