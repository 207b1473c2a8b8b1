//! `scan`'s fast path through Zeek TSV rows: a run of rows is cut into fields with a bitmask index (64
//! bytes at a time: one bit per separator, one per newline), only the columns `scan` sums are read, and
//! each row goes to the tally as a handful of numbers instead of a full [`ConnRecord`].
//!
//! It accepts a row only in its plain form: the column count `#fields` declares, IPv4/IPv6 addresses,
//! plain decimal numbers, unset markers. Anything else (a wrong column count, a bad or odd value, a JSON
//! line, `\r\n` line ends, the unterminated last line) is handed back to the caller for the general parser,
//! so every row counts, is skipped or is reported exactly as [`crate::zeek::LogParser`] would have it. The
//! time is only checked (it is counted as a bad value when it does not parse); it is read, with uid, proto
//! and service, only for the rare row that enters the table of longest connections.

use super::tally::PairRow;
use crate::zeek::transport;
use crate::zeek::{fast_decimal, parse_addr, parse_port, parse_u64, Field, TsvHeader};

/// The columns read from each row, as indexes into [`Spans`].
const TS: usize = 0;
const ORIG_H: usize = 1;
const ORIG_P: usize = 2;
const RESP_H: usize = 3;
const RESP_P: usize = 4;
const DURATION: usize = 5;
const ORIG_BYTES: usize = 6;
const RESP_BYTES: usize = 7;
const PROTO: usize = 8;
const SLOTS: usize = 9;
/// A column the fast path does not read.
const NONE: u8 = u8::MAX;

fn slot_of(f: Field) -> Option<usize> {
    Some(match f {
        Field::Ts => TS,
        Field::OrigH => ORIG_H,
        Field::OrigP => ORIG_P,
        Field::RespH => RESP_H,
        Field::RespP => RESP_P,
        Field::Duration => DURATION,
        Field::OrigBytes => ORIG_BYTES,
        Field::RespBytes => RESP_BYTES,
        Field::Proto => PROTO,
        _ => return None,
    })
}

/// How the rows of one header block are read.
pub struct RowPlan {
    sep: u8,
    unset: Vec<u8>,
    empty: Vec<u8>,
    /// Grouping by pair-port: `proto` is read too (and must be one of the texts the tally encodes).
    ports: bool,
    /// The slot each column fills, or [`NONE`].
    col_slot: Vec<u8>,
    /// The slots some column fills.
    present: [bool; SLOTS],
    /// Columns `#fields` declares.
    ncols: usize,
    /// One past the last column read; the rest of a row is only counted.
    need: usize,
}

impl RowPlan {
    /// The plan for rows under `header` (`ports`: grouping by pair-port); `None` when its rows need the
    /// general parser (no `#fields` yet, a separator of more than one byte, or no address columns).
    pub fn new(header: &TsvHeader, ports: bool) -> Option<RowPlan> {
        let [sep] = header.separator() else {
            return None;
        };
        if !header.is_active() || *sep == b'\n' || *sep == 0 {
            return None;
        }
        let mut col_slot = Vec::with_capacity(header.columns().len());
        let mut need = 0;
        let mut present = [false; SLOTS];
        for (col, f) in header.columns().iter().enumerate() {
            let slot = f.and_then(slot_of).filter(|s| ports || *s != PROTO);
            col_slot.push(slot.map_or(NONE, |s| s as u8));
            if let Some(s) = slot {
                need = col + 1;
                present[s] = true;
            }
        }
        if !header.has_field(Field::OrigH) || !header.has_field(Field::RespH) {
            return None;
        }
        Some(RowPlan {
            sep: *sep,
            unset: header.unset_field().to_vec(),
            empty: header.empty_field().to_vec(),
            ports,
            col_slot,
            present,
            ncols: header.columns().len(),
            need,
        })
    }
}

/// Where each read column lies in the run, `(start, end)`.
type Spans = [(usize, usize); SLOTS];

