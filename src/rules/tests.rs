//! Table and property tests for [`crate::rules`].

use super::*;
use crate::detector::fixtures::{self, hours, rec};

const HOUR: i64 = 3_600_000_000;

fn addrs(r: &ConnRecord) -> (IpAddr, IpAddr) {
    (
        r.orig_h.expect("test record has orig_h"),
        r.resp_h.expect("test record has resp_h"),
    )
}

fn filter_of(cfg: &DetectorConfig, r: &ConnRecord) -> Result<(), FilterReason> {
    let (o, d) = addrs(r);
    Rules::new(cfg).filter(o, d, r)
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test CIDR")
}

#[test]
fn filters_table() {
    let base = fixtures::config();
    let mut only_outbound = base.clone();
    only_outbound.filter.directions = vec![Direction::Outbound];
    let mut always = base.clone();
    always.filter.always = vec![net("127.0.0.5/32")];
    let mut states = base.clone();
    states.filter.ignore_states = vec!["S0".into(), "REJ".into()];
    let mut allow = base.clone();
    allow.allow = vec![Allow {
        matches: Match {
            dst: Some(net("203.0.113.10/32")),
            port: Some(443),
            ..Match::default()
        },
        domain: None,
        comment: Some("backup".into()),
    }];
    let mut allow_proto = base.clone();
    allow_proto.allow = vec![Allow {
        matches: Match {
            src: Some(net("10.1.0.0/16")),
            proto: Some("udp".into()),
            ..Match::default()
        },
        domain: None,
        comment: None,
    }];
    let r = |o: &str, d: &str| rec("C1", o, d, 0.0, 1.0);
    let mut s0 = r("10.0.0.1", "8.8.8.8");
    s0.conn_state = Some("S0".into());
    let mut no_state = r("10.0.0.1", "8.8.8.8");
    no_state.conn_state = None;
    let mut port80 = r("10.0.0.1", "203.0.113.10");
    port80.resp_p = Some(80);
    let mut udp = r("10.1.2.3", "8.8.8.8");
    udp.proto = "UDP".into();

    use FilterReason as F;
    let cases: Vec<(&str, &DetectorConfig, ConnRecord, Result<(), FilterReason>)> = vec![
        (
            "plain outbound passes",
            &base,
            r("10.0.0.1", "8.8.8.8"),
            Ok(()),
        ),
        (
            "loopback orig is never",
            &base,
            r("127.0.0.1", "8.8.8.8"),
            Err(F::Never),
        ),
        (
            "multicast resp is never",
            &base,
            r("10.0.0.1", "224.0.0.251"),
            Err(F::Never),
        ),
        (
            "link-local v6 is never",
            &base,
            r("fe80::1", "fd00::2"),
            Err(F::Never),
        ),
        (
            "always rescues an address from never",
            &always,
            r("127.0.0.5", "8.8.8.8"),
            Ok(()),
        ),
        (
            "always is per address",
            &always,
            r("127.0.0.6", "8.8.8.8"),
            Err(F::Never),
        ),
        (
            "outbound kept",
            &only_outbound,
            r("10.0.0.1", "8.8.8.8"),
            Ok(()),
        ),
        (
            "inbound dropped",
            &only_outbound,
            r("8.8.8.8", "10.0.0.1"),
            Err(F::Direction),
        ),
        (
            "internal dropped",
            &only_outbound,
            r("10.0.0.1", "192.168.1.1"),
            Err(F::Direction),
        ),
        (
            "external dropped",
            &only_outbound,
            r("8.8.8.8", "1.1.1.1"),
            Err(F::Direction),
        ),
        (
            "ipv6 ula is internal",
            &only_outbound,
            r("fd00::1", "2001:db8::1"),
            Ok(()),
        ),
        ("ignored state", &states, s0, Err(F::State)),
        (
            "other state passes",
            &states,
            r("10.0.0.1", "8.8.8.8"),
            Ok(()),
        ),
        ("no state passes", &states, no_state, Ok(())),
        (
            "allow dst+port",
            &allow,
            r("10.0.0.1", "203.0.113.10"),
            Err(F::Allow),
        ),
        ("allow needs every key", &allow, port80, Ok(())),
        (
            "allow src+proto, any case",
            &allow_proto,
            udp,
            Err(F::Allow),
        ),
        (
            "allow src+proto: tcp passes",
            &allow_proto,
            r("10.1.2.3", "8.8.8.8"),
            Ok(()),
        ),
        (
            "never comes before allow",
            &allow,
            r("127.0.0.1", "203.0.113.10"),
            Err(F::Never),
        ),
    ];
    for (name, cfg, record, want) in cases {
        assert_eq!(filter_of(cfg, &record), want, "{name}");
    }
}

