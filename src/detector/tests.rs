//! Table and property tests for [`crate::detector`].

use super::fixtures::{self, rec};
use super::*;
use crate::alert::Trigger;
use crate::rules::{Level, Match};
use crate::window::GroupBy;

const H: f64 = 3600.0;
const T0: f64 = 1_700_000_000.0;

fn run(d: &mut Detector, recs: &[ConnRecord]) -> Vec<Alert> {
    let mut out = Vec::new();
    for r in recs {
        d.process(r, SourceKind::Conn, &mut out);
    }
    out
}

/// (trigger, level) of each alert, in order.
fn kinds(alerts: &[Alert]) -> Vec<(Trigger, Level)> {
    alerts
        .iter()
        .map(|a| (a.longconn.trigger, a.longconn.level))
        .collect()
}

fn no_single() -> DetectorConfig {
    let mut cfg = fixtures::config();
    cfg.single.thresholds = [None; 4];
    cfg
}

fn no_cumulative() -> DetectorConfig {
    let mut cfg = fixtures::config();
    cfg.cumulative.levels.thresholds = [None; 4];
    cfg
}

use Level::*;
use Trigger::{Cumulative as C, Single as S};

#[test]
fn exactly_at_threshold_alerts_once_per_group() {
    // The single alert and the group's cumulative low are one finding (issue 12): the single is raised.
    let mut d = Detector::new(&fixtures::config());
    let a = run(&mut d, &[rec("C1", "10.0.0.1", "8.8.8.8", T0, H)]);
    assert_eq!(kinds(&a), vec![(S, Low)]);
    let mut d = Detector::new(&no_single());
    let a = run(&mut d, &[rec("C1", "10.0.0.1", "8.8.8.8", T0, H)]);
    assert_eq!(kinds(&a), vec![(C, Low)]);
    let mut d = Detector::new(&fixtures::config());
    let a = run(
        &mut d,
        &[rec("C1", "10.0.0.1", "8.8.8.8", T0, H - 0.000_001)],
    );
    assert!(a.is_empty());
}

