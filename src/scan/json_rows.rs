//! `scan`'s fast path through Zeek JSON lines: the object Zeek's JSON writer makes (one flat object, no
//! whitespace, keys and values in their plain forms) is walked once and only the values `scan` sums are
//! read, into the same compact row as the TSV fast path ([`super::rows::PairRow`]).
//!
//! It accepts a line only in that plain form: string keys and values without escapes, control or
//! non-ASCII bytes; numbers as `digits[.digits]` without leading zeros; `true`, `false`, `null`; arrays
//! of such strings and numbers; each known field once. Anything else (the nested `id` object, whitespace,
//! escapes, a number given as a string, an ISO 8601 `ts`, a bad value, invalid JSON) is handed back to the
//! caller for the general JSON reader, so every line counts, is skipped or is reported exactly as
//! [`crate::zeek::LogParser`] would have it.
//!
//! How it is fast: one vector pass over the line rejects it if any byte is a backslash, a control or a
//! non-ASCII byte (none of them can be part of the plain form, inside a string or out), and notes every
//! `"` in a bitmask. Without escapes, quotes pair up, so each string ends at the next set bit: no byte of
//! a string is looked at again. Key names are compared as one 128-bit word each, not byte by byte.

use super::tally::PairRow;
use crate::zeek::transport;
use crate::zeek::{fast_decimal, parse_addr, parse_u64};

/// Lines longer than this go to the general reader (Zeek's conn lines are a few hundred bytes).
const MAX_LINE: usize = 32 * 64;

/// The fields read, as indexes into the values.
#[derive(Clone, Copy)]
enum Key {
    Ts = 0,
    OrigH,
    OrigP,
    RespH,
    RespP,
    Duration,
    OrigBytes,
    RespBytes,
    Proto,
}

/// What a key name is to the reader.
#[derive(Clone, Copy)]
enum Name {
    /// A field `scan` reads.
    Read(Key),
    /// A field the general reader knows but the fast path skips (its bit): each must still appear at
    /// most once (a repeated known field makes the whole object invalid there), so repeats are handed
    /// back.
    Known(u32),
    /// `id`: the nested object form, for the general reader.
    Id,
    /// Any other key (ignored, as the general reader ignores it).
    Other,
}

/// A name of at most 16 bytes as a little-endian word, zero-padded (names hold no zero byte: the line
/// holds no control byte).
const fn word(s: &[u8]) -> u128 {
    let mut w = 0u128;
    let mut i = 0;
    while i < s.len() {
        w |= (s[i] as u128) << (8 * i);
        i += 1;
    }
    w
}

const TS: u128 = word(b"ts");
const ORIG_H: u128 = word(b"id.orig_h");
const ORIG_H_: u128 = word(b"id_orig_h");
const ORIG_P: u128 = word(b"id.orig_p");
const ORIG_P_: u128 = word(b"id_orig_p");
const RESP_H: u128 = word(b"id.resp_h");
const RESP_H_: u128 = word(b"id_resp_h");
const RESP_P: u128 = word(b"id.resp_p");
const RESP_P_: u128 = word(b"id_resp_p");
const DURATION: u128 = word(b"duration");
const ORIG_BYTES: u128 = word(b"orig_bytes");
const RESP_BYTES: u128 = word(b"resp_bytes");
const PROTO: u128 = word(b"proto");
const UID: u128 = word(b"uid");
const ID: u128 = word(b"id");
const SERVICE: u128 = word(b"service");
const CONN_STATE: u128 = word(b"conn_state");
const HISTORY: u128 = word(b"history");
const LOCAL_ORIG: u128 = word(b"local_orig");
const LOCAL_RESP: u128 = word(b"local_resp");
const ORIG_PKTS: u128 = word(b"orig_pkts");
const RESP_PKTS: u128 = word(b"resp_pkts");
const COMMUNITY_ID: u128 = word(b"community_id");

