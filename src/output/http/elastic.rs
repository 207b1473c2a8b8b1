//! Elasticsearch `_bulk`: each alert is a `{"create":{"_index":INDEX,"_id":EVENT_ID}}` action followed by
//! the alert document, as NDJSON. `create` (not `index`) is what data streams accept, and with `_id` =
//! `event.id` a resent alert is refused with a per-item 409, which counts as delivered: Elasticsearch holds
//! each alert once however often it was sent.
//!
//! The answer is read item by item (items come back in request order): 200/201 and 409 are delivered; 429
//! and 5xx items are resent alone, with jittered backoff, up to [`ITEM_RETRIES`] times, and if some are still
//! refused the batch is `Transient`; any other item status (a mapping conflict, 400) makes the batch
//! `Permanent` once the retriable items are settled. A whole-request 429/5xx is `Transient`; 400, 401, 403
//! and 404 (a missing index where auto-creation is off) are `Permanent`.

use super::{backoff, ElasticConfig, HttpOutput};
use crate::output::DeliverError;
use crate::spool::Spooled;
use reqwest::Url;
use std::time::Duration;

/// How often rejected (429/5xx) items are resent within one delivery.
pub const ITEM_RETRIES: u32 = 3;
const ITEM_BACKOFF: Duration = Duration::from_millis(100);

/// The bulk endpoint and the action prefix of one output.
pub struct Bulk {
    pub bulk_url: Url,
    /// `{"create":{"_index":"INDEX","_id":` pre-rendered.
    action_prefix: String,
}

impl Bulk {
    pub fn new(base: &Url, cfg: &ElasticConfig) -> Result<Bulk, String> {
        let mut bulk_url = base.clone();
        let path = base.path().trim_end_matches('/');
        if !path.ends_with("/_bulk") {
            bulk_url.set_path(&format!("{path}/_bulk"));
        }
        let index = serde_json::Value::from(cfg.index.as_str()).to_string();
        Ok(Bulk {
            bulk_url,
            action_prefix: format!("{{\"create\":{{\"_index\":{index},\"_id\":"),
        })
    }

    /// The NDJSON body for `items` (indexes into `chunk`).
    pub fn body(&self, chunk: &[Spooled], items: &[usize]) -> Vec<u8> {
        let extra = self.action_prefix.len() + 64;
        let mut body = Vec::with_capacity(items.iter().map(|i| chunk[*i].json.len() + extra).sum());
        for &i in items {
            let s = &chunk[i];
            body.extend_from_slice(self.action_prefix.as_bytes());
            body.extend_from_slice(
                serde_json::Value::from(s.event_id.as_str())
                    .to_string()
                    .as_bytes(),
            );
            body.extend_from_slice(b"}}\n");
            body.extend_from_slice(s.json.as_bytes());
            body.push(b'\n');
        }
        body
    }
}

#[derive(Debug, serde::Deserialize)]
struct BulkAnswer {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<BulkItem>,
}

#[derive(Debug, serde::Deserialize)]
struct BulkItem {
    #[serde(alias = "index", alias = "update", alias = "delete")]
    create: ItemResult,
}

#[derive(Debug, serde::Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// What one bulk answer says about the items sent.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub created: usize,
    pub duplicates: usize,
    /// Indexes (into the chunk) to resend.
    pub retry: Vec<usize>,
    /// Indexes refused for good, with the reason of the first.
    pub refused: Vec<usize>,
    pub first_refusal: Option<String>,
    pub first_retry_reason: Option<String>,
}

/// Reads a 2xx bulk answer for `sent` (indexes into the chunk, in request order).
pub fn read_answer(body: &[u8], sent: &[usize]) -> Result<Outcome, DeliverError> {
    let answer: BulkAnswer = serde_json::from_slice(body).map_err(|e| {
        DeliverError::Transient(format!(
            "bulk answer is not a bulk response ({e}): {}",
            String::from_utf8_lossy(body)
                .chars()
                .take(200)
                .collect::<String>()
        ))
    })?;
    if answer.items.len() != sent.len() {
        return Err(DeliverError::Transient(format!(
            "bulk answer has {} items for {} actions",
            answer.items.len(),
            sent.len()
        )));
    }
    let mut out = Outcome::default();
    if !answer.errors {
        out.created = sent.len();
        return Ok(out);
    }
    for (item, &i) in answer.items.iter().zip(sent) {
        let r = &item.create;
        match r.status {
            200 | 201 => out.created += 1,
            409 => out.duplicates += 1,
            429 | 500..=599 => {
                out.retry.push(i);
                out.first_retry_reason
                    .get_or_insert_with(|| reason(r.status, r.error.as_ref()));
            }
            _ => {
                out.refused.push(i);
                out.first_refusal
                    .get_or_insert_with(|| reason(r.status, r.error.as_ref()));
            }
        }
    }
    Ok(out)
}

fn reason(status: u16, error: Option<&serde_json::Value>) -> String {
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("");
    let text = error
        .and_then(|e| e.get("reason"))
        .and_then(|t| t.as_str())
        .unwrap_or("");
    let text: String = text.chars().take(200).collect();
    format!("item status {status} {kind}: {text}")
}