#[test]
fn directions() {
    let rules = Rules::new(&fixtures::config());
    let d = |o: &str, r: &str| rules.direction(o.parse().expect("ip"), r.parse().expect("ip"));
    assert_eq!(d("10.0.0.1", "8.8.8.8"), Direction::Outbound);
    assert_eq!(d("8.8.8.8", "172.16.0.1"), Direction::Inbound);
    assert_eq!(d("192.168.0.1", "10.0.0.1"), Direction::Internal);
    assert_eq!(d("8.8.8.8", "1.1.1.1"), Direction::External);
}

#[test]
fn overrides_first_match_replaces_given_levels() {
    let mut cfg = fixtures::config();
    let none = [None; 4];
    cfg.overrides = vec![
        Override {
            matches: Match {
                src: Some(net("10.9.0.0/16")),
                ..Match::default()
            },
            single: [None, None, hours(24), None],
            cumulative: none,
        },
        Override {
            matches: Match {
                src: Some(net("10.9.1.0/24")),
                ..Match::default()
            },
            single: [hours(2), None, None, None],
            cumulative: [None, None, None, hours(20)],
        },
    ];
    let rules = Rules::new(&cfg);
    let th = |o: &str| {
        let r = rec("C", o, "8.8.8.8", 0.0, 1.0);
        let (a, b) = addrs(&r);
        rules.thresholds(a, b, &r)
    };
    let (s, c) = th("10.9.1.1");
    assert_eq!(
        s.0,
        [Some(HOUR), Some(4 * HOUR), Some(24 * HOUR), Some(12 * HOUR)]
    );
    assert_eq!(
        c, rules.cumulative,
        "first match wins, its cumulative is empty"
    );
    let (s, _) = th("10.1.1.1");
    assert_eq!(s, rules.single);
}

#[test]
fn levels_boundaries() {
    let th = Thresholds::from_levels(&fixtures::levels(1, 4, 8, 12));
    assert_eq!(th.level_for(HOUR - 1), None);
    assert_eq!(th.level_for(HOUR), Some(Level::Low));
    assert_eq!(th.level_for(8 * HOUR - 1), Some(Level::Medium));
    assert_eq!(th.level_for(8 * HOUR), Some(Level::High));
    assert_eq!(th.level_for(100 * HOUR), Some(Level::Critical));
    let off = Thresholds([None, Some(4 * HOUR), None, Some(12 * HOUR)]);
    assert_eq!(off.level_for(5 * HOUR), Some(Level::Medium));
    assert_eq!(off.lowest(), Some(4 * HOUR));
}

