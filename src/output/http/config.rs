//! The `[[output]]` table of `type = "http"`, checked into an [`HttpConfig`].
//!
//! Like the rest of the configuration, every problem is reported at once, each with its full key
//! (`output[2].url`, `output[2].headers.X-Scope`). Secrets (`token`, `password`, `api_key`) may be given
//! inline, but `*_file` (a file holding the secret, trailing newline dropped) or `*_env` (the name of an
//! environment variable) are preferred so the config file can be world-readable. Loading is pure: the config
//! holds where a secret comes from ([`SecretSource`]), the CA and client certificate paths, and the HEC
//! channel if one is configured; the output reads the files and variables and makes a channel id when it is
//! built, and the preflight reads them too, so `longconn check` reports a missing file or variable. A
//! [`Secret`] prints as `***` in `Debug`, and no log line ever carries one. Keys that belong to another format (`ack` with `elasticsearch`) are errors, not
//! silently ignored.

use crate::config::diag::{ConfigError, Diagnostics, Reader};
use crate::config::values::parse_duration;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;
use std::path::PathBuf;
use std::time::Duration;

/// The body format an HTTP output speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Alert lines, `application/x-ndjson` (a generic webhook: Vector, Fluent Bit, Logstash http inputs).
    Ndjson,
    /// Splunk HTTP Event Collector, `/services/collector/event`.
    SplunkHec,
    /// Elasticsearch `_bulk` with `create` actions.
    Elasticsearch,
}

const FORMATS: &[(&str, Format)] = &[
    ("ndjson", Format::Ndjson),
    ("splunk_hec", Format::SplunkHec),
    ("elasticsearch", Format::Elasticsearch),
];

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::SplunkHec => "splunk_hec",
            Format::Elasticsearch => "elasticsearch",
        }
    }
}

/// A credential. `Debug` prints `***`; the value is only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret {
            value: value.into(),
        }
    }
    /// The value, for building a request header. Never log it.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from, as the file says: inline (`NAME`), a file (`NAME_file`) or an environment
/// variable (`NAME_env`). Loading a config never reads it (two loads of one file are equal); the output
/// reads it when it is built, and the preflight reads it so that `check` reports a missing file or variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(Secret),
    File(PathBuf),
    Env(String),
}

impl SecretSource {
    /// The key it was given under: `NAME`, `NAME_file` or `NAME_env`.
    pub fn key(&self, name: &str) -> String {
        match self {
            SecretSource::Inline(_) => name.to_string(),
            SecretSource::File(_) => format!("{name}_file"),
            SecretSource::Env(_) => format!("{name}_env"),
        }
    }

    /// The secret, trimmed; Err says what is wrong with the file or variable (never the value).
    pub fn read(&self) -> Result<Secret, String> {
        match self {
            SecretSource::Inline(s) => Ok(s.clone()),
            SecretSource::File(path) => {
                let path = path.display();
                match std::fs::read_to_string(path.to_string()) {
                    Ok(s) if s.trim().is_empty() => Err(format!("{path} is empty")),
                    Ok(s) => Ok(Secret::new(s.trim())),
                    Err(e) => Err(format!("cannot read {path}: {e}")),
                }
            }
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(s) if s.trim().is_empty() => Err(format!("environment variable {var} is empty")),
                Ok(s) => Ok(Secret::new(s.trim())),
                Err(_) => Err(format!(
                    "environment variable {var} is not set (or not UTF-8)"
                )),
            },
        }
    }

    /// `NAME_file = PATH`, `NAME_env = VAR`, or `NAME = "***"` for an inline secret.
    fn to_toml(&self, name: &str, table: &mut toml::Table) {
        let value = match self {
            SecretSource::Inline(_) => "***".into(),
            SecretSource::File(p) => p.display().to_string().into(),
            SecretSource::Env(v) => v.clone().into(),
        };
        table.insert(self.key(name), value);
    }
}

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// `Authorization: Splunk TOKEN` (splunk_hec) or `Authorization: Bearer TOKEN` (ndjson).
    Token(SecretSource),
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        username: String,
        password: SecretSource,
    },
    /// `Authorization: ApiKey KEY` (Elasticsearch; the key is the base64 `id:api_key` Kibana shows).
    ApiKey(SecretSource),
}

