//! The settings of a `type = "syslog"` output: transport, TLS, framing, facility and app name.

use crate::config::diag::{Diagnostics, Reader};
use crate::config::values::{name_of, one_of, split_host_port};
use std::path::{Path, PathBuf};

/// A syslog output (RFC 5424).
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogConfig {
    pub transport: SyslogTransport,
    /// Facility number (local0 = 16).
    pub facility: u8,
    /// Framing for TCP and TLS.
    pub framing: Framing,
    pub app_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SyslogTransport {
    Udp { address: String },
    Tcp { address: String },
    Tls { address: String, tls: TlsConfig },
    Unix { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub ca_file: PathBuf,
    /// (certificate chain, private key) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub server_name: String,
    pub verify_server_name: bool,
}

/// RFC 6587 framing on stream transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `LEN SP MSG` (default).
    OctetCounting,
    /// `MSG LF`.
    Newline,
}

const FRAMING: &[(&str, Framing)] = &[
    ("octet-counting", Framing::OctetCounting),
    ("newline", Framing::Newline),
];

const TRANSPORTS: &[&str] = &["udp", "tcp", "tls", "unix"];

/// Syslog facilities by name (RFC 5424 section 6.2.1).
pub const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// The keys of a `type = "syslog"` output (`path` for the unix transport).
pub const KEYS: &[&str] = &[
    "type",
    "name",
    "path",
    "batch_size",
    "flush_interval",
    "transport",
    "address",
    "facility",
    "framing",
    "ca_file",
    "client_cert",
    "client_key",
    "server_name",
    "verify_server_name",
    "app_name",
];

/// The syslog keys of one `[[output]]` as written (`path` is read with the file output's).
#[derive(Debug, Default)]
pub struct RawSyslog<'t> {
    transport: Option<&'t str>,
    address: Option<&'t str>,
    facility: Option<&'t str>,
    framing: Option<&'t str>,
    ca_file: Option<&'t str>,
    client_cert: Option<&'t str>,
    client_key: Option<&'t str>,
    server_name: Option<&'t str>,
    verify_server_name: Option<bool>,
    app_name: Option<&'t str>,
}

impl<'t> RawSyslog<'t> {
    pub fn read(r: &mut Reader<'_, 't>) -> RawSyslog<'t> {
        RawSyslog {
            transport: r.str("transport"),
            address: r.str("address"),
            facility: r.str("facility"),
            framing: r.str("framing"),
            ca_file: r.str("ca_file"),
            client_cert: r.str("client_cert"),
            client_key: r.str("client_key"),
            server_name: r.str("server_name"),
            verify_server_name: r.bool("verify_server_name"),
            app_name: r.str("app_name"),
        }
    }
}

