//! The `[[output]]` tables: one [`Output`] per table, a tagged enum by `type`, with the batching every
//! output shares and the settings of the stdout and file outputs (syslog's are in
//! [`crate::output::syslog::config`], HTTP's in [`crate::output::http::config`]).
//!
//! Each type has its list of keys; a key of another type is refused naming the types it belongs to
//! (`output[1].facility: not a key of a type = "file" output (it belongs to type "syslog")`). The keys of
//! the stdout, file and syslog types are read (their TOML types checked) whatever the output's type, so
//! a key of an unknown type is reported as unknown with the keys of those three.

use crate::config::diag::{Diagnostics, Reader};
use crate::config::values::{at_most, format_duration, name_of, one_of};
use crate::output::http::{self, HttpConfig, HttpFiles};
use crate::output::syslog::config::{self as syslog, SyslogConfig};
use std::path::PathBuf;
use std::time::Duration;

/// One `[[output]]`. Every output has a unique `name` (its cursor in the spool, and its label in logs).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Stdout {
        name: String,
        batch: Batching,
    },
    File {
        name: String,
        path: PathBuf,
        fsync: FsyncPolicy,
        batch: Batching,
    },
    Syslog {
        name: String,
        syslog: SyslogConfig,
        batch: Batching,
    },
    /// Splunk HEC, Elasticsearch bulk or an NDJSON webhook; see `crate::output::http`.
    Http {
        name: String,
        http: Box<HttpConfig>,
    },
}

impl Output {
    /// The output's unique name.
    pub fn name(&self) -> &str {
        match self {
            Output::Stdout { name, .. }
            | Output::File { name, .. }
            | Output::Syslog { name, .. }
            | Output::Http { name, .. } => name,
        }
    }

    /// How alerts are grouped for delivery.
    pub fn batching(&self) -> Batching {
        match self {
            Output::Stdout { batch, .. }
            | Output::File { batch, .. }
            | Output::Syslog { batch, .. } => *batch,
            Output::Http { http, .. } => Batching {
                size: http.batch_size,
                flush_interval: http.flush_interval,
            },
        }
    }
}

/// Batching of one output: at most `size` alerts per delivery. With a non-zero `flush_interval`, while alerts
/// keep coming a smaller batch waits until `flush_interval` after the previous delivery (an alert after a
/// quiet spell goes at once). Zero (the default) delivers at once; alerts that arrive while a delivery is in
/// flight form the next batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batching {
    pub size: usize,
    pub flush_interval: Duration,
}

pub const DEFAULT_BATCHING: Batching = Batching {
    size: 500,
    flush_interval: Duration::ZERO,
};

/// When the file output calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every alert.
    Always,
    /// After every delivered batch (default).
    Batch,
    /// Never (the OS writes back when it likes).
    Never,
}

const FSYNC: &[(&str, FsyncPolicy)] = &[
    ("always", FsyncPolicy::Always),
    ("batch", FsyncPolicy::Batch),
    ("never", FsyncPolicy::Never),
];

/// An output's `flush_interval`, `timeout` and `ack_timeout`: an hour.
pub const MAX_OUTPUT_WAIT: Duration = Duration::from_secs(3600);

/// The output types, as `type` names them.
const TYPES: &[&str] = &["stdout", "file", "syslog", "http"];
/// The keys of a `type = "stdout"` output.
pub const STDOUT_KEYS: &[&str] = &["type", "name", "batch_size", "flush_interval"];
/// The keys of a `type = "file"` output.
pub const FILE_KEYS: &[&str] = &[
    "type",
    "name",
    "path",
    "fsync",
    "batch_size",
    "flush_interval",
];

/// The keys a `kind` output takes (every format's, for http); None for an unknown type.
fn keys_of(kind: &str) -> Option<Vec<&'static str>> {
    match kind {
        "stdout" => Some(STDOUT_KEYS.to_vec()),
        "file" => Some(FILE_KEYS.to_vec()),
        "syslog" => Some(syslog::KEYS.to_vec()),
        "http" => Some(http::config::all_keys()),
        _ => None,
    }
}