/// The key named by `line[start..end]` (the names of [`crate::zeek::Field::from_name`]).
#[inline]
fn name(line: &[u8], start: usize, end: usize) -> Name {
    let len = end - start;
    if len > 16 {
        return Name::Other;
    }
    let w = match line.get(start..start + 16) {
        Some(b) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            let all = u128::from_le_bytes(a);
            if len == 16 {
                all
            } else {
                all & ((1u128 << (8 * len)) - 1)
            }
        }
        None => {
            let mut a = [0u8; 16];
            a[..len].copy_from_slice(&line[start..end]);
            u128::from_le_bytes(a)
        }
    };
    match w {
        TS => Name::Read(Key::Ts),
        ORIG_H | ORIG_H_ => Name::Read(Key::OrigH),
        ORIG_P | ORIG_P_ => Name::Read(Key::OrigP),
        RESP_H | RESP_H_ => Name::Read(Key::RespH),
        RESP_P | RESP_P_ => Name::Read(Key::RespP),
        DURATION => Name::Read(Key::Duration),
        ORIG_BYTES => Name::Read(Key::OrigBytes),
        RESP_BYTES => Name::Read(Key::RespBytes),
        PROTO => Name::Read(Key::Proto),
        UID => Name::Known(0),
        ID => Name::Id,
        SERVICE => Name::Known(3),
        CONN_STATE => Name::Known(4),
        HISTORY => Name::Known(5),
        LOCAL_ORIG => Name::Known(6),
        LOCAL_RESP => Name::Known(7),
        ORIG_PKTS => Name::Known(8),
        RESP_PKTS => Name::Known(9),
        COMMUNITY_ID => Name::Known(10),
        _ => Name::Other,
    }
}

/// One plain value.
#[derive(Clone, Copy)]
enum Value<'a> {
    Str(&'a [u8]),
    /// `digits[.digits]`, the literal.
    Num(&'a [u8]),
    Null,
    /// `true`, `false` or an array.
    Other,
}

/// The positions of the `"` bytes of a line, one bit each.
struct Quotes {
    words: [u64; MAX_LINE / 64],
    /// Words filled.
    n: usize,
}

impl Quotes {
    /// Marks the quotes of `line` (at most [`MAX_LINE`] bytes) in `self` (filled in place: the mask is
    /// not copied around), or `None` if the line holds a backslash, a control or a non-ASCII byte.
    #[inline]
    fn fill(&mut self, line: &[u8]) -> Option<()> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { self.fill_avx2(line) };
        }
        self.fill_with(line, quote_bits)
    }

    /// [`Quotes::fill`] with 32-byte compares (half the instructions of SSE2 per block).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn fill_avx2(&mut self, line: &[u8]) -> Option<()> {
        self.fill_with(line, |b| {
            // SAFETY: only called from this AVX2 function, on a CPU that has AVX2.
            unsafe { quote_bits_avx2(b) }
        })
    }

    #[inline(always)]
    fn fill_with(&mut self, line: &[u8], bits: impl Fn(&[u8; 64]) -> Option<u64>) -> Option<()> {
        self.n = line.len().div_ceil(64);
        let mut chunks = line.chunks_exact(64);
        for (w, block) in self.words.iter_mut().zip(&mut chunks) {
            let block: &[u8; 64] = block.try_into().ok()?;
            *w = bits(block)?;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Padded with spaces: neither quote nor rejected.
            let mut block = [b' '; 64];
            block[..rest.len()].copy_from_slice(rest);
            *self.words.get_mut(line.len() / 64)? = bits(&block)?;
        }
        Some(())
    }

    /// The first quote at or after `from`.
    #[inline]
    fn next(&self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        let mut bits = *self.words.get(w)? & (u64::MAX << (from % 64));
        while bits == 0 {
            w += 1;
            if w >= self.n {
                return None;
            }
            bits = self.words[w];
        }
        Some(w * 64 + bits.trailing_zeros() as usize)
    }
}

