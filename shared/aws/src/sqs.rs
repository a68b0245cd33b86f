//! The delivery queue on SQS, with de-duplication of provider delivery ids in a DynamoDB table and bodies
//! too large for one message put aside in S3.
//!
//! Enqueue is three steps: a conditional put of the delivery's marker (state `pending`), the message, then
//! the marker set to `queued`. A marker left `pending` (the send failed, the webhook answered 503) does not
//! make the provider's retry a duplicate; two racing sends of one delivery are harmless because the
//! aggregator stores facts idempotently.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::{epoch_seconds_in, s3::S3Payloads, sdk_error, AwsNames};
use em_core::ports::{
    DeadLetters, EnqueueOutcome, Envelope, Payloads, PortError, Queue, QueueMessage, Received,
};

/// SQS takes messages up to 256 KiB; keep room for the envelope's attributes.
pub const DEFAULT_OFFLOAD_THRESHOLD: usize = 240 * 1024;

#[derive(Clone)]
pub struct SqsQueue {
    sqs: aws_sdk_sqs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    deliveries_table: String,
    queue_url: String,
    dead_letter_url: Option<String>,
    payloads: S3Payloads,
    retention_days: u32,
    offload_threshold: usize,
    /// Seconds a receive waits for messages (long polling); 0 answers at once.
    wait_seconds: i32,
    /// Bodies of received messages by receipt handle, with when they were received: a dead-lettered
    /// message is sent on as it came. Entries older than [`IN_FLIGHT_MAX_AGE`] are dropped (their receipt
    /// has expired with the visibility timeout; the redrive policy still dead-letters the message).
    in_flight: Arc<Mutex<HashMap<String, (String, std::time::Instant)>>>,
}

/// How long a received message's body is kept for a dead-letter: longer than any visibility timeout the
/// aggregator uses, after which its receipt is no longer valid anyway.
const IN_FLIGHT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Drops the entries received more than `max_age` before `now`: retried messages get a new receipt each
/// time, so without this the map grows with every retry.
fn prune<T>(
    in_flight: &mut HashMap<String, (T, std::time::Instant)>,
    now: std::time::Instant,
    max_age: std::time::Duration,
) {
    in_flight.retain(|_, (_, at)| now.saturating_duration_since(*at) <= max_age);
}

/// A queue name or URL as a URL: a name is looked up.
pub async fn queue_url(sqs: &aws_sdk_sqs::Client, name_or_url: &str) -> Result<String, PortError> {
    if name_or_url.starts_with("https://") || name_or_url.starts_with("http://") {
        return Ok(name_or_url.to_string());
    }
    let out = sqs
        .get_queue_url()
        .queue_name(name_or_url)
        .send()
        .await
        .map_err(|e| sdk_error(&format!("sqs queue {name_or_url}"), e))?;
    out.queue_url()
        .map(str::to_string)
        .ok_or_else(|| PortError::invalid(format!("sqs queue {name_or_url} has no URL")))
}

/// Writes a conditional marker: a failed condition means the marker was there, a duplicate.
async fn put_marker(
    put: aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder,
    what: &'static str,
) -> Result<EnqueueOutcome, PortError> {
    match put.send().await {
        Ok(_) => Ok(EnqueueOutcome::Accepted),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(EnqueueOutcome::Duplicate)
        }
        Err(err) => Err(sdk_error(what, err)),
    }
}

fn delivery_key(provider: &str, delivery_id: &str) -> String {
    format!("{provider}#{delivery_id}")
}