#[test]
fn cumulative_escalation_table() {
    // (records as (start h, duration h), expected cumulative alert levels)
    type Case = (&'static str, &'static [(f64, f64)], &'static [Level]);
    let cases: &[Case] = &[
        (
            "short pieces add up to low",
            &[(0.0, 0.5), (1.0, 0.5)],
            &[Low],
        ),
        (
            "escalates one level at a time",
            &[(0.0, 1.0), (1.0, 3.0), (4.0, 4.0)],
            &[Low, Medium, High],
        ),
        (
            "a jump alerts only the highest level",
            &[(0.0, 0.5), (1.0, 12.0)],
            &[Critical],
        ),
        (
            "no repeat at the same level",
            &[(0.0, 1.0), (1.0, 0.5), (2.0, 0.5)],
            &[Low],
        ),
        (
            "parallel connections add up",
            &[(0.0, 2.0), (0.0, 2.0)],
            &[Low, Medium],
        ),
    ];
    for (name, recs, want) in cases {
        let mut d = Detector::new(&no_single());
        let recs: Vec<_> = recs
            .iter()
            .enumerate()
            .map(|(i, &(s, dur))| rec(&format!("C{i}"), "10.0.0.1", "8.8.8.8", T0 + s * H, dur * H))
            .collect();
        let got: Vec<Level> = run(&mut d, &recs)
            .iter()
            .map(|a| a.longconn.level)
            .collect();
        assert_eq!(&got, want, "{name}");
    }
}

#[test]
fn clipping_at_the_window_edge() {
    let mut cfg = no_single();
    cfg.window.length = std::time::Duration::from_secs(10 * 3600);
    let mut d = Detector::new(&cfg);
    // 3h ending at T0+3h; a filtered record moves T to T0+12h: only 1h of it stays inside [T-10h, T].
    let mut out = run(&mut d, &[rec("A", "10.0.0.1", "8.8.8.8", T0, 3.0 * H)]);
    assert_eq!(kinds(&out), vec![(C, Low)]);
    out.clear();
    run(
        &mut d,
        &[rec("F", "127.0.0.1", "8.8.8.8", T0 + 12.0 * H, 0.0)],
    );
    // Medium is 4h: 1h (clipped) + 3h new = exactly 4h.
    let a = run(
        &mut d,
        &[rec("B", "10.0.0.1", "8.8.8.8", T0 + 9.0 * H, 3.0 * H)],
    );
    assert_eq!(kinds(&a), vec![(C, Medium)]);
    assert_eq!(a[0].longconn.measure_seconds, 4.0 * H);
}

#[test]
fn episode_ends_below_lowest_level_then_realerts() {
    let mut d = Detector::new(&no_single());
    let a = run(&mut d, &[rec("A", "10.0.0.1", "8.8.8.8", T0, 2.0 * H)]);
    assert_eq!(kinds(&a), vec![(C, Low)]);
    // The first record still has 1.5h in the window: same episode, no alert.
    let a = run(
        &mut d,
        &[rec("B", "10.0.0.1", "8.8.8.8", T0 + 24.0 * H, 0.5 * H)],
    );
    assert!(a.is_empty());
    // Much later the measure fell to 0 before this record: new episode, new alert, new id.
    let first_id = d.snapshot().window.groups[0].2.episode_first();
    let a = run(
        &mut d,
        &[rec("C", "10.0.0.1", "8.8.8.8", T0 + 60.0 * H, 1.0 * H)],
    );
    assert_eq!(kinds(&a), vec![(C, Low)]);
    let st = d.snapshot();
    assert_ne!(st.window.groups[0].2.episode_first(), first_id);
    assert_eq!(
        st.window.groups[0].2.episode_first(),
        Some(("C".into(), ((T0 + 60.0 * H) * 1e6) as i64))
    );
}

#[test]
fn realert_after_repeats_while_at_level() {
    let mut cfg = no_single();
    cfg.cumulative.realert_after = Some(std::time::Duration::from_secs(6 * 3600));
    let mut d = Detector::new(&cfg);
    let mut recs = Vec::new();
    // A 1h connection every 2h: the measure stays between 1h and 12h for two days.
    for i in 0..24 {
        recs.push(rec(
            &format!("C{i}"),
            "10.0.0.1",
            "8.8.8.8",
            T0 + f64::from(i) * 2.0 * H,
            H,
        ));
    }
    let a = run(&mut d, &recs);
    let ids: std::collections::HashSet<_> = a.iter().map(|x| x.event.id.clone()).collect();
    assert_eq!(ids.len(), a.len(), "every repeat has its own id");
    let times: Vec<_> = a.iter().map(|x| x.timestamp.clone()).collect();
    assert!(a.len() > 6, "{times:?}");
    // Escalations low(1h) medium(4h) high(8h) critical(12h); repeats every 6h of event time between.
    let (repeats, escalations): (Vec<&Alert>, Vec<&Alert>) =
        a.iter().partition(|x| x.longconn.message.contains("still"));
    let levels: Vec<Level> = escalations.iter().map(|x| x.longconn.level).collect();
    assert_eq!(levels, vec![Low, Medium, High, Critical]);
    assert!(repeats.len() >= 3, "{times:?}");
    for pair in a.windows(2) {
        let gap = chrono::DateTime::parse_from_rfc3339(&pair[1].timestamp).expect("time")
            - chrono::DateTime::parse_from_rfc3339(&pair[0].timestamp).expect("time");
        let repeat = pair[1].longconn.message.contains("still");
        assert!(!repeat || gap.num_seconds() >= 6 * 3600, "{times:?}");
    }
}

#[test]
fn single_alert_once_per_level_per_window() {
    let mut d = Detector::new(&no_cumulative());
    let mut recs = Vec::new();
    for i in 0..20 {
        recs.push(rec(
            &format!("C{i}"),
            "10.0.0.1",
            "8.8.8.8",
            T0 + f64::from(i) * H,
            9.0 * H,
        ));
    }
    recs.push(rec("X", "10.0.0.1", "8.8.8.8", T0 + 21.0 * H, 13.0 * H));
    recs.push(rec("Y", "10.0.0.1", "8.8.8.8", T0 + 22.0 * H, 9.0 * H));
    // The critical was at watermark 34h: at 56h still suppressed, at 59h high alerts again.
    recs.push(rec("W", "10.0.0.1", "8.8.8.8", T0 + 47.0 * H, 9.0 * H));
    recs.push(rec("Z", "10.0.0.1", "8.8.8.8", T0 + 50.0 * H, 9.0 * H));
    let a = run(&mut d, &recs);
    assert_eq!(kinds(&a), vec![(S, High), (S, Critical), (S, High)]);
    assert_eq!(a[2].zeek.session_id, vec!["Z".to_string()]);
}

#[test]
fn out_of_order_records() {
    let mut d = Detector::new(&no_single());
    let recs = [
        rec("A", "10.0.0.1", "8.8.8.8", T0 + 10.0 * H, 0.5 * H),
        rec("B", "10.0.0.1", "8.8.8.8", T0 + 2.0 * H, 0.5 * H),
        rec("C", "10.0.0.1", "8.8.8.8", T0 + 5.0 * H, 0.5 * H),
    ];
    let a = run(&mut d, &recs);
    assert_eq!(kinds(&a), vec![(C, Low)]);
    assert_eq!(a[0].longconn.connection_count, 2);
    assert_eq!(
        a[0].longconn.first_seen,
        alert::rfc3339(((T0 + 2.0 * H) * 1e6) as i64)
    );
    assert_eq!(d.watermark(), Some(T0 + 10.5 * H));
    // A late record entirely before the window adds nothing.
    let late = rec("D", "10.0.0.1", "8.8.8.8", T0 - 30.0 * H, 2.0 * H);
    assert!(run(&mut d, &[late]).is_empty());
}

#[test]
fn pair_versus_pair_port() {
    let mut a = rec("A", "10.0.0.1", "8.8.8.8", T0, 0.6 * H);
    a.resp_p = Some(443);
    let mut b = rec("B", "10.0.0.1", "8.8.8.8", T0, 0.6 * H);
    b.resp_p = Some(22);
    let mut d = Detector::new(&no_single());
    let out = run(&mut d, &[a.clone(), b.clone()]);
    assert_eq!(kinds(&out), vec![(C, Low)]);
    assert_eq!(out[0].destination.port, None);
    assert_eq!(out[0].network.transport, None);
    let mut cfg = no_single();
    cfg.window.group_by = GroupBy::PairPort;
    let mut d = Detector::new(&cfg);
    assert!(run(&mut d, &[a.clone(), b]).is_empty());
    assert_eq!(d.stats().groups_tracked, 2);
    let out = run(&mut d, &[rec("C", "10.0.0.1", "8.8.8.8", T0 + H, 0.5 * H)]);
    assert_eq!(kinds(&out), vec![(C, Low)]);
    assert_eq!(out[0].destination.port, Some(443));
    assert_eq!(out[0].network.transport.as_deref(), Some("tcp"));
}

#[test]
fn filters_overrides_and_allow_through_the_detector() {
    let mut cfg = fixtures::config();
    cfg.filter.ignore_states = vec!["S0".into()];
    cfg.allow = vec![Allow {
        matches: Match {
            dst: "203.0.113.10/32".parse().ok(),
            ..Default::default()
        },
        domain: None,
        comment: None,
    }];
    cfg.overrides = vec![Override {
        matches: Match {
            src: "10.9.0.0/16".parse().ok(),
            ..Default::default()
        },
        single: [None, None, fixtures::hours(24), None],
        cumulative: [fixtures::hours(2), None, None, None],
    }];
    let mut d = Detector::new(&cfg);
    let mut s0 = rec("S", "10.0.0.1", "8.8.8.8", T0, 9.0 * H);
    s0.conn_state = Some("S0".into());
    let mut no_ts = rec("N", "10.0.0.1", "8.8.8.8", T0, 9.0 * H);
    no_ts.ts = None;
    let mut no_addr = rec("M", "10.0.0.1", "8.8.8.8", T0, 9.0 * H);
    no_addr.resp_h = None;
    let recs = [
        rec("L", "127.0.0.1", "8.8.8.8", T0, 9.0 * H),
        s0,
        rec("A", "10.0.0.1", "203.0.113.10", T0, 9.0 * H),
        no_ts,
        no_addr,
        rec("O", "10.9.0.1", "8.8.8.8", T0, 9.0 * H),
    ];
    let a = run(&mut d, &recs);
    // Override: single high is 24h, so 9h is medium; cumulative low is 2h, medium 4h, high 8h.
    assert_eq!(kinds(&a), vec![(S, Medium), (C, High)]);
    assert_eq!(a[0].longconn.threshold_seconds, 4.0 * H);
    let st = d.stats();
    assert_eq!(
        (
            st.records_seen,
            st.records_used,
            st.skipped_no_ts,
            st.skipped_no_addr
        ),
        (6, 1, 1, 1)
    );
    assert_eq!(
        (
            st.filtered_never,
            st.filtered_direction,
            st.filtered_state,
            st.filtered_allow
        ),
        (1, 0, 1, 1)
    );
    assert_eq!(st.alerts_single[Medium as usize], 1);
    assert_eq!(st.alerts_cumulative[High as usize], 1);
}

#[test]
fn eviction_is_counted() {
    let mut cfg = no_single();
    cfg.window.max_groups = 16;
    let mut d = Detector::new(&cfg);
    let recs: Vec<_> = (0..40)
        .map(|i| {
            rec(
                &format!("C{i}"),
                &format!("10.0.0.{i}"),
                "8.8.8.8",
                T0,
                60.0 + f64::from(i),
            )
        })
        .collect();
    run(&mut d, &recs);
    let st = d.stats();
    assert!(st.groups_tracked <= 16);
    assert_eq!(st.groups_tracked + st.evictions, 40);
}

#[test]
fn alert_json_shape() {
    let mut d = Detector::new(&fixtures::config());
    let a = run(&mut d, &[rec("CAbc1", "10.0.0.1", "8.8.8.8", T0, 8.0 * H)]);
    let v: serde_json::Value = serde_json::from_str(&a[0].to_json()).expect("json");
    assert_eq!(v["@timestamp"], "2023-11-15T06:13:20.000000Z");
    assert_eq!(v["event"]["kind"], "alert");
    assert_eq!(v["event"]["category"][0], "network");
    assert_eq!(v["event"]["severity"], 3);
    assert_eq!(v["event"]["duration"], 8u64 * 3600 * 1_000_000_000);
    assert_eq!(v["event"]["start"], "2023-11-14T22:13:20.000000Z");
    assert_eq!(v["rule"]["name"], "longconn single connection high");
    assert_eq!(v["source"]["ip"], "10.0.0.1");
    assert_eq!(v["destination"]["ip"], "8.8.8.8");
    assert_eq!(v["destination"]["port"], 443);
    assert_eq!(v["network"]["transport"], "tcp");
    assert_eq!(v["related"]["ip"][1], "8.8.8.8");
    assert_eq!(v["observer"]["name"], "sensor01");
    assert_eq!(v["zeek"]["session_id"][0], "CAbc1");
    assert_eq!(v["longconn"]["trigger"], "single");
    assert_eq!(v["longconn"]["level"], "high");
    assert_eq!(v["longconn"]["threshold_seconds"], 8.0 * H);
    assert_eq!(v["longconn"]["total_bytes"], 300);
    assert_eq!(v["event"]["id"].as_str().map(str::len), Some(32));
    let back: Alert = serde_json::from_str(&a[0].to_json()).expect("round trip");
    assert_eq!(back, a[0]);
    // The id depends only on content: the same record through a fresh detector gives the same id.
    let mut d2 = Detector::new(&fixtures::config());
    let run2 = |d: &mut Detector| run(d, &[rec("X", "10.0.0.2", "8.8.8.8", T0 - 5.0 * H, 1.0)]);
    run2(&mut d2);
    let b = run(&mut d2, &[rec("CAbc1", "10.0.0.1", "8.8.8.8", T0, 8.0 * H)]);
    assert_eq!(b.len(), a.len());
    assert_eq!(b[0].event.id, a[0].event.id);
}

/// A deterministic mixed stream: many pairs, short and long connections, some out of order.
fn stream(n: u32) -> Vec<ConnRecord> {
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let pair = next() % 12;
            let ts = T0 + f64::from(i) * 300.0 - (next() % 3600) as f64;
            let dur = if next() % 10 == 0 {
                (next() % 14 * 3600) as f64
            } else {
                (next() % 1800) as f64 + 0.25
            };
            let mut r = rec(
                &format!("C{i}"),
                &format!("10.0.{}.1", pair),
                "8.8.8.8",
                ts,
                dur,
            );
            r.resp_p = Some(if pair % 2 == 0 { 443 } else { 22 });
            r
        })
        .collect()
}