/// Splunk HEC settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplunkConfig {
    pub sourcetype: String,
    pub source: String,
    pub index: Option<String>,
    /// None: each alert's `observer.name`.
    pub host: Option<String>,
    /// Indexer acknowledgement: the channel and how long to wait for the ack before resending.
    pub ack: Option<AckConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckConfig {
    /// The configured channel; None: the output makes a fresh one (a random UUID) each time it is built.
    pub channel: Option<String>,
    pub timeout: Duration,
}

/// Elasticsearch settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElasticConfig {
    /// An index or a data stream (data streams need `create`, which is what we send).
    pub index: String,
}

/// A validated `type = "http"` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// As configured; [`super::HttpOutput`] derives the endpoint (`/_bulk`, `/services/collector/event`).
    pub url: Url,
    pub format: Format,
    /// The most alerts per request; a larger batch from the spool is sent in several requests.
    pub batch_size: usize,
    /// How long the spool may hold a partial batch before handing it over.
    pub flush_interval: Duration,
    pub gzip: bool,
    /// For a whole request, connect to last byte of the answer.
    pub timeout: Duration,
    /// Extra trust anchors (PEM); with none, the system's roots are used.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM chain, leaf first) and its private key (PEM), for servers that ask for
    /// one (mutual TLS); both files are read when the client is built (and by the preflight).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub proxy: ProxySetting,
    /// Extra headers; values are marked sensitive (they may be credentials).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub auth: Auth,
    pub splunk: Option<SplunkConfig>,
    pub elastic: Option<ElasticConfig>,
}

/// What an HTTP output reads from the machine when it is built: its CA bundle, its client identity and its
/// secrets, each secret with the key it was given under (`token_file`, `proxy_password_env`). Known even
/// when the output's table has other errors, so that `check` reports every problem at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpFiles {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub secrets: Vec<(String, SecretSource)>,
}

impl HttpFiles {
    fn new(
        ca_file: Option<PathBuf>,
        client_cert: Option<(PathBuf, PathBuf)>,
        proxy: &ProxySetting,
        auth: &Auth,
    ) -> HttpFiles {
        let mut secrets = Vec::new();
        if let ProxySetting::Via {
            auth: Some((_, password)),
            ..
        } = proxy
        {
            secrets.push((password.key("proxy_password"), password.clone()));
        }
        match auth {
            Auth::None => {}
            Auth::Token(s) => secrets.push((s.key("token"), s.clone())),
            Auth::Basic { password, .. } => {
                secrets.push((password.key("password"), password.clone()))
            }
            Auth::ApiKey(s) => secrets.push((s.key("api_key"), s.clone())),
        }
        HttpFiles {
            ca_file,
            client_cert,
            secrets,
        }
    }

    /// Reads everything the output will read when it is built: each problem with the key at fault
    /// (`ca_file`, `client_key`, `token_file`), with the message the output would give.
    pub fn check(&self) -> Vec<(String, String)> {
        let tls =
            crate::output::tls::check_files(self.ca_file.as_deref(), self.client_cert.as_ref());
        let secrets = self
            .secrets
            .iter()
            .filter_map(|(key, source)| source.read().err().map(|reason| (key.clone(), reason)));
        tls.into_iter()
            .map(|(key, reason)| (key.to_string(), reason))
            .chain(secrets)
            .collect()
    }
}

/// How requests reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySetting {
    /// `proxy` not set: the environment's `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, if any.
    Environment,
    /// `proxy = "none"`: always straight to the server, whatever the environment says.
    Direct,
    /// `proxy = "http://HOST:PORT"`: every request through this proxy (HTTPS tunnelled with `CONNECT`),
    /// with `proxy_username` and `proxy_password` (Basic) if the proxy asks for them.
    Via {
        url: Url,
        auth: Option<(String, SecretSource)>,
    },
}

pub const DEFAULT_BATCH_SIZE: usize = 500;
pub const MAX_BATCH_SIZE: usize = 100_000;
pub const DEFAULT_ELASTIC_INDEX: &str = "logs-longconn.alert-default";
pub const DEFAULT_SOURCETYPE: &str = "longconn:alert";
pub const DEFAULT_SOURCE: &str = "longconn";

