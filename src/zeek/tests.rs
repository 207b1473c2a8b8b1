//! Table tests for the reader, named after the parser edge cases in ZEEK_NOTES.md.

use super::*;

fn parse_all(text: &str) -> Vec<Line> {
    let mut p = LogParser::new(ParseOptions::default());
    text.split('\n')
        .map(|l| p.parse_line(l.as_bytes()))
        .collect()
}

fn records(text: &str) -> Vec<ConnRecord> {
    parse_all(text)
        .into_iter()
        .filter_map(|l| match l {
            Line::Record(r, _) => Some(r),
            _ => None,
        })
        .collect()
}

const HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t2024-01-01-00-00-00\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\thistory\torig_pkts\tresp_pkts\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tstring\tcount\tcount\n";

#[test]
fn edge_1_detect_tsv_json_headerless() {
    let tsv = format!(
        "{HEADER}1.5\tC1\t10.0.0.1\t1\t10.0.0.2\t80\ttcp\thttp\t2.5\t1\t2\tSF\tT\tF\tShAD\t3\t4\n"
    );
    let r = records(&tsv);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].duration, Some(2.5));
    assert_eq!(r[0].service.as_deref(), Some("http"));
    assert_eq!(r[0].local_orig, Some(true));
    let json =
        r#"{"ts":1.5,"uid":"C1","id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","duration":3.0}"#;
    assert_eq!(records(json)[0].duration, Some(3.0));
    let headerless = "1.5\tC1\t10.0.0.1\t1\t10.0.0.2\t80\ttcp\t-\t1.0";
    assert_eq!(
        parse_all(headerless),
        vec![Line::Skipped(SkipReason::NoHeader)]
    );
}

#[test]
fn edge_2_separator_forms_and_non_tab_separator() {
    let quirk =
        "#separator\t\\x09\n#fields\tid.orig_h\tid.resp_h\tduration\n10.0.0.1\t10.0.0.2\t4.0";
    assert_eq!(records(quirk)[0].duration, Some(4.0));
    let comma = "#separator \\x2c\n#unset_field,-\n#fields,id.orig_h,id.resp_h,duration\n10.0.0.1,10.0.0.2,-\n10.0.0.1,10.0.0.2,5";
    let r = records(comma);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].duration, None);
    assert_eq!(r[1].duration, Some(5.0));
}

#[test]
fn edge_3_new_header_block_remaps_columns() {
    let text = "#separator \\x09\n#fields\t_node_name\tid.orig_h\tid.resp_h\tduration\nw1\t10.0.0.1\t10.0.0.2\t1.0\n#close\tx\n#separator \\x09\n#fields\tduration\tid.resp_h\tid.orig_h\n2.0\t10.0.0.2\t10.0.0.1";
    let r = records(text);
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].duration, Some(2.0));
    assert_eq!(r[1].orig_h, "10.0.0.1".parse().ok());
}

#[test]
fn edge_4_unset_empty_and_escaped_literals() {
    let text = "#separator \\x09\n#unset_field\t-\n#empty_field\t(empty)\n#fields\tid.orig_h\tid.resp_h\tservice\thistory\tconn_state\n10.0.0.1\t10.0.0.2\t-\t\\x2d\t(empty)";
    let r = &records(text)[0];
    assert_eq!(r.service, None);
    assert_eq!(r.history.as_deref(), Some("-"));
    assert_eq!(r.conn_state.as_deref(), Some(""));
}

#[test]
fn edge_5_escapes_decoded() {
    let text =
        "#separator \\x09\n#fields\tid.orig_h\tid.resp_h\tuid\n10.0.0.1\t10.0.0.2\t\\x23C1\\x09x";
    assert_eq!(records(text)[0].uid.as_str(), "#C1\tx");
}

#[test]
fn edge_7_truncated_and_column_count() {
    let text = format!("{HEADER}1.5\tC1\t10.0.0.1\t1\t10.0.0.2\t80\ttcp");
    let lines = parse_all(&text);
    assert!(matches!(
        lines.last(),
        Some(Line::Skipped(SkipReason::ColumnCount {
            expected: 17,
            found: 7
        }))
    ));
}