#[test]
fn single_suppression_table() {
    let th = Thresholds::from_levels(&fixtures::levels(1, 4, 8, 12));
    let win = 24 * HOUR;
    // (duration h, watermark h, expected alert level)
    let steps: &[(i64, i64, Option<Level>)] = &[
        (8, 10, Some(Level::High)),
        (9, 11, None),                   // same level within the window
        (5, 12, None),                   // lower level within the window
        (13, 13, Some(Level::Critical)), // higher level alerts
        (12, 36, None),                  // 23h after the critical: still suppressed
        (8, 37, Some(Level::High)),      // 24h after: the critical is out of reach
        (0, 38, None),                   // below every level
    ];
    let mut st = RuleState::default();
    for (i, &(d, t, want)) in steps.iter().enumerate() {
        // Each record's group has no cumulative episode open (its measure was below every level).
        st.check_episode_end(&th, 0);
        let level = th.level_for(d * HOUR);
        assert_eq!(st.single(level, t * HOUR, win), want, "step {i}");
    }
}

#[test]
fn cumulative_episode_table() {
    let th = Thresholds::from_levels(&fixtures::levels(1, 4, 8, 12));
    // (measure before, measure after, watermark h, realert_after h, expected)
    use CumulativeAlert::*;
    type Step = (i64, i64, i64, Option<i64>, Option<CumulativeAlert>);
    let steps: &[Step] = &[
        (0, 1, 1, None, Some(Escalation(Level::Low))), // exactly at the threshold
        (1, 2, 2, None, None),                         // same level: nothing
        (2, 9, 9, None, Some(Escalation(Level::High))), // jump: the highest level reached
        (9, 5, 10, None, None),                        // fell to medium: no alert
        (5, 8, 11, None, None),                        // back to high: already alerted
        (0, 2, 40, None, Some(Escalation(Level::Low))), // below low before: new episode
        (2, 2, 50, Some(8), Some(Repeat(Level::Low, 1))), // realert after 8h at the level
        (2, 2, 57, Some(8), None),                     // 7h since the repeat
        (2, 2, 58, Some(8), Some(Repeat(Level::Low, 2))),
        (2, 4, 59, Some(8), Some(Escalation(Level::Medium))),
    ];
    let mut st = RuleState::default();
    for (i, &(before, after, t, re, want)) in steps.iter().enumerate() {
        st.check_episode_end(&th, before * HOUR);
        let got = st.cumulative(th.level_for(after * HOUR), re.map(|h| h * HOUR), t * HOUR);
        assert_eq!(got, want, "step {i}");
    }
}

/// One finding per group: a single alert and a cumulative alert of the same group share the level the
/// episode already alerted at; each is raised only above it.
#[test]
fn single_and_cumulative_share_the_group_level() {
    let th = Thresholds::from_levels(&fixtures::levels(1, 4, 8, 12));
    let win = 24 * HOUR;
    let mut st = RuleState::default();
    st.check_episode_end(&th, 0);
    // A one-connection group at 6h: the single alert is medium, the cumulative medium is the same fact.
    assert_eq!(
        st.single(th.level_for(6 * HOUR), 6 * HOUR, win),
        Some(Level::Medium)
    );
    assert_eq!(st.cumulative(th.level_for(6 * HOUR), None, 6 * HOUR), None);
    // The group's sum reaches high: a new finding.
    st.check_episode_end(&th, 6 * HOUR);
    let high = st.cumulative(th.level_for(9 * HOUR), None, 9 * HOUR);
    assert_eq!(high, Some(CumulativeAlert::Escalation(Level::High)));
    // A later 8h connection of the group: high was already alerted in this episode.
    st.check_episode_end(&th, 9 * HOUR);
    assert_eq!(st.single(th.level_for(8 * HOUR), 10 * HOUR, win), None);
    // A critical single connection is above it.
    st.check_episode_end(&th, 9 * HOUR);
    let crit = th.level_for(13 * HOUR);
    assert_eq!(st.single(crit, 11 * HOUR, win), Some(Level::Critical));
    assert_eq!(st.cumulative(crit, None, 11 * HOUR), None);
}

