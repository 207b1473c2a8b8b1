//! HTTP outputs: alerts POSTed to a SIEM in the format it ingests natively, behind the [`Deliver`] contract.
//!
//! One [`HttpOutput`] speaks one [`Format`]: `ndjson` (alert lines to a generic webhook), `splunk_hec`
//! (HEC event envelopes, optional indexer acknowledgement, in [`splunk`]) or `elasticsearch` (`_bulk`
//! `create` actions with `_id` = `event.id`, per-item results, in [`elastic`]). A batch from the spool is cut
//! into requests of at most `batch_size` alerts and sent in order; `Ok` means the receiver accepted every
//! alert. The spool owns retries of whole batches (with backoff); the only retry in here is Elasticsearch's
//! per-item 429/5xx, which resends just the rejected items a few times before giving up as `Transient`.
//!
//! Status mapping, the same for every format: connection errors, timeouts, 408, 429 and 5xx are
//! [`DeliverError::Transient`]; any other answer outside 2xx (400, 401, 403, 404, 413, a redirect, which is
//! not followed) and a certificate the CA does not vouch for are [`DeliverError::Permanent`]. Errors carry
//! the status and the first bytes of the receiver's answer, never a credential (URLs with credentials are
//! refused by the config).

pub mod config;
pub mod elastic;
pub mod splunk;

pub use config::{
    new_channel, AckConfig, Auth, ElasticConfig, Format, HttpConfig, HttpFiles, ProxySetting,
    Secret, SecretSource, SplunkConfig, DEFAULT_BATCH_SIZE, DEFAULT_ELASTIC_INDEX, DEFAULT_SOURCE,
    DEFAULT_SOURCETYPE,
};

use super::{Deliver, DeliverError, DeliverFuture};
use crate::spool::Spooled;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// How much of an error answer goes into the error message.
const ERROR_BODY_CHARS: usize = 300;

/// An HTTP output; see the module documentation.
pub struct HttpOutput {
    name: String,
    client: reqwest::Client,
    /// Where batches go: the configured URL, or its `/_bulk` / `/services/collector/event`.
    endpoint: Url,
    format: Format,
    batch_size: usize,
    gzip: bool,
    /// Authorization and custom headers, sent with every request.
    headers: HeaderMap,
    splunk: Option<splunk::Hec>,
    elastic: Option<elastic::Bulk>,
}