/// The reason a key of other output types is refused in a `kind` output, naming the types it belongs to;
/// None if no type takes it.
fn belongs_elsewhere(kind: &str, key: &str) -> Option<String> {
    let owners: Vec<String> = TYPES
        .iter()
        .filter(|t| **t != kind && keys_of(t).is_some_and(|k| k.contains(&key)))
        .map(|t| format!("{t:?}"))
        .collect();
    let owners = match owners.as_slice() {
        [] => return None,
        [one] => format!("type {one}"),
        [first @ .., last] => format!("types {} and {last}", first.join(", ")),
    };
    Some(format!(
        "not a key of a type = {kind:?} output (it belongs to {owners})"
    ))
}

/// One `[[output]]` as written: the keys of the stdout, file and syslog types (read for every type but
/// http, so their types are checked whatever `type` says), or the checked HTTP settings.
struct RawOutput<'t> {
    index: usize,
    kind: Option<&'t str>,
    name: Option<&'t str>,
    /// The keys given with a value of the right type, in the order read.
    given: Vec<String>,
    path: Option<&'t str>,
    fsync: Option<&'t str>,
    batch_size: Option<i64>,
    flush_interval: Option<&'t str>,
    syslog: syslog::RawSyslog<'t>,
    http: Option<Result<HttpConfig, HttpFiles>>,
}

fn read_output<'t>(r: &mut Reader<'_, 't>, index: usize) -> RawOutput<'t> {
    let kind = r.str("type");
    let name = r.str("name");
    let http = (kind == Some("http")).then(|| {
        // The HTTP output checks its own keys, and its problems come first (see `crate::config`).
        r.set_early();
        let http = HttpConfig::from_toml(r, &|key| belongs_elsewhere("http", key));
        r.read_all();
        http
    });
    let (path, fsync, batch_size, flush_interval, syslog) = if http.is_some() {
        (None, None, None, None, syslog::RawSyslog::default())
    } else {
        (
            r.str("path"),
            r.str("fsync"),
            r.int("batch_size"),
            r.str("flush_interval"),
            syslog::RawSyslog::read(r),
        )
    };
    if let Some(kind) = kind.filter(|k| TYPES.contains(k) && http.is_none()) {
        for key in r.unread() {
            if let Some(reason) = belongs_elsewhere(kind, key) {
                r.refuse(key, reason);
            }
        }
    }
    RawOutput {
        index,
        kind,
        name,
        given: r.given(),
        path,
        fsync,
        batch_size,
        flush_interval,
        syslog,
        http,
    }
}

/// What [`Output::from_toml`] found: the outputs, the file index of each, and the HTTP outputs whose
/// tables had errors with the files and secrets they name (for the preflight).
pub struct Outputs {
    pub outputs: Vec<Output>,
    pub origins: Vec<usize>,
    pub unbuilt_http: Vec<(usize, HttpFiles)>,
}

