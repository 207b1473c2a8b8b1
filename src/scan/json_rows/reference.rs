//! The reader this module replaced (a cursor over the line, one `memchr` per string), kept for the tests:
//! the fast reader must accept exactly the lines it accepted and read the same row from each.

use crate::scan::tally::PairRow;
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
pub fn plain_number(n: &[u8]) -> bool {
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
