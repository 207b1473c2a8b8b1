//! Zeek's context logs: ssl.log, http.log and dns.log, read for the few fields that name a connection's
//! server. Pure and header-driven like the conn.log reader: TSV under its `#fields` block (any column order,
//! extra columns ignored) or one JSON object per line (`.` or `_` as the scope separator, an `id` object).
//!
//! | log | fields read | what the name is |
//! |---|---|---|
//! | ssl | ts, uid, id.orig_h, id.resp_h, id.resp_p, server_name | the TLS SNI |
//! | http | ts, uid, id.orig_h, id.resp_h, id.resp_p, host | the Host header, without a `:port` |
//! | dns | ts, id.orig_h, query, answers | the query; answers that are addresses (CNAMEs and other names are not) |
//!
//! `ts` and `id.orig_h` are required (and `uid`, `id.resp_h` for ssl and http): a line without them is
//! skipped with its reason, as conn lines are. A record without a name (no SNI, no Host, an empty query) is
//! still a record; it names nothing.

use super::tsv::split;
use super::value::{epoch_number, parse_addr, parse_port, parse_time_text, unescape};
use super::{Field, SkipReason, TsvHeader};
use compact_str::CompactString;
use std::net::IpAddr;

/// Which context log a source or file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextKind {
    Ssl,
    Http,
    Dns,
}

impl ContextKind {
    pub const ALL: [ContextKind; 3] = [ContextKind::Ssl, ContextKind::Http, ContextKind::Dns];

    pub fn name(self) -> &'static str {
        match self {
            ContextKind::Ssl => "ssl",
            ContextKind::Http => "http",
            ContextKind::Dns => "dns",
        }
    }

    /// The kind a Zeek `#path` / `_path` value names (`ssl`, `http`, `dns`; a cluster's `ssl_1` too).
    pub fn from_log_path(path: &str) -> Option<ContextKind> {
        let base = path.split(['_', '.', '-']).next().unwrap_or(path);
        ContextKind::ALL.into_iter().find(|k| k.name() == base)
    }

    /// The kind a file name suggests: `ssl.log`, `ssl.09:00:00-10:00:00.log.gz`, `ctu.ssl.log.labeled`.
    pub fn from_file_name(name: &str) -> Option<ContextKind> {
        name.split(['.', '_', '-'])
            .find_map(|part| ContextKind::ALL.into_iter().find(|k| k.name() == part))
    }
}

/// One context record: who talked to which server under what name.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextRecord {
    pub kind: ContextKind,
    /// Seconds since the epoch.
    pub ts: f64,
    /// The connection's uid (ssl, http); empty for dns.
    pub uid: CompactString,
    pub orig_h: IpAddr,
    /// The server (ssl, http); the resolver for dns.
    pub resp_h: Option<IpAddr>,
    pub resp_p: Option<u16>,
    /// SNI, Host or query name, lower case, without a trailing dot; None when the record names nothing.
    pub name: Option<CompactString>,
    /// dns: the answers that are addresses.
    pub answers: Vec<IpAddr>,
}

/// What one context line was.
#[derive(Debug, Clone, PartialEq)]
pub enum ContextLine {
    Record(ContextRecord),
    /// A header or comment line, or an empty one.
    Meta,
    Skipped(SkipReason),
}

/// Columns of the current `#fields` block that the reader uses.
#[derive(Debug, Clone, Default, PartialEq)]
struct Columns {
    ts: Option<usize>,
    uid: Option<usize>,
    orig_h: Option<usize>,
    resp_h: Option<usize>,
    resp_p: Option<usize>,
    name: Option<usize>,
    answers: Option<usize>,
    count: usize,
}

/// The per-file reader state of a context log: its header block.
#[derive(Debug, Clone)]
pub struct ContextParser {
    kind: ContextKind,
    header: TsvHeader,
    cols: Columns,
}