mod net_set {
    use super::super::NetSet;
    use ipnet::{IpNet, Ipv4Net, Ipv6Net};
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// Addresses and networks drawn near each other (a few prefixes) so that both answers occur.
    fn v4() -> impl Strategy<Value = Ipv4Addr> {
        (
            prop::sample::select(vec![
                0x0a00_0000u32,
                0xc0a8_0100,
                0xe000_0000,
                0xffff_ffff,
                0,
            ]),
            any::<u16>(),
        )
            .prop_map(|(base, low)| Ipv4Addr::from(base ^ u32::from(low)))
    }
    fn v6() -> impl Strategy<Value = Ipv6Addr> {
        (
            prop::sample::select(vec![
                0xfd00u128 << 112,
                0xfe80u128 << 112,
                0xff02u128 << 112,
                1,
            ]),
            any::<u32>(),
        )
            .prop_map(|(base, low)| Ipv6Addr::from(base ^ u128::from(low)))
    }
    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![v4().prop_map(IpAddr::V4), v6().prop_map(IpAddr::V6)]
    }
    fn net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (v4(), 0..=32u8).prop_map(|(a, p)| IpNet::V4(Ipv4Net::new(a, p).expect("prefix"))),
            (v6(), 0..=128u8).prop_map(|(a, p)| IpNet::V6(Ipv6Net::new(a, p).expect("prefix"))),
        ]
    }

    proptest! {
        #[test]
        fn same_answers_as_ipnet(nets in prop::collection::vec(net(), 0..8), addrs in prop::collection::vec(addr(), 1..40)) {
            let set = NetSet::new(&nets);
            for a in addrs {
                prop_assert_eq!(set.contains(a), nets.iter().any(|n| n.contains(&a)), "{} in {:?}", a, nets);
            }
        }
    }
}

#[test]
fn domain_allow_table() {
    let d = |t: &str| Domain::parse(t).expect("test domain");
    for (domain, name, want) in [
        ("slack.com", "slack.com", true),
        ("slack.com", "files.slack.com", true),
        ("slack.com", "a.b.slack.com", true),
        ("slack.com", "FILES.Slack.com", true),
        ("SLACK.com", "files.slack.com", true),
        ("slack.com", "notslack.com", false),
        ("slack.com", "slack.com.evil.net", false),
        ("slack.com", "com", false),
        ("=slack.com", "slack.com", true),
        ("=slack.com", "Slack.Com", true),
        ("=slack.com", "files.slack.com", false),
        ("*.slack.com", "slack.com", true),
        ("*.slack.com", "x.slack.com", true),
        ("slack.com.", "x.slack.com", true),
    ] {
        assert_eq!(d(domain).matches(name), want, "{domain} vs {name}");
    }

    let mut cfg = fixtures::config();
    cfg.allow = vec![
        Allow {
            matches: Match::default(),
            domain: Some(d("slack.com")),
            comment: None,
        },
        Allow {
            matches: Match {
                port: Some(443),
                ..Match::default()
            },
            domain: Some(d("=zoom.us")),
            comment: None,
        },
    ];
    let rules = Rules::new(&cfg);
    let r443 = rec("C1", "10.0.0.1", "8.8.8.8", 0.0, 1.0);
    let mut r80 = r443.clone();
    r80.resp_p = Some(80);
    let (o, dst) = addrs(&r443);
    // Domain entries never act on the fast path, which knows no name.
    assert_eq!(rules.filter(o, dst, &r443), Ok(()));
    assert!(rules.has_domain_allow());
    for (what, r, name, want) in [
        ("subdomain", &r443, Some("edge.slack.com"), true),
        ("no name", &r443, None, false),
        ("other name", &r443, Some("example.com"), false),
        ("exact with port", &r443, Some("zoom.us"), true),
        ("exact, other port", &r80, Some("zoom.us"), false),
        ("exact, subdomain", &r443, Some("eu.zoom.us"), false),
        ("any port without one given", &r80, Some("slack.com"), true),
    ] {
        assert_eq!(rules.allowed_by_name(o, dst, r, name), want, "{what}");
    }
    assert!(!Rules::new(&fixtures::config()).has_domain_allow());
}