impl SqsQueue {
    /// Resolves the queue names; fails when a queue does not exist.
    pub async fn connect(sdk: &SdkConfig, names: &AwsNames) -> Result<SqsQueue, PortError> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let queue_url = queue_url(&sqs, &names.queue).await?;
        let dead_letter_url = match &names.dead_letter_queue {
            Some(n) => Some(queue_url_of(&sqs, n).await?),
            None => None,
        };
        Ok(SqsQueue {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            deliveries_table: names.deliveries_table.clone(),
            queue_url,
            dead_letter_url,
            payloads: S3Payloads::new(sdk, names.bucket.clone()),
            retention_days: names.retention_days,
            offload_threshold: DEFAULT_OFFLOAD_THRESHOLD,
            wait_seconds: 1,
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            sqs,
        })
    }

    pub fn with_offload_threshold(mut self, bytes: usize) -> Self {
        self.offload_threshold = bytes;
        self
    }

    pub fn with_wait_seconds(mut self, seconds: i32) -> Self {
        self.wait_seconds = seconds.clamp(0, 20);
        self
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn dead_letter_url(&self) -> Option<&str> {
        self.dead_letter_url.as_deref()
    }

    pub fn payloads(&self) -> &S3Payloads {
        &self.payloads
    }

    /// The marker's state, for support and tests: `pending`, `queued`, or `None` when unknown.
    pub async fn delivery_state(
        &self,
        provider: &str,
        delivery_id: &str,
    ) -> Result<Option<String>, PortError> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.deliveries_table)
            .key("pk", AttributeValue::S(delivery_key(provider, delivery_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("dynamodb get delivery", e))?;
        Ok(out
            .item()
            .and_then(|i| i.get("state"))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }

    /// Where a large body is put aside: the provider, then a digest of the delivery id (ids are the
    /// sender's text and may hold any character).
    fn body_key(e: &Envelope) -> String {
        let digest = Sha256::digest(e.delivery_id.as_bytes());
        format!("{}/{}", e.provider, hex::encode(&digest[..16]))
    }

    /// The body's marker: the first delivery id that brought these bytes. The same bytes under another id
    /// are a replay (a provider's delivery id is not always signed); the same delivery retried passes.
    async fn mark_body(&self, e: &Envelope) -> Result<EnqueueOutcome, PortError> {
        let digest = e.body_digest();
        if digest == e.delivery_id {
            // The id is the body's digest already (a provider that sends no id): one marker does.
            return Ok(EnqueueOutcome::Accepted);
        }
        let put = self
            .dynamodb
            .put_item()
            .table_name(&self.deliveries_table)
            .item(
                "pk",
                AttributeValue::S(format!("{}#body#{digest}", e.provider)),
            )
            .item("delivery_id", AttributeValue::S(e.delivery_id.clone()))
            .item("received_at", AttributeValue::N(e.received_at.to_string()))
            .item(
                "expires_at",
                AttributeValue::N(epoch_seconds_in(self.retention_days).to_string()),
            )
            .condition_expression("attribute_not_exists(pk) OR delivery_id = :id")
            .expression_attribute_values(":id", AttributeValue::S(e.delivery_id.clone()));
        put_marker(put, "dynamodb put body marker").await
    }

    async fn mark(&self, e: &Envelope) -> Result<EnqueueOutcome, PortError> {
        let mut put = self
            .dynamodb
            .put_item()
            .table_name(&self.deliveries_table)
            .item(
                "pk",
                AttributeValue::S(delivery_key(&e.provider, &e.delivery_id)),
            )
            .item("provider", AttributeValue::S(e.provider.clone()))
            .item("delivery_id", AttributeValue::S(e.delivery_id.clone()))
            .item("received_at", AttributeValue::N(e.received_at.to_string()))
            .item("size", AttributeValue::N(e.body.len().to_string()))
            .item("state", AttributeValue::S("pending".into()))
            .item(
                "expires_at",
                AttributeValue::N(epoch_seconds_in(self.retention_days).to_string()),
            )
            .condition_expression("attribute_not_exists(pk) OR #s = :pending")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":pending", AttributeValue::S("pending".into()));
        if let Some(ev) = &e.event {
            put = put.item("event", AttributeValue::S(ev.clone()));
        }
        put_marker(put, "dynamodb put delivery").await
    }

    /// A queue message's envelope, its body fetched when it was put aside. A message that is not one
    /// of ours can never be read (invalid); a body that cannot be fetched yet keeps the store's kind.
    async fn decode(&self, text: &str) -> Result<Envelope, PortError> {
        let message = QueueMessage::from_json(text)
            .map_err(|e| PortError::invalid(format!("unreadable message: {e}")).with_source(e))?;
        match message {
            QueueMessage::Inline(e) => Ok(e),
            QueueMessage::Offloaded { envelope, body_ref } => {
                let mut e = envelope;
                e.body = self.payloads.get(body_ref).await?;
                Ok(e)
            }
        }
    }

    async fn delete(&self, url: &str, receipts: Vec<String>) -> Result<(), PortError> {
        for chunk in receipts.chunks(10) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .ok()
                })
                .collect();
            let out = self
                .sqs
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("sqs delete", e))?;
            if let Some(f) = out.failed().first() {
                return Err(PortError::transient(format!(
                    "sqs delete failed for {} message(s): {}",
                    out.failed().len(),
                    f.message().unwrap_or(f.code())
                )));
            }
        }
        Ok(())
    }
}

async fn queue_url_of(sqs: &aws_sdk_sqs::Client, n: &str) -> Result<String, PortError> {
    queue_url(sqs, n).await
}

