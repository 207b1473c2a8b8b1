//! The HTTP outputs against a local receiver that plays each SIEM (`tests/support/receiver.rs`): every alert
//! arrives intact and once (Elasticsearch deduplicates by `_id`), credentials go in the right header,
//! gzip bodies decode, and each kind of failure maps to `Transient` or `Permanent` as the delivery contract
//! says. `HttpOutput` is driven directly through `Deliver::deliver`, as the spool will drive it.

use crate::support;

use longconn::output::http::{HttpConfig, HttpOutput};
use longconn::output::{Deliver, DeliverError};
use longconn::spool::Spooled;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::receiver::{Mode, Receiver};
use support::tinyproxy::Tinyproxy;

/// `n` alerts in the wire format of `longconn::alert`, with distinct ids, starting at `seq`.
fn alerts(seq: u64, n: usize) -> Vec<Spooled> {
    (0..n as u64)
        .map(|i| {
            let seq = seq + i;
            let id = format!("{:032x}", seq * 7919 + 1);
            let ts = format!("2024-03-{:02}T10:{:02}:{:02}.{:06}Z", 1 + seq % 28, seq % 60, (seq / 60) % 60, seq % 1000);
            let doc = serde_json::json!({
                "@timestamp": ts,
                "event": {"kind": "alert", "category": ["network"], "id": id, "severity": 1 + seq % 4,
                          "duration": 36_000_000_000_000u64, "start": "2024-03-01T00:00:00.000000Z", "end": ts},
                "rule": {"name": "longconn single connection high"},
                "source": {"ip": "10.0.0.5"},
                "destination": {"ip": format!("203.0.113.{}", seq % 250), "port": 443},
                "network": {"transport": "tcp"},
                "related": {"ip": ["10.0.0.5", format!("203.0.113.{}", seq % 250)]},
                "observer": {"name": "sensor-\"east\""},
                "zeek": {"session_id": [format!("C{seq}abc")]},
                "longconn": {"trigger": "single", "level": "high", "threshold_seconds": 28800.0,
                             "measure_seconds": 36000.0, "window_seconds": 86400.0, "connection_count": 1,
                             "longest_seconds": 36000.0, "total_bytes": 123456, "first_seen": "2024-03-01T00:00:00.000000Z",
                             "last_seen": ts, "uids_total": 1, "message": "10.0.0.5 → 203.0.113.x: one connection of 10h"}
            });
            // The document is a real alert.
            let _: longconn::alert::Alert = serde_json::from_value(doc.clone()).expect("alert shape");
            Spooled {
                seq,
                event_id: id,
                timestamp: ts,
                severity: (1 + seq % 4) as u8,
                json: Arc::from(doc.to_string()),
            }
        })
        .collect()
}

fn config(text: &str) -> HttpConfig {
    let table: toml::Table = text.parse().expect("test TOML");
    HttpConfig::from_raw(&table, "output[0]").unwrap_or_else(|e| panic!("{e:?}"))
}

fn output(text: &str) -> HttpOutput {
    HttpOutput::new("test".into(), &config(text)).expect("output")
}

fn parse(s: &Spooled) -> Value {
    serde_json::from_str(&s.json).expect("alert JSON")
}

fn is_transient(r: &Result<(), DeliverError>) -> bool {
    matches!(r, Err(DeliverError::Transient(_)))
}

fn is_permanent(r: &Result<(), DeliverError>) -> bool {
    matches!(r, Err(DeliverError::Permanent(_)))
}

#[tokio::test]
async fn ndjson_webhook_gets_every_line_in_order_with_headers() {
    let rx = Receiver::start(Mode::Ndjson).await;
    let mut out = output(&format!(
        "type = \"http\"\nname = \"hook\"\nurl = {:?}\nbatch_size = 400\ntoken = \"hook-token\"\nheaders = {{ X-Scope-OrgID = \"soc\" }}\n",
        rx.url("/ingest")
    ));
    let batch = alerts(1, 1000);
    out.deliver(&batch).await.expect("delivered");
    let st = rx.state();
    let want: Vec<&str> = batch.iter().map(|s| &*s.json).collect();
    assert_eq!(st.ndjson_lines, want);
    assert_eq!(
        st.requests.len(),
        3,
        "1000 alerts in requests of at most 400"
    );
    for r in &st.requests {
        assert_eq!(r.path, "/ingest");
        assert_eq!(r.headers["content-type"], "application/x-ndjson");
        assert_eq!(r.headers["authorization"], "Bearer hook-token");
        assert_eq!(r.headers["x-scope-orgid"], "soc");
        assert!(!r.gzipped);
    }
}

