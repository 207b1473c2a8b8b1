//! Splunk HTTP Event Collector: each alert becomes one event envelope
//! `{"time":EPOCH,"host":..,"source":..,"sourcetype":..,"index":..,"event":ALERT}`, the envelopes of a
//! request concatenated (HEC's batch format), POSTed to `/services/collector/event` with
//! `Authorization: Splunk TOKEN`.
//!
//! `time` is the alert's `@timestamp` in epoch seconds with microseconds, so Splunk indexes the alert at
//! event time. `host` is the configured one or the alert's `observer.name` (the sensor).
//!
//! With indexer acknowledgement (`ack = true`) a 200 only means "received": every request carries the
//! `X-Splunk-Request-Channel` header, the answer's `ackId` is polled at `/services/collector/ack` with
//! `{"acks":[ID]}` until `{"acks":{"ID":true}}`; if that does not come within `ack_timeout` the batch is
//! reported `Transient` and the spool sends it again (the alerts keep their `event.id`).

use super::{backoff, new_channel, Answer, HttpOutput, SplunkConfig};
use crate::alert;
use crate::output::DeliverError;
use crate::spool::Spooled;
use reqwest::header::HeaderValue;
use reqwest::Url;
use std::time::{Duration, Instant};

/// The HEC endpoints and envelope fields of one output.
pub struct Hec {
    pub event_url: Url,
    pub ack_url: Url,
    /// `"host":..,"source":..,"sourcetype":..,"index":..,` pre-rendered, or without host when each
    /// alert's `observer.name` is used.
    fixed_fields: String,
    per_alert_host: bool,
    ack: Option<(HeaderValue, Duration)>,
}

const EVENT_PATH: &str = "/services/collector/event";
const ACK_PATH: &str = "/services/collector/ack";

impl Hec {
    pub fn new(base: &Url, cfg: &SplunkConfig) -> Result<Hec, String> {
        let path = base.path().trim_end_matches('/');
        let mut event_url = base.clone();
        let mut ack_url = base.clone();
        if path.is_empty() {
            event_url.set_path(EVENT_PATH);
            ack_url.set_path(ACK_PATH);
        } else if path.ends_with("/services/collector") {
            event_url.set_path(&format!("{path}/event"));
            ack_url.set_path(&format!("{path}/ack"));
        } else if let Some(prefix) = path.strip_suffix("/event") {
            // `/services/collector/event` (or a proxy's prefix before it): the ack endpoint is its sibling.
            event_url.set_path(path);
            ack_url.set_path(&format!("{prefix}/ack"));
        } else {
            event_url.set_path(path);
            ack_url.set_path(&format!("{path}/ack"));
        }
        let mut fixed = String::new();
        let mut field = |name: &str, value: &str| {
            fixed.push_str(&json_string(name));
            fixed.push(':');
            fixed.push_str(&json_string(value));
            fixed.push(',');
        };
        if let Some(h) = &cfg.host {
            field("host", h);
        }
        field("source", &cfg.source);
        field("sourcetype", &cfg.sourcetype);
        if let Some(i) = &cfg.index {
            field("index", i);
        }
        let ack = match &cfg.ack {
            None => None,
            Some(a) => {
                // A configured channel, or a fresh one each time the output is built.
                let channel = a.channel.clone().unwrap_or_else(new_channel);
                let value = HeaderValue::from_str(&channel)
                    .map_err(|_| format!("channel {channel:?} is not a valid header value"))?;
                Some((value, a.timeout))
            }
        };
        Ok(Hec {
            event_url,
            ack_url,
            fixed_fields: fixed,
            per_alert_host: cfg.host.is_none(),
            ack,
        })
    }

