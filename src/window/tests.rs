//! Table and property tests for [`crate::window`].

use super::*;
use proptest::prelude::*;

const S: i64 = 1_000_000;
const HOUR: i64 = 3600 * S;
const BASE: i64 = 1_700_000_000 * S;

fn key(n: u8) -> GroupKey {
    GroupKey {
        orig: IpAddr::from([10, 0, 0, n]),
        resp: IpAddr::from([192, 0, 2, 1]),
        port: 0,
        proto: 0,
    }
}

/// Feeds `[s, e]` to group `k` the way the detector does; returns the measure after.
fn add(w: &mut Window<()>, k: GroupKey, s: i64, e: i64) -> i64 {
    w.observe(e);
    let t = w.touch(k).expect("observed");
    t.slot.acc.insert(t.left_edge, s, e, t.cell);
    t.slot.acc.measure(t.left_edge)
}

fn brute(intervals: &[(i64, i64)], w: i64) -> i64 {
    intervals.iter().map(|&(s, e)| (e - s.max(w)).max(0)).sum()
}

#[test]
fn measure_table() {
    // (records as (start h, end h) offsets from BASE, expected measure in h after the last one), 10h window
    type Case = (&'static str, &'static [(i64, i64)], i64);
    let cases: &[Case] = &[
        ("one interval", &[(0, 3)], 3),
        ("two in a row", &[(0, 3), (3, 5)], 5),
        ("parallel connections add up", &[(0, 4), (0, 4)], 8),
        (
            "left edge clips a straddling interval",
            &[(0, 4), (12, 13)],
            1 + 1,
        ),
        (
            "interval ending exactly at the edge counts 0",
            &[(0, 2), (11, 12)],
            1,
        ),
        ("one long interval longer than the window", &[(0, 30)], 10),
        (
            "out of order: late record inside the window",
            &[(10, 12), (5, 6)],
            3,
        ),
        (
            "out of order: late record straddling the edge",
            &[(10, 12), (0, 4)],
            2 + 2,
        ),
        (
            "out of order: late record already out",
            &[(10, 12), (0, 1)],
            2,
        ),
        ("zero-length records count 0", &[(1, 1), (2, 2)], 0),
    ];
    for (name, recs, want) in cases {
        let mut w: Window<()> = Window::new(10 * HOUR, GroupBy::Pair, 100);
        let mut m = 0;
        for &(s, e) in *recs {
            m = add(&mut w, key(1), BASE + s * HOUR, BASE + e * HOUR);
        }
        assert_eq!(m, want * HOUR, "{name}");
    }
}

#[test]
fn measure_falls_as_other_groups_advance_the_watermark() {
    let mut w: Window<()> = Window::new(10 * HOUR, GroupBy::Pair, 100);
    add(&mut w, key(1), BASE, BASE + 4 * HOUR);
    assert_eq!(w.measure(&key(1)), Some(4 * HOUR));
    add(&mut w, key(2), BASE + 11 * HOUR, BASE + 12 * HOUR);
    assert_eq!(w.measure(&key(1)), Some(2 * HOUR));
    add(&mut w, key(2), BASE + 13 * HOUR, BASE + 14 * HOUR + 1);
    assert_eq!(w.measure(&key(1)), Some(0));
}

#[test]
fn expired_groups_are_reset_and_swept() {
    let mut w: Window<()> = Window::new(HOUR, GroupBy::Pair, 100);
    add(&mut w, key(1), BASE, BASE + 10);
    w.observe(BASE + 2 * HOUR);
    let t = w.touch(key(1)).expect("observed");
    assert!(
        t.fresh,
        "a group whose intervals all left the window starts over"
    );
    assert_eq!(t.measure_before, 0);
    for i in 0..2000u32 {
        w.observe(BASE + 3 * HOUR + i64::from(i) * HOUR);
        let k = GroupKey {
            port: (i % 3) as u16,
            ..key(2)
        };
        let _ = w.touch(k);
    }
    assert!(w.len() <= 3, "expired groups are swept: {}", w.len());
    assert!(w.expired() > 0);
}

#[test]
fn eviction_drops_smallest_measures_and_counts() {
    let mut w: Window<()> = Window::new(100 * HOUR, GroupBy::Pair, 4);
    for (n, hours) in [(1u8, 5i64), (2, 1), (3, 3), (4, 2)] {
        add(&mut w, key(n), BASE, BASE + hours * HOUR);
    }
    assert_eq!(w.len(), 4);
    assert_eq!(w.evictions(), 0);
    add(&mut w, key(5), BASE, BASE + 4 * HOUR);
    // Cap 4: evicted down to 4 - 1 = 3 before the new group comes in: key 2 (1h) goes.
    assert_eq!(w.evictions(), 1);
    assert_eq!(w.len(), 4);
    assert_eq!(w.measure(&key(2)), None);
    assert_eq!(w.measure(&key(4)), Some(2 * HOUR));
    assert_eq!(w.measure(&key(1)), Some(5 * HOUR));
    assert_eq!(w.measure(&key(5)), Some(4 * HOUR));
}