impl std::fmt::Debug for HttpOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOutput")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.as_str())
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl HttpOutput {
    /// Builds the client (TLS roots: `ca_file` if given, else the system's) and reads the secrets. Fails on
    /// a file or variable it cannot read, or a TLS setup problem.
    pub fn new(name: String, cfg: &HttpConfig) -> Result<HttpOutput, String> {
        let client = build_client(cfg)?;
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            headers.append(k.clone(), v.clone());
        }
        if let Some(value) = auth_header(&cfg.auth, cfg.format)? {
            headers.insert(AUTHORIZATION, value);
        }
        let (endpoint, splunk, elastic) = match cfg.format {
            Format::Ndjson => (cfg.url.clone(), None, None),
            Format::SplunkHec => {
                let s = cfg
                    .splunk
                    .as_ref()
                    .ok_or("splunk_hec output without its settings")?;
                let hec = splunk::Hec::new(&cfg.url, s)?;
                (hec.event_url.clone(), Some(hec), None)
            }
            Format::Elasticsearch => {
                let e = cfg
                    .elastic
                    .as_ref()
                    .ok_or("elasticsearch output without its settings")?;
                let bulk = elastic::Bulk::new(&cfg.url, e)?;
                (bulk.bulk_url.clone(), None, Some(bulk))
            }
        };
        tracing::info!(output = %name, format = cfg.format.name(), endpoint = %endpoint,
            batch_size = cfg.batch_size, gzip = cfg.gzip, "http output ready");
        Ok(HttpOutput {
            name,
            client,
            endpoint,
            format: cfg.format,
            batch_size: cfg.batch_size,
            gzip: cfg.gzip,
            headers,
            splunk,
            elastic,
        })
    }

    /// The URL batches are POSTed to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    async fn deliver_all(&mut self, batch: &[Spooled]) -> Result<(), DeliverError> {
        for chunk in batch.chunks(self.batch_size.max(1)) {
            let result = match self.format {
                Format::Ndjson => self.deliver_ndjson(chunk).await,
                Format::SplunkHec => splunk::deliver(self, chunk).await,
                Format::Elasticsearch => elastic::deliver(self, chunk).await,
            };
            if let Err(e) = &result {
                match e {
                    DeliverError::Transient(reason) => {
                        // The delivery loop logs the failure (rate-limited); this adds the request's detail.
                        tracing::debug!(output = %self.name, alerts = chunk.len(),
                            first_seq = chunk[0].seq, %reason, "http delivery failed, will retry")
                    }
                    DeliverError::Permanent(reason) => {
                        tracing::error!(output = %self.name, alerts = chunk.len(),
                            first_seq = chunk[0].seq, %reason, "http delivery rejected")
                    }
                }
            }
            result?;
        }
        tracing::debug!(output = %self.name, alerts = batch.len(), "http batch delivered");
        Ok(())
    }

    async fn deliver_ndjson(&self, chunk: &[Spooled]) -> Result<(), DeliverError> {
        let mut body = Vec::with_capacity(chunk.iter().map(|s| s.json.len() + 1).sum());
        for s in chunk {
            body.extend_from_slice(s.json.as_bytes());
            body.push(b'\n');
        }
        let answer = self
            .post(&self.endpoint, body, "application/x-ndjson", None)
            .await?;
        answer.ok()
    }

    /// POSTs `body` (gzipped if configured) with the output's headers plus `extra`.
    pub(crate) async fn post(
        &self,
        url: &Url,
        body: Vec<u8>,
        content_type: &'static str,
        extra: Option<(&'static str, &HeaderValue)>,
    ) -> Result<Answer, DeliverError> {
        let mut request = self
            .client
            .post(url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, content_type);
        if let Some((name, value)) = extra {
            request = request.header(name, value.clone());
        }
        let body = if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
            gzip(&body).map_err(|e| DeliverError::Permanent(format!("gzip: {e}")))?
        } else {
            body
        };
        let response = request.body(body).send().await.map_err(request_error)?;
        let status = response.status();
        let body = response.bytes().await.map_err(request_error)?;
        Ok(Answer {
            status,
            body: body.to_vec(),
        })
    }
}

impl Deliver for HttpOutput {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a mut self, batch: &'a [Spooled]) -> DeliverFuture<'a> {
        Box::pin(self.deliver_all(batch))
    }
}

/// A receiver's answer.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Answer {
    /// Ok for 2xx; otherwise the error the status maps to.
    pub fn ok(&self) -> Result<(), DeliverError> {
        classify(self.status, &self.body)
    }
}

/// The status mapping of the module documentation.
pub fn classify(status: StatusCode, body: &[u8]) -> Result<(), DeliverError> {
    if status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(ERROR_BODY_CHARS).collect();
    let reason = format!("HTTP {status}: {}", text.trim());
    let code = status.as_u16();
    if code == 408 || code == 429 || status.is_server_error() {
        Err(DeliverError::Transient(reason))
    } else {
        Err(DeliverError::Permanent(reason))
    }
}

/// Connection-level failures are transient, except a certificate the trust anchors refuse and a request
/// that cannot be built.
fn request_error(e: reqwest::Error) -> DeliverError {
    let reason = error_chain(&e);
    if e.is_builder() || is_certificate_error(&e) {
        DeliverError::Permanent(reason)
    } else {
        DeliverError::Transient(reason)
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    // The URL in reqwest's message is safe: the config refuses credentials in URLs.
    text
}

fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if matches!(
            s.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        ) {
            return true;
        }
        // `io::Error::source` skips the error it wraps (rustls' lives there), so descend by hand.
        source = match s.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => s.source(),
        };
    }
    false
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

/// A secret read for use, its error naming the key it was given under (`token_file: cannot read ...`).
fn read_secret(source: &SecretSource, name: &str) -> Result<Secret, String> {
    source
        .read()
        .map_err(|reason| format!("{}: {reason}", source.key(name)))
}