impl Queue for SqsQueue {
    async fn enqueue(&self, e: Envelope) -> Result<EnqueueOutcome, PortError> {
        if self.mark_body(&e).await? == EnqueueOutcome::Duplicate
            || self.mark(&e).await? == EnqueueOutcome::Duplicate
        {
            return Ok(EnqueueOutcome::Duplicate);
        }
        let mut text = e.to_json();
        if text.len() > self.offload_threshold {
            let key = Self::body_key(&e);
            self.payloads.put(key.clone(), e.body.clone()).await?;
            text = e.to_json_offloaded(&key);
        }
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(text)
            .send()
            .await
            .map_err(|err| sdk_error("sqs send", err))?;
        // The message is durable now; a marker left pending only lets a retry enqueue it again.
        if let Err(err) = self
            .dynamodb
            .update_item()
            .table_name(&self.deliveries_table)
            .key(
                "pk",
                AttributeValue::S(delivery_key(&e.provider, &e.delivery_id)),
            )
            .update_expression("SET #s = :queued")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":queued", AttributeValue::S("queued".into()))
            .send()
            .await
        {
            tracing::warn!(error = %sdk_error("dynamodb mark queued", err), delivery_id = %e.delivery_id, "delivery marker left pending");
        }
        Ok(EnqueueOutcome::Accepted)
    }

    async fn receive(&self, max: usize) -> Result<Vec<Received>, PortError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(self.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sdk_error("sqs receive", e))?;
        let mut received = Vec::new();
        // Expired entries go once per receive, not once per message.
        let now = std::time::Instant::now();
        prune(&mut *self.in_flight.lock().await, now, IN_FLIGHT_MAX_AGE);
        for m in out.messages() {
            let (Some(receipt), Some(body)) = (m.receipt_handle(), m.body()) else {
                continue;
            };
            let receive_count = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            self.in_flight
                .lock()
                .await
                .insert(receipt.to_string(), (body.to_string(), now));
            match self.decode(body).await {
                Ok(envelope) => received.push(Received {
                    receipt: receipt.to_string(),
                    receive_count,
                    envelope,
                }),
                // Left on the queue: the redrive policy dead-letters it after its receives.
                Err(e) => tracing::warn!(reason = %e, kind = ?e.kind, "queue message not readable"),
            }
        }
        Ok(received)
    }

    async fn ack(&self, receipts: Vec<String>) -> Result<(), PortError> {
        if receipts.is_empty() {
            return Ok(());
        }
        {
            let mut in_flight = self.in_flight.lock().await;
            for r in &receipts {
                in_flight.remove(r);
            }
        }
        self.delete(&self.queue_url, receipts).await
    }

    async fn dead_letter(&self, receipt: String, reason: String) -> Result<(), PortError> {
        let body = self
            .in_flight
            .lock()
            .await
            .remove(&receipt)
            .map(|(body, _)| body);
        // Without a dead-letter queue at hand, the queue's redrive policy moves it after its receives.
        let (Some(dlq), Some(body)) = (self.dead_letter_url.as_deref(), body) else {
            return Ok(());
        };
        self.sqs
            .send_message()
            .queue_url(dlq)
            .message_body(body)
            .message_attributes(
                "reason",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(reason)
                    .build()
                    .map_err(PortError::invalid)?,
            )
            .send()
            .await
            .map_err(|e| sdk_error("sqs send to dead-letter queue", e))?;
        self.delete(&self.queue_url, vec![receipt]).await
    }
}

impl DeadLetters for SqsQueue {
    async fn dead_letter_count(&self) -> Result<u64, PortError> {
        let Some(dlq) = self.dead_letter_url.as_deref() else {
            return Err(PortError::invalid("no dead-letter queue given"));
        };
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(dlq)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| sdk_error("sqs queue attributes", e))?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    async fn redrive(&self, max: usize) -> Result<usize, PortError> {
        let Some(dlq) = self.dead_letter_url.clone() else {
            return Err(PortError::invalid("no dead-letter queue given"));
        };
        let out = self
            .sqs
            .receive_message()
            .queue_url(&dlq)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(0)
            .visibility_timeout(60)
            .send()
            .await
            .map_err(|e| sdk_error("sqs receive from dead-letter queue", e))?;
        let messages: Vec<(String, String)> = out
            .messages()
            .iter()
            .filter_map(|m| Some((m.receipt_handle()?.to_string(), m.body()?.to_string())))
            .collect();
        if messages.is_empty() {
            return Ok(0);
        }
        let entries: Vec<SendMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, (_, body))| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .ok()
            })
            .collect();
        let sent = self
            .sqs
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error("sqs send redriven", e))?;
        // Only what reached the queue leaves the dead-letter queue; the rest reappears there.
        let moved: Vec<String> = sent
            .successful()
            .iter()
            .filter_map(|s| s.id().parse::<usize>().ok())
            .filter_map(|i| messages.get(i).map(|m| m.0.clone()))
            .collect();
        let n = moved.len();
        self.delete(&dlq, moved).await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_past_any_visibility_timeout_are_forgotten() {
        let start = std::time::Instant::now();
        let mut in_flight = HashMap::new();
        for i in 0..1000 {
            in_flight.insert(format!("old-{i}"), ((), start));
        }
        let later = start + IN_FLIGHT_MAX_AGE + std::time::Duration::from_secs(1);
        in_flight.insert("fresh".to_string(), ((), later));
        prune(&mut in_flight, later, IN_FLIGHT_MAX_AGE);
        assert_eq!(in_flight.keys().collect::<Vec<_>>(), ["fresh"]);
    }
}