#[test]
fn snapshot_restore_continues_exactly() {
    let mut cfg = fixtures::config();
    cfg.cumulative.realert_after = Some(std::time::Duration::from_secs(10 * 3600));
    cfg.window.max_groups = 8;
    let recs = stream(3000);
    let mut whole = Detector::new(&cfg);
    let all = run(&mut whole, &recs);
    assert!(all.len() > 10, "the stream raises alerts: {}", all.len());
    for cut in [1, 777, 1500, 2999] {
        let mut first = Detector::new(&cfg);
        let mut got = run(&mut first, &recs[..cut]);
        let json = serde_json::to_string(&first.snapshot()).expect("serialize");
        let state: DetectorState = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(state, first.snapshot());
        let mut second = Detector::restore(&cfg, state);
        got.extend(run(&mut second, &recs[cut..]));
        assert_eq!(got, all, "cut at {cut}");
        assert_eq!(second.stats(), whole.stats(), "cut at {cut}");
        assert_eq!(second.watermark(), whole.watermark());
    }
}

/// `process_all` (with its prefetch hints) is `process` record by record: same alerts, same state, also
/// with eviction (`max_groups`) and for every grouping.
#[test]
fn process_all_equals_one_record_at_a_time() {
    for group_by in [GroupBy::Pair, GroupBy::PairPort, GroupBy::Name] {
        let mut cfg = fixtures::config();
        cfg.window.group_by = group_by;
        cfg.window.max_groups = 8;
        let recs = stream(3000);
        let mut one = Detector::new(&cfg);
        let want = run(&mut one, &recs);
        assert!(want.len() > 10, "the stream raises alerts: {}", want.len());
        let mut batched = Detector::new(&cfg);
        let mut got = Vec::new();
        for chunk in recs.chunks(257) {
            batched.process_all(chunk, SourceKind::Conn, &mut got);
        }
        assert_eq!(got, want, "{group_by:?}");
        assert_eq!(batched.snapshot(), one.snapshot(), "{group_by:?}");
        assert_eq!(batched.stats(), one.stats(), "{group_by:?}");
    }
}