/// The column (or JSON key) that holds a kind's name.
fn name_key(kind: ContextKind) -> &'static str {
    match kind {
        ContextKind::Ssl => "server_name",
        ContextKind::Http => "host",
        ContextKind::Dns => "query",
    }
}

fn key_is(name: &[u8], want: &str) -> bool {
    name == want.as_bytes()
        || (name.len() == want.len()
            && name
                .iter()
                .zip(want.bytes())
                .all(|(a, b)| *a == b || (b == b'.' && *a == b'_')))
}

impl ContextParser {
    pub fn new(kind: ContextKind) -> ContextParser {
        ContextParser {
            kind,
            header: TsvHeader::default(),
            cols: Columns::default(),
        }
    }

    pub fn kind(&self) -> ContextKind {
        self.kind
    }

    /// The current header block (to checkpoint it).
    pub fn header(&self) -> &TsvHeader {
        &self.header
    }

    /// Restores a header block saved with [`ContextParser::header`].
    pub fn set_header(&mut self, header: TsvHeader) {
        self.cols = Columns::default();
        for l in header.lines() {
            self.columns_from(l, &header);
        }
        self.header = header;
    }

    fn columns_from(&mut self, line: &[u8], header: &TsvHeader) {
        let Some(rest) = line.strip_prefix(b"#fields") else {
            return;
        };
        let sep = header.separator();
        let Some(rest) = rest.strip_prefix(sep) else {
            return;
        };
        let name = name_key(self.kind);
        let mut cols = Columns::default();
        for (i, col) in split(rest, sep).enumerate() {
            let slot = match col {
                c if key_is(c, "ts") => &mut cols.ts,
                c if key_is(c, "uid") => &mut cols.uid,
                c if key_is(c, "id.orig_h") => &mut cols.orig_h,
                c if key_is(c, "id.resp_h") => &mut cols.resp_h,
                c if key_is(c, "id.resp_p") => &mut cols.resp_p,
                c if key_is(c, name) => &mut cols.name,
                c if key_is(c, "answers") && self.kind == ContextKind::Dns => &mut cols.answers,
                _ => {
                    cols.count = i + 1;
                    continue;
                }
            };
            *slot = Some(i);
            cols.count = i + 1;
        }
        self.cols = cols;
    }

    /// Parses one line (without its `\n`; a trailing `\r` is ignored).
    pub fn parse_line(&mut self, line: &[u8]) -> ContextLine {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line.first() {
            None => ContextLine::Meta,
            Some(b'#') => {
                self.header.header_line(line);
                if line.starts_with(b"#separator") {
                    self.cols = Columns::default();
                }
                let header = self.header.clone();
                self.columns_from(line, &header);
                ContextLine::Meta
            }
            Some(b'{') if super::LogParser::reads_as_json(&self.header, line) => {
                parse_json(self.kind, line)
            }
            _ => self.parse_row(line),
        }
    }

    fn parse_row(&self, line: &[u8]) -> ContextLine {
        if !self.header.is_active() {
            return ContextLine::Skipped(SkipReason::NoHeader);
        }
        let values: Vec<&[u8]> = split(line, self.header.separator()).collect();
        if values.len() != self.cols.count {
            return ContextLine::Skipped(SkipReason::ColumnCount {
                expected: self.cols.count,
                found: values.len(),
            });
        }
        let h = &self.header;
        let get = |col: Option<usize>| -> Option<&[u8]> {
            let raw = *values.get(col?)?;
            (raw != h.unset_field() && raw != h.empty_field()).then_some(raw)
        };
        let text = |raw: &[u8]| -> CompactString {
            let v = unescape(raw);
            CompactString::from_utf8_lossy(&v)
        };
        let mut fields = Raw {
            ts: get(self.cols.ts).map(|r| parse_time_text(r).ok_or(())),
            uid: get(self.cols.uid).map(text),
            orig_h: get(self.cols.orig_h).map(|r| parse_addr(r).ok_or(())),
            resp_h: get(self.cols.resp_h).map(|r| parse_addr(r).ok_or(())),
            resp_p: get(self.cols.resp_p).and_then(parse_port),
            name: get(self.cols.name).map(text),
            answers: Vec::new(),
            lacks: |f| self.header_lacks(f),
        };
        if let Some(raw) = get(self.cols.answers) {
            fields.answers = split(raw, h.set_separator())
                .filter_map(|a| parse_addr(&unescape(a)))
                .collect();
        }
        fields.build(self.kind)
    }