impl Output {
    /// Reads every `[[output]]` from the file's top level; names are unique, defaulting to the type
    /// (`-2`, `-3`... on repeats); no `[[output]]` means one stdout output.
    pub fn from_toml(r: &mut Reader<'_, '_>) -> Outputs {
        let mut index = 0;
        let (mut raw, ok) = r.tables("output", |o| {
            index += 1;
            read_output(o, index - 1)
        });
        let mut unbuilt_http = Vec::new();
        for o in &mut raw {
            if matches!(o.http, Some(Err(_))) {
                if let Some(Err(files)) = o.http.take() {
                    unbuilt_http.push((o.index, files));
                }
            }
        }
        if !ok {
            raw.clear();
        }
        let d = r.diag();
        let mut used: Vec<String> = Vec::new();
        for o in &raw {
            let Some(name) = o.name else { continue };
            let key = format!("output[{}].name", o.index);
            if name.is_empty()
                || name == "."
                || name == ".."
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                d.push(
                    &key,
                    format!("{name:?}: use letters, digits, '-', '_' and '.' only (it names a file in the spool)"),
                );
            } else if used.iter().any(|u| u == name) {
                d.push(
                    &key,
                    format!("{name:?} is used by another output; names must be unique"),
                );
            } else {
                used.push(name.to_string());
            }
        }
        let mut outputs = Vec::new();
        let mut origins = Vec::new();
        for o in &mut raw {
            let kept = outputs.len();
            if let Some(out) = check_output(d, o, &mut used) {
                outputs.push(out);
            }
            if outputs.len() > kept {
                origins.push(o.index);
            }
        }
        if raw.is_empty() {
            outputs.push(Output::Stdout {
                name: "stdout".to_string(),
                batch: DEFAULT_BATCHING,
            });
        }
        Outputs {
            outputs,
            origins,
            unbuilt_http,
        }
    }

    /// One `[[output]]` as `to_effective_toml` prints it, every default filled in.
    pub fn to_toml(&self) -> toml::Table {
        let mut t = toml::Table::new();
        let kind = match self {
            Output::Stdout { .. } => "stdout",
            Output::File { .. } => "file",
            Output::Syslog { .. } => "syslog",
            Output::Http { .. } => "http",
        };
        t.insert("type".into(), kind.into());
        t.insert("name".into(), self.name().into());
        if let Output::Http { http, .. } = self {
            t.extend(http.to_effective_toml());
            return t;
        }
        match self {
            Output::File { path, fsync, .. } => {
                t.insert("path".into(), path.display().to_string().into());
                t.insert("fsync".into(), name_of(*fsync, FSYNC).into());
            }
            Output::Syslog { syslog, .. } => {
                if let Some(path) = syslog.path() {
                    t.insert("path".into(), path.display().to_string().into());
                }
            }
            _ => {}
        }
        let batch = self.batching();
        t.insert("batch_size".into(), (batch.size as i64).into());
        let flush = if batch.flush_interval.is_zero() {
            "0s".to_string()
        } else {
            format_duration(batch.flush_interval)
        };
        t.insert("flush_interval".into(), flush.into());
        if let Output::Syslog { syslog, .. } = self {
            syslog.to_toml(&mut t);
        }
        t
    }
}