/// Keys valid for every format (`type` and `name` belong to the generic output table).
const COMMON_KEYS: &[&str] = &[
    "type",
    "name",
    "url",
    "format",
    "batch_size",
    "flush_interval",
    "gzip",
    "timeout",
    "ca_file",
    "client_cert",
    "client_key",
    "proxy",
    "proxy_username",
    "proxy_password",
    "proxy_password_file",
    "proxy_password_env",
    "headers",
];
const TOKEN_KEYS: &[&str] = &["token", "token_file", "token_env"];
const BASIC_KEYS: &[&str] = &["username", "password", "password_file", "password_env"];
const API_KEY_KEYS: &[&str] = &["api_key", "api_key_file", "api_key_env"];
const SPLUNK_KEYS: &[&str] = &[
    "sourcetype",
    "source",
    "index",
    "host",
    "ack",
    "channel",
    "ack_timeout",
];
const ELASTIC_KEYS: &[&str] = &["index"];

/// Headers longconn sets itself; a `headers` entry may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "connection",
    "x-splunk-request-channel",
];

fn keys_for(format: Format) -> Vec<&'static str> {
    let mut keys: Vec<&str> = COMMON_KEYS.to_vec();
    match format {
        Format::Ndjson => {
            keys.extend(TOKEN_KEYS);
            keys.extend(BASIC_KEYS);
        }
        Format::SplunkHec => {
            keys.extend(TOKEN_KEYS);
            keys.extend(SPLUNK_KEYS);
        }
        Format::Elasticsearch => {
            keys.extend(BASIC_KEYS);
            keys.extend(API_KEY_KEYS);
            keys.extend(ELASTIC_KEYS);
        }
    }
    keys
}

/// Every key an HTTP output takes, in any format.
pub fn all_keys() -> Vec<&'static str> {
    let mut keys: Vec<&str> = Vec::new();
    for (_, f) in FORMATS {
        for k in keys_for(*f) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys
}

/// The shared [`Reader`]'s getters with the HTTP output's conventions: defaults, non-empty strings,
/// secrets given in one of three ways.
trait HttpRead<'t> {
    /// A string that must not be empty or blank.
    fn text(&mut self, name: &str) -> Option<&'t str>;
    fn bool_or(&mut self, name: &str, default: bool) -> bool;
    fn duration_or(&mut self, name: &str, default: Duration) -> Duration;
    /// One secret given in one of three ways (`NAME`, `NAME_file`, `NAME_env`); None if none is given.
    /// Only where it comes from: it is read when the output is built.
    fn secret(&mut self, name: &str) -> Option<SecretSource>;
}

impl<'t> HttpRead<'t> for Reader<'_, 't> {
    fn text(&mut self, name: &str) -> Option<&'t str> {
        let s = self.str(name)?;
        if s.trim().is_empty() {
            self.push(name, "is empty");
            return None;
        }
        Some(s)
    }
    fn bool_or(&mut self, name: &str, default: bool) -> bool {
        self.bool(name).unwrap_or(default)
    }
    fn duration_or(&mut self, name: &str, default: Duration) -> Duration {
        let Some(text) = self.str(name) else {
            return default;
        };
        self.parse(name, parse_duration(text)).unwrap_or(default)
    }
    fn secret(&mut self, name: &str) -> Option<SecretSource> {
        let file_key = format!("{name}_file");
        let env_key = format!("{name}_env");
        let given: Vec<&str> = [name, file_key.as_str(), env_key.as_str()]
            .into_iter()
            .filter(|k| self.has(k))
            .collect();
        if given.len() > 1 {
            let key = given[1].to_string();
            self.push(
                &key,
                format!("give only one of {name}, {file_key}, {env_key}"),
            );
            return None;
        }
        if self.has(name) {
            // The value itself is never echoed in an error.
            return match self.table().get(name) {
                Some(toml::Value::String(s)) if !s.trim().is_empty() => {
                    Some(SecretSource::Inline(Secret::new(s.trim())))
                }
                Some(toml::Value::String(_)) => {
                    self.push(name, "is empty");
                    None
                }
                Some(other) => {
                    let found = other.type_str();
                    self.push(name, format!("expected a string, found {found}"));
                    None
                }
                None => None,
            };
        }
        if let Some(path) = self.text(&file_key) {
            return Some(SecretSource::File(PathBuf::from(path)));
        }
        if let Some(var) = self.text(&env_key) {
            return Some(SecretSource::Env(var.to_string()));
        }
        None
    }
}