/// One bit per `"` of `block`; `None` if it holds a backslash, a byte below 0x20 or above 0x7f.
#[inline]
fn quote_bits(block: &[u8; 64]) -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        let mut quotes = 0u64;
        let mut bad = 0i32;
        // SAFETY: SSE2 is part of every x86_64 target, and each 16-byte load lies inside `block`
        // (k * 16 + 16 <= 64); unaligned loads are allowed.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let space = _mm_set1_epi8(0x20);
            for k in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
                // Signed: bytes above 0x7f are negative, so below 0x20 too.
                let odd = _mm_or_si128(_mm_cmplt_epi8(v, space), _mm_cmpeq_epi8(v, backslash));
                bad |= _mm_movemask_epi8(odd);
                quotes |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) as u16) << (16 * k);
            }
        }
        (bad == 0).then_some(quotes)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        quote_bits_scalar(block)
    }
}

/// [`quote_bits`] with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn quote_bits_avx2(block: &[u8; 64]) -> Option<u64> {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
        _mm256_or_si256, _mm256_set1_epi8,
    };
    let mut quotes = 0u64;
    let mut bad = 0i32;
    let quote = _mm256_set1_epi8(b'"' as i8);
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let space = _mm256_set1_epi8(0x20);
    for k in 0..2 {
        // SAFETY: each 32-byte load lies inside `block` (k * 32 + 32 <= 64); unaligned loads are allowed.
        let v = unsafe { _mm256_loadu_si256(block.as_ptr().add(32 * k).cast::<__m256i>()) };
        // Signed: bytes above 0x7f are negative, so below 0x20 too.
        let odd = _mm256_or_si256(_mm256_cmpgt_epi8(space, v), _mm256_cmpeq_epi8(v, backslash));
        bad |= _mm256_movemask_epi8(odd);
        quotes |= u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, quote)) as u32) << (32 * k);
    }
    (bad == 0).then_some(quotes)
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn quote_bits_scalar(block: &[u8; 64]) -> Option<u64> {
    let mut quotes = 0u64;
    for (i, b) in block.iter().enumerate() {
        if *b == b'\\' || *b < 0x20 || *b >= 0x80 {
            return None;
        }
        quotes |= u64::from(*b == b'"') << i;
    }
    Some(quotes)
}

/// The end of the plain number starting at `b[i]` (a digit): `digits[.digits]` of at most 19 bytes, no
/// leading zero (`0` and `0.5` are fine, `01` is not JSON); `None` if it is not plain. It stops at the
/// first byte that is neither a digit nor the first dot (the caller then wants `,`, `}` or `]` there).
#[inline]
fn number(b: &[u8], i: usize) -> Option<usize> {
    let int_end = digits_end(b, i);
    if int_end - i > 1 && b[i] == b'0' {
        return None;
    }
    let end = if b.get(int_end) == Some(&b'.') {
        let frac_end = digits_end(b, int_end + 1);
        if frac_end == int_end + 1 {
            return None;
        }
        frac_end
    } else {
        int_end
    };
    (end - i <= 19).then_some(end)
}