fn auth_header(auth: &Auth, format: Format) -> Result<Option<HeaderValue>, String> {
    use base64_lite::encode;
    let text = match auth {
        Auth::None => return Ok(None),
        Auth::Token(t) if format == Format::SplunkHec => {
            format!("Splunk {}", read_secret(t, "token")?.expose())
        }
        Auth::Token(t) => format!("Bearer {}", read_secret(t, "token")?.expose()),
        Auth::Basic { username, password } => format!(
            "Basic {}",
            encode(
                format!("{username}:{}", read_secret(password, "password")?.expose()).as_bytes()
            )
        ),
        Auth::ApiKey(k) => format!("ApiKey {}", read_secret(k, "api_key")?.expose()),
    };
    let mut value = HeaderValue::from_str(&text)
        .map_err(|_| "the credential holds characters not allowed in a header".to_string())?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// Standard base64 with padding, for basic auth (the one place we need it).
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

fn build_client(cfg: &HttpConfig) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca_file) = &cfg.ca_file {
        let certs = crate::output::tls::read_certs(ca_file).map_err(|e| format!("ca_file: {e}"))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("ca_file: unusable certificate: {e}"))?;
        }
    } else {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // A system bundle may hold a certificate rustls cannot use; skip it rather than fail.
            let _ = roots.add(cert);
        }
        if roots.is_empty() && cfg.url.scheme() == "https" {
            return Err("no system CA certificates found; set ca_file".to_string());
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    let tls = match &cfg.client_cert {
        None => tls.with_no_client_auth(),
        Some((cert, key)) => {
            let (chain, key) = crate::output::tls::client_identity(cert, key)?;
            tls.with_client_auth_cert(chain, key)
                .map_err(|e| format!("client_cert: {e}"))?
        }
    };
    let mut builder = reqwest::Client::builder();
    match &cfg.proxy {
        config::ProxySetting::Environment => {}
        config::ProxySetting::Direct => builder = builder.no_proxy(),
        config::ProxySetting::Via { url, auth } => {
            let mut proxy = reqwest::Proxy::all(url.as_str())
                .map_err(|e| format!("proxy: {}", error_chain(&e)))?;
            if let Some((user, password)) = auth {
                proxy = proxy.basic_auth(user, read_secret(password, "proxy_password")?.expose());
            }
            builder = builder.proxy(proxy);
        }
    }
    builder
        .tls_backend_preconfigured(tls)
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(4)
        .user_agent(concat!("longconn/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("HTTP client: {}", error_chain(&e)))
}

/// A jittered exponential backoff step: `base * 2^attempt`, plus up to 50% random, capped at `cap`.
pub(crate) fn backoff(base: Duration, attempt: u32, cap: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let jitter = h.finish() % 1000;
    exp + exp.mul_f64(jitter as f64 / 2000.0)
}

#[cfg(test)]
mod tests {
    //! Status mapping, base64 and backoff bounds; the wire behaviour is tested against a local receiver in
    //! `tests/http_outputs.rs`.
    use super::*;

    #[test]
    fn status_mapping() {
        for code in [200u16, 201, 204] {
            assert!(classify(StatusCode::from_u16(code).unwrap(), b"").is_ok());
        }
        for code in [408u16, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(StatusCode::from_u16(code).unwrap(), b"busy"), Err(DeliverError::Transient(r)) if r.contains("busy")),
                "{code}"
            );
        }
        for code in [301u16, 400, 401, 403, 404, 413] {
            assert!(
                matches!(
                    classify(StatusCode::from_u16(code).unwrap(), b""),
                    Err(DeliverError::Permanent(_))
                ),
                "{code}"
            );
        }
    }

    #[test]
    fn base64() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("elastic:changeme", "ZWxhc3RpYzpjaGFuZ2VtZQ=="),
        ] {
            assert_eq!(base64_lite::encode(input.as_bytes()), want);
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        for attempt in 0..20 {
            let d = backoff(base, attempt, cap);
            let exp = base.saturating_mul(1 << attempt.min(16)).min(cap);
            assert!(d >= exp && d <= exp.mul_f64(1.5), "{attempt}: {d:?}");
        }
    }
}
