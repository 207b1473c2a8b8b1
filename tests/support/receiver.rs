//! A local HTTP/1.1 receiver that plays the SIEM side of the HTTP outputs, faithfully enough to test them:
//! Splunk HEC (token check with HEC's JSON error bodies, envelope parsing, `ackId`s and the ack endpoint,
//! acks that turn true only after a delay), Elasticsearch `_bulk` (action + document pairs, documents stored
//! by `_id`, 409 for a duplicate `create`, 429 for chosen items the first time, 503 for a whole request)
//! and a plain NDJSON webhook. Gzip bodies are decoded; every request is recorded.
//!
//! Shared by `tests/http_outputs.rs` and `benches/http.rs` (`#[path]`), so some items go unused in one.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Which receiver to play.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Accepts alert lines at any path.
    Ndjson,
    /// Splunk HEC: expects `Authorization: Splunk TOKEN`; with `ack_delay`, indexer acknowledgement is on
    /// (a channel is required and acks turn true that long after the event request).
    Hec {
        token: String,
        ack_delay: Option<Duration>,
    },
    /// Elasticsearch: `auth` is the expected `Authorization` header, if any.
    Elastic { auth: Option<String> },
    /// Reads requests and never answers.
    Hang,
}

/// One request as received (body decoded from gzip if it was).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub gzipped: bool,
}

#[derive(Debug, Default)]
pub struct State {
    pub requests: Vec<Request>,
    /// Whole-request answers to give before normal handling: (status, body).
    pub fail_next: VecDeque<(u16, String)>,
    pub ndjson_lines: Vec<String>,
    /// HEC envelopes in arrival order.
    pub hec_events: Vec<serde_json::Value>,
    next_ack: u64,
    /// ackId -> when it turns true.
    acks: HashMap<u64, Instant>,
    /// ackIds the ack endpoint was asked about.
    pub ack_polls: usize,
    /// Elasticsearch documents by `_id`: (index, document).
    pub docs: HashMap<String, (String, serde_json::Value)>,
    pub created: usize,
    pub conflicts: usize,
    /// `_id`s answered with 429 the first time they come.
    pub reject_once: HashSet<String>,
    /// `_id`s answered with 429 every time.
    pub reject_always: HashSet<String>,
    /// `_id`s always refused with a 400 mapping error.
    pub refuse: HashSet<String>,
    pub rejected: usize,
    /// Benchmarks: documents, HEC envelopes and NDJSON lines are not parsed into values (stored as null).
    pub light: bool,
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start(mode: Mode) -> Receiver {
        Receiver::start_inner(mode, None).await
    }

    /// The same over TLS, with the given server certificate.
    pub async fn start_tls(mode: Mode, tls: Arc<rustls::ServerConfig>) -> Receiver {
        Receiver::start_inner(mode, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_inner(mode: Mode, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        Receiver::start_at("127.0.0.1:0".parse().expect("addr"), mode, tls).await
    }

    /// A plain receiver on a given address (to come back on the port of one that was dropped).
    pub async fn restart_on(addr: SocketAddr, mode: Mode) -> Receiver {
        Receiver::start_at(addr, mode, None).await
    }

    async fn start_at(
        addr: SocketAddr,
        mode: Mode,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Receiver {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            // Connections live in the set, so dropping the receiver (aborting this task) closes them too,
            // like a receiver that goes down.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                while connections.try_join_next().is_some() {}
                let state = shared.clone();
                let mode = mode.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    let _ = match tls {
                        None => serve(stream, mode, state).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => serve(stream, mode, state).await,
                            Err(_) => Ok(()),
                        },
                    };
                });
            }
        });
        Receiver { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `https://HOST:PORT{path}`, for a receiver started with [`Receiver::start_tls`].
    pub fn https_url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.addr.port())
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("receiver state")
    }
}