#[test]
fn edge_8_times_in_json() {
    let r = records(r#"{"ts":1517336086165,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2"}"#);
    assert!((r[0].ts.unwrap() - 1517336086.165).abs() < 1e-6);
    let r = records(
        r#"{"ts":"2018-01-30T18:14:46.165021Z","id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2"}"#,
    );
    assert!((r[0].ts.unwrap() - 1517336086.165021).abs() < 1e-6);
    let r = records(r#"{"ts":null,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","duration":null}"#);
    assert_eq!((r[0].ts, r[0].duration), (None, None));
}

#[test]
fn edge_9_json_absent_null_arrays_extra_keys() {
    let r = records(
        r#"{"_path":"conn","@stream":"conn","service":["dns","http"],"id.resp_h":"10.0.0.2","id.orig_h":"10.0.0.1","tunnel_parents":[]}"#,
    );
    assert_eq!(r[0].service.as_deref(), Some("dns,http"));
    assert_eq!(
        parse_all("{\"ts\":1.0,"),
        vec![Line::Skipped(SkipReason::InvalidJson)]
    );
}

#[test]
fn edge_10_underscore_scope_separator() {
    let tsv = "#separator \\x09\n#fields\tid_orig_h\tid_resp_h\tid_resp_p\tduration\n10.0.0.1\t10.0.0.2\t443\t7";
    assert_eq!(records(tsv)[0].resp_p, Some(443));
    let json = r#"{"id_orig_h":"10.0.0.1","id_resp_h":"10.0.0.2","id_resp_p":22,"duration":7.5}"#;
    assert_eq!(records(json)[0].resp_p, Some(22));
}

#[test]
fn edge_11_ipv6_forms() {
    let tsv = "#separator \\x09\n#fields\tid.orig_h\tid.resp_h\n2001:db8::1\t::ffff:192.0.2.1";
    let r = &records(tsv)[0];
    assert_eq!(r.orig_h, "2001:db8::1".parse().ok());
    assert_eq!(r.resp_h, "192.0.2.1".parse().ok());
    let bad = "#separator \\x09\n#fields\tid.orig_h\tid.resp_h\n2001:db8::g\t10.0.0.1";
    assert_eq!(
        parse_all(bad).last(),
        Some(&Line::Skipped(SkipReason::BadValue {
            field: Field::OrigH
        }))
    );
}

#[test]
fn edge_12_optional_counts_absent() {
    let text = "#separator \\x09\n#fields\tid.orig_h\tid.resp_h\torig_bytes\tresp_bytes\tlocal_orig\n10.0.0.1\t10.0.0.2\t-\t-\t-";
    let r = &records(text)[0];
    assert_eq!(
        (r.orig_bytes, r.resp_bytes, r.local_orig),
        (None, None, None)
    );
    assert_eq!(r.total_bytes(), 0);
}

#[test]
fn edge_13_stray_cr() {
    let text =
        "#separator \\x09\r\n#fields\tid.orig_h\tid.resp_h\tduration\r\n10.0.0.1\t10.0.0.2\t1.25\r";
    assert_eq!(records(text)[0].duration, Some(1.25));
}

#[test]
fn edge_14_masked_values_are_unset_not_fatal() {
    let text = "#separator \\x09\n#fields\tts\tid.orig_h\tid.resp_h\tduration\nXXXXXXXXXX.XXXXXX\t10.0.0.1\t10.0.0.2\t9.5";
    let lines = parse_all(text);
    match lines.last() {
        Some(Line::Record(r, bad)) => {
            assert_eq!(r.ts, None);
            assert_eq!(r.duration, Some(9.5));
            assert_eq!(*bad, 1);
        }
        other => panic!("expected a record, got {other:?}"),
    }
}

#[test]
fn header_round_trips_through_saved_lines() {
    let mut p = LogParser::new(ParseOptions::default());
    for l in HEADER.lines() {
        p.parse_line(l.as_bytes());
    }
    let rebuilt = TsvHeader::from_lines(p.header().lines().to_vec());
    assert_eq!(&rebuilt, p.header());
}

mod roundtrip {
    //! Property: random records written as Zeek TSV (with Zeek's escaping) and as Zeek JSON read back unchanged.
    use super::super::*;
    use proptest::prelude::*;
    use std::fmt::Write as _;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
            // Not IPv4-mapped: those read back as IPv4 by design.
            any::<u128>()
                .prop_filter("not v4-mapped", |v| (v >> 32) != 0xffff)
                .prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        // Includes the separator, set separator, '#', '-', backslash, and non-ASCII.
        "[a-zA-Z0-9\t,#\\-\\\\()é ]{0,12}"
    }

    fn micros() -> impl Strategy<Value = f64> {
        (0u64..4_000_000_000_000_000u64).prop_map(|v| v as f64 / 1e6)
    }

    prop_compose! {
        fn record()(
            ts in proptest::option::of(micros()),
            uid in "C[a-zA-Z0-9]{5,17}",
            orig_h in ip(), resp_h in ip(),
            orig_p in proptest::option::of(any::<u16>()), resp_p in proptest::option::of(any::<u16>()),
            proto in prop_oneof![Just("tcp"), Just("udp"), Just("icmp"), Just("unknown_transport")],
            service in proptest::option::of(text()),
            duration in proptest::option::of((0u64..100_000_000_000u64).prop_map(|v| v as f64 / 1e6)),
            orig_bytes in proptest::option::of(any::<u64>()), resp_bytes in proptest::option::of(any::<u64>()),
            conn_state in proptest::option::of(text()), history in proptest::option::of(text()),
            local_orig in proptest::option::of(any::<bool>()), local_resp in proptest::option::of(any::<bool>()),
            orig_pkts in proptest::option::of(any::<u64>()), resp_pkts in proptest::option::of(any::<u64>()),
            community_id in proptest::option::of("1:[A-Za-z0-9+/]{27}="),
        ) -> ConnRecord {
            ConnRecord {
                ts, uid: uid.into(), orig_h: Some(orig_h), orig_p, resp_h: Some(resp_h), resp_p,
                proto: proto.into(), service: service.map(Into::into), duration, orig_bytes, resp_bytes,
                conn_state: conn_state.map(Into::into), history: history.map(Into::into), local_orig, local_resp,
                orig_pkts, resp_pkts, community_id: community_id.map(Into::into),
            }
        }
    }

    /// Zeek's ASCII writer escaping: separator, backslash and non-printable bytes as \xNN; a value that
    /// equals the unset or empty marker gets its first byte escaped.
    fn tsv_escape(s: &str) -> String {
        if s.is_empty() {
            return "(empty)".to_string();
        }
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            match c {
                '\t' | '\\' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                '#' if i == 0 => out.push_str("\\x23"),
                _ => out.push(c),
            }
        }
        if out == "-" {
            return "\\x2d".to_string();
        }
        if out == "(empty)" {
            return "\\x28empty)".to_string();
        }
        out
    }

    fn opt<T: ToString>(v: &Option<T>) -> String {
        v.as_ref()
            .map_or_else(|| "-".to_string(), |v| v.to_string())
    }

    fn to_tsv(r: &ConnRecord) -> String {
        let b = |v: Option<bool>| v.map_or("-", |b| if b { "T" } else { "F" });
        [
            r.ts.map_or("-".to_string(), |t| format!("{t:.6}")),
            tsv_escape(&r.uid),
            opt(&r.orig_h),
            opt(&r.orig_p),
            opt(&r.resp_h),
            opt(&r.resp_p),
            r.proto.to_string(),
            r.service.as_deref().map_or("-".to_string(), tsv_escape),
            r.duration.map_or("-".to_string(), |d| format!("{d:.6}")),
            opt(&r.orig_bytes),
            opt(&r.resp_bytes),
            r.conn_state.as_deref().map_or("-".to_string(), tsv_escape),
            b(r.local_orig).to_string(),
            b(r.local_resp).to_string(),
            r.history.as_deref().map_or("-".to_string(), tsv_escape),
            opt(&r.orig_pkts),
            opt(&r.resp_pkts),
            r.community_id
                .as_deref()
                .map_or("-".to_string(), tsv_escape),
        ]
        .join("\t")
    }

    fn to_json(r: &ConnRecord) -> String {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            if !v.is_null() {
                m.insert(k.to_string(), v);
            }
        };
        put("ts", serde_json::json!(r.ts));
        put("uid", serde_json::json!(r.uid.as_str()));
        put(
            "id.orig_h",
            serde_json::json!(r.orig_h.map(|a| a.to_string())),
        );
        put("id.orig_p", serde_json::json!(r.orig_p));
        put(
            "id.resp_h",
            serde_json::json!(r.resp_h.map(|a| a.to_string())),
        );
        put("id.resp_p", serde_json::json!(r.resp_p));
        put("proto", serde_json::json!(r.proto.as_str()));
        put("service", serde_json::json!(r.service.as_deref()));
        put("duration", serde_json::json!(r.duration));
        put("orig_bytes", serde_json::json!(r.orig_bytes));
        put("resp_bytes", serde_json::json!(r.resp_bytes));
        put("conn_state", serde_json::json!(r.conn_state.as_deref()));
        put("local_orig", serde_json::json!(r.local_orig));
        put("local_resp", serde_json::json!(r.local_resp));
        put("history", serde_json::json!(r.history.as_deref()));
        put("orig_pkts", serde_json::json!(r.orig_pkts));
        put("resp_pkts", serde_json::json!(r.resp_pkts));
        put("community_id", serde_json::json!(r.community_id.as_deref()));
        serde_json::Value::Object(m).to_string()
    }

    const FIELDS: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\thistory\torig_pkts\tresp_pkts\tcommunity_id";

    fn read(text: &str) -> Vec<ConnRecord> {
        let mut p = LogParser::new(ParseOptions::default());
        text.lines()
            .filter_map(|l| match p.parse_line(l.as_bytes()) {
                Line::Record(r, 0) => Some(r),
                Line::Meta => None,
                other => panic!("line {l:?} gave {other:?}"),
            })
            .collect()
    }

    fn same_times(a: &ConnRecord, b: &ConnRecord) -> bool {
        let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-6,
            (None, None) => true,
            _ => false,
        };
        close(a.ts, b.ts) && close(a.duration, b.duration)
    }

    proptest! {
        #[test]
        fn tsv_and_json_round_trip(recs in proptest::collection::vec(record(), 1..20)) {
            let mut tsv = String::from(FIELDS);
            for r in &recs {
                tsv.push('\n');
                tsv.push_str(&to_tsv(r));
            }
            let json: String = recs.iter().map(|r| to_json(r) + "\n").collect();
            for back in [read(&tsv), read(&json)] {
                prop_assert_eq!(back.len(), recs.len());
                for (a, b) in back.iter().zip(&recs) {
                    prop_assert!(same_times(a, b), "times {:?} vs {:?}", a, b);
                    let (mut a, mut b) = (a.clone(), b.clone());
                    a.ts = None; a.duration = None; b.ts = None; b.duration = None;
                    prop_assert_eq!(a, b);
                }
            }
        }
    }
}