#[tokio::test]
async fn gzip_bodies_decode_to_the_same_lines() {
    let rx = Receiver::start(Mode::Ndjson).await;
    let mut out = output(&format!("url = {:?}\ngzip = true\n", rx.url("/")));
    let batch = alerts(10, 300);
    out.deliver(&batch).await.expect("delivered");
    let st = rx.state();
    assert!(st.requests.iter().all(
        |r| r.gzipped && r.headers.get("content-encoding").map(String::as_str) == Some("gzip")
    ));
    let want: Vec<&str> = batch.iter().map(|s| &*s.json).collect();
    assert_eq!(st.ndjson_lines, want);
}

#[tokio::test]
async fn status_codes_map_to_transient_or_permanent() {
    let rx = Receiver::start(Mode::Ndjson).await;
    let mut out = output(&format!("url = {:?}\n", rx.url("/")));
    let batch = alerts(1, 3);
    for (status, transient) in [
        (400, false),
        (401, false),
        (403, false),
        (404, false),
        (413, false),
        (408, true),
        (429, true),
        (500, true),
        (502, true),
        (503, true),
    ] {
        rx.state()
            .fail_next
            .push_back((status, format!("{{\"error\":\"status {status}\"}}")));
        let r = out.deliver(&batch).await;
        if transient {
            assert!(is_transient(&r), "{status}: {r:?}");
        } else {
            assert!(is_permanent(&r), "{status}: {r:?}");
        }
        let reason = format!("{r:?}");
        assert!(reason.contains(&format!("status {status}")), "{reason}");
    }
    // After the failures the same batch goes through.
    out.deliver(&batch).await.expect("delivered");
    assert_eq!(rx.state().ndjson_lines.len(), 3);
}