/// Checks one output read by [`read_output`]; None if it cannot be built (reported).
fn check_output(
    d: &mut Diagnostics,
    o: &mut RawOutput<'_>,
    used: &mut Vec<String>,
) -> Option<Output> {
    let key = format!("output[{}]", o.index);
    let k = |field: &str| format!("{key}.{field}");
    let Some(kind) = o.kind else {
        d.missing(
            &k("type"),
            "missing: \"stdout\", \"file\", \"syslog\" or \"http\"",
        );
        return None;
    };
    let name = match o.name {
        Some(n) => n.to_string(),
        None => {
            let mut n = kind.to_string();
            let mut i = 2;
            while used.contains(&n) {
                n = format!("{kind}-{i}");
                i += 1;
            }
            used.push(n.clone());
            n
        }
    };
    if let Some(http) = o.http.take() {
        let http = http.ok()?;
        // The HTTP output checks its own keys; the bounds shared by every output are here.
        let _ = d.check(
            &k("flush_interval"),
            at_most(http.flush_interval, MAX_OUTPUT_WAIT),
        );
        let _ = d.check(&k("timeout"), at_most(http.timeout, MAX_OUTPUT_WAIT));
        if let Some(ack) = http.splunk.as_ref().and_then(|s| s.ack.as_ref()) {
            let _ = d.check(&k("ack_timeout"), at_most(ack.timeout, MAX_OUTPUT_WAIT));
        }
        return Some(Output::Http {
            name,
            http: Box::new(http),
        });
    }
    if kind == "http" {
        return None; // its table had errors, already reported
    }
    let batch = Batching {
        size: match o.batch_size {
            None => DEFAULT_BATCHING.size,
            Some(n) if (1..=100_000).contains(&n) => n as usize,
            Some(n) => {
                d.push(&k("batch_size"), format!("{n} is out of range 1..=100000"));
                DEFAULT_BATCHING.size
            }
        },
        flush_interval: match o.flush_interval {
            None => DEFAULT_BATCHING.flush_interval,
            Some(t) if t.trim() == "0" => Duration::ZERO,
            Some(t) => d
                .check(
                    &k("flush_interval"),
                    humantime::parse_duration(t.trim()).map_err(|e| {
                        format!("{t:?} is not a duration like \"200ms\" or \"1s\" ({e})")
                    }),
                )
                .and_then(|dur| d.check(&k("flush_interval"), at_most(dur, MAX_OUTPUT_WAIT)))
                .unwrap_or(DEFAULT_BATCHING.flush_interval),
        },
    };
    // Keys of other types given to a known type.
    if let Some(own) = keys_of(kind) {
        for field in &o.given {
            if !own.contains(&field.as_str()) {
                if let Some(reason) = belongs_elsewhere(kind, field) {
                    d.push(&k(field), reason);
                }
            }
        }
    }
    match kind {
        "stdout" => Some(Output::Stdout { name, batch }),
        "file" => {
            let fsync = o
                .fsync
                .and_then(|f| d.check(&k("fsync"), one_of(f, FSYNC)))
                .unwrap_or(FsyncPolicy::Batch);
            let path = d.required_path(
                &k("path"),
                o.path,
                "missing: a type = \"file\" output needs the file to append alerts to",
            )?;
            Some(Output::File {
                name,
                path,
                fsync,
                batch,
            })
        }
        "syslog" => {
            let syslog = SyslogConfig::check(d, &key, &o.syslog, o.path)?;
            Some(Output::Syslog {
                name,
                syslog,
                batch,
            })
        }
        other => {
            d.push(
                &k("type"),
                format!("{other:?} is not one of \"stdout\", \"file\", \"syslog\", \"http\""),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;
    use crate::config::{Config, Framing, SyslogTransport, TlsConfig};
    use crate::rules::{Allow, Match};

    #[test]
    fn syslog_outputs_names_and_spool() {
        let c = load(&format!(
            r#"{MINIMAL}
        [spool]
        max_bytes = 1048576
        [[output]]
        type = "syslog"
        transport = "tcp"
        address = "siem.example.org:6514"
        [[output]]
        type = "syslog"
        transport = "tls"
        address = "[::1]:6514"
        ca_file = "/etc/ca.pem"
        client_cert = "/etc/c.pem"
        client_key = "/etc/k.pem"
        facility = "local3"
        framing = "newline"
        [[output]]
        type = "syslog"
        name = "syslog-2"
        transport = "unix"
        path = "/dev/log"
        [[output]]
        type = "file"
        path = "/a"
        fsync = "always"
        "#
        ));
        assert_eq!(c.spool.max_bytes, 1 << 20);
        let names: Vec<&str> = c.outputs.iter().map(Output::name).collect();
        assert_eq!(names, ["syslog", "syslog-3", "syslog-2", "file"]);
        let Output::Syslog { syslog, .. } = &c.outputs[1] else {
            panic!()
        };
        assert_eq!(syslog.facility, 19);
        assert_eq!(syslog.framing, Framing::Newline);
        assert_eq!(syslog.app_name, "longconn");
        assert_eq!(
            syslog.transport,
            SyslogTransport::Tls {
                address: "[::1]:6514".into(),
                tls: TlsConfig {
                    ca_file: "/etc/ca.pem".into(),
                    client_cert: Some(("/etc/c.pem".into(), "/etc/k.pem".into())),
                    server_name: "::1".into(),
                    verify_server_name: true,
                }
            }
        );
        let printed = c.to_effective_toml();
        assert_eq!(Config::from_toml_str(&printed).unwrap(), c, "{printed}");
    }

    #[test]
    fn syslog_errors_at_once() {
        let e = errors(&format!(
            r#"{MINIMAL}
        [spool]
        max_bytes = 10
        [[output]]
        type = "syslog"
        [[output]]
        type = "syslog"
        transport = "tls"
        address = "nohost"
        facility = "local9"
        client_cert = "/c"
        [[output]]
        type = "syslog"
        transport = "udp"
        address = "h:1"
        framing = "newline"
        ca_file = "/x"
        name = "a/b"
        [[output]]
        type = "http"
        [[output]]
        type = "stdout"
        name = "dup"
        fsync = "never"
        [[output]]
        type = "stdout"
        name = "dup"
        verify_server_name = "yes"
        "#
        ));
        for key in [
            "spool.max_bytes",
            "output[0].transport",
            "output[1].address",
            "output[1].facility",
            "output[1].ca_file",
            "output[1].client_key",
            "output[2].framing",
            "output[2].ca_file",
            "output[2].name",
            "output[3].url",
            "output[4].fsync",
            "output[5].name",
            "output[5].verify_server_name",
        ] {
            assert!(e.has_key(key), "{key} not reported in:\n{e}");
        }
    }

    #[test]
    fn outputs() {
        assert_error(
            &format!("{MINIMAL}[[output]]\ntype = \"file\"\n"),
            "output[0].path",
            "missing",
        );
        assert_error(
            &format!("{MINIMAL}[[output]]\npath = \"/x\"\n"),
            "output[0].type",
            "missing",
        );
        assert_error(
            &format!("{MINIMAL}[[output]]\ntype = \"stdout\"\npath = \"/x\"\n"),
            "output[0].path",
            "not a key of a type = \"stdout\" output (it belongs to types \"file\" and \"syslog\")",
        );
        assert_error(
        &format!("{MINIMAL}[[output]]\ntype = \"file\"\npath = \"/x\"\nfacility = \"local0\"\nurl = \"http://h\"\n"),
        "output[0].facility",
        "not a key of a type = \"file\" output (it belongs to type \"syslog\")",
    );
        assert_error(
            &format!("{MINIMAL}[[output]]\ntype = \"file\"\npath = \"/x\"\nurl = \"http://h\"\n"),
            "output[0].url",
            "(it belongs to type \"http\")",
        );
        assert_error(
            &format!(
                "{MINIMAL}[[output]]\ntype = \"http\"\nurl = \"http://h\"\nfsync = \"never\"\n"
            ),
            "output[0].fsync",
            "not a key of a type = \"http\" output (it belongs to type \"file\")",
        );
        assert_error(
            &format!("{MINIMAL}[[output]]\npath = \"/x\"\n"),
            "output[0].type",
            "missing: \"stdout\", \"file\", \"syslog\" or \"http\"",
        );
        assert_error(
            "[sensor]\nname = \" \"\n[[source]]\npath = \"/a\"\n",
            "sensor.name",
            "empty",
        );
    }

    #[test]
    fn allow_override_and_outputs() {
        let c = load(&format!(
            r#"{MINIMAL}
        [[allow]]
        dst = "203.0.113.10"
        port = 443
        proto = "TCP"
        comment = "backup service"
        [[override]]
        src = "10.9.0.0/16"
        single = {{ high = "24h" }}
        [[output]]
        type = "file"
        path = "/var/log/longconn/alerts.json"
        "#
        ));
        assert_eq!(
            c.allow,
            vec![Allow {
                matches: Match {
                    src: None,
                    dst: Some("203.0.113.10/32".parse().unwrap()),
                    port: Some(443),
                    proto: Some("tcp".to_string()),
                },
                domain: None,
                comment: Some("backup service".to_string()),
            }]
        );
        assert_eq!(c.overrides.len(), 1);
        assert_eq!(
            c.overrides[0].matches.src,
            Some("10.9.0.0/16".parse().unwrap())
        );
        assert_eq!(c.overrides[0].single, [None, None, Some(h(24)), None]);
        assert_eq!(c.overrides[0].cumulative, [None; 4]);
        assert_eq!(
            c.outputs,
            vec![Output::File {
                name: "file".into(),
                path: PathBuf::from("/var/log/longconn/alerts.json"),
                fsync: FsyncPolicy::Batch,
                batch: DEFAULT_BATCHING,
            }]
        );
    }

    #[test]
    fn the_key_lists_are_the_keys_read() {
        // The keys of stdout, file and syslog outputs are read for every type but http: the file output's
        // in the order of its list, then the syslog output's others in theirs (the stdout output's are
        // among the file output's). The unknown-key message names them in that order.
        let table = toml::Table::new();
        let mut d = Diagnostics::new();
        let mut r = Reader::new(&mut d, &table, "output[0]");
        read_output(&mut r, 0);
        let mut union: Vec<&str> = Vec::new();
        for k in FILE_KEYS.iter().chain(STDOUT_KEYS).chain(syslog::KEYS) {
            if !union.contains(k) {
                union.push(k);
            }
        }
        assert_eq!(r.asked(), union);
        // Every key the HTTP output takes belongs to it, and to no other type by accident.
        for key in http::config::all_keys() {
            assert!(keys_of("http").unwrap().contains(&key));
        }
    }
}