impl SyslogConfig {
    /// Checks the syslog keys of the output at `key` (`output[2]`); None if it cannot be built
    /// (reported).
    pub fn check(
        d: &mut Diagnostics,
        key: &str,
        o: &RawSyslog<'_>,
        path: Option<&str>,
    ) -> Option<SyslogConfig> {
        let k = |field: &str| format!("{key}.{field}");
        let facility = match o.facility {
            None => 16,
            Some(f) => d.check(&k("facility"), one_of(f, FACILITIES)).unwrap_or(16),
        };
        let framing = o
            .framing
            .and_then(|f| d.check(&k("framing"), one_of(f, FRAMING)))
            .unwrap_or(Framing::OctetCounting);
        let app_name = match o.app_name {
            None => "longconn".to_string(),
            Some(a)
                if a.is_empty() || a.len() > 48 || !a.bytes().all(|b| (33..=126).contains(&b)) =>
            {
                d.push(
                    &k("app_name"),
                    format!("{a:?}: 1 to 48 printable ASCII characters without spaces (RFC 5424)"),
                );
                "longconn".to_string()
            }
            Some(a) => a.to_string(),
        };
        let transport = o.transport;
        let stream = matches!(transport, Some("tcp" | "tls"));
        if o.framing.is_some() && !stream && transport.is_some() {
            d.push(&k("framing"), "only tcp and tls transports take framing");
        }
        let is_tls = transport == Some("tls");
        for (field, given) in [
            ("ca_file", o.ca_file.is_some()),
            ("client_cert", o.client_cert.is_some()),
            ("client_key", o.client_key.is_some()),
            ("server_name", o.server_name.is_some()),
            ("verify_server_name", o.verify_server_name.is_some()),
        ] {
            if given && !is_tls && transport.is_some() {
                d.push(&k(field), "only a transport = \"tls\" output takes it");
            }
        }
        let address = |d: &mut Diagnostics| -> Option<(String, String)> {
            match o.address {
                None => {
                    d.missing(&k("address"), "missing: \"host:port\" of the syslog server");
                    None
                }
                Some(a) => d.check(
                    &k("address"),
                    split_host_port(a).map(|h| (a.to_string(), h)),
                ),
            }
        };
        let transport = match transport {
            None => {
                d.missing(
                    &k("transport"),
                    "missing: \"udp\", \"tcp\", \"tls\" or \"unix\"",
                );
                None
            }
            Some("udp" | "tcp") => {
                if path.is_some() {
                    d.push(&k("path"), "only a transport = \"unix\" output takes path");
                }
                let a = address(d);
                a.map(|(address, _)| {
                    if transport == Some("udp") {
                        SyslogTransport::Udp { address }
                    } else {
                        SyslogTransport::Tcp { address }
                    }
                })
            }
            Some("tls") => {
                if path.is_some() {
                    d.push(&k("path"), "only a transport = \"unix\" output takes path");
                }
                let a = address(d);
                let ca_file = match o.ca_file {
                    Some(c) if !c.trim().is_empty() => Some(PathBuf::from(c)),
                    Some(_) => {
                        d.push(&k("ca_file"), "is empty");
                        None
                    }
                    None => {
                        d.missing(
                            &k("ca_file"),
                            "missing: the PEM file of the CA that signed the server's certificate",
                        );
                        None
                    }
                };
                let client_cert = match (o.client_cert, o.client_key) {
                    (Some(c), Some(key)) => Some((PathBuf::from(c), PathBuf::from(key))),
                    (Some(_), None) => {
                        d.missing(
                            &k("client_key"),
                            "missing: client_cert needs its client_key",
                        );
                        None
                    }
                    (None, Some(_)) => {
                        d.missing(
                            &k("client_cert"),
                            "missing: client_key needs its client_cert",
                        );
                        None
                    }
                    (None, None) => None,
                };
                match (a, ca_file) {
                    (Some((address, host)), Some(ca_file)) => Some(SyslogTransport::Tls {
                        address,
                        tls: TlsConfig {
                            ca_file,
                            client_cert,
                            server_name: o.server_name.map_or(host, str::to_string),
                            verify_server_name: o.verify_server_name.unwrap_or(true),
                        },
                    }),
                    _ => None,
                }
            }
            Some("unix") => {
                if o.address.is_some() {
                    d.push(
                        &k("address"),
                        "a transport = \"unix\" output takes path, not address",
                    );
                }
                d.required_path(
                    &k("path"),
                    path,
                    "missing: the unix datagram socket, e.g. /dev/log",
                )
                .map(|path| SyslogTransport::Unix { path })
            }
            Some(other) => {
                let names: Vec<String> = TRANSPORTS.iter().map(|t| format!("{t:?}")).collect();
                d.push(
                    &k("transport"),
                    format!("{other:?} is not one of {}", names.join(", ")),
                );
                None
            }
        }?;
        Some(SyslogConfig {
            transport,
            facility,
            framing,
            app_name,
        })
    }

    /// The socket of a unix transport, printed as the output's `path`.
    pub fn path(&self) -> Option<&Path> {
        match &self.transport {
            SyslogTransport::Unix { path } => Some(path),
            _ => None,
        }
    }

    /// The syslog keys but `path`, as `to_effective_toml` prints them.
    pub fn to_toml(&self, t: &mut toml::Table) {
        let (transport, address) = match &self.transport {
            SyslogTransport::Udp { address } => ("udp", Some(address)),
            SyslogTransport::Tcp { address } => ("tcp", Some(address)),
            SyslogTransport::Tls { address, .. } => ("tls", Some(address)),
            SyslogTransport::Unix { .. } => ("unix", None),
        };
        t.insert("transport".into(), transport.into());
        if let Some(a) = address {
            t.insert("address".into(), a.clone().into());
        }
        if let Some((name, _)) = FACILITIES.iter().find(|f| f.1 == self.facility) {
            t.insert("facility".into(), (*name).into());
        }
        if matches!(
            self.transport,
            SyslogTransport::Tcp { .. } | SyslogTransport::Tls { .. }
        ) {
            t.insert("framing".into(), name_of(self.framing, FRAMING).into());
        }
        if let SyslogTransport::Tls { tls, .. } = &self.transport {
            t.insert("ca_file".into(), tls.ca_file.display().to_string().into());
            if let Some((c, k)) = &tls.client_cert {
                t.insert("client_cert".into(), c.display().to_string().into());
                t.insert("client_key".into(), k.display().to_string().into());
            }
            t.insert("server_name".into(), tls.server_name.clone().into());
            t.insert("verify_server_name".into(), tls.verify_server_name.into());
        }
        t.insert("app_name".into(), self.app_name.clone().into());
    }
}