/// Walks the complete lines of `bytes` (up to its last newline) and calls `each(line_start, line_end,
/// row)` for each, in order (`row` is `None` for a line the general parser must read); returns the offset
/// after the last newline (the caller parses the rest).
pub fn for_each_row(
    plan: &RowPlan,
    bytes: &[u8],
    mut each: impl FnMut(usize, usize, Option<PairRow>),
) -> usize {
    let mut spans: Spans = [(0, 0); SLOTS];
    let mut line_start = 0usize;
    let mut field_start = 0usize;
    let mut col = 0usize;
    let mut base = 0usize;
    let mut padded = [0u8; 64];
    while base < bytes.len() {
        let block: &[u8; 64] = match bytes.get(base..base + 64) {
            Some(b) => b.try_into().unwrap_or(&padded),
            None => {
                // The last partial block, padded with zero bytes (neither separator nor newline).
                padded = [0u8; 64];
                let rest = &bytes[base..];
                padded[..rest.len()].copy_from_slice(rest);
                &padded
            }
        };
        let (sep_bits, nl_bits) = masks(block, plan.sep);
        let mut bits = sep_bits | nl_bits;
        while bits != 0 {
            let i = bits.trailing_zeros();
            let pos = base + i as usize;
            bits &= bits - 1;
            if col < plan.need {
                let slot = plan.col_slot[col];
                if slot != NONE {
                    spans[slot as usize] = (field_start, pos);
                }
            }
            if nl_bits >> i & 1 == 1 {
                let row = if col + 1 == plan.ncols {
                    read_row(plan, bytes, line_start, pos, &spans)
                } else {
                    None
                };
                each(line_start, pos, row);
                line_start = pos + 1;
                field_start = pos + 1;
                col = 0;
            } else {
                col += 1;
                field_start = pos + 1;
                if col >= plan.need {
                    // Past the last column read: count the separators up to the line end.
                    let nl_after = nl_bits & bits;
                    let before = if nl_after == 0 {
                        u64::MAX
                    } else {
                        (1u64 << nl_after.trailing_zeros()) - 1
                    };
                    col += (sep_bits & bits & before).count_ones() as usize;
                    bits &= !before;
                }
            }
        }
        base += 64;
    }
    line_start
}

fn read_row(
    plan: &RowPlan,
    bytes: &[u8],
    start: usize,
    end: usize,
    spans: &Spans,
) -> Option<PairRow> {
    let line = &bytes[start..end];
    match (line.first(), line.last()) {
        // JSON, comments and empty lines, `\r\n` ends: the general parser's business.
        (Some(b'{' | b'#'), _) | (_, Some(b'\r')) | (None, _) => return None,
        _ => {}
    }
    let unset = plan.unset.as_slice();
    let field = |slot: usize| {
        let (s, e) = spans[slot];
        &bytes[s..e]
    };
    // Each value: its plain form, or the unset marker (or no such column: unset too). `Some(None)`:
    // unset; `None`: an odd value, for the general parser.
    let set = |slot: usize| plan.present[slot] && field(slot) != unset;
    let read = |slot: usize, parse: fn(&[u8]) -> Option<u64>| -> Option<Option<u64>> {
        if set(slot) {
            parse(field(slot)).map(Some)
        } else {
            Some(None)
        }
    };
    let port = |b: &[u8]| parse_port(b).map(u64::from);
    let orig_h = parse_addr(field(ORIG_H))?;
    let resp_h = parse_addr(field(RESP_H))?;
    let orig_bytes = read(ORIG_BYTES, parse_u64)?;
    let resp_bytes = read(RESP_BYTES, parse_u64)?;
    read(ORIG_P, port)?;
    let resp_p = read(RESP_P, port)?.map(|p| p as u16);
    // By pair-port, `proto` as the general parser reads it: unset and empty are "", the rest as written
    // (no escapes here); a text the tally does not encode goes to the general parser.
    let proto = if !plan.ports || !set(PROTO) || field(PROTO) == plan.empty.as_slice() {
        0
    } else if field(PROTO).contains(&b'\\') {
        return None;
    } else {
        transport::code(field(PROTO))?
    };
    let duration = if set(DURATION) {
        Some(fast_decimal(field(DURATION))?)
    } else {
        None
    };
    if set(TS) && !plain_decimal(field(TS)) {
        return None;
    }
    let (pair, bytes) = ((orig_h, resp_h), (orig_bytes, resp_bytes));
    Some(PairRow::new(pair, duration, bytes, resp_p, proto))
}

