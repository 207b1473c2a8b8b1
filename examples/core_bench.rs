//! Throughput, resident memory per group and snapshot/restore time of the detector core on generated
//! records: `cargo run --release --example core_bench -- RECORDS PAIRS` (PAIRS >= RECORDS: one group each).
use longconn::config::*;
use longconn::detector::Detector;
use longconn::zeek::ConnRecord;
use std::time::{Duration, Instant};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let pairs: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    let nets = |v: &[&str]| v.iter().filter_map(|s| s.parse().ok()).collect::<Vec<_>>();
    let lv = |a, b, c, d| Levels {
        thresholds: [
            Some(Duration::from_secs(a)),
            Some(Duration::from_secs(b)),
            Some(Duration::from_secs(c)),
            Some(Duration::from_secs(d)),
        ],
    };
    let cfg = Config {
        sensor_name: "s".into(),
        sources: vec![],
        state: StateConfig {
            dir: "/tmp".into(),
            checkpoint_interval: Duration::from_secs(5),
        },
        metrics: Default::default(),
        window: WindowConfig {
            length: Duration::from_secs(86400),
            group_by: GroupBy::Pair,
            max_groups: 1_000_000,
        },
        single: lv(3600, 14400, 28800, 43200),
        cumulative: CumulativeConfig {
            levels: lv(3600, 14400, 28800, 43200),
            realert_after: None,
        },
        filter: FilterConfig {
            internal: nets(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]),
            directions: vec![
                Direction::Outbound,
                Direction::Inbound,
                Direction::Internal,
                Direction::External,
            ],
            never: nets(&[
                "127.0.0.0/8",
                "::1/128",
                "169.254.0.0/16",
                "fe80::/10",
                "224.0.0.0/4",
                "ff00::/8",
                "255.255.255.255/32",
                "0.0.0.0/32",
            ]),
            always: vec![],
            ignore_states: vec![],
        },
        allow: vec![],
        overrides: vec![],
        outputs: vec![],
    };
    let mut x: u64 = 88172645463325252;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let recs: Vec<ConnRecord> = (0..n)
        .map(|i| {
            let p = next() % pairs;
            // skewed: 20% of records to 10 heavy pairs
            let p = if pairs >= u64::from(n) {
                u64::from(i)
            } else if next() % 5 == 0 {
                p % 10
            } else {
                p
            };
            ConnRecord {
                ts: Some(1.7e9 + f64::from(i) * 0.05),
                uid: format!("C{:017}", i).into(),
                orig_h: Some(std::net::IpAddr::from([
                    10,
                    (p >> 16) as u8,
                    (p >> 8) as u8,
                    p as u8,
                ])),
                resp_h: Some(std::net::IpAddr::from([93, 184, (p % 7) as u8, 34])),
                resp_p: Some(443),
                proto: "tcp".into(),
                duration: Some((next() % 600) as f64 + 0.5),
                orig_bytes: Some(100),
                resp_bytes: Some(1000),
                conn_state: Some("SF".into()),
                ..ConnRecord::default()
            }
        })
        .collect();
    let rss = || {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0)
            * 4096
    };
    println!(
        "size_of Slot<GroupData> {} key {} acc {} data {}",
        std::mem::size_of::<longconn::window::Slot<longconn::detector::GroupData>>(),
        std::mem::size_of::<longconn::window::GroupKey>(),
        std::mem::size_of::<longconn::window::Accumulator>(),
        std::mem::size_of::<longconn::detector::GroupData>()
    );
    let r0 = rss();
    let mut d = Detector::new(&cfg);
    let mut out = Vec::new();
    let t = Instant::now();
    for r in &recs {
        d.process(r, &mut out);
        out.clear();
    }
    let el = t.elapsed();
    println!(
        "{} records in {:?}: {:.0} rec/s; groups {}",
        n,
        el,
        f64::from(n) / el.as_secs_f64(),
        d.stats().groups_tracked
    );
    let r1 = rss();
    let g = d.stats().groups_tracked;
    println!(
        "rss delta {} bytes, {} per group",
        r1 - r0,
        (r1 - r0) / g.max(1)
    );
    let t = Instant::now();
    let st = d.snapshot();
    let json = serde_json::to_vec(&st).unwrap();
    println!("snapshot {:?}, {} bytes json", t.elapsed(), json.len());
    let t = Instant::now();
    let st2: longconn::detector::DetectorState = serde_json::from_slice(&json).unwrap();
    let d2 = Detector::restore(&cfg, st2);
    println!(
        "restore {:?} groups {}",
        t.elapsed(),
        d2.stats().groups_tracked
    );
}