pub(super) async fn deliver(out: &HttpOutput, chunk: &[Spooled]) -> Result<(), DeliverError> {
    let Some(bulk) = &out.elastic else {
        return Err(DeliverError::Permanent(
            "elasticsearch output without its settings".into(),
        ));
    };
    let mut pending: Vec<usize> = (0..chunk.len()).collect();
    let mut refused: Vec<usize> = Vec::new();
    let mut first_refusal = None;
    let mut attempt = 0;
    loop {
        let body = bulk.body(chunk, &pending);
        let answer = out
            .post(&bulk.bulk_url, body, "application/x-ndjson", None)
            .await?;
        answer.ok()?;
        let outcome = read_answer(&answer.body, &pending)?;
        if outcome.duplicates > 0 {
            tracing::debug!(output = %out.name, duplicates = outcome.duplicates,
                "bulk items already indexed (409), counted as delivered");
        }
        refused.extend(&outcome.refused);
        if first_refusal.is_none() {
            first_refusal = outcome.first_refusal;
        }
        if outcome.retry.is_empty() {
            break;
        }
        let why = outcome.first_retry_reason.unwrap_or_default();
        if attempt >= ITEM_RETRIES {
            return Err(DeliverError::Transient(format!(
                "{} of {} bulk items still rejected after {ITEM_RETRIES} retries ({why})",
                outcome.retry.len(),
                chunk.len()
            )));
        }
        tracing::info!(output = %out.name, items = outcome.retry.len(), attempt, reason = %why,
            "resending rejected bulk items");
        tokio::time::sleep(backoff(ITEM_BACKOFF, attempt, Duration::from_secs(5))).await;
        attempt += 1;
        pending = outcome.retry;
    }
    if !refused.is_empty() {
        refused.sort_unstable();
        let seqs: Vec<String> = refused
            .iter()
            .take(5)
            .map(|i| chunk[*i].seq.to_string())
            .collect();
        return Err(DeliverError::Permanent(format!(
            "{} of {} bulk items refused (seq {}{}): {}",
            refused.len(),
            chunk.len(),
            seqs.join(", "),
            if refused.len() > 5 { ", ..." } else { "" },
            first_refusal.unwrap_or_default()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Bulk bodies and per-item answer reading.
    use super::*;
    use std::sync::Arc;

    fn spooled(id: &str) -> Spooled {
        Spooled {
            seq: 7,
            event_id: id.into(),
            timestamp: "2024-01-01T00:00:00.000000Z".into(),
            severity: 1,
            json: Arc::from(format!("{{\"event\":{{\"id\":\"{id}\"}}}}")),
        }
    }

    #[test]
    fn bulk_url_and_body() {
        let cfg = ElasticConfig {
            index: "logs-longconn.alert-default".into(),
        };
        for base in [
            "https://es:9200",
            "https://es:9200/",
            "https://es:9200/_bulk",
        ] {
            let b = Bulk::new(&Url::parse(base).unwrap(), &cfg).unwrap();
            assert_eq!(b.bulk_url.as_str(), "https://es:9200/_bulk");
        }
        let b = Bulk::new(&Url::parse("https://proxy/es/").unwrap(), &cfg).unwrap();
        assert_eq!(b.bulk_url.as_str(), "https://proxy/es/_bulk");
        let chunk = [spooled("a"), spooled("b"), spooled("c")];
        let body = String::from_utf8(b.body(&chunk, &[0, 2])).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"create":{"_index":"logs-longconn.alert-default","_id":"a"}}"#,
                r#"{"event":{"id":"a"}}"#,
                r#"{"create":{"_index":"logs-longconn.alert-default","_id":"c"}}"#,
                r#"{"event":{"id":"c"}}"#,
            ]
        );
        assert!(body.ends_with('\n'));
    }

    #[test]
    fn answers() {
        let ok = br#"{"took":3,"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}}]}"#;
        let o = read_answer(ok, &[4, 5]).unwrap();
        assert_eq!(o.created, 2);
        let mixed = br#"{"took":3,"errors":true,"items":[
            {"create":{"_id":"a","status":201}},
            {"create":{"_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"create":{"_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_id":"d","status":400,"error":{"type":"mapper_parsing_exception","reason":"bad field"}}},
            {"create":{"_id":"e","status":503,"error":{"type":"unavailable_shards_exception","reason":"x"}}}]}"#;
        let o = read_answer(mixed, &[0, 1, 2, 3, 4]).unwrap();
        assert_eq!((o.created, o.duplicates), (1, 1));
        assert_eq!(o.retry, [2, 4]);
        assert_eq!(o.refused, [3]);
        assert!(o
            .first_refusal
            .as_deref()
            .is_some_and(|r| r.contains("mapper_parsing_exception")));
        assert!(matches!(
            read_answer(ok, &[1]),
            Err(DeliverError::Transient(_))
        ));
        assert!(matches!(
            read_answer(b"<html>", &[1]),
            Err(DeliverError::Transient(_))
        ));
    }
}
