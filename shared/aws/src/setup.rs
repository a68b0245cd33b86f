//! Creating the resources the adapters need, for a test server or a sandbox account (`em-agent serve
//! --backend aws --create-resources`). In an AWS account the SAM template creates them, with the settings
//! this does not bother with (point-in-time recovery, encryption keys, alarms).

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;

use crate::{sdk_error, AwsNames};
use em_core::ports::PortError;

/// Creates the two tables when they are missing (a test server, a sandbox account); the SAM template is
/// the way to create them in an account.
pub async fn create_tables(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    deliveries_table: &str,
) -> Result<(), PortError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        TimeToLiveSpecification,
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(PortError::invalid)
    };
    let key = |name: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .map_err(PortError::invalid)
    };
    let existing = client
        .list_tables()
        .send()
        .await
        .map_err(|e| sdk_error("dynamodb list tables", e))?
        .table_names
        .unwrap_or_default();
    if !existing.iter().any(|t| t == table) {
        client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .send()
            .await
            .map_err(|e| sdk_error("dynamodb create table", e))?;
    }
    if !existing.iter().any(|t| t == deliveries_table) {
        client
            .create_table()
            .table_name(deliveries_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .send()
            .await
            .map_err(|e| sdk_error("dynamodb create table", e))?;
        client
            .update_time_to_live()
            .table_name(deliveries_table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .map_err(PortError::invalid)?,
            )
            .send()
            .await
            .map_err(|e| sdk_error("dynamodb enable ttl", e))?;
    }
    Ok(())
}

/// Creates the queue and its dead-letter queue (a redrive policy after `max_receives`), when missing;
/// returns their URLs.
pub async fn create_queues(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    dead_letter_queue: &str,
    max_receives: u32,
    visibility_timeout_seconds: u32,
) -> Result<(String, String), PortError> {
    let dlq_url = sqs
        .create_queue()
        .queue_name(dead_letter_queue)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| sdk_error("sqs create dead-letter queue", e))?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sdk_error("sqs dead-letter queue arn", e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    let policy = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receives,
    })
    .to_string();
    let url = sqs
        .create_queue()
        .queue_name(queue)
        .attributes(QueueAttributeName::RedrivePolicy, policy)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout_seconds.to_string(),
        )
        .send()
        .await
        .map_err(|e| sdk_error("sqs create queue", e))?
        .queue_url
        .unwrap_or_default();
    Ok((url, dlq_url))
}

pub async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), PortError> {
    match s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(sdk_error("s3 create bucket", e)),
    }
}

/// Creates every resource `names` names that is missing (queues by name, not URL); returns the names with
/// the queues' URLs.
pub async fn create_resources(
    sdk: &SdkConfig,
    names: &AwsNames,
    max_receives: u32,
    visibility_timeout_seconds: u32,
) -> Result<AwsNames, PortError> {
    create_tables(
        &aws_sdk_dynamodb::Client::new(sdk),
        &names.table,
        &names.deliveries_table,
    )
    .await?;
    let dead_letter = names
        .dead_letter_queue
        .clone()
        .unwrap_or_else(|| format!("{}-dead-letter", names.queue));
    let (queue, dead_letter) = create_queues(
        &aws_sdk_sqs::Client::new(sdk),
        &names.queue,
        &dead_letter,
        max_receives,
        visibility_timeout_seconds,
    )
    .await?;
    let s3 = crate::S3Payloads::new(sdk, names.bucket.clone());
    create_bucket(s3.client(), &names.bucket).await?;
    Ok(AwsNames {
        queue,
        dead_letter_queue: Some(dead_letter),
        ..names.clone()
    })
}