/// `digits[.digits]` of at most 20 bytes: a time the general parser reads as a number.
fn plain_decimal(v: &[u8]) -> bool {
    if v.is_empty() || v.len() > 20 {
        return false;
    }
    let mut dots = 0;
    for (i, b) in v.iter().enumerate() {
        match b {
            b'0'..=b'9' => {}
            b'.' if i > 0 && i + 1 < v.len() => dots += 1,
            _ => return false,
        }
    }
    dots <= 1
}

/// One bit per byte of `block` equal to `sep`, and one per newline.
#[inline]
fn masks(block: &[u8; 64], sep: u8) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        let mut sep_bits = 0u64;
        let mut nl_bits = 0u64;
        // SAFETY: SSE2 is part of every x86_64 target, and each 16-byte load lies inside `block`
        // (k * 16 + 16 <= 64); unaligned loads are allowed.
        unsafe {
            let s = _mm_set1_epi8(sep as i8);
            let n = _mm_set1_epi8(b'\n' as i8);
            for k in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
                sep_bits |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, s)) as u16) << (16 * k);
                nl_bits |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, n)) as u16) << (16 * k);
            }
        }
        (sep_bits, nl_bits)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        masks_scalar(block, sep)
    }
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn masks_scalar(block: &[u8; 64], sep: u8) -> (u64, u64) {
    let mut sep_bits = 0u64;
    let mut nl_bits = 0u64;
    for (i, b) in block.iter().enumerate() {
        sep_bits |= u64::from(*b == sep) << i;
        nl_bits |= u64::from(*b == b'\n') << i;
    }
    (sep_bits, nl_bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_match_the_scalar_form() {
        let mut block = [0u8; 64];
        let mut x: u32 = 7;
        for _ in 0..500 {
            for b in block.iter_mut() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = [b'\t', b'\n', b'a', b'1', b',', 0xff][(x >> 16) as usize % 6];
            }
            assert_eq!(masks(&block, b'\t'), masks_scalar(&block, b'\t'));
            assert_eq!(masks(&block, b','), masks_scalar(&block, b','));
        }
    }

    #[test]
    fn plain_decimals() {
        for ok in ["1", "1713484795.133400", "0.5", "12."[..2].as_ref()] {
            assert!(plain_decimal(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ".5",
            "5.",
            "1.2.3",
            "1e5",
            "-1",
            "XXXXXXXXXX.XXXXXX",
            "1 ",
        ] {
            assert!(!plain_decimal(bad.as_bytes()), "{bad}");
        }
    }

    mod agrees_with_the_general_parser {
        use super::super::*;
        use crate::scan::{parse_options, GroupMode};
        use crate::zeek::{Line, LogParser};
        use proptest::prelude::*;

        const COLUMNS: [&str; 13] = [
            "ts",
            "uid",
            "id.orig_h",
            "id.orig_p",
            "id.resp_h",
            "id.resp_p",
            "proto",
            "service",
            "duration",
            "orig_bytes",
            "resp_bytes",
            "history",
            "extra",
        ];

        /// Values for a column: mostly its plain form, sometimes anything Zeek logs or damage can hold.
        fn value(col: &'static str) -> BoxedStrategy<String> {
            let plain: Vec<&str> = match col {
                "ts" => vec!["1713484795.133400", "1713484795", "0.000001"],
                "id.orig_h" | "id.resp_h" => {
                    vec!["10.0.0.1", "192.0.2.77", "2001:db8::1", "::ffff:10.1.2.3"]
                }
                "id.orig_p" | "id.resp_p" => vec!["443", "0", "65535"],
                "duration" => vec!["8.854541", "0.000000", "3600", "123456.5"],
                "orig_bytes" | "resp_bytes" => vec!["0", "95517", "18446744073709551615"],
                "proto" => vec!["tcp", "udp", "icmp", "unknown_transport", "sctp", "t\\x63p"],
                _ => vec!["CI49CYT0qv8YgaGnEz", "tcp", "ShADadFf"],
            };
            let odd = vec![
                "-",
                "(empty)",
                "",
                "XXXXXXXXXX.XXXXXX",
                "2024-04-19T00:00:01Z",
                "70000",
                "1e3",
                "-1",
                "10.0.0.256",
                "01.2.3.4",
                "a\\x09b",
                "{",
                "#x",
                "x\r",
                "1.2.3",
                " 5",
                "123456789012345678901",
            ];
            prop_oneof![
                4 => proptest::sample::select(plain).prop_map(str::to_string),
                1 => proptest::sample::select(odd).prop_map(str::to_string),
                1 => "[0-9.]{0,22}",
            ]
            .boxed()
        }

        fn layout() -> impl Strategy<Value = Vec<&'static str>> {
            proptest::sample::subsequence(COLUMNS.to_vec(), 2..=COLUMNS.len())
                .prop_filter("both addresses", |c| {
                    c.contains(&"id.orig_h") && c.contains(&"id.resp_h")
                })
                .prop_shuffle()
        }

        fn case() -> impl Strategy<Value = (Vec<&'static str>, Vec<String>, bool)> {
            layout().prop_flat_map(|cols| {
                let row = cols.iter().map(|c| value(c)).collect::<Vec<_>>();
                // Now and then a row with a column too many or too few.
                let line = (row, 0..12usize).prop_map(|(mut vals, shape)| {
                    match shape {
                        0 => vals.push("extra".into()),
                        1 => {
                            vals.pop();
                        }
                        _ => {}
                    }
                    vals.join("\t")
                });
                (
                    Just(cols),
                    proptest::collection::vec(line, 0..40),
                    any::<bool>(),
                )
            })
        }

        proptest! {
            #[test]
            fn plain_rows_read_as_the_general_parser_reads_them((cols, lines, cut) in case(), ports in any::<bool>()) {
                let header = TsvHeader::from_lines([
                    b"#separator \\x09".to_vec(),
                    format!("#fields\t{}", cols.join("\t")).into_bytes(),
                ]);
                let plan = RowPlan::new(&header, ports).expect("plan");
                let mut body = lines.join("\n");
                if !cut && !lines.is_empty() {
                    body.push('\n');
                }
                let bytes = body.as_bytes();
                let mode = if ports { GroupMode::PairPort } else { GroupMode::Pair };
                let opts = parse_options(mode, false).0;
                let mut seen = Vec::new();
                let rest = for_each_row(&plan, bytes, |from, to, row| {
                    seen.push((from, to));
                    if let Some(r) = row {
                        let line = &bytes[from..to];
                        match LogParser::parse_with(&header, &opts, line) {
                            Line::Record(rec, bad) => {
                                assert_eq!(bad, 0, "{:?}", String::from_utf8_lossy(line));
                                assert_eq!(rec.orig_h, Some(r.orig_h));
                                assert_eq!(rec.resp_h, Some(r.resp_h));
                                assert_eq!(rec.duration, r.duration);
                                assert_eq!(rec.total_bytes(), r.bytes);
                                if ports {
                                    assert_eq!(rec.resp_p, r.resp_p);
                                    assert_eq!(transport::code(rec.proto.as_bytes()), Some(r.proto));
                                }
                            }
                            other => panic!("{:?}: fast path read a row the parser gives as {other:?}",
                                String::from_utf8_lossy(line)),
                        }
                    }
                });
                // Every complete line, in order, and the offset after the last newline.
                let mut want = Vec::new();
                let mut start = 0;
                for nl in memchr::memchr_iter(b'\n', bytes) {
                    want.push((start, nl));
                    start = nl + 1;
                }
                prop_assert_eq!(seen, want);
                prop_assert_eq!(rest, start);
            }
        }
    }
}