impl HttpConfig {
    /// Checks one `[[output]]` table of `type = "http"` on its own; `key` is its prefix (`output[2]`).
    /// Returns every problem at once, with what the output would read from the machine.
    pub fn from_raw(
        table: &toml::Table,
        key: &str,
    ) -> Result<HttpConfig, (Vec<ConfigError>, HttpFiles)> {
        let mut diag = Diagnostics::new();
        let mut r = Reader::new(&mut diag, table, key);
        let out = HttpConfig::from_toml(&mut r, &|_| None);
        drop(r);
        let errors = diag.finish();
        match out {
            Ok(c) if errors.is_empty() => Ok(c),
            Ok(c) => Err((errors, c.files())),
            Err(files) => Err((errors, files)),
        }
    }

    /// Checks one `[[output]]` table of `type = "http"` (`type` and `name` are the caller's), every
    /// problem at once. Err holds what the output would read from the machine (for the preflight).
    /// `elsewhere` says why a key of another output type is refused.
    pub fn from_toml<'t>(
        r: &mut Reader<'_, 't>,
        elsewhere: &dyn Fn(&str) -> Option<String>,
    ) -> Result<HttpConfig, HttpFiles> {
        let errors_before = r.diag().len();
        let table = r.table();

        // A format given but not one we know (or not a string): keys of any format are not reported.
        let mut format_known = !r.has("format");
        let format = match r.str("format") {
            None => Format::Ndjson,
            Some(text) => match FORMATS.iter().find(|(n, _)| *n == text) {
                Some((_, f)) => {
                    format_known = true;
                    *f
                }
                None => {
                    let names: Vec<String> = FORMATS.iter().map(|f| format!("{:?}", f.0)).collect();
                    r.push(
                        "format",
                        format!("{text:?} is not one of {}", names.join(", ")),
                    );
                    Format::Ndjson
                }
            },
        };

        let known = keys_for(format);
        for name in table.keys() {
            if known.contains(&name.as_str()) {
                continue;
            }
            if !format_known {
                // Unknown format: only report keys no format knows.
                let any = FORMATS
                    .iter()
                    .any(|(_, f)| keys_for(*f).contains(&name.as_str()));
                if any {
                    continue;
                }
            }
            let owners: Vec<&str> = FORMATS
                .iter()
                .filter(|(_, f)| keys_for(*f).contains(&name.as_str()))
                .map(|(n, _)| *n)
                .collect();
            let reason = if let Some(reason) = owners.is_empty().then(|| elsewhere(name)).flatten()
            {
                reason
            } else if owners.is_empty() {
                format!("unknown key (expected one of: {})", known.join(", "))
            } else {
                format!(
                    "not a key of format = {:?} (only of {})",
                    format.name(),
                    owners.join(", ")
                )
            };
            r.push(name, reason);
        }

        let url = match r.text("url") {
            None => {
                if !table.contains_key("url") {
                    r.push("url", "missing: the receiver's http:// or https:// URL");
                }
                None
            }
            Some(text) => match parse_url(text) {
                Ok(u) => Some(u),
                Err(reason) => {
                    r.push("url", reason);
                    None
                }
            },
        };

        let batch_size = match table.get("batch_size") {
            None => DEFAULT_BATCH_SIZE,
            Some(toml::Value::Integer(n)) if *n >= 1 && *n <= MAX_BATCH_SIZE as i64 => *n as usize,
            Some(toml::Value::Integer(n)) => {
                r.push(
                    "batch_size",
                    format!("{n} is out of range (1 to {MAX_BATCH_SIZE})"),
                );
                DEFAULT_BATCH_SIZE
            }
            Some(other) => {
                let found = other.type_str();
                r.push("batch_size", format!("expected an integer, found {found}"));
                DEFAULT_BATCH_SIZE
            }
        };
        let flush_interval = r.duration_or("flush_interval", Duration::from_secs(1));
        let gzip = r.bool_or("gzip", false);
        let timeout = r.duration_or("timeout", Duration::from_secs(10));

        let ca_file = r.text("ca_file").map(PathBuf::from);

        let client_cert = read_client_cert(r);
        let proxy = read_proxy(r);

        let headers = read_headers(r);

        let auth = read_auth(r, format);

        let splunk = (format == Format::SplunkHec).then(|| {
            let sourcetype = r.text("sourcetype").unwrap_or(DEFAULT_SOURCETYPE);
            let source = r.text("source").unwrap_or(DEFAULT_SOURCE);
            let index = r.text("index").map(str::to_string);
            let host = r.text("host").map(str::to_string);
            let ack = r.bool_or("ack", false);
            let channel = r.text("channel").map(str::to_string);
            let ack_timeout = r.duration_or("ack_timeout", Duration::from_secs(30));
            if !ack {
                for k in ["channel", "ack_timeout"] {
                    if table.contains_key(k) {
                        r.push(k, "only meaningful with ack = true");
                    }
                }
            }
            SplunkConfig {
                sourcetype: sourcetype.to_string(),
                source: source.to_string(),
                index,
                host,
                ack: ack.then_some(AckConfig {
                    channel,
                    timeout: ack_timeout,
                }),
            }
        });
        let elastic = (format == Format::Elasticsearch).then(|| ElasticConfig {
            index: r.text("index").unwrap_or(DEFAULT_ELASTIC_INDEX).to_string(),
        });
        if let Some(e) = &elastic {
            if let Err(reason) = check_index_name(&e.index) {
                r.push("index", reason);
            }
        }

        match (r.diag().len() == errors_before, url) {
            (true, Some(url)) => Ok(HttpConfig {
                url,
                format,
                batch_size,
                flush_interval,
                gzip,
                timeout,
                ca_file,
                client_cert,
                proxy,
                headers,
                auth,
                splunk,
                elastic,
            }),
            _ => Err(HttpFiles::new(ca_file, client_cert, &proxy, &auth)),
        }
    }
}