#[tokio::test]
async fn connection_refused_and_timeouts_are_transient() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut out = output(&format!("url = \"http://127.0.0.1:{port}/\"\n"));
    let r = out.deliver(&alerts(1, 2)).await;
    assert!(is_transient(&r), "{r:?}");

    let rx = Receiver::start(Mode::Hang).await;
    let mut out = output(&format!("url = {:?}\ntimeout = \"300ms\"\n", rx.url("/")));
    let started = Instant::now();
    let r = out.deliver(&alerts(1, 2)).await;
    assert!(is_transient(&r), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn hec_config(rx: &Receiver, token: &str, extra: &str) -> String {
    format!(
        "url = {:?}\nformat = \"splunk_hec\"\ntoken = {token:?}\n{extra}",
        rx.url("")
    )
}

#[tokio::test]
async fn splunk_hec_envelopes_carry_every_alert() {
    let rx = Receiver::start(Mode::Hec {
        token: "11111111-2222-3333-4444-555555555555".into(),
        ack_delay: None,
    })
    .await;
    let mut out = output(&hec_config(
        &rx,
        "11111111-2222-3333-4444-555555555555",
        "index = \"security\"\nbatch_size = 100\n",
    ));
    let batch = alerts(5, 250);
    out.deliver(&batch).await.expect("delivered");
    let st = rx.state();
    assert_eq!(st.requests.len(), 3);
    for r in &st.requests {
        assert_eq!(r.path, "/services/collector/event");
        assert_eq!(
            r.headers["authorization"],
            "Splunk 11111111-2222-3333-4444-555555555555"
        );
        assert!(!r.headers.contains_key("x-splunk-request-channel"));
    }
    assert_eq!(st.hec_events.len(), batch.len());
    for (env, s) in st.hec_events.iter().zip(&batch) {
        assert_eq!(env["event"], parse(s), "alert intact in the envelope");
        assert_eq!(env["host"], "sensor-\"east\"", "host = observer.name");
        assert_eq!(env["source"], "longconn");
        assert_eq!(env["sourcetype"], "longconn:alert");
        assert_eq!(env["index"], "security");
        let want = chrono::DateTime::parse_from_rfc3339(&s.timestamp).expect("ts");
        let time = env["time"].as_f64().expect("time");
        assert!(
            (time - want.timestamp_micros() as f64 / 1e6).abs() < 1e-5,
            "{time} vs {}",
            s.timestamp
        );
    }
}

#[tokio::test]
async fn splunk_hec_wrong_token_is_permanent_busy_is_transient() {
    let rx = Receiver::start(Mode::Hec {
        token: "right".into(),
        ack_delay: None,
    })
    .await;
    let mut out = output(&hec_config(&rx, "wrong", ""));
    let r = out.deliver(&alerts(1, 2)).await;
    assert!(is_permanent(&r), "{r:?}");
    assert!(format!("{r:?}").contains("Invalid token"), "{r:?}");
    assert!(
        !format!("{r:?}").contains("wrong"),
        "no secret in errors: {r:?}"
    );
    assert!(rx.state().hec_events.is_empty());

    rx.state()
        .fail_next
        .push_back((503, r#"{"text":"Server is busy","code":9}"#.into()));
    let mut out = output(&hec_config(&rx, "right", ""));
    let batch = alerts(1, 2);
    let r = out.deliver(&batch).await;
    assert!(is_transient(&r), "{r:?}");
    out.deliver(&batch).await.expect("delivered after busy");
    assert_eq!(rx.state().hec_events.len(), 2);
}

#[tokio::test]
async fn splunk_hec_waits_for_the_indexer_acknowledgement() {
    let rx = Receiver::start(Mode::Hec {
        token: "t".into(),
        ack_delay: Some(Duration::from_millis(300)),
    })
    .await;
    let mut out = output(&hec_config(
        &rx,
        "t",
        "ack = true\nack_timeout = \"5s\"\nchannel = \"0aec7d5e-1d2f-4b3c-9a8b-7c6d5e4f3a2b\"\n",
    ));
    let batch = alerts(1, 20);
    let started = Instant::now();
    out.deliver(&batch).await.expect("acknowledged");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let st = rx.state();
    assert!(st.ack_polls >= 1);
    assert_eq!(st.hec_events.len(), 20);
    let acks: Vec<_> = st
        .requests
        .iter()
        .filter(|r| r.path == "/services/collector/ack")
        .collect();
    assert_eq!(acks.len(), st.ack_polls);
    for r in &st.requests {
        assert_eq!(
            r.headers["x-splunk-request-channel"],
            "0aec7d5e-1d2f-4b3c-9a8b-7c6d5e4f3a2b"
        );
    }
    let q: Value = serde_json::from_slice(&acks[0].body).expect("ack query");
    assert_eq!(q, serde_json::json!({"acks": [0]}));
}

#[tokio::test]
async fn splunk_hec_ack_timeout_is_transient() {
    let rx = Receiver::start(Mode::Hec {
        token: "t".into(),
        ack_delay: Some(Duration::from_secs(3600)),
    })
    .await;
    let mut out = output(&hec_config(
        &rx,
        "t",
        "ack = true\nack_timeout = \"400ms\"\n",
    ));
    let started = Instant::now();
    let r = out.deliver(&alerts(1, 3)).await;
    assert!(is_transient(&r), "{r:?}");
    assert!(format!("{r:?}").contains("not acknowledged"), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(rx.state().ack_polls >= 1);
}

fn es_config(rx: &Receiver, extra: &str) -> String {
    format!(
        "url = {:?}\nformat = \"elasticsearch\"\n{extra}",
        rx.url("")
    )
}

fn assert_docs(rx: &Receiver, batch: &[Spooled], index: &str) {
    let st = rx.state();
    assert_eq!(st.docs.len(), batch.len());
    for s in batch {
        let (i, doc) = st.docs.get(&s.event_id).expect("every alert stored");
        assert_eq!(i, index);
        assert_eq!(doc, &parse(s), "intact");
    }
}

#[tokio::test]
async fn elasticsearch_bulk_stores_each_alert_once() {
    let rx = Receiver::start(Mode::Elastic {
        auth: Some("Basic bG9uZ2Nvbm46czNjcmV0".into()),
    })
    .await;
    let mut out = output(&es_config(
        &rx,
        "username = \"longconn\"\npassword = \"s3cret\"\n",
    ));
    let batch = alerts(1, 1200);
    out.deliver(&batch).await.expect("delivered");
    assert_docs(&rx, &batch, "logs-longconn.alert-default");
    assert_eq!(rx.state().requests.len(), 3, "batches of the default 500");

    // At-least-once: the same alerts again (after a restart, say) are 409s, which count as delivered.
    out.deliver(&batch[100..700])
        .await
        .expect("duplicates accepted");
    let st = rx.state();
    assert_eq!((st.created, st.conflicts), (1200, 600));
    drop(st);
    assert_docs(&rx, &batch, "logs-longconn.alert-default");
}

#[tokio::test]
async fn elasticsearch_resends_only_rejected_items() {
    let rx = Receiver::start(Mode::Elastic {
        auth: Some("ApiKey a2V5OnNlY3JldA==".into()),
    })
    .await;
    std::env::set_var("LONGCONN_TEST_ES_API_KEY", "a2V5OnNlY3JldA==");
    let mut out = output(&es_config(
        &rx,
        "api_key_env = \"LONGCONN_TEST_ES_API_KEY\"\nindex = \"longconn-alerts\"\ngzip = true\n",
    ));
    let batch = alerts(1, 100);
    {
        let mut st = rx.state();
        for s in batch.iter().step_by(7) {
            st.reject_once.insert(s.event_id.clone());
        }
    }
    out.deliver(&batch)
        .await
        .expect("delivered after item retries");
    assert_docs(&rx, &batch, "longconn-alerts");
    let st = rx.state();
    assert_eq!(st.rejected, 15);
    assert_eq!(st.conflicts, 0, "accepted items are not resent");
    assert_eq!(st.requests.len(), 2);
    assert!(st.requests.iter().all(|r| r.gzipped));
    let resent = std::str::from_utf8(&st.requests[1].body).expect("utf8");
    assert_eq!(resent.lines().count(), 30, "15 rejected items resent alone");
}

#[tokio::test]
async fn elasticsearch_failures() {
    let rx = Receiver::start(Mode::Elastic { auth: None }).await;
    let mut out = output(&es_config(&rx, ""));
    let batch = alerts(1, 50);

    // Whole request refused while the cluster is busy: transient, then the resend lands.
    rx.state().fail_next.push_back((
        503,
        r#"{"error":{"type":"cluster_block_exception"},"status":503}"#.into(),
    ));
    assert!(is_transient(&out.deliver(&batch).await));
    out.deliver(&batch).await.expect("delivered");
    assert_docs(&rx, &batch, "logs-longconn.alert-default");

    // Missing index with auto-creation off: permanent.
    rx.state().fail_next.push_back((
        404,
        r#"{"error":{"type":"index_not_found_exception","reason":"no such index"},"status":404}"#
            .into(),
    ));
    assert!(is_permanent(&out.deliver(&batch).await));

    // An item that keeps coming back 429: transient after a few resends of that item alone.
    let more = alerts(100, 10);
    rx.state().reject_always.insert(more[3].event_id.clone());
    let before = rx.state().requests.len();
    let r = out.deliver(&more).await;
    assert!(is_transient(&r), "{r:?}");
    assert!(format!("{r:?}").contains("still rejected"), "{r:?}");
    {
        let st = rx.state();
        assert_eq!(st.requests.len() - before, 4, "the batch, then 3 resends");
        let lines = |r: &support::receiver::Request| r.body.iter().filter(|b| **b == b'\n').count();
        assert!(st.requests[before + 1..].iter().all(|r| lines(r) == 2));
    }

    // A document Elasticsearch refuses (mapping error): permanent, the others are stored.
    let bad = alerts(200, 5);
    rx.state().refuse.insert(bad[2].event_id.clone());
    let r = out.deliver(&bad).await;
    assert!(is_permanent(&r), "{r:?}");
    assert!(
        format!("{r:?}").contains("document_parsing_exception"),
        "{r:?}"
    );
    let st = rx.state();
    assert!(bad
        .iter()
        .enumerate()
        .all(|(i, s)| st.docs.contains_key(&s.event_id) == (i != 2)));
}

#[tokio::test]
async fn elasticsearch_wrong_credentials_are_permanent() {
    let rx = Receiver::start(Mode::Elastic {
        auth: Some("ApiKey right".into()),
    })
    .await;
    let mut out = output(&es_config(&rx, "api_key = \"wrong\"\n"));
    let r = out.deliver(&alerts(1, 2)).await;
    assert!(is_permanent(&r), "{r:?}");
    assert!(format!("{r:?}").contains("security_exception"), "{r:?}");
    assert!(rx.state().docs.is_empty());
}

/// The `[[output]]` examples of the documentation are valid configs (their secret and CA files do not
/// exist here, so only "cannot read" on a `*_file` key is allowed).
#[test]
fn documented_examples_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    std::env::set_var("LONGCONN_ES_API_KEY", "a2V5OnNlY3JldA==");
    std::env::set_var("LONGCONN_HEC_TOKEN", "t");
    let mut checked = Vec::new();
    for block in text.split("```toml").skip(1) {
        let block = block.split("```").next().unwrap_or("");
        let doc: toml::Table = block.parse().unwrap_or_else(|e| panic!("{e}\n{block}"));
        let Some(outputs) = doc.get("output").and_then(|o| o.as_array()) else {
            continue;
        };
        for (i, o) in outputs.iter().enumerate() {
            let table = o.as_table().expect("[[output]] table");
            if table.get("type").and_then(|t| t.as_str()) != Some("http") {
                continue;
            }
            if let Err((errs, _)) = HttpConfig::from_raw(table, &format!("output[{i}]")) {
                for e in errs {
                    assert!(
                        e.key.ends_with("_file") && e.reason.contains("cannot read"),
                        "{e}\n{block}"
                    );
                }
            }
            checked.push(
                table
                    .get("format")
                    .and_then(|f| f.as_str())
                    .unwrap_or("ndjson")
                    .to_string(),
            );
        }
    }
    checked.sort();
    checked.dedup();
    assert_eq!(checked, ["elasticsearch", "ndjson", "splunk_hec"]);
}

/// A test CA and a server certificate it signed for `localhost`: (CA PEM, server TLS config).
fn test_pki() -> (String, Arc<rustls::ServerConfig>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "longconn test CA");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf");
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .expect("server config");
    (ca.pem(), Arc::new(server))
}

#[tokio::test]
async fn tls_with_a_ca_file() {
    let (ca_pem, server) = test_pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write CA");
    let rx = Receiver::start_tls(Mode::Elastic { auth: None }, server).await;
    let ca = ca_file.display().to_string();

    let mut out = output(&es_config_at(
        &rx.https_url("localhost", ""),
        &format!("ca_file = {ca:?}\n"),
    ));
    let batch = alerts(1, 30);
    out.deliver(&batch).await.expect("delivered over TLS");
    assert_docs(&rx, &batch, "logs-longconn.alert-default");

    // The certificate names localhost, not 127.0.0.1: refused for good.
    let mut out = output(&es_config_at(
        &rx.https_url("127.0.0.1", ""),
        &format!("ca_file = {ca:?}\n"),
    ));
    let r = out.deliver(&batch).await;
    assert!(is_permanent(&r), "{r:?}");

    // Without the CA (system roots only) the server is unknown: refused for good.
    let cfg = config(&es_config_at(&rx.https_url("localhost", ""), ""));
    match HttpOutput::new("no-ca".into(), &cfg) {
        Ok(mut out) => {
            let r = out.deliver(&batch).await;
            assert!(is_permanent(&r), "{r:?}");
        }
        // A machine without a system CA bundle.
        Err(e) => assert!(e.contains("ca_file"), "{e}"),
    }
}

fn es_config_at(url: &str, extra: &str) -> String {
    format!("url = {url:?}\nformat = \"elasticsearch\"\n{extra}")
}

/// The receiver goes down (connections dropped, port closed) and comes back on the same port: delivery
/// fails as `Transient` meanwhile and resumes on the same `HttpOutput`; the batch sent again during the
/// outage and after it is stored once.
#[tokio::test]
async fn receiver_outage_is_transient_and_delivery_resumes() {
    let mode = Mode::Elastic { auth: None };
    let rx = Receiver::start(mode.clone()).await;
    let addr = rx.addr;
    let mut out = output(&es_config(&rx, "timeout = \"2s\"\n"));
    let first = alerts(1, 40);
    out.deliver(&first).await.expect("delivered");
    drop(rx);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let second = alerts(100, 40);
    let r = out.deliver(&second).await;
    assert!(is_transient(&r), "{r:?}");

    let rx = Receiver::restart_on(addr, mode).await;
    // The spool resends from its cursor: the failed batch, and here also the first one again.
    out.deliver(&second)
        .await
        .expect("delivered after the outage");
    out.deliver(&first).await.expect("resend accepted");
    let st = rx.state();
    assert_eq!((st.created, st.conflicts), (80, 0));
    assert_eq!(st.docs.len(), 80);
}

/// A CA, a `localhost` server certificate and a client certificate it signed, written to `dir` as
/// `ca.pem`, `client.pem`, `client.key` (and `other.key`, a key of no certificate); the server asks every
/// client for a certificate from that CA.
fn mutual_pki(dir: &std::path::Path) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let srv_key = rcgen::KeyPair::generate().expect("key");
    let srv = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&srv_key, &ca, &ca_key)
        .expect("server cert");
    let cli_key = rcgen::KeyPair::generate().expect("key");
    let cli = rcgen::CertificateParams::new(vec!["sensor-1".to_string()])
        .expect("params")
        .signed_by(&cli_key, &ca, &ca_key)
        .expect("client cert");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("client.pem"), cli.pem()).expect("write");
    std::fs::write(dir.join("client.key"), cli_key.serialize_pem()).expect("write");
    let other = rcgen::KeyPair::generate().expect("key");
    std::fs::write(dir.join("other.key"), other.serialize_pem()).expect("write");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(srv_key.serialize_der().into());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![srv.der().clone()], key)
            .expect("server config"),
    )
}