#[test]
fn longer_length_on_reconfigure_keeps_what_is_inside() {
    let mut w: Window<()> = Window::new(10 * HOUR, GroupBy::Pair, 100);
    add(&mut w, key(1), BASE, BASE + 4 * HOUR);
    add(&mut w, key(2), BASE + 12 * HOUR, BASE + 12 * HOUR);
    assert_eq!(w.measure(&key(1)), Some(2 * HOUR));
    w.reconfigure(20 * HOUR, GroupBy::Pair, 100);
    // The clipped part cannot come back; what was inside stays.
    assert_eq!(w.measure(&key(1)), Some(2 * HOUR));
    w.reconfigure(HOUR, GroupBy::Pair, 100);
    assert_eq!(w.measure(&key(1)), Some(0));
}

#[test]
fn state_round_trip() {
    let mut w: Window<()> = Window::new(10 * HOUR, GroupBy::PairPort, 100);
    add(&mut w, key(1), BASE, BASE + 4 * HOUR);
    add(&mut w, key(1), BASE + 9 * HOUR, BASE + 12 * HOUR);
    add(&mut w, key(2), BASE + 5 * HOUR, BASE + 6 * HOUR);
    let st = w.state(|_| ());
    let json = serde_json::to_string(&st).expect("serialize");
    let back: WindowState<()> = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, st);
    let mut r: Window<()> = Window::from_state(&back, 100, |_| ());
    assert_eq!(r.group_by(), GroupBy::PairPort);
    for k in [key(1), key(2)] {
        assert_eq!(r.measure(&k), w.measure(&k));
    }
    assert_eq!(
        add(&mut r, key(2), BASE + 20 * HOUR, BASE + 21 * HOUR),
        HOUR
    );
}

#[test]
fn approximate_beyond_the_exact_limit_within_the_documented_bound() {
    let length = 24 * HOUR;
    let g = length / GRID_CELLS;
    let mut w: Window<()> = Window::new(length, GroupBy::Pair, 100);
    let mut all = Vec::new();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut worst = 0f64;
    for i in 0..20_000i64 {
        // Mostly short connections, some long ones, slightly out of order.
        let start = BASE + i * 30 * S - (next() % (600 * S as u64)) as i64;
        let dur = if next() % 20 == 0 {
            (next() % (10 * HOUR as u64)) as i64
        } else {
            (next() % (120 * S as u64)) as i64
        };
        let m = add(&mut w, key(1), start, start + dur);
        all.push((start, start + dur));
        let edge = w.left_edge().expect("observed");
        let exact = brute(&all, edge);
        let acc = &w.get(&key(1)).expect("tracked").acc;
        assert!(acc.len() <= EXACT_LIMIT, "bounded memory: {}", acc.len());
        let folded = i64::try_from(all.len()).unwrap_or(i64::MAX);
        let bound = 2 * g * folded + folded;
        assert!((m - exact).abs() <= bound, "error {} over bound", m - exact);
        if i < EXACT_LIMIT as i64 {
            assert_eq!(m, exact, "exact up to the limit");
        }
        if exact > 0 {
            worst = worst.max((m - exact).abs() as f64 / exact as f64);
        }
    }
    assert!(
        w.get(&key(1)).expect("tracked").acc.merged() > 0,
        "the approximation was used"
    );
    // In practice the error stays far below the bound: under a percent of the measure here.
    assert!(worst < 0.01, "worst relative error {worst}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn measure_equals_brute_force(
        length_h in 1i64..30,
        recs in proptest::collection::vec((0u8..4, 0i64..100 * 3600, 0i64..20 * 3600), 1..120),
    ) {
        let length = length_h * HOUR;
        let mut w: Window<()> = Window::new(length, GroupBy::Pair, 1000);
        let mut per: Vec<Vec<(i64, i64)>> = vec![Vec::new(); 4];
        for (g, start_s, dur_s) in recs {
            let (s, e) = (BASE + start_s * S, BASE + (start_s + dur_s) * S);
            let m = add(&mut w, key(g), s, e);
            per[usize::from(g)].push((s, e));
            let edge = w.left_edge().expect("observed");
            prop_assert_eq!(m, brute(&per[usize::from(g)], edge));
            for (k, ivs) in per.iter().enumerate() {
                if let Some(m) = w.measure(&key(k as u8)) {
                    prop_assert_eq!(m, brute(ivs, edge));
                }
            }
        }
    }
}