impl HttpConfig {
    /// The files and variables the output reads when it is built (for the preflight).
    pub fn files(&self) -> HttpFiles {
        HttpFiles::new(
            self.ca_file.clone(),
            self.client_cert.clone(),
            &self.proxy,
            &self.auth,
        )
    }

    /// The effective settings as an `[[output]]` table (`longconn check`), defaults filled in, `type`
    /// and `name` left to the caller. Secrets appear as the file or variable they came from; inline
    /// secrets and header values as `"***"`.
    pub fn to_effective_toml(&self) -> toml::Table {
        use crate::config::values::format_duration;
        let mut t = toml::Table::new();
        t.insert("url".into(), self.url.as_str().into());
        t.insert("format".into(), self.format.name().into());
        t.insert("batch_size".into(), (self.batch_size as i64).into());
        t.insert(
            "flush_interval".into(),
            format_duration(self.flush_interval).into(),
        );
        t.insert("gzip".into(), self.gzip.into());
        t.insert("timeout".into(), format_duration(self.timeout).into());
        if let Some(p) = &self.ca_file {
            t.insert("ca_file".into(), p.display().to_string().into());
        }
        if let Some((cert, key)) = &self.client_cert {
            t.insert("client_cert".into(), cert.display().to_string().into());
            t.insert("client_key".into(), key.display().to_string().into());
        }
        match &self.proxy {
            ProxySetting::Environment => {}
            ProxySetting::Direct => {
                t.insert("proxy".into(), "none".into());
            }
            ProxySetting::Via { url, auth } => {
                t.insert("proxy".into(), url.as_str().into());
                if let Some((user, password)) = auth {
                    t.insert("proxy_username".into(), user.clone().into());
                    password.to_toml("proxy_password", &mut t);
                }
            }
        }
        if !self.headers.is_empty() {
            let headers: toml::Table = self
                .headers
                .iter()
                .map(|(k, _)| (k.as_str().to_string(), toml::Value::from("***")))
                .collect();
            t.insert("headers".into(), headers.into());
        }
        match &self.auth {
            Auth::None => {}
            Auth::Token(s) => s.to_toml("token", &mut t),
            Auth::Basic { username, password } => {
                t.insert("username".into(), username.clone().into());
                password.to_toml("password", &mut t);
            }
            Auth::ApiKey(s) => s.to_toml("api_key", &mut t),
        }
        if let Some(s) = &self.splunk {
            t.insert("sourcetype".into(), s.sourcetype.clone().into());
            t.insert("source".into(), s.source.clone().into());
            if let Some(i) = &s.index {
                t.insert("index".into(), i.clone().into());
            }
            if let Some(h) = &s.host {
                t.insert("host".into(), h.clone().into());
            }
            t.insert("ack".into(), s.ack.is_some().into());
            if let Some(a) = &s.ack {
                if let Some(c) = &a.channel {
                    t.insert("channel".into(), c.clone().into());
                }
                t.insert("ack_timeout".into(), format_duration(a.timeout).into());
            }
        }
        if let Some(e) = &self.elastic {
            t.insert("index".into(), e.index.clone().into());
        }
        t
    }
}