/// Mutual TLS: with `client_cert` and `client_key` the server takes the alerts; without them it refuses
/// the connection and nothing is stored.
#[tokio::test]
async fn mutual_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = mutual_pki(dir.path());
    let rx = Receiver::start_tls(Mode::Elastic { auth: None }, server).await;
    let path = |name: &str| dir.path().join(name).display().to_string();
    let with_cert = format!(
        "ca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}\ntimeout = \"5s\"\n",
        path("ca.pem"),
        path("client.pem"),
        path("client.key")
    );
    let mut out = output(&es_config_at(&rx.https_url("localhost", ""), &with_cert));
    let batch = alerts(1, 25);
    out.deliver(&batch)
        .await
        .expect("delivered with a client certificate");
    assert_docs(&rx, &batch, "logs-longconn.alert-default");

    let without = format!("ca_file = {:?}\ntimeout = \"5s\"\n", path("ca.pem"));
    let mut out = output(&es_config_at(&rx.https_url("localhost", ""), &without));
    let r = out.deliver(&alerts(500, 5)).await;
    assert!(
        r.is_err(),
        "the server asks for a client certificate: {r:?}"
    );
    assert_eq!(rx.state().docs.len(), 25);
}

/// Client certificate and proxy settings are checked at load and their files by the preflight
/// (`HttpFiles::check`), every mistake reported with its key.
#[test]
fn client_certificate_and_proxy_mistakes_are_reported_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _ = mutual_pki(dir.path());
    let path = |name: &str| dir.path().join(name).display().to_string();
    let errors = |extra: &str| -> Vec<String> {
        let text =
            format!("url = \"https://siem.example:9200\"\nformat = \"elasticsearch\"\n{extra}");
        let table: toml::Table = text.parse().expect("TOML");
        let (errs, files) = match HttpConfig::from_raw(&table, "output[0]") {
            Ok(c) => (Vec::new(), c.files()),
            Err(e) => e,
        };
        errs.iter()
            .map(|e| format!("{}: {}", e.key, e.reason))
            .chain(
                files
                    .check()
                    .into_iter()
                    .map(|(key, reason)| format!("output[0].{key}: {reason}")),
            )
            .collect::<Vec<String>>()
    };
    let e = errors(&format!("client_cert = {:?}\n", path("client.pem")));
    assert!(
        e.iter()
            .any(|e| e.starts_with("output[0].client_key: missing")),
        "{e:?}"
    );
    let e = errors(&format!(
        "client_cert = {:?}\nclient_key = {:?}\n",
        path("client.pem"),
        path("other.key")
    ));
    assert!(
        e.iter()
            .any(|e| e.starts_with("output[0].client_key:") && e.contains("not the key")),
        "{e:?}"
    );
    let e = errors(&format!(
        "client_cert = {:?}\nclient_key = {:?}\n",
        path("client.key"),
        path("client.key")
    ));
    assert!(
        e.iter().any(|e| e.starts_with("output[0].client_cert:")),
        "{e:?}"
    );
    // Several at once: a proxy URL with credentials, a username without a password, a missing key file.
    let e = errors(&format!(
        "proxy = \"http://u:p@proxy:3128\"\nproxy_username = \"u\"\nclient_cert = {:?}\nclient_key = \"/nonexistent/k.pem\"\n",
        path("client.pem")
    ));
    assert!(
        e.iter()
            .any(|e| e.starts_with("output[0].proxy:") && !e.contains(":p@")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("output[0].client_key: cannot read")),
        "{e:?}"
    );
    // Both files unreadable: both reported.
    let e = errors("client_cert = \"/nonexistent/c.pem\"\nclient_key = \"/nonexistent/k.pem\"\n");
    for key in ["client_cert", "client_key"] {
        let want = format!("output[0].{key}: cannot read");
        assert!(e.iter().any(|e| e.starts_with(&want)), "{e:?}");
    }
    let e = errors("proxy = \"http://proxy:3128\"\nproxy_username = \"u\"\n");
    assert!(
        e.iter()
            .any(|e| e.starts_with("output[0].proxy_password: missing")),
        "{e:?}"
    );
    let e = errors("proxy = \"socks5://proxy:1080\"\n");
    assert!(e.iter().any(|e| e.starts_with("output[0].proxy:")), "{e:?}");
    assert!(errors("proxy = \"none\"\n").is_empty());
    assert!(errors(&format!(
        "proxy = \"http://proxy:3128\"\nproxy_username = \"u\"\nproxy_password = \"p\"\nclient_cert = {:?}\nclient_key = {:?}\n",
        path("client.pem"),
        path("client.key")
    ))
    .is_empty());
}