#[test]
fn exact_up_to_the_limit_then_compacted() {
    let mut w: Window<()> = Window::new(24 * HOUR, GroupBy::Pair, 10);
    let mut all = Vec::new();
    for i in 0..EXACT_LIMIT as i64 {
        let s = BASE + i * S;
        add(&mut w, key(1), s, s + 7 * S + i % 3);
        all.push((s, s + 7 * S + i % 3));
    }
    let acc = &w.get(&key(1)).expect("tracked").acc;
    assert_eq!((acc.len(), acc.merged()), (EXACT_LIMIT, 0));
    let edge = w.left_edge().expect("observed");
    assert_eq!(w.measure(&key(1)), Some(brute(&all, edge)));
    add(&mut w, key(1), BASE + 5000 * S, BASE + 5001 * S);
    let acc = &w.get(&key(1)).expect("tracked").acc;
    assert!(acc.len() <= 561 && acc.merged() > 0, "{} items", acc.len());
    all.push((BASE + 5000 * S, BASE + 5001 * S));
    // Every interval is inside the window: the merged measure keeps the total length (1 µs per item).
    let edge = w.left_edge().expect("observed");
    let m = w.measure(&key(1)).expect("tracked");
    assert!((m - brute(&all, edge)).abs() <= 561, "{m}");
}

/// Covered time by brute force: seconds `x` in the window for which some interval holds `[x, x+1)`.
fn brute_covered(intervals: &[(i64, i64)], w: i64, t: i64) -> i64 {
    let (w_s, t_s) = (w.div_euclid(S), t.div_euclid(S));
    (w_s..t_s)
        .filter(|x| {
            intervals
                .iter()
                .any(|&(s, e)| s <= x * S && (x + 1) * S <= e)
        })
        .count() as i64
        * S
}

#[test]
fn covered_of_parallel_connections_side_by_side_with_sum() {
    let mut w: Window<()> = Window::new(24 * HOUR, GroupBy::Pair, 10);
    // Three 2h connections, two of them fully parallel, one overlapping by an hour.
    let spans = [(0, 2), (0, 2), (1, 3)];
    for (a, b) in spans {
        add(&mut w, key(1), BASE + a * HOUR, BASE + b * HOUR);
    }
    let t = w.touch(key(1)).expect("observed");
    assert_eq!(t.slot.acc.measure(t.left_edge), 6 * HOUR, "sum");
    assert_eq!(t.slot.acc.covered(t.left_edge), 3 * HOUR, "covered");
}

#[test]
fn replace_swaps_one_connection_interval() {
    let mut w: Window<()> = Window::new(24 * HOUR, GroupBy::Pair, 10);
    add(&mut w, key(1), BASE, BASE + HOUR);
    add(&mut w, key(1), BASE, BASE + 2 * HOUR);
    w.observe(BASE + 5 * HOUR);
    let t = w.touch(key(1)).expect("observed");
    // The second connection's interim interval [0, 2h] grows to [0, 5h].
    t.slot.acc.replace(
        t.left_edge,
        (BASE, BASE + 2 * HOUR),
        (BASE, BASE + 5 * HOUR),
        t.cell,
    );
    assert_eq!(t.slot.acc.measure(t.left_edge), 6 * HOUR);
    assert_eq!(t.slot.acc.len(), 2);
    assert_eq!(t.slot.acc.covered(t.left_edge), 5 * HOUR);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// The covered measure equals a brute-force union (second by second) under inserts and replacements
    /// (a connection's interval replaced by a longer one, as interim records do), with the window sliding.
    #[test]
    fn covered_equals_brute_force_union(
        length_h in 1i64..12,
        ops in proptest::collection::vec((0i64..40 * 3600, 1i64..6 * 3600, 0i64..4 * 3600, any::<bool>()), 1..60),
    ) {
        let length = length_h * HOUR;
        let mut w: Window<()> = Window::new(length, GroupBy::Pair, 10);
        let mut live: Vec<(i64, i64)> = Vec::new();
        for (start_s, dur_s, grow_s, replace) in ops {
            let s = BASE + start_s * S;
            let e = s + dur_s * S;
            let old = live.last().copied().filter(|_| replace);
            // The new end is observed first, as the detector does (every end <= the watermark).
            let new = match old {
                Some((s0, e0)) => (s0, e0 + grow_s * S),
                None => (s, e),
            };
            w.observe(new.1);
            let top = w.watermark().expect("observed");
            let t = w.touch(key(1)).expect("observed");
            let edge = t.left_edge;
            match old {
                Some(o) => {
                    t.slot.acc.replace(edge, o, new, t.cell);
                    live.pop();
                }
                None => t.slot.acc.insert(edge, new.0, new.1, t.cell),
            }
            live.push(new);
            prop_assert_eq!(t.slot.acc.covered(edge), brute_covered(&live, edge, top));
            prop_assert_eq!(t.slot.acc.measure(edge), brute(&live, edge));
        }
    }
}