    /// The request body: one envelope per alert, concatenated. An alert that is not a JSON object is
    /// `Permanent` (the spool is corrupt; HEC would refuse the whole request anyway).
    pub fn body(&self, chunk: &[Spooled]) -> Result<Vec<u8>, DeliverError> {
        let extra = self.fixed_fields.len() + 64;
        let mut body = Vec::with_capacity(chunk.iter().map(|s| s.json.len() + extra).sum());
        for s in chunk {
            body.push(b'{');
            if let Some(t) = alert::epoch_seconds(&s.timestamp) {
                body.extend_from_slice(format!("\"time\":{t:.6},").as_bytes());
            }
            if self.per_alert_host {
                let host = alert::observer_name(&s.json).map_err(|e| {
                    DeliverError::Permanent(format!("alert seq {} is not an alert: {e}", s.seq))
                })?;
                body.extend_from_slice(b"\"host\":");
                body.extend_from_slice(json_string(&host).as_bytes());
                body.push(b',');
            } else if !s.json.trim_start().starts_with('{') {
                return Err(DeliverError::Permanent(format!(
                    "alert seq {} is not a JSON object",
                    s.seq
                )));
            }
            body.extend_from_slice(self.fixed_fields.as_bytes());
            body.extend_from_slice(b"\"event\":");
            body.extend_from_slice(s.json.as_bytes());
            body.extend_from_slice(b"}\n");
        }
        Ok(body)
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[derive(serde::Deserialize)]
struct EventAnswer {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default, rename = "ackId")]
    ack_id: Option<u64>,
}

#[derive(serde::Deserialize)]
struct AckAnswer {
    #[serde(default)]
    acks: std::collections::HashMap<String, bool>,
}

pub(super) async fn deliver(out: &HttpOutput, chunk: &[Spooled]) -> Result<(), DeliverError> {
    let Some(hec) = &out.splunk else {
        return Err(DeliverError::Permanent(
            "splunk_hec output without its settings".into(),
        ));
    };
    let body = hec.body(chunk)?;
    let channel = hec
        .ack
        .as_ref()
        .map(|(c, _)| ("X-Splunk-Request-Channel", c));
    let answer = out
        .post(&hec.event_url, body, "application/json", channel)
        .await?;
    answer.ok()?;
    let Some((channel, timeout)) = &hec.ack else {
        return Ok(());
    };
    let parsed: EventAnswer = serde_json::from_slice(&answer.body).map_err(|e| {
        DeliverError::Transient(format!(
            "HEC answer is not JSON ({e}): {}",
            snippet(&answer)
        ))
    })?;
    let Some(id) = parsed.ack_id else {
        return Err(DeliverError::Permanent(format!(
            "HEC answered without ackId (code {:?}); is indexer acknowledgement enabled on the token?",
            parsed.code
        )));
    };
    wait_for_ack(out, hec, channel, id, *timeout).await
}

async fn wait_for_ack(
    out: &HttpOutput,
    hec: &Hec,
    channel: &HeaderValue,
    id: u64,
    timeout: Duration,
) -> Result<(), DeliverError> {
    let started = Instant::now();
    let body = format!("{{\"acks\":[{id}]}}");
    let key = id.to_string();
    let mut attempt = 0;
    loop {
        let pause = backoff(Duration::from_millis(50), attempt, Duration::from_secs(2));
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(DeliverError::Transient(format!(
                "HEC ackId {id} not acknowledged within {timeout:?}; resending"
            )));
        }
        tokio::time::sleep(pause.min(left)).await;
        attempt += 1;
        // A poll never runs past the deadline, whatever the request timeout.
        let left = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(50));
        let poll = out.post(
            &hec.ack_url,
            body.clone().into_bytes(),
            "application/json",
            Some(("X-Splunk-Request-Channel", channel)),
        );
        let answer = match tokio::time::timeout(left, poll).await {
            Err(_) => continue,
            Ok(a) => a,
        };
        let answer = match answer {
            Ok(a) => a,
            // A poll that fails is retried until the deadline; the data may be indexed already.
            Err(DeliverError::Transient(reason)) => {
                tracing::debug!(output = %out.name, ack_id = id, %reason, "HEC ack poll failed");
                continue;
            }
            Err(e) => return Err(e),
        };
        match answer.ok() {
            Ok(()) => {}
            Err(DeliverError::Transient(reason)) => {
                tracing::debug!(output = %out.name, ack_id = id, %reason, "HEC ack poll failed");
                continue;
            }
            Err(e) => return Err(e),
        }
        let acks: AckAnswer = serde_json::from_slice(&answer.body).map_err(|e| {
            DeliverError::Transient(format!(
                "HEC ack answer is not JSON ({e}): {}",
                snippet(&answer)
            ))
        })?;
        if acks.acks.get(&key).copied().unwrap_or(false) {
            tracing::debug!(output = %out.name, ack_id = id, waited_ms = started.elapsed().as_millis() as u64,
                "HEC batch acknowledged");
            return Ok(());
        }
    }
}

