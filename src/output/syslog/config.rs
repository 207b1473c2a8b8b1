//! The settings of a `type = "syslog"` output: transport, TLS, framing, facility and app name.

use std::path::PathBuf;

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

pub(crate) const FRAMING: &[(&str, Framing)] = &[
    ("octet-counting", Framing::OctetCounting),
    ("newline", Framing::Newline),
];

pub(crate) const TRANSPORTS: &[&str] = &["udp", "tcp", "tls", "unix"];

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