async fn serve<S>(stream: S, mode: Mode, state: Arc<Mutex<State>>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if read.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let Some(len) = headers
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        else {
            respond(&mut write, 411, "{\"error\":\"length required\"}").await?;
            return Ok(());
        };
        let mut body = vec![0; len];
        read.read_exact(&mut body).await?;
        let gzipped = headers.get("content-encoding").map(String::as_str) == Some("gzip");
        if gzipped {
            let mut decoded = Vec::new();
            if flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut decoded)
                .is_err()
            {
                respond(&mut write, 400, "{\"error\":\"bad gzip\"}").await?;
                continue;
            }
            body = decoded;
        }
        if matches!(mode, Mode::Hang) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(());
        }
        let request = Request {
            method,
            path,
            headers,
            body,
            gzipped,
        };
        let (status, answer) = {
            let mut st = state.lock().expect("receiver state");
            let answer = match st.fail_next.pop_front() {
                Some(a) => a,
                None => handle(&mode, &request, &mut st),
            };
            st.requests.push(request);
            answer
        };
        respond(&mut write, status, &answer).await?;
    }
}

async fn respond(
    write: &mut (impl AsyncWrite + Unpin),
    status: u16,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        reason(status),
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    write.write_all(&out).await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn handle(mode: &Mode, req: &Request, st: &mut State) -> (u16, String) {
    if req.method != "POST" {
        return (405, "{\"error\":\"POST only\"}".into());
    }
    match mode {
        Mode::Ndjson | Mode::Hang => {
            let Ok(text) = std::str::from_utf8(&req.body) else {
                return (400, "{\"error\":\"not UTF-8\"}".into());
            };
            for line in text.lines() {
                if st.light {
                    continue;
                }
                if serde_json::from_str::<serde_json::Value>(line).is_err() {
                    return (400, "{\"error\":\"a line is not JSON\"}".into());
                }
            }
            st.ndjson_lines.extend(text.lines().map(str::to_string));
            (200, "{}".into())
        }
        Mode::Hec { token, ack_delay } => hec(req, st, token, *ack_delay),
        Mode::Elastic { auth } => elastic(req, st, auth.as_deref()),
    }
}

fn hec(req: &Request, st: &mut State, token: &str, ack_delay: Option<Duration>) -> (u16, String) {
    match req.headers.get("authorization") {
        None => return (401, r#"{"text":"Token is required","code":2}"#.into()),
        Some(a) if a.strip_prefix("Splunk ") != Some(token) => {
            return (403, r#"{"text":"Invalid token","code":4}"#.into())
        }
        Some(_) => {}
    }
    let channel = req.headers.get("x-splunk-request-channel");
    if ack_delay.is_some() && channel.is_none() {
        return (
            400,
            r#"{"text":"Data channel is missing","code":10}"#.into(),
        );
    }
    match req.path.as_str() {
        "/services/collector/event" => {
            if st.light {
                let n = serde_json::Deserializer::from_slice(&req.body)
                    .into_iter::<serde::de::IgnoredAny>()
                    .take_while(Result::is_ok)
                    .count();
                st.hec_events
                    .extend((0..n).map(|_| serde_json::Value::Null));
                return (200, r#"{"text":"Success","code":0}"#.into());
            }
            let mut envelopes = Vec::new();
            for (i, v) in serde_json::Deserializer::from_slice(&req.body)
                .into_iter::<serde_json::Value>()
                .enumerate()
            {
                let Ok(v) = v else {
                    return (
                        400,
                        format!(
                            r#"{{"text":"Invalid data format","code":6,"invalid-event-number":{i}}}"#
                        ),
                    );
                };
                if v.get("event").is_none() {
                    return (
                        400,
                        format!(
                            r#"{{"text":"Event field is required","code":12,"invalid-event-number":{i}}}"#
                        ),
                    );
                }
                envelopes.push(v);
            }
            if envelopes.is_empty() {
                return (400, r#"{"text":"No data","code":5}"#.into());
            }
            st.hec_events.extend(envelopes);
            match ack_delay {
                None => (200, r#"{"text":"Success","code":0}"#.into()),
                Some(delay) => {
                    let id = st.next_ack;
                    st.next_ack += 1;
                    st.acks.insert(id, Instant::now() + delay);
                    (
                        200,
                        format!(r#"{{"text":"Success","code":0,"ackId":{id}}}"#),
                    )
                }
            }
        }
        "/services/collector/ack" => {
            if ack_delay.is_none() {
                return (400, r#"{"text":"ACK is disabled","code":14}"#.into());
            }
            st.ack_polls += 1;
            let Ok(q) = serde_json::from_slice::<serde_json::Value>(&req.body) else {
                return (400, r#"{"text":"Invalid data format","code":6}"#.into());
            };
            let Some(ids) = q.get("acks").and_then(|a| a.as_array()) else {
                return (400, r#"{"text":"Invalid data format","code":6}"#.into());
            };
            let now = Instant::now();
            let mut acks = serde_json::Map::new();
            for id in ids {
                let Some(id) = id.as_u64() else {
                    return (400, r#"{"text":"Invalid data format","code":6}"#.into());
                };
                let done = st.acks.get(&id).is_some_and(|t| *t <= now);
                acks.insert(id.to_string(), serde_json::Value::Bool(done));
            }
            (200, serde_json::json!({ "acks": acks }).to_string())
        }
        _ => (
            404,
            r#"{"text":"The requested URL was not found on this server.","code":404}"#.into(),
        ),
    }
}

fn elastic(req: &Request, st: &mut State, auth: Option<&str>) -> (u16, String) {
    if let Some(want) = auth {
        if req.headers.get("authorization").map(String::as_str) != Some(want) {
            return (
                401,
                r#"{"error":{"root_cause":[{"type":"security_exception","reason":"unable to authenticate user"}],"type":"security_exception","reason":"unable to authenticate user"},"status":401}"#.into(),
            );
        }
    }
    if req.path != "/_bulk" {
        return (404, r#"{"error":"no handler found","status":404}"#.into());
    }
    let ct = req.headers.get("content-type").map(String::as_str);
    if ct != Some("application/x-ndjson") && ct != Some("application/json") {
        return (
            406,
            r#"{"error":"Content-Type header is not supported","status":406}"#.into(),
        );
    }
    let Ok(text) = std::str::from_utf8(&req.body) else {
        return (400, r#"{"error":"not UTF-8","status":400}"#.into());
    };
    if !text.ends_with('\n') {
        return (
            400,
            r#"{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"},"status":400}"#.into(),
        );
    }
    let mut lines = text.lines();
    let mut items = Vec::new();
    let mut errors = false;
    while let Some(action) = lines.next() {
        let Ok(action) = serde_json::from_str::<serde_json::Value>(action) else {
            return (
                400,
                r#"{"error":{"type":"x_content_parse_exception"},"status":400}"#.into(),
            );
        };
        let Some(create) = action.get("create") else {
            return (400, r#"{"error":{"type":"illegal_argument_exception","reason":"expected create"},"status":400}"#.into());
        };
        let index = create
            .get("_index")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let id = create
            .get("_id")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let Some(doc) = lines.next() else {
            return (400, r#"{"error":{"type":"illegal_argument_exception","reason":"missing source"},"status":400}"#.into());
        };
        let parsed = if st.light {
            (doc.starts_with('{') && doc.ends_with('}'))
                .then_some(serde_json::Value::Null)
                .ok_or(())
        } else {
            serde_json::from_str::<serde_json::Value>(doc).map_err(|_| ())
        };
        let Ok(doc) = parsed else {
            items.push(
                serde_json::json!({"create":{"_index":index,"_id":id,"status":400,
                "error":{"type":"document_parsing_exception","reason":"failed to parse"}}}),
            );
            errors = true;
            continue;
        };
        let (status, error) = if st.reject_once.remove(&id) || st.reject_always.contains(&id) {
            st.rejected += 1;
            (
                429,
                Some((
                    "es_rejected_execution_exception",
                    "rejected execution of coordinating operation",
                )),
            )
        } else if st.refuse.contains(&id) {
            (
                400,
                Some((
                    "document_parsing_exception",
                    "failed to parse field [longconn.level]",
                )),
            )
        } else if st.docs.contains_key(&id) {
            st.conflicts += 1;
            (
                409,
                Some((
                    "version_conflict_engine_exception",
                    "document already exists",
                )),
            )
        } else {
            st.docs.insert(id.clone(), (index.clone(), doc));
            st.created += 1;
            (201, None)
        };
        let mut item = serde_json::json!({"_index": index, "_id": id, "status": status});
        if let Some((kind, why)) = error {
            errors = true;
            item["error"] = serde_json::json!({"type": kind, "reason": why});
        } else {
            item["result"] = "created".into();
        }
        items.push(serde_json::json!({ "create": item }));
    }
    (
        200,
        serde_json::json!({"took": 1, "errors": errors, "items": items}).to_string(),
    )
}