#[test]
fn reconfigure_keeps_window_and_alert_state() {
    let mut d = Detector::new(&no_single());
    let a = run(&mut d, &[rec("A", "10.0.0.1", "8.8.8.8", T0, 2.0 * H)]);
    assert_eq!(kinds(&a), vec![(C, Low)]);
    let mut cfg = no_single();
    cfg.cumulative.levels = fixtures::levels(1, 3, 8, 12);
    cfg.sensor_name = "sensor02".into();
    d.reconfigure(&cfg);
    let a = run(
        &mut d,
        &[rec("B", "10.0.0.1", "8.8.8.8", T0 + 2.0 * H, 1.0 * H)],
    );
    assert_eq!(
        kinds(&a),
        vec![(C, Medium)],
        "2h kept + 1h reaches the new 3h medium"
    );
    assert_eq!(a[0].observer.name, "sensor02");
}

#[test]
fn session_ids_keep_the_latest_fifty() {
    let mut d = Detector::new(&no_single());
    let recs: Vec<_> = (0..120)
        .map(|i| {
            rec(
                &format!("C{i}"),
                "10.0.0.1",
                "8.8.8.8",
                T0 + f64::from(i) * 60.0,
                59.0,
            )
        })
        .collect();
    let a = run(&mut d, &recs);
    // 61 records of 59s reach 1h (3599s after 61), so the low alert comes with record 62 (index 61).
    assert_eq!(kinds(&a), vec![(C, Low)]);
    let ids = &a[0].zeek.session_id;
    assert_eq!(ids.len(), 50);
    assert_eq!(ids.first().map(String::as_str), Some("C12"));
    assert_eq!(ids.last().map(String::as_str), Some("C61"));
    assert_eq!(a[0].longconn.uids_total, 62);
    assert_eq!(a[0].longconn.connection_count, 62);
    assert_eq!(a[0].longconn.total_bytes, 62 * 300);
    assert_eq!(a[0].longconn.longest_seconds, 59.0);
}