/// Through a real proxy: plain HTTP is forwarded (tinyproxy adds its `Via` header), HTTPS is tunnelled
/// with CONNECT to a TLS server; wrong or no proxy credentials deliver nothing.
#[tokio::test]
async fn delivery_through_a_real_http_proxy() {
    let Some(proxy) = Tinyproxy::start() else {
        return;
    };
    let via = |user_pass: &str| {
        format!(
            "proxy = \"http://127.0.0.1:{}\"\n{user_pass}timeout = \"5s\"\n",
            proxy.port
        )
    };
    let good = "proxy_username = \"sensor\"\nproxy_password = \"s3cret\"\n";

    let rx = Receiver::start(Mode::Elastic { auth: None }).await;
    let mut out = output(&es_config(&rx, &via(good)));
    let batch = alerts(1, 30);
    out.deliver(&batch)
        .await
        .expect("delivered through the proxy");
    assert_docs(&rx, &batch, "logs-longconn.alert-default");
    let vias: Vec<String> = rx
        .state()
        .requests
        .iter()
        .map(|r| r.headers.get("via").cloned().unwrap_or_default())
        .collect();
    assert!(vias.iter().all(|v| v.contains("tinyproxy")), "{vias:?}");

    let (ca_pem, server) = test_pki();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), ca_pem).expect("write CA");
    let tls_rx = Receiver::start_tls(Mode::Elastic { auth: None }, server).await;
    let extra = format!(
        "ca_file = {:?}\n{}",
        dir.path().join("ca.pem").display().to_string(),
        via(good)
    );
    let mut out = output(&es_config_at(&tls_rx.https_url("localhost", ""), &extra));
    let batch = alerts(100, 20);
    out.deliver(&batch)
        .await
        .expect("delivered through a CONNECT tunnel");
    assert_docs(&tls_rx, &batch, "logs-longconn.alert-default");
    let log = proxy.log();
    assert!(
        log.contains(&format!("CONNECT localhost:{}", tls_rx.addr.port())),
        "{log}"
    );

    let wrong = "proxy_username = \"sensor\"\nproxy_password = \"wrong\"\n";
    let mut out = output(&es_config(&rx, &via(wrong)));
    let r = out.deliver(&alerts(200, 5)).await;
    assert!(r.is_err(), "{r:?}");
    let mut out = output(&es_config(&rx, &via("")));
    let r = out.deliver(&alerts(300, 5)).await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(rx.state().docs.len(), 30);
}
