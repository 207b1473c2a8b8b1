//! The syslog output: every alert as one RFC 5424 message,
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID ALERT - MSG`, MSG being the alert JSON, over UDP, TCP, TLS
//! (rustls) or a unix datagram socket. TCP and TLS use RFC 6587 octet counting (`LEN SP MSG`) by default, or
//! newline framing.
//!
//! - TIMESTAMP is the alert's `@timestamp` (event time, RFC 3339 with microseconds), so a message sent again
//!   after a failure is byte for byte the same one; HOSTNAME is this machine's host name; PROCID is the pid.
//! - PRI = facility * 8 + severity, with the severity from the alert level: low -> warning (4), medium ->
//!   warning (4) (notice would rank a medium alert below a low one's usual handling), high -> error (3),
//!   critical -> critical (2).
//! - Connections are made on demand and dropped on any error; the delivery task retries the batch with
//!   backoff, which is the reconnect backoff. Before writing on an existing TCP/TLS connection the socket is
//!   peeked: a peer that closed it (a restarted rsyslog) is noticed before a batch is written into the void.
//!   Plain syslog has no application-level acknowledgement: what sits in socket buffers when a receiver
//!   crashes can be lost (use RELP or an HTTP output where that matters). UDP is fire and forget.
//! - TLS: the server certificate must chain to `ca_file`; its name is checked against `server_name` unless
//!   `verify_server_name = false`; an optional client certificate gives mutual TLS. Handshake failures are
//!   logged as errors and retried (a fixed certificate starts delivery again; nothing is skipped). With TLS 1.3
//!   a server refuses a client certificate only after the client's handshake is done, so a new connection
//!   is watched for 250 ms for such a refusal before anything is written on it.

pub mod config;

use super::{Deliver, DeliverError, DeliverFuture};
use crate::spool::Spooled;
use config::{Framing, SyslogConfig, SyslogTransport, TlsConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket, UnixDatagram};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new TLS connection is watched for a refusal of our client certificate (TLS 1.3).
const TLS_SETTLE: Duration = Duration::from_millis(250);

/// The syslog severity for an alert's `event.severity` (1 low .. 4 critical).
pub fn syslog_severity(event_severity: u8) -> u8 {
    match event_severity {
        0..=2 => 4,
        3 => 3,
        _ => 2,
    }
}

/// One RFC 5424 message (without framing).
pub fn format_message(out: &mut Vec<u8>, facility: u8, header_rest: &str, alert: &Spooled) {
    let pri = u16::from(facility) * 8 + u16::from(syslog_severity(alert.severity));
    out.extend_from_slice(format!("<{pri}>1 {}", alert.timestamp).as_bytes());
    out.extend_from_slice(header_rest.as_bytes());
    out.extend_from_slice(alert.json.as_bytes());
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixDatagram),
}

pub struct SyslogOutput {
    name: String,
    cfg: SyslogConfig,
    /// ` HOSTNAME APP-NAME PROCID ALERT - `.
    header_rest: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    conn: Option<Conn>,
}

/// RFC 5424 header fields are printable ASCII without spaces; anything else becomes `_`.
fn header_field(text: &str, max: usize) -> String {
    let s: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if s.is_empty() {
        "-".to_string()
    } else {
        s
    }
}

impl SyslogOutput {
    pub fn new(name: String, cfg: &SyslogConfig) -> Result<SyslogOutput, String> {
        let tls = match &cfg.transport {
            SyslogTransport::Tls { tls, .. } => Some(tls_connector(tls)?),
            _ => None,
        };
        let header_rest = format!(
            " {} {} {} ALERT - ",
            header_field(&crate::config::host_name(), 255),
            header_field(&cfg.app_name, 48),
            std::process::id()
        );
        Ok(SyslogOutput {
            name,
            cfg: cfg.clone(),
            header_rest,
            tls,
            conn: None,
        })
    }

    async fn connect(&self) -> Result<Conn, DeliverError> {
        let transient = |what: &str, e: io::Error| DeliverError::Transient(format!("{what}: {e}"));
        let timed = |fut| async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
            }
        };
        match &self.cfg.transport {
            SyslogTransport::Udp { address } => {
                let target = tokio::net::lookup_host(address)
                    .await
                    .map_err(|e| transient(address, e))?
                    .next()
                    .ok_or_else(|| DeliverError::Transient(format!("{address}: no address")))?;
                let bind = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let sock = UdpSocket::bind(bind)
                    .await
                    .map_err(|e| transient("udp bind", e))?;
                sock.connect(target)
                    .await
                    .map_err(|e| transient(address, e))?;
                Ok(Conn::Udp(sock))
            }
            SyslogTransport::Tcp { address } => {
                let s = timed(TcpStream::connect(address.as_str()))
                    .await
                    .map_err(|e| transient(address, e))?;
                let _ = s.set_nodelay(true);
                Ok(Conn::Tcp(s))
            }
            SyslogTransport::Tls { address, .. } => {
                let s = timed(TcpStream::connect(address.as_str()))
                    .await
                    .map_err(|e| transient(address, e))?;
                let _ = s.set_nodelay(true);
                let Some((connector, server_name)) = &self.tls else {
                    return Err(DeliverError::Permanent("TLS not configured".into()));
                };
                let tls = match tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    connector.connect(server_name.clone(), s),
                )
                .await
                {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::error!(output = %self.name, address = %address, "TLS handshake failed (check ca_file, server_name, client certificate): {e}");
                        return Err(transient("TLS handshake", e));
                    }
                    Err(_) => {
                        return Err(DeliverError::Transient(format!(
                            "{address}: TLS handshake timed out"
                        )))
                    }
                };
                // TLS 1.3: the server judges our client certificate after the client-side handshake is done
                // and answers a refusal with an alert. Wait a moment for one, so a refused client does not
                // write alerts into a connection the server is about to drop.
                let mut tls = tls;
                let mut buf = [0u8; 256];
                match tokio::time::timeout(TLS_SETTLE, tls.read(&mut buf)).await {
                    Err(_) | Ok(Ok(1..)) => {}
                    Ok(Ok(0)) => {
                        return Err(DeliverError::Transient(format!(
                            "{address}: TLS server closed the connection after the handshake"
                        )))
                    }
                    Ok(Err(e)) => {
                        tracing::error!(output = %self.name, address = %address, "TLS server refused us (check client_cert and client_key): {e}");
                        return Err(transient("TLS", e));
                    }
                }
                Ok(Conn::Tls(Box::new(tls)))
            }
            SyslogTransport::Unix { path } => {
                let sock = UnixDatagram::unbound().map_err(|e| transient("unix socket", e))?;
                sock.connect(path)
                    .map_err(|e| transient(&path.display().to_string(), e))?;
                Ok(Conn::Unix(sock))
            }
        }
    }

    async fn send(&mut self, batch: &[Spooled]) -> Result<(), DeliverError> {
        // A stream whose peer closed it is replaced before anything is written on it.
        let stale = match &mut self.conn {
            Some(Conn::Tcp(s)) => peer_closed(s.as_fd()),
            Some(Conn::Tls(s)) => {
                // One poll of a read: an alert or EOF is there now, or the server is quietly listening.
                let mut buf = [0u8; 256];
                matches!(
                    tokio::time::timeout(Duration::ZERO, s.read(&mut buf)).await,
                    Ok(Ok(0) | Err(_))
                )
            }
            _ => false,
        };
        if stale {
            tracing::info!(output = %self.name, "syslog server closed the connection: reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            let c = self.connect().await?;
            tracing::info!(output = %self.name, "syslog connected");
            self.conn = Some(c);
        }
        let facility = self.cfg.facility;
        let framing = self.cfg.framing;
        let header_rest = &self.header_rest;
        let Some(conn) = self.conn.as_mut() else {
            return Err(DeliverError::Transient("not connected".into()));
        };
        let fail = |e: io::Error| DeliverError::Transient(format!("syslog send: {e}"));
        match conn {
            Conn::Udp(_) | Conn::Unix(_) => {
                let mut msg = Vec::with_capacity(4096);
                for a in batch {
                    msg.clear();
                    format_message(&mut msg, facility, header_rest, a);
                    let r = match conn {
                        Conn::Udp(s) => s.send(&msg).await,
                        Conn::Unix(s) => s.send(&msg).await,
                        _ => Ok(0),
                    };
                    r.map_err(fail)?;
                }
                Ok(())
            }
            Conn::Tcp(_) | Conn::Tls(_) => {
                let mut buf = Vec::with_capacity(batch.iter().map(|a| a.json.len() + 128).sum());
                let mut msg = Vec::with_capacity(4096);
                for a in batch {
                    msg.clear();
                    format_message(&mut msg, facility, header_rest, a);
                    match framing {
                        Framing::OctetCounting => {
                            buf.extend_from_slice(format!("{} ", msg.len()).as_bytes());
                            buf.extend_from_slice(&msg);
                        }
                        Framing::Newline => {
                            buf.extend_from_slice(&msg);
                            buf.push(b'\n');
                        }
                    }
                }
                let write = async {
                    match conn {
                        Conn::Tcp(s) => {
                            s.write_all(&buf).await?;
                            s.flush().await
                        }
                        Conn::Tls(s) => {
                            s.write_all(&buf).await?;
                            s.flush().await
                        }
                        _ => Ok(()),
                    }
                };
                match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                    Ok(r) => r.map_err(fail),
                    Err(_) => Err(DeliverError::Transient("syslog write timed out".into())),
                }
            }
        }
    }
}

/// Whether the peer closed (or reset) a plain TCP stream: a non-blocking peek that finds EOF, data (a syslog
/// server has nothing to say) or an error other than "would block".
fn peer_closed(fd: BorrowedFd<'_>) -> bool {
    use rustix::net::{recv, RecvFlags};
    let mut b = [0u8; 1];
    match recv(fd, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok(_) => true,
        Err(e) => !matches!(
            io::Error::from(e).kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    }
}

impl Deliver for SyslogOutput {
    fn name(&self) -> &str {
        &self.name
    }
    fn deliver<'a>(&'a mut self, batch: &'a [Spooled]) -> DeliverFuture<'a> {
        Box::pin(async move {
            let r = self.send(batch).await;
            if r.is_err() {
                self.conn = None;
            }
            r
        })
    }
}

/// The TLS client for a config: CA roots from `ca_file`, optional client certificate, the server name.
fn tls_connector(cfg: &TlsConfig) -> Result<(TlsConnector, ServerName<'static>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in crate::output::tls::read_certs(&cfg.ca_file)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", cfg.ca_file.display()))?;
    }
    let roots = Arc::new(roots);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if cfg.verify_server_name {
        builder.with_root_certificates(roots)
    } else {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| e.to_string())?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
    };
    let config = match &cfg.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let (chain, key) = crate::output::tls::client_identity(cert_path, key_path)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
    };
    let server_name = ServerName::try_from(cfg.server_name.clone())
        .map_err(|e| format!("server_name {:?}: {e}", cfg.server_name))?;
    Ok((TlsConnector::from(Arc::new(config)), server_name))
}

/// `verify_server_name = false`: the chain must still lead to the CA; only the name check is waived.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_layout_and_severity() {
        let a = Spooled {
            seq: 0,
            event_id: "x".into(),
            timestamp: "2024-01-01T00:00:00.000001Z".into(),
            severity: 3,
            json: Arc::from("{\"a\":1}"),
        };
        let mut out = Vec::new();
        format_message(&mut out, 16, " host longconn 42 ALERT - ", &a);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<131>1 2024-01-01T00:00:00.000001Z host longconn 42 ALERT - {\"a\":1}"
        );
        assert_eq!(
            [1, 2, 3, 4].map(syslog_severity),
            [4, 4, 3, 2],
            "low, medium -> warning; high -> error; critical -> critical"
        );
        assert_eq!(header_field("a b", 10), "a_b");
    }

    fn spooled(seq: u64) -> Spooled {
        Spooled {
            seq,
            event_id: format!("e{seq}"),
            timestamp: "2024-01-01T00:00:00.000000Z".into(),
            severity: 4,
            json: Arc::from(format!("{{\"n\":{seq}}}")),
        }
    }

    fn config(transport: SyslogTransport, framing: Framing) -> SyslogConfig {
        SyslogConfig {
            transport,
            facility: 1,
            framing,
            app_name: "longconn".into(),
        }
    }

    #[tokio::test]
    async fn unix_datagram_and_newline_framing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let mut out = SyslogOutput::new(
            "u".into(),
            &config(SyslogTransport::Unix { path }, Framing::OctetCounting),
        )
        .unwrap();
        out.deliver(&[spooled(1), spooled(2)]).await.unwrap();
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            msg.starts_with("<10>1 2024-01-01T00:00:00.000000Z "),
            "{msg}"
        );
        assert!(msg.ends_with(" ALERT - {\"n\":1}"), "{msg}");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let mut out = SyslogOutput::new(
            "t".into(),
            &config(SyslogTransport::Tcp { address }, Framing::Newline),
        )
        .unwrap();
        let accept = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            String::from_utf8(got).unwrap()
        });
        out.deliver(&[spooled(1), spooled(2)]).await.unwrap();
        drop(out);
        let got = accept.await.unwrap();
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.len(), 2, "{got}");
        assert!(lines[1].ends_with("{\"n\":2}"));
    }

    #[tokio::test]
    async fn refused_connection_is_transient() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut out = SyslogOutput::new(
            "t".into(),
            &config(
                SyslogTransport::Tcp {
                    address: format!("127.0.0.1:{port}"),
                },
                Framing::OctetCounting,
            ),
        )
        .unwrap();
        assert!(matches!(
            out.deliver(&[spooled(1)]).await,
            Err(DeliverError::Transient(_))
        ));
    }

    /// CA, a server certificate for "localhost" and a client certificate, as PEM files in `dir`.
    fn pki(dir: &std::path::Path) -> (rustls::ServerConfig, TlsConfig) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let srv_key = KeyPair::generate().unwrap();
        let srv = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&srv_key, &ca, &ca_key)
            .unwrap();
        let cli_key = KeyPair::generate().unwrap();
        let cli = CertificateParams::new(vec!["client".to_string()])
            .unwrap()
            .signed_by(&cli_key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("client.pem"), cli.pem()).unwrap();
        std::fs::write(dir.join("client.key"), cli_key.serialize_pem()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(
                vec![srv.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(srv_key.serialize_der()).unwrap(),
            )
            .unwrap();
        let tls = TlsConfig {
            ca_file: dir.join("ca.pem"),
            client_cert: Some((dir.join("client.pem"), dir.join("client.key"))),
            server_name: "localhost".into(),
            verify_server_name: true,
        };
        (server, tls)
    }

    /// Mutual TLS against an in-process rustls server: delivered with the right name, refused with a wrong
    /// one, accepted with a wrong one when `verify_server_name = false`, refused without a client certificate.
    #[tokio::test]
    async fn tls_mutual_and_server_name_check() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let (server, tls) = pki(dir.path());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(mut t) = acceptor.accept(s).await {
                        let mut buf = vec![0u8; 4096];
                        if let Ok(n) = t.read(&mut buf).await {
                            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                        }
                    }
                });
            }
        });
        let with = |tls: TlsConfig| {
            SyslogOutput::new(
                "tls".into(),
                &config(
                    SyslogTransport::Tls {
                        address: address.clone(),
                        tls,
                    },
                    Framing::OctetCounting,
                ),
            )
            .unwrap()
        };
        let mut ok = with(tls.clone());
        ok.deliver(&[spooled(7)]).await.unwrap();
        let got = rx.recv().await.unwrap();
        assert!(got.ends_with(" ALERT - {\"n\":7}"), "{got}");
        assert!(
            got.split_once(' ').unwrap().0.parse::<usize>().is_ok(),
            "octet count: {got}"
        );

        let wrong_name = TlsConfig {
            server_name: "siem.example.org".into(),
            ..tls.clone()
        };
        let r = with(wrong_name.clone()).deliver(&[spooled(8)]).await;
        assert!(matches!(r, Err(DeliverError::Transient(_))), "{r:?}");

        let mut lax = with(TlsConfig {
            verify_server_name: false,
            ..wrong_name
        });
        lax.deliver(&[spooled(9)]).await.unwrap();
        assert!(rx.recv().await.unwrap().ends_with("{\"n\":9}"));

        // Without a client certificate the server refuses the handshake; the write (or the next one) fails.
        let mut anon = with(TlsConfig {
            client_cert: None,
            ..tls
        });
        let mut failed = false;
        for i in 0..3 {
            if anon.deliver(&[spooled(10 + i)]).await.is_err() {
                failed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(failed, "a server requiring client certificates refused us");
    }
}
