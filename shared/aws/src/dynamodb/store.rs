//! `DynamoStore` and the table operations the rest is built on: gets, queries, batched reads and writes,
//! conditional updates.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{DeleteRequest, KeysAndAttributes, PutRequest, WriteRequest};

use super::codec::{get_s, s, Item};
use super::keys::SERVICES;
use crate::sdk_error;
use em_core::ports::PortError;

#[derive(Clone)]
pub struct DynamoStore {
    pub(super) client: aws_sdk_dynamodb::Client,
    pub(super) table: String,
    /// Fact sources this process has registered: each is written once per process, not once per fact.
    pub(super) sources_seen: Arc<std::sync::Mutex<HashSet<String>>>,
}

/// Sends `pending` with `call` until DynamoDB has processed all of it (a batch request may leave some
/// unprocessed under load), pausing 25 ms doubling between attempts, at most 10 of them. `call` answers
/// what it got back (items read) and what DynamoDB left unprocessed.
pub(crate) async fn until_processed<T, R, F, Fut>(
    what: &str,
    mut pending: Vec<T>,
    mut call: F,
) -> Result<Vec<R>, PortError>
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<R>, Vec<T>), PortError>>,
{
    let mut out = Vec::new();
    for attempt in 0..10u32 {
        let (got, left) = call(pending).await?;
        out.extend(got);
        pending = left;
        if pending.is_empty() {
            return Ok(out);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25 << attempt.min(6))).await;
    }
    Err(PortError::transient(format!(
        "dynamodb left {} {what} unprocessed",
        pending.len()
    )))
}

pub(crate) fn is_conditional_failure<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// A sort-key condition of a query.
pub(crate) enum Range {
    Between(String, String),
    BeginsWith(String),
    Below(String),
}

impl DynamoStore {
    pub fn new(sdk: &SdkConfig, table: impl Into<String>) -> Self {
        DynamoStore {
            client: aws_sdk_dynamodb::Client::new(sdk),
            table: table.into(),
            sources_seen: Arc::default(),
        }
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub(super) fn key(&self, pk: impl Into<String>, sk: impl Into<String>) -> Item {
        HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
    }

    /// Every item of a partition (or of a sort-key range of it), across pages.
    pub(super) async fn query_all(
        &self,
        pk: String,
        between: Option<(String, String)>,
        consistent: bool,
    ) -> Result<Vec<Item>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(consistent)
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start.take());
            q = match &between {
                Some((a, b)) => q
                    .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
                    .expression_attribute_values(":a", s(a.clone()))
                    .expression_attribute_values(":b", s(b.clone())),
                None => q.key_condition_expression("pk = :pk"),
            };
            let out = q.send().await.map_err(|e| sdk_error("dynamodb query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    pub(crate) async fn get(
        &self,
        pk: String,
        sk: &str,
        consistent: bool,
    ) -> Result<Option<Item>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(pk, sk)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| sdk_error("dynamodb get", e))?;
        Ok(out.item)
    }

    /// The items of a sort-key range, strongly consistent; up to `limit` of them (all, across pages, when
    /// `None`), in sort-key order or reversed.
    pub(crate) async fn query_range(
        &self,
        pk: &str,
        range: Range,
        forward: bool,
        limit: Option<i32>,
    ) -> Result<Vec<Item>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client()
                .query()
                .table_name(self.table())
                .consistent_read(true)
                .scan_index_forward(forward)
                .set_limit(limit)
                .expression_attribute_values(":pk", s(pk))
                .set_exclusive_start_key(start.take());
            q = match &range {
                Range::Between(a, z) => q
                    .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :z")
                    .expression_attribute_values(":a", s(a))
                    .expression_attribute_values(":z", s(z)),
                Range::BeginsWith(p) => q
                    .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                    .expression_attribute_values(":p", s(p)),
                Range::Below(u) => q
                    .key_condition_expression("pk = :pk AND sk < :u")
                    .expression_attribute_values(":u", s(u)),
            };
            let out = q.send().await.map_err(|e| sdk_error("dynamodb query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() && limit.is_none() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// The items of `keys` that exist, strongly consistent, 100 keys per request.
    pub(crate) async fn batch_get(
        &self,
        keys: Vec<(String, String)>,
    ) -> Result<Vec<Item>, PortError> {
        let keys: BTreeSet<(String, String)> = keys.into_iter().collect();
        let keys: Vec<(String, String)> = keys.into_iter().collect();
        let (client, table) = (self.client(), self.table());
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let pending: Vec<Item> = chunk
                .iter()
                .map(|(pk, sk)| {
                    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
                })
                .collect();
            let got = until_processed("reads", pending, |pending| async move {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(PortError::invalid)?;
                let got = client
                    .batch_get_item()
                    .request_items(table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("dynamodb batch get", e))?;
                let items = got
                    .responses
                    .and_then(|mut r| r.remove(table))
                    .unwrap_or_default();
                let left = got
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                Ok((items, left))
            })
            .await?;
            out.extend(got);
        }
        Ok(out)
    }

    /// Writes or deletes items 25 at a time, resubmitting what DynamoDB leaves unprocessed.
    pub(super) async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), PortError> {
        let (client, table) = (&self.client, &self.table);
        for chunk in requests.chunks(25) {
            until_processed::<_, (), _, _>("writes", chunk.to_vec(), |pending| async move {
                let out = client
                    .batch_write_item()
                    .request_items(table, pending)
                    .send()
                    .await
                    .map_err(|e| sdk_error("dynamodb batch write", e))?;
                let left = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(table))
                    .unwrap_or_default();
                Ok((Vec::new(), left))
            })
            .await?;
        }
        Ok(())
    }

    pub(super) fn put_request(item: Item) -> Result<WriteRequest, PortError> {
        Ok(WriteRequest::builder()
            .put_request(
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(PortError::invalid)?,
            )
            .build())
    }

    pub(super) fn delete_request(&self, pk: String, sk: String) -> Result<WriteRequest, PortError> {
        Ok(WriteRequest::builder()
            .delete_request(
                DeleteRequest::builder()
                    .set_key(Some(self.key(pk, sk)))
                    .build()
                    .map_err(PortError::invalid)?,
            )
            .build())
    }

    pub(super) async fn delete_keys(&self, pk: &str, sks: Vec<String>) -> Result<(), PortError> {
        let requests = sks
            .into_iter()
            .map(|sk| self.delete_request(pk.to_string(), sk))
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(requests).await
    }

    /// Sends a conditional update; `false` when its condition failed.
    pub(super) async fn conditional(
        &self,
        update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<bool, PortError> {
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("dynamodb update head", e)),
        }
    }

    /// Every service with metric rows.
    pub(super) async fn services(&self) -> Result<Vec<String>, PortError> {
        self.query_all(SERVICES.into(), None, true)
            .await?
            .iter()
            .map(|i| get_s(i, "sk"))
            .collect()
    }
}