/// The end of the run of ASCII digits starting at `i`, eight bytes at a time.
#[inline]
fn digits_end(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(chunk);
        // Per byte x = c ^ '0' is 0..=9 for a digit; x + 0x76 sets the top bit for x >= 10, and x itself
        // for x >= 0x80. A carry out of a flagged byte can only flag a later byte: the lowest flag is exact.
        let x = u64::from_le_bytes(a) ^ 0x3030_3030_3030_3030;
        let odd = (x.wrapping_add(0x7676_7676_7676_7676) | x) & 0x8080_8080_8080_8080;
        if odd != 0 {
            return i + (odd.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// The value at `i` and the offset after it.
#[inline]
fn value<'a>(b: &'a [u8], q: &Quotes, i: usize) -> Option<(Value<'a>, usize)> {
    Some(match *b.get(i)? {
        b'"' => {
            let end = q.next(i + 1)?;
            (Value::Str(&b[i + 1..end]), end + 1)
        }
        b'0'..=b'9' => {
            let end = number(b, i)?;
            (Value::Num(&b[i..end]), end)
        }
        b'n' => (Value::Null, literal(b, i, b"null")?),
        b't' => (Value::Other, literal(b, i, b"true")?),
        b'f' => (Value::Other, literal(b, i, b"false")?),
        b'[' => {
            let mut i = i + 1;
            if b.get(i) == Some(&b']') {
                return Some((Value::Other, i + 1));
            }
            loop {
                i = match *b.get(i)? {
                    b'"' => q.next(i + 1)? + 1,
                    b'0'..=b'9' => number(b, i)?,
                    _ => return None,
                };
                match *b.get(i)? {
                    b',' => i += 1,
                    b']' => break (Value::Other, i + 1),
                    _ => return None,
                }
            }
        }
        _ => return None,
    })
}

#[inline]
fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    b[i..].starts_with(word).then_some(i + word.len())
}

/// Reads one line as a plain Zeek JSON object (`ports`: grouping by pair-port, so `proto` is read too);
/// `None`: the general reader decides.
pub fn read(line: &[u8], ports: bool) -> Option<PairRow> {
    if line.len() > MAX_LINE || line.first() != Some(&b'{') {
        return None;
    }
    let mut q = Quotes {
        words: [0; MAX_LINE / 64],
        n: 0,
    };
    q.fill(line)?;
    let b = line;
    let mut seen = 0u32;
    let mut seen_known = 0u32;
    let mut vals: [Option<Value>; 9] = [None; 9];
    let mut i = 1;
    if b.get(1) == Some(&b'}') {
        i = 2;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let name_end = q.next(i + 1)?;
            if b.get(name_end + 1) != Some(&b':') {
                return None;
            }
            let (v, end) = value(b, &q, name_end + 2)?;
            match name(b, i + 1, name_end) {
                Name::Read(k) => {
                    let bit = 1 << k as u32;
                    if seen & bit != 0 {
                        return None;
                    }
                    seen |= bit;
                    vals[k as usize] = Some(v);
                }
                Name::Known(bit) => {
                    if seen_known & (1 << bit) != 0 {
                        return None;
                    }
                    seen_known |= 1 << bit;
                }
                Name::Id => return None, // the nested `id` object form
                Name::Other => {}
            }
            i = end;
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    if i != line.len() {
        return None;
    }
    row(&vals, ports)
}

/// The row from the values read, as the general reader reads them; `None` for one it must decide on.
#[inline]
fn row(vals: &[Option<Value>; 9], ports: bool) -> Option<PairRow> {
    let addr = |v: &Option<Value>| match v {
        Some(Value::Str(s)) => parse_addr(s),
        _ => None,
    };
    let orig_h = addr(&vals[Key::OrigH as usize])?;
    let resp_h = addr(&vals[Key::RespH as usize])?;
    // Counts and ports: integers (or unset); anything else goes to the general reader.
    let count = |v: &Option<Value>| -> Option<Option<u64>> {
        match v {
            None | Some(Value::Null) => Some(None),
            Some(Value::Num(n)) if !n.contains(&b'.') => parse_u64(n).map(Some),
            _ => None,
        }
    };
    let orig_bytes = count(&vals[Key::OrigBytes as usize])?;
    let resp_bytes = count(&vals[Key::RespBytes as usize])?;
    let port = |k: Key| -> Option<Option<u16>> {
        match count(&vals[k as usize])? {
            Some(n) => u16::try_from(n).ok().map(Some),
            None => Some(None),
        }
    };
    port(Key::OrigP)?;
    let resp_p = port(Key::RespP)?;
    // By pair-port, `proto` as the general reader reads it (unset: ""); a text the tally does not encode
    // goes to the general reader.
    let proto = match (ports, &vals[Key::Proto as usize]) {
        (false, _) | (true, None | Some(Value::Null)) => 0,
        (true, Some(Value::Str(s))) => transport::code(s)?,
        _ => return None,
    };
    // The time only has to be valid: any plain number is.
    match &vals[Key::Ts as usize] {
        None | Some(Value::Null) | Some(Value::Num(_)) => {}
        _ => return None,
    }
    let duration = match &vals[Key::Duration as usize] {
        None | Some(Value::Null) => None,
        // `digits / 10^decimals` when both are exact doubles: one correctly rounded division, what the
        // general reader's number parser computes too; else that parser itself, so the value is the
        // same to the last bit.
        Some(Value::Num(n)) => match fast_decimal(n) {
            Some(d) => Some(d),
            None => Some(serde_json::from_slice::<f64>(n).ok()?),
        },
        _ => return None,
    };
    let (pair, bytes) = ((orig_h, resp_h), (orig_bytes, resp_bytes));
    Some(PairRow::new(pair, duration, bytes, resp_p, proto))
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{parse_options, GroupMode};
    use crate::zeek::{Line, LogParser, TsvHeader};
    use proptest::prelude::*;

    #[test]
    fn zeek_json_lines() {
        let line = br#"{"ts":1713484795.1334,"uid":"CI49CYT0qv8YgaGnEz","id.orig_h":"10.0.57.177","id.orig_p":8098,"id.resp_h":"26.119.18.7","id.resp_p":8080,"proto":"tcp","service":"ssh","duration":8.854541,"orig_bytes":95517,"resp_bytes":246686,"local_orig":true,"tunnel_parents":["Cx","Cy"]}"#;
        let r = read(line, true).expect("plain");
        assert_eq!((r.resp_p, r.proto), (Some(8080), 1));
        assert_eq!(r.duration, Some(8.854541));
        assert_eq!(r.bytes, 95517 + 246686);
        for odd in [
            &br#"{"id":{"orig_h":"10.0.0.1","resp_h":"10.0.0.2"}}"#[..],
            br#"{"id.orig_h": "10.0.0.1","id.resp_h":"10.0.0.2"}"#,
            br#"{"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","duration":"5"}"#,
            br#"{"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","duration":1e3}"#,
            br#"{"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","duration":01}"#,
            br#"{"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","uid":"a\u00e9"}"#,
            br#"{"id.orig_h":"10.0.0.1","id_orig_h":"10.0.0.1","id.resp_h":"10.0.0.2"}"#,
            br#"{"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2"} "#,
            br#"{"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","ts":"2024-01-01T00:00:00Z"}"#,
        ] {
            assert!(
                read(odd, false).is_none(),
                "{}",
                String::from_utf8_lossy(odd)
            );
        }
    }

    /// Keys a Zeek JSON line may hold, mostly with their plain values, sometimes with values of every
    /// other kind the general reader meets.
    fn entry() -> impl Strategy<Value = String> {
        let keys = vec![
            "ts",
            "uid",
            "id.orig_h",
            "id_orig_h",
            "id.orig_p",
            "id.resp_h",
            "id_resp_h",
            "id.resp_p",
            "proto",
            "service",
            "duration",
            "orig_bytes",
            "resp_bytes",
            "local_orig",
            "history",
            "tunnel_parents",
            "_path",
            "id",
        ];
        let odd = vec![
            "\"10.0.0.1\"",
            "\"2001:db8::1\"",
            "\"10.0.0.256\"",
            "\"-\"",
            "\"\"",
            "\"tcp\"",
            "\"a\\\\tb\"",
            "\"caf\u{e9}\"",
            "\"2024-04-19T00:00:00Z\"",
            "\"443\"",
            "1713484795.133400",
            "1713484795133",
            "8.854541",
            "0",
            "0.5",
            "01",
            "1e3",
            "-1",
            "70000",
            "18446744073709551616",
            "443",
            "true",
            "false",
            "null",
            "[\"Cx\",\"Cy\"]",
            "[]",
            "[1,\"a\"]",
            "{\"orig_h\":\"10.0.0.9\"}",
            " 5",
            "\"x\"",
            "12345678901234567890123",
            "1234567890123456789",
            "0.1234567890123456789",
        ];
        proptest::sample::select(keys).prop_flat_map(move |k| {
            let plain: Vec<&str> = match k {
                "ts" => vec!["1713484795.133400", "1713484795133", "null"],
                "id.orig_p" | "id.resp_p" => vec!["443", "0", "65535", "65536", "70000", "null"],
                "duration" => vec![
                    "8.854541",
                    "0.000001",
                    "3600",
                    "0.1",
                    "123456.789012",
                    "null",
                ],
                "orig_bytes" | "resp_bytes" => vec!["0", "95517", "9999999999999999999", "null"],
                "id.orig_h" | "id_orig_h" | "id.resp_h" | "id_resp_h" => {
                    vec!["\"10.0.0.7\"", "\"fe80::1\"", "\"::ffff:10.1.2.3\""]
                }
                "local_orig" => vec!["true", "false"],
                "proto" => vec!["\"tcp\"", "\"udp\"", "\"icmp\"", "\"sctp\"", "null", "5"],
                "tunnel_parents" => vec!["[\"Cx\"]", "[]"],
                _ => vec!["\"CI49CYT0qv8YgaGnEz\"", "\"tcp\"", "\"ShADadFf\""],
            };
            prop_oneof![
                3 => proptest::sample::select(plain),
                1 => proptest::sample::select(odd.clone()),
            ]
            .prop_map(move |v| format!("\"{k}\":{v}"))
        })
    }

    fn line() -> impl Strategy<Value = String> {
        let addrs = (
            proptest::sample::select(vec!["\"10.0.0.1\"", "\"192.0.2.7\"", "\"2001:db8::1\""]),
            proptest::sample::select(vec![
                "\"10.0.0.2\"",
                "\"203.0.113.9\"",
                "\"::ffff:10.1.2.3\"",
            ]),
        );
        (
            addrs,
            proptest::collection::vec(entry(), 0..10),
            any::<bool>(),
        )
            .prop_map(|((o, r), mut rest, flat)| {
                if flat {
                    rest.push(format!("\"id.orig_h\":{o}"));
                    rest.push(format!("\"id.resp_h\":{r}"));
                    let half = rest.len() / 2;
                    rest.rotate_left(half);
                }
                format!("{{{}}}", rest.join(","))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn plain_lines_read_as_the_general_reader_reads_them(line in line(), ports in any::<bool>()) {
            let mode = if ports { GroupMode::PairPort } else { GroupMode::Pair };
            let opts = parse_options(mode, false).0;
            let header = TsvHeader::default();
            if let Some(r) = read(line.as_bytes(), ports) {
                match LogParser::parse_with(&header, &opts, line.as_bytes()) {
                    Line::Record(rec, bad) => {
                        prop_assert_eq!(bad, 0, "{}", line);
                        prop_assert_eq!(rec.orig_h, Some(r.orig_h));
                        prop_assert_eq!(rec.resp_h, Some(r.resp_h));
                        prop_assert_eq!(rec.duration.map(f64::to_bits), r.duration.map(f64::to_bits));
                        prop_assert_eq!(rec.total_bytes(), r.bytes);
                        if ports {
                            prop_assert_eq!(rec.resp_p, r.resp_p);
                            prop_assert_eq!(transport::code(rec.proto.as_bytes()), Some(r.proto));
                        }
                    }
                    other => prop_assert!(false, "{}: read by the fast path, {:?} for the parser", line, other),
                }
            }
        }
    }

    #[test]
    fn quote_bits_match_the_scalar_form() {
        let mut block = [0u8; 64];
        let mut x: u32 = 11;
        for round in 0..2000 {
            for b in block.iter_mut() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                // Mostly plain bytes, so that both the accepted and the rejected cases come up.
                let odd = [b'\\', 0x1f, 0x7f, 0x80, 0xff, b'\t', 0][(x >> 16) as usize % 7];
                *b = match (x >> 8) % 97 {
                    0 if round % 2 == 0 => odd,
                    1..=20 => b'"',
                    _ => b' ' + (x >> 20) as u8 % 95,
                };
            }
            assert_eq!(quote_bits(&block), quote_bits_scalar(&block));
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                assert_eq!(
                    unsafe { quote_bits_avx2(&block) },
                    quote_bits_scalar(&block)
                );
            }
        }
    }

    #[test]
    fn long_and_block_crossing_lines() {
        // Strings and numbers across the 64-byte blocks of the quote mask, and a line too long for it.
        for pad in 0..140 {
            let line = format!(
                r#"{{"_path":"{}","id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","duration":1.25,"orig_bytes":7}}"#,
                "x".repeat(pad)
            );
            let r = read(line.as_bytes(), false).expect("plain");
            assert_eq!(r, reference::read(line.as_bytes(), false).expect("plain"));
            assert_eq!((r.duration, r.bytes), (Some(1.25), 7));
        }
        let long = format!(
            r#"{{"_path":"{}","id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2"}}"#,
            "x".repeat(MAX_LINE)
        );
        assert!(
            read(long.as_bytes(), false).is_none(),
            "for the general reader"
        );
    }

    /// Any string, mostly near the plain form.
    fn noisy_line() -> impl Strategy<Value = String> {
        (
            line(),
            proptest::collection::vec(
                (
                    any::<prop::sample::Index>(),
                    proptest::sample::select(vec![
                        "\\", "\"", " ", ",", ":", "{", "}", "[", "]", "\u{e9}", "\t", "0", ".",
                        "n", "1e", "-",
                    ]),
                ),
                0..3,
            ),
        )
            .prop_map(|(mut line, edits)| {
                for (at, s) in edits {
                    let mut i = at.index(line.len() + 1);
                    while !line.is_char_boundary(i) {
                        i -= 1;
                    }
                    line.insert_str(i, s);
                }
                line
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn reads_what_the_former_reader_read(line in prop_oneof![line(), noisy_line()], ports in any::<bool>()) {
            prop_assert_eq!(read(line.as_bytes(), ports), reference::read(line.as_bytes(), ports), "{}", line);
        }
    }

    #[test]
    fn digit_runs_and_plain_numbers() {
        let mut x: u32 = 5;
        for _ in 0..20_000 {
            let len = {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as usize % 30
            };
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    b"0123456789012345678901234567.,}]e/:"[(x >> 16) as usize % 35]
                })
                .collect();
            let want = text.iter().take_while(|c| c.is_ascii_digit()).count();
            assert_eq!(
                digits_end(&text, 0),
                want,
                "{:?}",
                String::from_utf8_lossy(&text)
            );
            if text.first().is_some_and(u8::is_ascii_digit) {
                // The former rule: the run of digits and dots, checked as a whole.
                let run = text
                    .iter()
                    .take_while(|c| matches!(c, b'0'..=b'9' | b'.'))
                    .count();
                let former = reference::plain_number(&text[..run]);
                match number(&text, 0) {
                    Some(end) if end == run => {
                        assert!(former, "{:?}", String::from_utf8_lossy(&text))
                    }
                    // Stopped at a second dot: the caller rejects the line, as the former rule did.
                    Some(end) => assert!(!former && text[end] == b'.'),
                    None => assert!(!former, "{:?}", String::from_utf8_lossy(&text)),
                }
            }
        }
    }
}
