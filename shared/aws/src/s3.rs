//! Bodies too large for one SQS message, put aside in S3 until the aggregator reads them. The bucket's
//! lifecycle rule expires them after the retention period.

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::sdk_error;
use em_core::ports::{Payloads, PortError};

#[derive(Clone)]
pub struct S3Payloads {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Payloads {
    pub fn new(sdk: &SdkConfig, bucket: impl Into<String>) -> Self {
        // Path-style addressing: virtual-hosted names do not resolve for an endpoint on the loopback, and
        // AWS serves both.
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build();
        S3Payloads {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: bucket.into(),
        }
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

impl Payloads for S3Payloads {
    async fn put(&self, key: String, body: Bytes) -> Result<(), PortError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| sdk_error("s3 put", e))?;
        Ok(())
    }

    async fn get(&self, key: String) -> Result<Bytes, PortError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| sdk_error("s3 get", e))?;
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| PortError::transient(format!("s3 get {key}: {e}")))?;
        Ok(data.into_bytes())
    }
}
