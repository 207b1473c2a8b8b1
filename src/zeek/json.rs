//! Zeek's JSON log format: one object per line, keys in any order.
//!
//! An absent key and `null` both mean unset. `ts` may be an epoch float, epoch milliseconds (an integer too
//! large to be seconds) or an ISO 8601 string; sets are arrays; `_` may replace `.` as the scope separator
//! (`id_orig_h`), and an `id` object (`{"id": {"orig_h": ...}}`) is read as well. Unknown keys (`_path`,
//! `@stream`, extension fields) are ignored. A value of the wrong type is a bad value for its field only.

use super::value::{epoch_number, parse_addr, parse_f64, parse_time_text};
use super::{ConnRecord, Field, Line, ParseOptions, SkipReason};
use compact_str::CompactString;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// A JSON value read leniently: whatever it holds, it never fails the whole object.
#[derive(Debug, Default)]
enum Val<'a> {
    #[default]
    Absent,
    Num(f64),
    /// An integer (kept exact for counts and ports).
    Int(u64),
    Str(Cow<'a, str>),
    Bool(bool),
    /// An array of strings, joined with `,`.
    List(String),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Val<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Val<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Zeek value")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Val<'a>, E> {
                Ok(Val::Num(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Val<'a>, E> {
                Ok(Val::Int(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Val<'a>, E> {
                Ok(Val::Num(v as f64))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Val<'a>, E> {
                Ok(Val::Bool(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Val<'a>, E> {
                Ok(Val::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Val<'a>, E> {
                Ok(Val::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Val<'a>, E> {
                Ok(Val::Str(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Val<'a>, E> {
                Ok(Val::Absent)
            }
            fn visit_none<E>(self) -> Result<Val<'a>, E> {
                Ok(Val::Absent)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Val<'a>, D::Error> {
                Val::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val<'a>, A::Error> {
                let mut out = String::new();
                let mut all_text = true;
                while let Some(item) = seq.next_element::<Val<'a>>()? {
                    match item {
                        Val::Str(s) => {
                            if !out.is_empty() {
                                out.push(',');
                            }
                            out.push_str(&s);
                        }
                        _ => all_text = false,
                    }
                }
                Ok(if all_text { Val::List(out) } else { Val::Other })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Val<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Val::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize, Default)]
struct IdObj<'a> {
    #[serde(borrow, default)]
    orig_h: Val<'a>,
    #[serde(borrow, default)]
    orig_p: Val<'a>,
    #[serde(borrow, default)]
    resp_h: Val<'a>,
    #[serde(borrow, default)]
    resp_p: Val<'a>,
}

#[derive(Deserialize)]
struct JsonConn<'a> {
    #[serde(borrow, default)]
    ts: Val<'a>,
    #[serde(borrow, default)]
    uid: Val<'a>,
    #[serde(borrow, default)]
    id: Option<IdObj<'a>>,
    #[serde(borrow, default, rename = "id.orig_h", alias = "id_orig_h")]
    orig_h: Val<'a>,
    #[serde(borrow, default, rename = "id.orig_p", alias = "id_orig_p")]
    orig_p: Val<'a>,
    #[serde(borrow, default, rename = "id.resp_h", alias = "id_resp_h")]
    resp_h: Val<'a>,
    #[serde(borrow, default, rename = "id.resp_p", alias = "id_resp_p")]
    resp_p: Val<'a>,
    #[serde(borrow, default)]
    proto: Val<'a>,
    #[serde(borrow, default)]
    service: Val<'a>,
    #[serde(borrow, default)]
    duration: Val<'a>,
    #[serde(borrow, default)]
    orig_bytes: Val<'a>,
    #[serde(borrow, default)]
    resp_bytes: Val<'a>,
    #[serde(borrow, default)]
    conn_state: Val<'a>,
    #[serde(borrow, default)]
    history: Val<'a>,
    #[serde(borrow, default)]
    local_orig: Val<'a>,
    #[serde(borrow, default)]
    local_resp: Val<'a>,
    #[serde(borrow, default)]
    orig_pkts: Val<'a>,
    #[serde(borrow, default)]
    resp_pkts: Val<'a>,
    #[serde(borrow, default)]
    community_id: Val<'a>,
}

/// Outcome of reading one value: unset, parsed, or present but unusable.
enum Got<T> {
    Unset,
    Ok(T),
    Bad,
}

fn num(v: &Val) -> Got<f64> {
    match v {
        Val::Absent => Got::Unset,
        Val::Num(n) if n.is_finite() => Got::Ok(*n),
        Val::Int(n) => Got::Ok(*n as f64),
        Val::Str(s) => parse_f64(s.as_bytes()).map_or(Got::Bad, Got::Ok),
        _ => Got::Bad,
    }
}

fn time(v: &Val) -> Got<f64> {
    match v {
        Val::Absent => Got::Unset,
        Val::Num(n) if n.is_finite() => Got::Ok(epoch_number(*n)),
        Val::Int(n) => Got::Ok(epoch_number(*n as f64)),
        Val::Str(s) => parse_time_text(s.as_bytes()).map_or(Got::Bad, Got::Ok),
        _ => Got::Bad,
    }
}

fn count(v: &Val) -> Got<u64> {
    match v {
        Val::Absent => Got::Unset,
        Val::Int(n) => Got::Ok(*n),
        Val::Num(n) if *n >= 0.0 && n.fract() == 0.0 && *n < 1.8e19 => Got::Ok(*n as u64),
        Val::Str(s) => s.parse().map_or(Got::Bad, Got::Ok),
        _ => Got::Bad,
    }
}

fn port(v: &Val) -> Got<u16> {
    match count(v) {
        Got::Ok(n) => u16::try_from(n).map_or(Got::Bad, Got::Ok),
        Got::Unset => Got::Unset,
        Got::Bad => Got::Bad,
    }
}

fn addr(v: &Val) -> Got<std::net::IpAddr> {
    match v {
        Val::Absent => Got::Unset,
        Val::Str(s) => parse_addr(s.as_bytes()).map_or(Got::Bad, Got::Ok),
        _ => Got::Bad,
    }
}

fn text(v: &Val) -> Got<CompactString> {
    match v {
        Val::Absent => Got::Unset,
        Val::Str(s) => Got::Ok(CompactString::from(s.as_ref())),
        Val::List(s) => Got::Ok(CompactString::from(s.as_str())),
        _ => Got::Bad,
    }
}

fn boolean(v: &Val) -> Got<bool> {
    match v {
        Val::Absent => Got::Unset,
        Val::Bool(b) => Got::Ok(*b),
        Val::Str(s) => super::value::parse_bool(s.as_bytes()).map_or(Got::Bad, Got::Ok),
        _ => Got::Bad,
    }
}

fn some<T>(g: Got<T>) -> Got<Option<T>> {
    match g {
        Got::Ok(v) => Got::Ok(Some(v)),
        Got::Unset => Got::Unset,
        Got::Bad => Got::Bad,
    }
}

pub fn parse(line: &[u8], opts: &ParseOptions) -> Line {
    let mut obj: JsonConn = match serde_json::from_slice(line) {
        Ok(o) => o,
        Err(_) => return Line::Skipped(SkipReason::InvalidJson),
    };
    if let Some(id) = obj.id.take() {
        let fill = |flat: &mut Val<'_>, nested: Val<'_>| {
            if matches!(flat, Val::Absent) {
                *flat = match nested {
                    Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
                    Val::Int(n) => Val::Int(n),
                    Val::Num(n) => Val::Num(n),
                    _ => Val::Absent,
                };
            }
        };
        fill(&mut obj.orig_h, id.orig_h);
        fill(&mut obj.orig_p, id.orig_p);
        fill(&mut obj.resp_h, id.resp_h);
        fill(&mut obj.resp_p, id.resp_p);
    }
    let mut rec = ConnRecord::default();
    let mut bad = 0u32;
    macro_rules! take {
        ($field:expr, $getter:expr, $val:expr, $slot:expr) => {
            if opts.wanted.contains($field) {
                match $getter($val) {
                    Got::Ok(v) => $slot = v,
                    Got::Unset if opts.required.contains($field) => {
                        return Line::Skipped(SkipReason::Missing { field: $field })
                    }
                    Got::Bad if opts.required.contains($field) => {
                        return Line::Skipped(SkipReason::BadValue { field: $field })
                    }
                    Got::Bad => bad += 1,
                    Got::Unset => {}
                }
            }
        };
    }
    take!(Field::Ts, |v| some(time(v)), &obj.ts, rec.ts);
    take!(Field::Uid, text, &obj.uid, rec.uid);
    take!(Field::OrigH, |v| some(addr(v)), &obj.orig_h, rec.orig_h);
    take!(Field::OrigP, |v| some(port(v)), &obj.orig_p, rec.orig_p);
    take!(Field::RespH, |v| some(addr(v)), &obj.resp_h, rec.resp_h);
    take!(Field::RespP, |v| some(port(v)), &obj.resp_p, rec.resp_p);
    take!(Field::Proto, text, &obj.proto, rec.proto);
    take!(Field::Service, |v| some(text(v)), &obj.service, rec.service);
    take!(
        Field::Duration,
        |v| match num(v) {
            Got::Ok(d) if d >= 0.0 => Got::Ok(Some(d)),
            Got::Ok(_) => Got::Bad,
            Got::Unset => Got::Unset,
            Got::Bad => Got::Bad,
        },
        &obj.duration,
        rec.duration
    );
    take!(Field::OrigBytes, |v| some(count(v)), &obj.orig_bytes, rec.orig_bytes);
    take!(Field::RespBytes, |v| some(count(v)), &obj.resp_bytes, rec.resp_bytes);
    take!(Field::ConnState, |v| some(text(v)), &obj.conn_state, rec.conn_state);
    take!(Field::History, |v| some(text(v)), &obj.history, rec.history);
    take!(Field::LocalOrig, |v| some(boolean(v)), &obj.local_orig, rec.local_orig);
    take!(Field::LocalResp, |v| some(boolean(v)), &obj.local_resp, rec.local_resp);
    take!(Field::OrigPkts, |v| some(count(v)), &obj.orig_pkts, rec.orig_pkts);
    take!(Field::RespPkts, |v| some(count(v)), &obj.resp_pkts, rec.resp_pkts);
    take!(
        Field::CommunityId,
        |v| some(text(v)),
        &obj.community_id,
        rec.community_id
    );
    Line::Record(rec, bad)
}