#[test]
fn figures_start_over_when_the_window_emptied_but_suppression_holds() {
    let mut d = Detector::new(&fixtures::config());
    // The watermark is at T0+20h when a late 8h record (ending T0+8h) arrives: single high at T0+20h.
    run(
        &mut d,
        &[rec("F", "127.0.0.1", "8.8.8.8", T0 + 20.0 * H, 0.0)],
    );
    let a = run(&mut d, &[rec("A", "10.0.0.1", "8.8.8.8", T0, 8.0 * H)]);
    assert_eq!(kinds(&a), vec![(S, High)]);
    // At T0+33h, A has left the window, but the single alert (13h old) still holds the group.
    let a = run(
        &mut d,
        &[rec("B", "10.0.0.1", "8.8.8.8", T0 + 28.0 * H, 5.0 * H)],
    );
    assert_eq!(
        kinds(&a),
        vec![(C, Medium)],
        "single medium suppressed; new episode"
    );
    assert_eq!(a[0].longconn.connection_count, 1, "figures started over");
    assert_eq!(a[0].zeek.session_id, vec!["B".to_string()]);
    assert_eq!(
        a[0].longconn.first_seen,
        alert::rfc3339(((T0 + 28.0 * H) * 1e6) as i64)
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn restore_at_any_point_gives_the_same_alerts(
        recs in proptest::collection::vec((0u8..5, 0u32..200_000, 0u32..30_000, proptest::bool::ANY), 1..150),
        cut_frac in 0.0f64..1.0,
        realert in proptest::option::of(1u64..20),
        max_groups in 1usize..6,
    ) {
        let mut cfg = fixtures::config();
        cfg.window.length = std::time::Duration::from_secs(10 * 3600);
        cfg.window.max_groups = max_groups;
        cfg.cumulative.realert_after = realert.map(|h| std::time::Duration::from_secs(h * 3600));
        let recs: Vec<ConnRecord> = recs
            .iter()
            .enumerate()
            .map(|(i, &(g, start, dur, port))| {
                let mut r = rec(&format!("C{i}"), &format!("10.0.0.{g}"), "8.8.8.8", T0 + f64::from(start), f64::from(dur));
                r.resp_p = Some(if port { 22 } else { 443 });
                r
            })
            .collect();
        let cut = ((recs.len() as f64) * cut_frac) as usize;
        let mut whole = Detector::new(&cfg);
        let all = run(&mut whole, &recs);
        let mut first = Detector::new(&cfg);
        let mut got = run(&mut first, &recs[..cut]);
        let json = serde_json::to_string(&first.snapshot()).expect("serialize");
        let state: DetectorState = serde_json::from_str(&json).expect("deserialize");
        let mut second = Detector::restore(&cfg, state);
        got.extend(run(&mut second, &recs[cut..]));
        proptest::prop_assert_eq!(got, all);
        proptest::prop_assert_eq!(second.stats(), whole.stats());
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
    /// The cumulative alerts equal those of a brute-force model of the semantics.
    #[test]
    fn cumulative_alerts_match_a_brute_force_model(
        recs in proptest::collection::vec((0u8..3, 0u32..150_000, 0u32..20_000), 1..120),
    ) {
        let cfg = no_single();
        let length = 24 * 3600 * 1_000_000i64;
        let th = crate::rules::Thresholds::from_levels(&cfg.cumulative.levels);
        let mut d = Detector::new(&cfg);
        let mut got = Vec::new();
        let mut want = Vec::new();
        let mut t = i64::MIN;
        let mut per: Vec<Vec<(i64, i64)>> = vec![Vec::new(); 3];
        let mut episode: Vec<Option<Level>> = vec![None; 3];
        for (i, &(g, start, dur)) in recs.iter().enumerate() {
            let r = rec(&format!("C{i}"), &format!("10.0.0.{g}"), "8.8.8.8", T0 + f64::from(start), f64::from(dur));
            let mut out = Vec::new();
            d.process(&r, SourceKind::Conn, &mut out);
            got.extend(out.iter().map(|a| (a.source.ip, a.longconn.level)));
            // Model.
            let s = ((T0 + f64::from(start)) * 1e6).round() as i64;
            let e = s + i64::from(dur) * 1_000_000;
            t = t.max(e);
            let w = t - length;
            let g = usize::from(g);
            let measure = |ivs: &[(i64, i64)]| ivs.iter().map(|&(s, e)| (e - s.max(w)).max(0)).sum::<i64>();
            if th.lowest().is_some_and(|low| measure(&per[g]) < low) {
                episode[g] = None;
            }
            per[g].push((s, e));
            if let Some(level) = th.level_for(measure(&per[g])) {
                if episode[g].map_or(true, |e| level > e) {
                    episode[g] = Some(level);
                    want.push((r.orig_h.expect("ip"), level));
                }
            }
        }
        proptest::prop_assert_eq!(got, want);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Interim records (issue 6): open_conn / conn_long before, after and without the final conn record.

const OPEN: SourceKind = SourceKind::OpenConn;
const CONN: SourceKind = SourceKind::Conn;

/// Feeds (kind, record) pairs.
fn feed(d: &mut Detector, recs: &[(SourceKind, ConnRecord)]) -> Vec<Alert> {
    let mut out = Vec::new();
    for (k, r) in recs {
        d.process(r, *k, &mut out);
    }
    out
}

/// Hourly open_conn snapshots of one connection `uid` (start T0) at the given durations in hours.
fn snapshots(uid: &str, hours: &[f64]) -> Vec<(SourceKind, ConnRecord)> {
    hours
        .iter()
        .map(|h| (OPEN, rec(uid, "10.0.0.1", "8.8.8.8", T0, h * H)))
        .collect()
}

/// The pair's (sum, covered, connections) inside the window now.
fn figures(d: &mut Detector) -> (f64, f64, u64) {
    let key = GroupKey::new(
        GroupBy::Pair,
        "10.0.0.1".parse().unwrap(),
        "8.8.8.8".parse().unwrap(),
        0,
        0,
    );
    let w = d.window.left_edge().unwrap();
    let sum = d.window.measure(&key).unwrap_or(0);
    let slot = d.window.get(&key).unwrap();
    (
        alert::secs(sum),
        alert::secs(slot.acc.covered(w)),
        slot.data.connections,
    )
}

fn singles(alerts: &[Alert]) -> Vec<(Level, bool, f64)> {
    alerts
        .iter()
        .filter(|a| a.longconn.trigger == S)
        .map(|a| {
            (
                a.longconn.level,
                a.longconn.open,
                a.longconn.measure_seconds,
            )
        })
        .collect()
}

#[test]
fn interim_before_final_counts_once_and_alerts_at_first_snapshot_past_a_level() {
    let mut d = Detector::new(&no_cumulative());
    let mut recs = snapshots("C1", &[0.5, 1.5, 2.5, 3.5, 4.5, 5.5]);
    let a = feed(&mut d, &recs);
    // Low (1h) at the 1.5h snapshot, medium (4h) at the 4.5h one; both say the connection is open.
    assert_eq!(
        singles(&a),
        vec![(Low, true, 1.5 * H), (Medium, true, 4.5 * H)]
    );
    assert!(
        a[0].longconn.message.contains("still open"),
        "{}",
        a[0].longconn.message
    );
    assert_eq!(figures(&mut d), (5.5 * H, 5.5 * H, 1));
    // The final record at 6h: same level, no new alert; counted once with its own duration.
    let fin = rec("C1", "10.0.0.1", "8.8.8.8", T0, 6.0 * H);
    assert!(feed(&mut d, &[(CONN, fin.clone())]).is_empty());
    assert_eq!(figures(&mut d), (6.0 * H, 6.0 * H, 1));
    // A final record reaching a higher level alerts, not open.
    let mut d = Detector::new(&no_cumulative());
    recs.push((CONN, rec("C1", "10.0.0.1", "8.8.8.8", T0, 8.5 * H)));
    let a = feed(&mut d, &recs);
    assert_eq!(singles(&a).last(), Some(&(High, false, 8.5 * H)));
    assert_eq!(figures(&mut d), (8.5 * H, 8.5 * H, 1));
}

#[test]
fn final_before_a_late_interim_ignores_the_interim() {
    let mut cfg = no_single();
    cfg.source_kinds.push(OPEN);
    let mut d = Detector::new(&cfg);
    let a = feed(
        &mut d,
        &[
            (CONN, rec("C1", "10.0.0.1", "8.8.8.8", T0, 3.0 * H)),
            (OPEN, rec("C1", "10.0.0.1", "8.8.8.8", T0, 2.0 * H)),
            (OPEN, rec("C1", "10.0.0.1", "8.8.8.8", T0, 1.0 * H)),
        ],
    );
    assert_eq!(kinds(&a), vec![(C, Low)]);
    assert_eq!(figures(&mut d), (3.0 * H, 3.0 * H, 1));
    assert_eq!(d.stats().interim_ignored, 2);
    assert!(d.snapshot().interim.closed.iter().any(|c| c.0 == "C1"));
    // Without any interim source configured (nor seen), a final record leaves no trace.
    let mut d = Detector::new(&no_single());
    feed(
        &mut d,
        &[(CONN, rec("C1", "10.0.0.1", "8.8.8.8", T0, 3.0 * H))],
    );
    assert!(d.snapshot().interim.closed.is_empty());
}

#[test]
fn interim_only_counts_the_latest_snapshot_and_replays_are_harmless() {
    let mut d = Detector::new(&fixtures::config());
    // Snapshots out of order and one read twice (a rotated file re-read): the largest counts, once.
    let a = feed(&mut d, &snapshots("C1", &[1.0, 2.0, 2.0, 1.0, 4.0, 3.0]));
    assert_eq!(figures(&mut d), (4.0 * H, 4.0 * H, 1));
    assert_eq!(d.stats().interim_ignored, 3);
    // Single: low at 1h, medium at 4h. Cumulative: low at 1h, medium at 4h: never from summing snapshots.
    assert_eq!(kinds(&a), vec![(S, Low), (S, Medium)]);
    // The summing pipeline would have reached 13h (critical); longconn stays at medium.
    assert!(a.iter().all(|x| x.longconn.open));
}

#[test]
fn rotation_between_interim_and_final_two_sources() {
    // The daemon reads open_conn.log and conn.log in turns; a rotation of open_conn.log re-delivers the
    // drained rotated file's last snapshot after the new file's first lines. Order as the tail gives it:
    let mut d = Detector::new(&no_single());
    feed(&mut d, &snapshots("C1", &[1.0, 2.0]));
    feed(&mut d, &snapshots("C1", &[3.0]));
    feed(&mut d, &snapshots("C1", &[2.0])); // late line of the rotated file
    assert_eq!(figures(&mut d), (3.0 * H, 3.0 * H, 1));
    feed(
        &mut d,
        &[(CONN, rec("C1", "10.0.0.1", "8.8.8.8", T0, 3.25 * H))],
    );
    feed(&mut d, &snapshots("C1", &[3.0])); // new open_conn.log still lists it once more
    assert_eq!(figures(&mut d), (3.25 * H, 3.25 * H, 1));
}

#[test]
fn restart_between_interim_and_final_via_snapshot() {
    let cfg = fixtures::config();
    let mut d = Detector::new(&cfg);
    let before = feed(&mut d, &snapshots("C1", &[1.5, 4.5]));
    assert_eq!(singles(&before).len(), 2);
    let json = serde_json::to_string(&d.snapshot()).unwrap();
    let mut d2 = Detector::restore(&cfg, serde_json::from_str(&json).unwrap());
    assert_eq!(d2.snapshot(), d.snapshot());
    // After the restart: a stale snapshot is ignored, the final record replaces the interim one, no repeat
    // of the medium single alert, and the group still counts one connection.
    let a = feed(
        &mut d2,
        &[
            (OPEN, rec("C1", "10.0.0.1", "8.8.8.8", T0, 4.5 * H)),
            (CONN, rec("C1", "10.0.0.1", "8.8.8.8", T0, 5.0 * H)),
            (OPEN, rec("C1", "10.0.0.1", "8.8.8.8", T0, 4.75 * H)),
        ],
    );
    assert!(singles(&a).is_empty(), "{a:?}");
    assert_eq!(figures(&mut d2), (5.0 * H, 5.0 * H, 1));
}

#[test]
fn open_uid_without_news_is_forgotten_after_interim_timeout() {
    let mut cfg = no_single();
    cfg.cumulative.interim_timeout = std::time::Duration::from_secs(2 * 3600);
    let mut d = Detector::new(&cfg);
    feed(&mut d, &snapshots("C1", &[1.0]));
    assert_eq!(d.stats().interim_open, 1);
    // Event time moves on 3h (other traffic, enough records for a sweep).
    let others: Vec<_> = (0..1100)
        .map(|i| {
            (
                CONN,
                rec(&format!("X{i}"), "10.0.0.9", "8.8.4.4", T0 + 4.0 * H, 1.0),
            )
        })
        .collect();
    feed(&mut d, &others);
    let st = d.stats();
    assert_eq!((st.interim_open, st.interim_expired), (0, 1));
    // Its interval stays counted; a later snapshot is then a new connection (documented limit).
    assert_eq!(figures(&mut d).0, 1.0 * H);
}

#[test]
fn parallel_connections_sum_and_covered_side_by_side() {
    // Three 2h connections of one pair, overlapping: sum 6h, covered 3h. With measure = sum the pair
    // reaches medium (4h); with covered it stays at low.
    let recs = [
        rec("A", "10.0.0.1", "8.8.8.8", T0, 2.0 * H),
        rec("B", "10.0.0.1", "8.8.8.8", T0, 2.0 * H),
        rec("C", "10.0.0.1", "8.8.8.8", T0 + H, 2.0 * H),
    ];
    let mut cfg = no_single();
    let a = run(&mut Detector::new(&cfg), &recs);
    assert_eq!(kinds(&a), vec![(C, Low), (C, Medium)]);
    let m = &a[1].longconn;
    // Medium (4h) is reached by the second connection: 4h summed while only 2h were covered.
    assert_eq!(
        (m.measure_seconds, m.sum_seconds, m.covered_seconds),
        (4.0 * H, 4.0 * H, 2.0 * H)
    );
    cfg.cumulative.measure = Measure::Covered;
    let a = run(&mut Detector::new(&cfg), &recs);
    assert_eq!(kinds(&a), vec![(C, Low)]);
    let m = &a[0].longconn;
    assert_eq!(
        (m.measure_seconds, m.sum_seconds, m.covered_seconds),
        (2.0 * H, 2.0 * H, 2.0 * H)
    );
    let mut d = Detector::new(&cfg);
    run(&mut d, &recs);
    assert_eq!(figures(&mut d), (6.0 * H, 3.0 * H, 3));
}

/// The shared 2-day open_conn sample (GPL, read in place, never copied): 48 hourly snapshots of one SSH
/// connection. Counted once with its latest duration (183,601 s), single alerts at the first snapshot
/// past each level, all saying the connection is open.
#[test]
fn shared_open_conn_sample_through_the_detector() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/zeek/rita_missing_host_2024-04-19_to_20.open_conn.log");
    let Ok(text) = std::fs::read(&path) else {
        assert!(
            std::env::var("LONGCONN_REQUIRE_SHARED").as_deref() != Ok("1"),
            "LONGCONN_REQUIRE_SHARED=1 but {} is missing",
            path.display()
        );
        return;
    };
    let mut cfg = fixtures::config();
    cfg.window.length = std::time::Duration::from_secs(72 * 3600);
    let mut d = Detector::new(&cfg);
    let mut parser = crate::zeek::LogParser::new(crate::zeek::ParseOptions::default());
    let mut alerts = Vec::new();
    let mut durations = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        if let crate::zeek::Line::Record(r, _) = parser.parse_line(line) {
            durations.push(r.duration.unwrap_or(0.0));
            d.process(&r, SourceKind::OpenConn, &mut alerts);
        }
    }
    assert_eq!(durations.len(), 48);
    let key = GroupKey::new(
        GroupBy::Pair,
        "73.54.23.243".parse().unwrap(),
        "64.225.56.201".parse().unwrap(),
        0,
        0,
    );
    let sum = d.window.measure(&key).unwrap();
    assert_eq!(sum, 183_601_191_799);
    assert_eq!(d.window.get(&key).unwrap().data.connections, 1);
    // The first snapshot is already 4h (14,401 s): medium at once; high (8h) and critical (12h) at the
    // first snapshots past them.
    let s: Vec<(Level, bool, f64)> = singles(&alerts);
    let first_past = |th: f64| durations.iter().copied().find(|x| *x >= th).unwrap();
    assert_eq!(
        s.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
        vec![(Medium, true), (High, true), (Critical, true)]
    );
    assert!((s[1].2 - first_past(8.0 * H)).abs() < 1e-6);
    assert!((s[2].2 - first_past(12.0 * H)).abs() < 1e-6);
    // Cumulative never exceeds the connection's own duration (no summing of snapshots).
    assert!(alerts
        .iter()
        .all(|a| a.longconn.sum_seconds <= 183_601.2 && a.longconn.open));
}

#[test]
fn domain_allow_runs_once_the_name_is_known() {
    let t0 = 1_700_000_000.0;
    let mut cfg = fixtures::config();
    cfg.allow = vec![Allow {
        matches: Match::default(),
        domain: Some(crate::rules::Domain::parse("example.com").expect("domain")),
        comment: None,
    }];
    let mut d = Detector::new(&cfg);
    let sni = |uid: &str, resp: &str, name: &str| fixtures::sni(uid, resp, name, t0);
    d.process_context(&sni("C1", "1.2.3.4", "Chat.Example.com"));
    d.process_context(&sni("C2", "1.2.3.5", "example.org"));
    let mut out = Vec::new();
    // Named under the allowed domain: left out, counted as allowed.
    d.process(
        &rec("C1", "10.0.0.1", "1.2.3.4", t0, 5.0 * H),
        SourceKind::Conn,
        &mut out,
    );
    // Another name, and no name at all: they alert.
    d.process(
        &rec("C2", "10.0.0.1", "1.2.3.5", t0, 5.0 * H),
        SourceKind::Conn,
        &mut out,
    );
    d.process(
        &rec("C3", "10.0.0.1", "1.2.3.6", t0, 5.0 * H),
        SourceKind::Conn,
        &mut out,
    );
    let dests: Vec<String> = out.iter().map(|a| a.destination.ip.to_string()).collect();
    assert!(!dests.contains(&"1.2.3.4".to_string()), "{dests:?}");
    assert!(dests.contains(&"1.2.3.5".to_string()), "{dests:?}");
    assert!(dests.contains(&"1.2.3.6".to_string()), "{dests:?}");
    assert_eq!(d.stats().filtered_allow, 1);
    assert_eq!(d.stats().records_used, 2);
}

/// `group_by = "name"`: connections to one server name add up across its addresses (a service or a C2
/// behind rotating addresses), unnamed ones stay grouped by pair, and alerts show the record's address
/// with the name, the id built from `orig>name`.
#[test]
fn group_by_name_sums_across_addresses_and_falls_back_to_the_pair() {
    let t0 = 1_700_000_000.0;
    let mut cfg = no_single();
    cfg.window.group_by = GroupBy::Name;
    cfg.cumulative.measure = Measure::Covered;
    cfg.context.named_tls_usual_port = false;
    let mut d = Detector::new(&cfg);
    let sni = fixtures::sni;
    let mut out = Vec::new();
    // Three hours each to three addresses of one name, one after the other: 9 h covered by name
    // (medium at 4 h, high at 8 h), 3 h per address (low) by pair.
    for (i, resp) in ["1.2.3.4", "1.2.3.5", "5.6.7.8"].iter().enumerate() {
        let ts = t0 + (i as f64) * 3.0 * H;
        let uid = format!("C{i}");
        // The name as SNI gives it (case differs): one group all the same.
        let name = if i == 1 {
            "C2.Example.NET"
        } else {
            "c2.example.net"
        };
        d.process_context(&sni(&uid, resp, name, ts));
        d.process(
            &rec(&uid, "10.0.0.1", resp, ts, 3.0 * H),
            SourceKind::Conn,
            &mut out,
        );
    }
    // No name: its own pair group, 2 h (low).
    d.process(
        &rec("U1", "10.0.0.1", "9.9.9.9", t0, 2.0 * H),
        SourceKind::Conn,
        &mut out,
    );
    let got: Vec<(Level, String, Option<String>)> = out
        .iter()
        .map(|a| {
            (
                a.longconn.level,
                a.destination.ip.to_string(),
                a.destination.domain.clone(),
            )
        })
        .collect();
    let named = |l: Level, ip: &str| (l, ip.to_string(), Some("c2.example.net".to_string()));
    assert_eq!(
        got,
        vec![
            named(Low, "1.2.3.4"),
            // `destination.domain` is the name as the record gave it.
            (
                Medium,
                "1.2.3.5".to_string(),
                Some("C2.Example.NET".to_string())
            ),
            named(High, "5.6.7.8"),
            (Low, "9.9.9.9".to_string(), None),
        ]
    );
    let high = &out[2];
    assert!((high.longconn.covered_seconds - 9.0 * H).abs() < 1e-6);
    assert_eq!(high.longconn.connection_count, 3);
    assert!(
        high.message.contains("to c2.example.net (last at 5.6.7.8)"),
        "{}",
        high.message
    );
    let id = |group: &str, level: Level, uid: &str, ts: f64| {
        crate::alert::event_id(C, group, level, uid, (ts * 1e6) as i64, 0)
    };
    assert_eq!(high.event.id, id("10.0.0.1>c2.example.net", High, "C0", t0));
    // The unnamed group's id is the pair's, as with `group_by = "pair"`.
    assert_eq!(out[3].event.id, id("10.0.0.1>9.9.9.9", Low, "U1", t0));
    // By pair the same input gives three low groups and the unnamed one.
    let mut by_pair = cfg.clone();
    by_pair.window.group_by = GroupBy::Pair;
    let mut d = Detector::new(&by_pair);
    let mut out = Vec::new();
    for (i, resp) in ["1.2.3.4", "1.2.3.5", "5.6.7.8"].iter().enumerate() {
        let ts = t0 + (i as f64) * 3.0 * H;
        let uid = format!("C{i}");
        d.process_context(&sni(&uid, resp, "c2.example.net", ts));
        d.process(
            &rec(&uid, "10.0.0.1", resp, ts, 3.0 * H),
            SourceKind::Conn,
            &mut out,
        );
    }
    assert_eq!(kinds(&out), vec![(C, Low), (C, Low), (C, Low)]);
}

/// Uids of every form, in turn: Zeek's (packed), empty, too long to pack, with characters base 62 has not.
fn odd_uid(i: usize) -> String {
    match i % 5 {
        0 => format!("C{i:017x}"),
        1 => String::new(),
        2 => format!("C{i}abcdefghijklmnopqrstuvwxyz"),
        3 => format!("uid-{i}"),
        _ => format!("Cé{i}"),
    }
}

/// A group lists at most `MAX_UIDS` uids, oldest first, whatever their form, and its first record stays
/// whatever becomes of the newest uid.
#[test]
fn a_group_keeps_its_last_uids_in_order() {
    let mut g = GroupData::default();
    let mut all = Vec::new();
    for i in 0..3 * alert::MAX_UIDS + 3 {
        let uid = odd_uid(i);
        let r = rec(&uid, "10.0.0.1", "8.8.8.8", T0 + i as f64, 10.0);
        let ts = 1_000 + i as i64;
        let opens = g.rules.episode_first == FirstRecord::None;
        g.add(&r, Uid::new(&uid), ts, ts + 10, 10);
        if opens {
            g.set_episode_first(Some((Uid::new(&uid), ts)));
        }
        all.push(uid);
        let want = &all[all.len().saturating_sub(alert::MAX_UIDS)..];
        assert_eq!(g.in_order(), want, "after {i}");
        assert_eq!(g.episode_first(), Some((odd_uid(0).into(), 1_000)));
        assert_eq!(g.older_len() + 1, want.len());
        let back: GroupData =
            serde_json::from_str(&serde_json::to_string(&g).expect("json")).expect("back");
        assert_eq!(back, g);
        assert_eq!(back.in_order(), want);
    }
    assert_eq!(g.in_order().len(), alert::MAX_UIDS);
}

/// A one-connection group's episode starts at its newest uid: no cold part; one that starts over keeps
/// its first record.
#[test]
fn a_one_connection_group_has_no_cold_part() {
    let mut d = Detector::new(&fixtures::config());
    run(
        &mut d,
        &[rec("CHhAvVGS1DHFjwGM9", "10.0.0.1", "8.8.8.8", T0, 60.0)],
    );
    let (_, slot) = d.window().groups().next().expect("a group");
    assert!(slot.data.cold.is_none());
    assert_eq!(slot.data.rules.episode_first, FirstRecord::Newest);
    assert_eq!(
        slot.data.episode_first(),
        Some(("CHhAvVGS1DHFjwGM9".into(), (T0 * 1e6) as i64))
    );
    let mut g = slot.data.clone();
    g.start_over();
    assert_eq!(g.connections, 0);
    assert_eq!(g.in_order(), [""]);
    assert_eq!(
        g.episode_first(),
        Some(("CHhAvVGS1DHFjwGM9".into(), (T0 * 1e6) as i64))
    );
    // Its next record opens a new episode: the cold part that kept the old first record goes.
    g.rules
        .check_episode_end(&crate::rules::Thresholds([None; 4]), 0);
    let ts = ((T0 + H) * 1e6) as i64;
    let r = rec("Cnext", "10.0.0.1", "8.8.8.8", T0 + H, 60.0);
    g.add(&r, Uid::new("Cnext"), ts, ts + 60_000_000, 60_000_000);
    g.set_episode_first(Some((Uid::new("Cnext"), ts)));
    assert!(g.cold.is_none());
    assert_eq!(g.episode_first(), Some(("Cnext".into(), ts)));
}

/// The sizes the detector's memory per group rests on: a regression fails here.
#[test]
fn group_sizes() {
    use std::mem::size_of;
    assert_eq!(size_of::<RuleState>(), 24);
    assert_eq!(size_of::<GroupData>(), 96);
    assert_eq!(size_of::<window::Slot<GroupData>>(), 160);
}

/// A uid whose final record comes twice (a duplicate line) stays closed for `interim_timeout` after its
/// last close, and is then forgotten like any other: before, the second close was never queued, so the
/// uid stayed closed (and in memory) for good, and late interim records of it were ignored forever.
#[test]
fn a_uid_closed_again_is_forgotten_interim_timeout_after_its_last_close() {
    let mut cfg = no_single();
    cfg.source_kinds.push(OPEN);
    cfg.cumulative.interim_timeout = std::time::Duration::from_secs(2 * 3600);
    let mut d = Detector::new(&cfg);
    let fin = (CONN, rec("C1", "10.0.0.1", "8.8.8.8", T0, 0.5 * H));
    let other = |t: f64| (CONN, rec("X", "10.0.0.9", "8.8.4.4", t, 1.0));
    let late = (OPEN, rec("C1", "10.0.0.1", "8.8.8.8", T0, 0.6 * H));
    // Closed at T0 + 0.5h, and again at T0 + 1h.
    feed(&mut d, &[fin.clone(), other(T0 + 1.0 * H), fin]);
    // 2h after the first close, not yet 2h after the second: still closed.
    feed(&mut d, &[other(T0 + 2.75 * H), late.clone()]);
    assert_eq!(d.stats().interim_ignored, 1);
    // 2h after the second close: forgotten, so a late interim record is no longer ignored.
    feed(&mut d, &[other(T0 + 3.5 * H), late]);
    assert_eq!(d.stats().interim_ignored, 1);
    assert!(d.snapshot().interim.closed.is_empty());
}
