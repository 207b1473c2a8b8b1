//! A deterministic stream of Zeek TSV conn records for the end-to-end tests: a few host pairs, some long
//! connections, ts two minutes apart, some unset durations.
#![allow(dead_code)]

const HEADER_FIELDS: &str = "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n";

/// A Zeek TSV header block, as Zeek writes at the top of each new file.
pub fn header(open: &str) -> String {
    format!("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t{open}\n{HEADER_FIELDS}")
}

/// Record `i` of the stream.
pub fn record(i: u64) -> String {
    let ts = 1_700_000_000 + i * 120;
    let dur = if i % 11 == 0 {
        600 + (i % 4) * 1500
    } else {
        (i % 50) * 10
    };
    let dur = if i % 13 == 5 {
        "-".to_string()
    } else {
        format!("{dur}.{:06}", i * 7919 % 1_000_000)
    };
    format!(
        "{ts}.{:06}\tC{i:017}\t10.0.0.{}\t{}\t198.51.100.{}\t443\ttcp\tssl\t{dur}\t{}\t{}\tSF\tT\tF\t0\tShADadFf\t10\t900\t10\t5000\t-\n",
        i * 31 % 1_000_000,
        i % 5 + 1,
        40000 + i % 20000,
        i % 3 + 1,
        100 + i,
        2000 + i
    )
}

pub fn records(range: std::ops::Range<u64>) -> String {
    range.map(record).collect()
}