fn snippet(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.body)
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    //! Endpoint derivation and the envelope bytes.
    use super::*;
    use std::sync::Arc;

    fn cfg(host: Option<&str>, index: Option<&str>) -> SplunkConfig {
        SplunkConfig {
            sourcetype: "longconn:alert".into(),
            source: "longconn".into(),
            index: index.map(Into::into),
            host: host.map(Into::into),
            ack: None,
        }
    }

    #[test]
    fn endpoints() {
        for (base, event, ack) in [
            (
                "https://s:8088",
                "https://s:8088/services/collector/event",
                "https://s:8088/services/collector/ack",
            ),
            (
                "https://s:8088/services/collector",
                "https://s:8088/services/collector/event",
                "https://s:8088/services/collector/ack",
            ),
            (
                "https://s:8088/services/collector/event",
                "https://s:8088/services/collector/event",
                "https://s:8088/services/collector/ack",
            ),
            (
                "https://proxy/splunk/services/collector/event/",
                "https://proxy/splunk/services/collector/event",
                "https://proxy/splunk/services/collector/ack",
            ),
        ] {
            let hec = Hec::new(&Url::parse(base).unwrap(), &cfg(None, None)).unwrap();
            assert_eq!(hec.event_url.as_str(), event, "{base}");
            assert_eq!(hec.ack_url.as_str(), ack, "{base}");
        }
    }

    #[test]
    fn envelopes() {
        let alert = r#"{"@timestamp":"2024-01-02T03:04:05.250000Z","observer":{"name":"sensor-1"},"event":{"id":"x"}}"#;
        let s = Spooled {
            seq: 1,
            event_id: "x".into(),
            timestamp: "2024-01-02T03:04:05.250000Z".into(),
            severity: 2,
            json: Arc::from(alert),
        };
        let hec = Hec::new(
            &Url::parse("http://s").unwrap(),
            &cfg(None, Some("security")),
        )
        .unwrap();
        let body = hec.body(&[s.clone(), s.clone()]).unwrap();
        let envs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&body)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(envs.len(), 2);
        assert_eq!(envs[0]["time"].as_f64(), Some(1704164645.25));
        assert_eq!(envs[0]["host"], "sensor-1");
        assert_eq!(envs[0]["index"], "security");
        assert_eq!(envs[0]["sourcetype"], "longconn:alert");
        assert_eq!(
            envs[0]["event"],
            serde_json::from_str::<serde_json::Value>(alert).unwrap()
        );

        let fixed = Hec::new(&Url::parse("http://s").unwrap(), &cfg(Some("h\"q"), None)).unwrap();
        let body = fixed.body(std::slice::from_ref(&s)).unwrap();
        let env: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(env["host"], "h\"q");
        assert!(env.get("index").is_none());

        let bad = Spooled {
            json: Arc::from("not json"),
            ..s
        };
        assert!(matches!(hec.body(&[bad]), Err(DeliverError::Permanent(_))));
    }
}