    fn header_lacks(&self, f: Field) -> bool {
        match f {
            Field::Ts => self.cols.ts.is_none(),
            Field::Uid => self.cols.uid.is_none(),
            Field::OrigH => self.cols.orig_h.is_none(),
            Field::RespH => self.cols.resp_h.is_none(),
            _ => false,
        }
    }
}

/// The fields of one line before the checks: None = unset, Some(Err) = unparsable.
struct Raw<F: Fn(Field) -> bool> {
    ts: Option<Result<f64, ()>>,
    uid: Option<CompactString>,
    orig_h: Option<Result<IpAddr, ()>>,
    resp_h: Option<Result<IpAddr, ()>>,
    resp_p: Option<u16>,
    name: Option<CompactString>,
    answers: Vec<IpAddr>,
    /// Whether the block's header lacks a field (TSV), to tell "not in #fields" from "unset".
    lacks: F,
}

impl<F: Fn(Field) -> bool> Raw<F> {
    fn required<T>(&self, f: Field, v: Option<Result<T, ()>>) -> Result<T, SkipReason> {
        match v {
            Some(Ok(v)) => Ok(v),
            Some(Err(())) => Err(SkipReason::BadValue { field: f }),
            None if (self.lacks)(f) => Err(SkipReason::HeaderLacks { field: f }),
            None => Err(SkipReason::Missing { field: f }),
        }
    }

    fn build(self, kind: ContextKind) -> ContextLine {
        match self.check(kind) {
            Ok(r) => ContextLine::Record(r),
            Err(reason) => ContextLine::Skipped(reason),
        }
    }

    fn check(mut self, kind: ContextKind) -> Result<ContextRecord, SkipReason> {
        let ts = self.required(Field::Ts, self.ts)?;
        let orig_h = self.required(Field::OrigH, self.orig_h)?;
        let named = kind != ContextKind::Dns;
        let resp_h = match self.resp_h {
            Some(Ok(a)) => Some(a),
            Some(Err(())) if named => {
                return Err(SkipReason::BadValue {
                    field: Field::RespH,
                })
            }
            None if named => {
                return Err(if (self.lacks)(Field::RespH) {
                    SkipReason::HeaderLacks {
                        field: Field::RespH,
                    }
                } else {
                    SkipReason::Missing {
                        field: Field::RespH,
                    }
                })
            }
            _ => None,
        };
        let uid = self.uid.take().unwrap_or_default();
        if named && uid.is_empty() {
            return Err(if (self.lacks)(Field::Uid) {
                SkipReason::HeaderLacks { field: Field::Uid }
            } else {
                SkipReason::Missing { field: Field::Uid }
            });
        }
        Ok(ContextRecord {
            kind,
            ts,
            uid,
            orig_h,
            resp_h,
            resp_p: self.resp_p,
            name: self.name.as_deref().and_then(|n| normalize(kind, n)),
            answers: self.answers,
        })
    }
}