fn parse_url(text: &str) -> Result<Url, String> {
    let url = parse_http_url(text, "username and password_file")?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?}: a query or fragment is not allowed"));
    }
    Ok(url)
}

/// An `http://` or `https://` URL with a host and no credentials (`instead`: the keys to use for them).
fn parse_http_url(text: &str, instead: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in the URL would end up in logs; refuse them without echoing the URL.
        return Err(format!(
            "credentials in the URL are not allowed; use {instead}"
        ));
    }
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!(
            "{text:?}: the scheme must be http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none() {
        return Err(format!("{text:?} has no host"));
    }
    Ok(url)
}

/// `client_cert` and `client_key`: both or neither; the chain and the key must parse and belong together.
fn read_client_cert(r: &mut Reader<'_, '_>) -> Option<(PathBuf, PathBuf)> {
    let cert = r.text("client_cert");
    let key = r.text("client_key");
    match (cert, key) {
        (None, None) => None,
        (Some(_), None) if !r.has("client_key") => {
            r.push("client_key", "missing: client_cert needs its client_key");
            None
        }
        (None, Some(_)) if !r.has("client_cert") => {
            r.push("client_cert", "missing: client_key needs its client_cert");
            None
        }
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        _ => None, // the other key had a bad value, already reported
    }
}

/// `proxy` (a URL or `"none"`) and its credentials.
fn read_proxy(r: &mut Reader<'_, '_>) -> ProxySetting {
    let auth_keys = [
        "proxy_username",
        "proxy_password",
        "proxy_password_file",
        "proxy_password_env",
    ];
    let auth_given = auth_keys.iter().any(|k| r.has(k));
    let setting = match r.text("proxy") {
        None => ProxySetting::Environment,
        Some(text) if text.trim().eq_ignore_ascii_case("none") => ProxySetting::Direct,
        Some(text) => match parse_proxy_url(text) {
            Ok(url) => ProxySetting::Via { url, auth: None },
            Err(reason) => {
                r.push("proxy", reason);
                return ProxySetting::Environment;
            }
        },
    };
    if !auth_given {
        return setting;
    }
    let ProxySetting::Via { url, .. } = setting else {
        if !r.has("proxy") {
            r.push(
                "proxy",
                "missing: proxy_username and proxy_password need a proxy URL",
            );
        } else {
            r.push("proxy_username", "only meaningful with a proxy URL");
        }
        return ProxySetting::Environment;
    };
    let username = r.text("proxy_username");
    let password = r.secret("proxy_password");
    match (username, password) {
        (Some(u), Some(p)) => ProxySetting::Via {
            url,
            auth: Some((u.to_string(), p)),
        },
        (None, _) if !r.has("proxy_username") => {
            r.push(
                "proxy_username",
                "missing: a proxy password needs a username",
            );
            ProxySetting::Via { url, auth: None }
        }
        (Some(_), None)
            if ![
                "proxy_password",
                "proxy_password_file",
                "proxy_password_env",
            ]
            .iter()
            .any(|k| r.has(k)) =>
        {
            r.push(
                "proxy_password",
                "missing: proxy_username needs proxy_password (or proxy_password_file, proxy_password_env)",
            );
            ProxySetting::Via { url, auth: None }
        }
        _ => ProxySetting::Via { url, auth: None }, // already reported
    }
}

