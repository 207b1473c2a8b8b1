//! `scan`'s fast path through Zeek JSON lines: the object Zeek's JSON writer makes (one flat object, no
//! whitespace, keys and values in their plain forms) is walked once, byte by byte, and only the values
//! `scan` sums are read, into the same compact row as the TSV fast path ([`super::rows::PairRow`]).
//!
//! It accepts a line only in that plain form: string keys and values without escapes, control or
//! non-ASCII bytes; numbers as `digits[.digits]` without leading zeros; `true`, `false`, `null`; arrays
//! of such strings and numbers; each known field once. Anything else (the nested `id` object, whitespace,
//! escapes, a number given as a string, an ISO 8601 `ts`, a bad value, invalid JSON) is handed back to the
//! caller for the general JSON reader, so every line counts, is skipped or is reported exactly as
//! [`crate::zeek::LogParser`] would have it.

use super::tally::PairRow;
use crate::zeek::transport;
use crate::zeek::{parse_addr, Field};

/// The fields read, as bits of `seen`.
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

fn key(name: &[u8]) -> Option<Key> {
    Some(match Field::from_name(name)? {
        Field::Ts => Key::Ts,
        Field::OrigH => Key::OrigH,
        Field::OrigP => Key::OrigP,
        Field::RespH => Key::RespH,
        Field::RespP => Key::RespP,
        Field::Duration => Key::Duration,
        Field::OrigBytes => Key::OrigBytes,
        Field::RespBytes => Key::RespBytes,
        Field::Proto => Key::Proto,
        _ => return None,
    })
}

/// Fields the general reader knows but the fast path skips: each must still appear at most once there
/// (a repeated known field makes the whole object invalid), so repeats are handed back.
fn other_known(name: &[u8]) -> Option<u32> {
    Some(match name {
        b"uid" => 0,
        b"id" => 1,
        b"service" => 3,
        b"conn_state" => 4,
        b"history" => 5,
        b"local_orig" => 6,
        b"local_resp" => 7,
        b"orig_pkts" => 8,
        b"resp_pkts" => 9,
        b"community_id" => 10,
        _ => return None,
    })
}

/// One plain value.
enum Value<'a> {
    Str(&'a [u8]),
    /// `digits[.digits]`, the literal.
    Num(&'a [u8]),
    Null,
    /// `true`, `false` or an array.
    Other,
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// A string without escapes, control or non-ASCII bytes, after its opening quote.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let len = memchr::memchr(b'"', &self.b[start..])?;
        let s = &self.b[start..start + len];
        if s.iter().any(|c| *c == b'\\' || *c < 0x20 || *c >= 0x80) {
            return None;
        }
        self.i = start + len + 1;
        Some(s)
    }

    fn number(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self.i < self.b.len() && matches!(self.b[self.i], b'0'..=b'9' | b'.') {
            self.i += 1;
        }
        let n = &self.b[start..self.i];
        plain_number(n).then_some(n)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..]
            .starts_with(word)
            .then(|| self.i += word.len())
    }

    fn value(&mut self) -> Option<Value<'a>> {
        Some(match self.b.get(self.i)? {
            b'"' => Value::Str(self.string()?),
            b'0'..=b'9' => Value::Num(self.number()?),
            b'n' => {
                self.literal(b"null")?;
                Value::Null
            }
            b't' => {
                self.literal(b"true")?;
                Value::Other
            }
            b'f' => {
                self.literal(b"false")?;
                Value::Other
            }
            b'[' => {
                self.i += 1;
                if self.eat(b']').is_none() {
                    loop {
                        match self.b.get(self.i)? {
                            b'"' => {
                                self.string()?;
                            }
                            b'0'..=b'9' => {
                                self.number()?;
                            }
                            _ => return None,
                        }
                        if self.eat(b',').is_none() {
                            self.eat(b']')?;
                            break;
                        }
                    }
                }
                Value::Other
            }
            _ => return None,
        })
    }
}

/// `digits[.digits]` of at most 19 bytes, no leading zero (`0` and `0.5` are fine, `01` is not JSON).
fn plain_number(n: &[u8]) -> bool {
    if n.is_empty() || n.len() > 19 {
        return false;
    }
    let int_len = n.iter().position(|c| *c == b'.').unwrap_or(n.len());
    if int_len == 0 || (int_len > 1 && n[0] == b'0') {
        return false;
    }
    match n.get(int_len + 1..) {
        None => true, // no dot
        Some(frac) => !frac.is_empty() && frac.iter().all(u8::is_ascii_digit),
    }
}

/// Reads one line as a plain Zeek JSON object (`ports`: grouping by pair-port, so `proto` is read too);
/// `None`: the general reader decides.
pub fn read(line: &[u8], ports: bool) -> Option<PairRow> {
    let mut c = Cursor { b: line, i: 0 };
    c.eat(b'{')?;
    let mut seen = 0u32;
    let mut seen_other = 0u32;
    let mut vals: [Option<Value>; 9] = Default::default();
    if c.eat(b'}').is_none() {
        loop {
            let name = c.string()?;
            c.eat(b':')?;
            let v = c.value()?;
            match key(name) {
                Some(k) => {
                    let bit = 1 << k as u32;
                    if seen & bit != 0 {
                        return None;
                    }
                    seen |= bit;
                    vals[k as usize] = Some(v);
                }
                None => {
                    if let Some(b) = other_known(name) {
                        if seen_other & (1 << b) != 0 {
                            return None;
                        }
                        seen_other |= 1 << b;
                        if b == 1 {
                            return None; // the nested `id` object form
                        }
                    }
                }
            }
            if c.eat(b',').is_none() {
                c.eat(b'}')?;
                break;
            }
        }
    }
    if c.i != line.len() {
        return None;
    }
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
            Some(Value::Num(n)) if !n.contains(&b'.') => crate::zeek::parse_u64(n).map(Some),
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
        // The general reader's own number parser, so the value is the same to the last bit.
        Some(Value::Num(n)) => Some(serde_json::from_slice::<f64>(n).ok()?),
        _ => return None,
    };
    let (pair, bytes) = ((orig_h, resp_h), (orig_bytes, resp_bytes));
    Some(PairRow::new(pair, duration, bytes, resp_p, proto))
}

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
}