/// A name as longconn compares it: lower case, no trailing dot; an HTTP Host without its `:port` (an IPv6
/// literal keeps its brackets off). None for an empty name or one that is an address (a Host of
/// `10.0.0.1:8080` names nothing the address does not).
pub fn normalize(kind: ContextKind, name: &str) -> Option<CompactString> {
    let mut n = name.trim();
    if kind == ContextKind::Http {
        if let Some(rest) = n.strip_prefix('[') {
            n = rest.split(']').next().unwrap_or(rest);
        } else if let Some((host, port)) = n.rsplit_once(':') {
            if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) {
                n = host;
            }
        }
    }
    let n = n.trim_end_matches('.');
    if n.is_empty() || n.parse::<IpAddr>().is_ok() || n.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    Some(CompactString::from(n.to_ascii_lowercase()))
}

fn parse_json(kind: ContextKind, line: &[u8]) -> ContextLine {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(line)
    else {
        return ContextLine::Skipped(SkipReason::InvalidJson);
    };
    let id = obj.get("id").and_then(|v| v.as_object());
    let get = |key: &str| -> Option<&serde_json::Value> {
        let v = obj
            .get(key)
            .or_else(|| obj.get(&key.replace('.', "_")))
            .or_else(|| id.and_then(|id| id.get(key.strip_prefix("id.")?)));
        v.filter(|v| !v.is_null())
    };
    let addr = |key: &str| -> Option<Result<IpAddr, ()>> {
        get(key).map(|v| v.as_str().and_then(|s| parse_addr(s.as_bytes())).ok_or(()))
    };
    let ts = get("ts").map(|v| match v {
        serde_json::Value::Number(n) => n.as_f64().map(epoch_number).ok_or(()),
        serde_json::Value::String(s) => parse_time_text(s.as_bytes()).ok_or(()),
        _ => Err(()),
    });
    let answers = match get("answers") {
        Some(serde_json::Value::Array(a)) if kind == ContextKind::Dns => a
            .iter()
            .filter_map(|v| parse_addr(v.as_str()?.as_bytes()))
            .collect(),
        _ => Vec::new(),
    };
    let raw = Raw {
        ts,
        uid: get("uid").and_then(|v| v.as_str()).map(CompactString::from),
        orig_h: addr("id.orig_h"),
        resp_h: addr("id.resp_h"),
        resp_p: get("id.resp_p").and_then(|v| u16::try_from(v.as_u64()?).ok()),
        name: get(name_key(kind))
            .and_then(|v| v.as_str())
            .map(CompactString::from),
        answers,
        lacks: |_| false,
    };
    raw.build(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSL_HEAD: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tssl\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tversion\tserver_name\n#types\ttime\tstring\taddr\tport\taddr\tport\tstring\tstring\n";

    fn lines(kind: ContextKind, text: &str) -> Vec<ContextLine> {
        let mut p = ContextParser::new(kind);
        text.lines()
            .map(|l| p.parse_line(l.as_bytes()))
            .filter(|l| *l != ContextLine::Meta)
            .collect()
    }

    fn record(l: &ContextLine) -> &ContextRecord {
        match l {
            ContextLine::Record(r) => r,
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn ssl_tsv_names_by_uid() {
        let text = format!(
            "{SSL_HEAD}1655100000.5\tCabc\t10.0.0.1\t50000\t1.2.3.4\t443\tTLSv12\tWSS-Primary.Slack.com.\n1655100001.0\tCdef\t10.0.0.1\t50001\t1.2.3.4\t443\tTLSv13\t-\n"
        );
        let got = lines(ContextKind::Ssl, &text);
        let r = record(&got[0]);
        assert_eq!(r.uid, "Cabc");
        assert_eq!(r.name.as_deref(), Some("wss-primary.slack.com"));
        assert_eq!(r.resp_p, Some(443));
        assert_eq!(record(&got[1]).name, None);
    }

    #[test]
    fn bad_lines_are_skipped_with_their_reason() {
        let text = format!(
            "{SSL_HEAD}1655100000.5\tCabc\t10.0.0.1\t50000\n1655100000.5\tCabc\tnot-an-ip\t50000\t1.2.3.4\t443\tx\ty\n1655100000.5\t-\t10.0.0.1\t50000\t1.2.3.4\t443\tx\ty\n"
        );
        let got = lines(ContextKind::Ssl, &text);
        assert_eq!(
            got,
            vec![
                ContextLine::Skipped(SkipReason::ColumnCount {
                    expected: 8,
                    found: 4
                }),
                ContextLine::Skipped(SkipReason::BadValue {
                    field: Field::OrigH
                }),
                ContextLine::Skipped(SkipReason::Missing { field: Field::Uid }),
            ]
        );
        assert_eq!(
            lines(ContextKind::Ssl, "1\tC\t10.0.0.1\n"),
            vec![ContextLine::Skipped(SkipReason::NoHeader)]
        );
    }

    #[test]
    fn dns_answers_keep_addresses_only() {
        let text = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#fields\tts\tuid\tid.orig_h\tid.resp_h\tquery\tanswers\tTTLs\n1655100000\tC1\t10.0.0.1\t10.0.0.53\tWWW.Example.ORG\tedge.example.net,93.184.216.34,2606:2800:220:1::1\t60.0,60.0,60.0\n";
        let got = lines(ContextKind::Dns, text);
        let r = record(&got[0]);
        assert_eq!(r.name.as_deref(), Some("www.example.org"));
        assert_eq!(
            r.answers,
            vec![
                "93.184.216.34".parse::<IpAddr>().unwrap(),
                "2606:2800:220:1::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn json_lines_of_each_kind() {
        let ssl = r#"{"_path":"ssl","ts":"2022-06-13T10:00:00.5Z","uid":"C1","id.orig_h":"10.0.0.1","id.orig_p":5,"id.resp_h":"1.2.3.4","id.resp_p":443,"server_name":"a.example.com"}"#;
        let r = record(&lines(ContextKind::Ssl, ssl)[0]).clone();
        assert_eq!(r.name.as_deref(), Some("a.example.com"));
        assert!((r.ts - 1655114400.5).abs() < 1e-6);
        let http = r#"{"ts":1655114400.5,"uid":"C2","id":{"orig_h":"10.0.0.1","resp_h":"1.2.3.4","resp_p":8080},"host":"Example.com:8080"}"#;
        let r = record(&lines(ContextKind::Http, http)[0]).clone();
        assert_eq!(r.name.as_deref(), Some("example.com"));
        assert_eq!(r.resp_p, Some(8080));
        let dns = r#"{"ts":1655114400,"id_orig_h":"10.0.0.1","id_resp_h":"10.0.0.53","query":"x.example.com","answers":["1.2.3.4","alias.example.com"]}"#;
        let r = record(&lines(ContextKind::Dns, dns)[0]).clone();
        assert_eq!(r.answers, vec!["1.2.3.4".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            lines(ContextKind::Dns, "{not json"),
            vec![ContextLine::Skipped(SkipReason::InvalidJson)]
        );
    }

    #[test]
    fn names_normalized() {
        assert_eq!(normalize(ContextKind::Http, "[::1]:80"), None);
        assert_eq!(normalize(ContextKind::Http, "10.0.0.1:8080"), None);
        assert_eq!(
            normalize(ContextKind::Http, "Example.COM:80").as_deref(),
            Some("example.com")
        );
        assert_eq!(normalize(ContextKind::Ssl, "").as_deref(), None);
    }

    #[test]
    fn kinds_from_names() {
        assert_eq!(
            ContextKind::from_file_name("ctu-normal-42_day2.ssl.log.labeled"),
            Some(ContextKind::Ssl)
        );
        assert_eq!(
            ContextKind::from_file_name("dns.09:00:00-10:00:00.log.gz"),
            Some(ContextKind::Dns)
        );
        assert_eq!(ContextKind::from_file_name("conn.log"), None);
        assert_eq!(ContextKind::from_log_path("http"), Some(ContextKind::Http));
        assert_eq!(ContextKind::from_log_path("conn"), None);
    }
}