fn parse_proxy_url(text: &str) -> Result<Url, String> {
    parse_http_url(text, "proxy_username and proxy_password_file")
        .map_err(|e| format!("{e}; give http://HOST:PORT or \"none\""))
}

fn read_headers(r: &mut Reader<'_, '_>) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let table = match r.table().get("headers") {
        None => return out,
        Some(toml::Value::Table(t)) => t,
        Some(other) => {
            let found = other.type_str();
            r.push(
                "headers",
                format!("expected a table like {{ X-Name = \"value\" }}, found {found}"),
            );
            return out;
        }
    };
    for (name, value) in table {
        let key = format!("headers.{name}");
        let header = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => h,
            Err(_) => {
                r.push(&key, format!("{name:?} is not a valid header name"));
                continue;
            }
        };
        if RESERVED_HEADERS.contains(&header.as_str()) {
            r.push(&key, "longconn sets this header itself");
            continue;
        }
        let toml::Value::String(text) = value else {
            let found = value.type_str();
            r.push(&key, format!("expected a string, found {found}"));
            continue;
        };
        match HeaderValue::from_str(text) {
            Ok(mut v) => {
                v.set_sensitive(true);
                out.push((header, v));
            }
            // The value may be a credential: not echoed.
            Err(_) => r.push(&key, "not a valid header value (control characters?)"),
        }
    }
    out
}

fn read_auth(r: &mut Reader<'_, '_>, format: Format) -> Auth {
    let table = r.table();
    let has = |keys: &[&str]| keys.iter().any(|k| table.contains_key(*k));
    let header_auth = r
        .table()
        .get("headers")
        .and_then(toml::Value::as_table)
        .is_some_and(|t| t.keys().any(|k| k.eq_ignore_ascii_case("authorization")));
    let token_given = has(TOKEN_KEYS) && format != Format::Elasticsearch;
    let basic_given = has(BASIC_KEYS) && format != Format::SplunkHec;
    let api_given = has(API_KEY_KEYS) && format == Format::Elasticsearch;
    let given = [token_given, basic_given, api_given]
        .iter()
        .filter(|b| **b)
        .count();
    if given > 1 {
        r.push(
            "",
            "give one way to authenticate: token, username + password, or api_key",
        );
        return Auth::None;
    }
    if given == 1 && header_auth {
        r.push(
            "headers.Authorization",
            "conflicts with the configured credentials",
        );
    }
    if token_given {
        return r.secret("token").map(Auth::Token).unwrap_or(Auth::None);
    }
    if basic_given {
        let username = r.text("username");
        let password = r.secret("password");
        return match (username, password) {
            (Some(u), Some(p)) => Auth::Basic {
                username: u.to_string(),
                password: p,
            },
            (None, _) if !r.has("username") => {
                r.push("username", "missing: a password needs a username");
                Auth::None
            }
            (Some(_), None) if !has(&BASIC_KEYS[1..]) => {
                r.push(
                    "password_file",
                    "missing: username needs password_file, password_env or password",
                );
                Auth::None
            }
            _ => Auth::None,
        };
    }
    if api_given {
        return r.secret("api_key").map(Auth::ApiKey).unwrap_or(Auth::None);
    }
    if format == Format::SplunkHec {
        r.push(
            "token_file",
            "missing: Splunk HEC needs token_file, token_env or token",
        );
    }
    Auth::None
}

/// Elasticsearch index and data stream names: lower case, no spaces or `\/*?"<>|,#:`, not `.`/`..`,
/// not starting with `-_+`.
fn check_index_name(name: &str) -> Result<(), String> {
    let bad = name
        .chars()
        .any(|c| c.is_uppercase() || c.is_whitespace() || "\\/*?\"<>|,#:".contains(c));
    if bad || name == "." || name == ".." || name.starts_with(['-', '_', '+']) {
        return Err(format!(
            "{name:?} is not a valid index name (lower case, no spaces or \\/*?\"<>|,#:)"
        ));
    }
    Ok(())
}

/// A fresh HEC channel id: a random UUID (version 4), the shape Splunk requires (8-4-4-4-12 hex digits).
pub fn new_channel() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

#[cfg(test)]
mod tests;
