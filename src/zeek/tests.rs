//! Table tests for the reader, named after the parser edge cases in ZEEK_NOTES.md.

use super::*;

fn parse_all(text: &str) -> Vec<Line> {
    let mut p = LogParser::new(ParseOptions::default());
    text.split('\n').map(|l| p.parse_line(l.as_bytes())).collect()
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
    let tsv = format!("{HEADER}1.5\tC1\t10.0.0.1\t1\t10.0.0.2\t80\ttcp\thttp\t2.5\t1\t2\tSF\tT\tF\tShAD\t3\t4\n");
    let r = records(&tsv);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].duration, Some(2.5));
    assert_eq!(r[0].service.as_deref(), Some("http"));
    assert_eq!(r[0].local_orig, Some(true));
    let json = r#"{"ts":1.5,"uid":"C1","id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","duration":3.0}"#;
    assert_eq!(records(json)[0].duration, Some(3.0));
    let headerless = "1.5\tC1\t10.0.0.1\t1\t10.0.0.2\t80\ttcp\t-\t1.0";
    assert_eq!(parse_all(headerless), vec![Line::Skipped(SkipReason::NoHeader)]);
}

#[test]
fn edge_2_separator_forms_and_non_tab_separator() {
    let quirk = "#separator\t\\x09\n#fields\tid.orig_h\tid.resp_h\tduration\n10.0.0.1\t10.0.0.2\t4.0";
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
    let text = "#separator \\x09\n#fields\tid.orig_h\tid.resp_h\tuid\n10.0.0.1\t10.0.0.2\t\\x23C1\\x09x";
    assert_eq!(records(text)[0].uid.as_str(), "#C1\tx");
}

#[test]
fn edge_7_truncated_and_column_count() {
    let text = format!("{HEADER}1.5\tC1\t10.0.0.1\t1\t10.0.0.2\t80\ttcp");
    let lines = parse_all(&text);
    assert!(matches!(lines.last(), Some(Line::Skipped(SkipReason::ColumnCount { expected: 17, found: 7 }))));
}

#[test]
fn edge_8_times_in_json() {
    let r = records(r#"{"ts":1517336086165,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2"}"#);
    assert!((r[0].ts.unwrap() - 1517336086.165).abs() < 1e-6);
    let r = records(r#"{"ts":"2018-01-30T18:14:46.165021Z","id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2"}"#);
    assert!((r[0].ts.unwrap() - 1517336086.165021).abs() < 1e-6);
    let r = records(r#"{"ts":null,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","duration":null}"#);
    assert_eq!((r[0].ts, r[0].duration), (None, None));
}

#[test]
fn edge_9_json_absent_null_arrays_extra_keys() {
    let r = records(r#"{"_path":"conn","@stream":"conn","service":["dns","http"],"id.resp_h":"10.0.0.2","id.orig_h":"10.0.0.1","tunnel_parents":[]}"#);
    assert_eq!(r[0].service.as_deref(), Some("dns,http"));
    assert_eq!(parse_all("{\"ts\":1.0,"), vec![Line::Skipped(SkipReason::InvalidJson)]);
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
    assert_eq!(parse_all(bad).last(), Some(&Line::Skipped(SkipReason::BadValue { field: Field::OrigH })));
}

#[test]
fn edge_12_optional_counts_absent() {
    let text = "#separator \\x09\n#fields\tid.orig_h\tid.resp_h\torig_bytes\tresp_bytes\tlocal_orig\n10.0.0.1\t10.0.0.2\t-\t-\t-";
    let r = &records(text)[0];
    assert_eq!((r.orig_bytes, r.resp_bytes, r.local_orig), (None, None, None));
    assert_eq!(r.total_bytes(), 0);
}

#[test]
fn edge_13_stray_cr() {
    let text = "#separator \\x09\r\n#fields\tid.orig_h\tid.resp_h\tduration\r\n10.0.0.1\t10.0.0.2\t1.25\r";
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
