//! Once-only sends on DynamoDB: one item per key in the `outbox` partition, claimed and settled with
//! conditional writes, so two invocations racing for a digest cannot both win.

use aws_sdk_dynamodb::types::AttributeValue;

use em_core::ports::{Outbox, PortError};
use em_core::time::Millis;

use crate::dynamodb::codec::s;
use crate::dynamodb::store::{is_conditional_failure, DynamoStore};
use crate::sdk_error;

/// The partition of the claims: a few items per team and week, well within one partition's throughput.
const OUTBOX: &str = "outbox";

fn n(v: Millis) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl Outbox for DynamoStore {
    async fn claim(
        &self,
        key: String,
        owner: String,
        now: Millis,
        until: Millis,
    ) -> Result<bool, PortError> {
        let put = self
            .client()
            .put_item()
            .table_name(self.table())
            .item("pk", s(OUTBOX))
            .item("sk", s(key))
            .item("owner", s(owner))
            .item("until", n(until))
            .item("sent", AttributeValue::Bool(false))
            .condition_expression("attribute_not_exists(pk) OR (sent = :no AND #until <= :now)")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("dynamodb claim outbox", e)),
        }
    }

    async fn settle(&self, key: String, owner: String, sent: bool) -> Result<(), PortError> {
        // A conditional failure means another owner holds the key now (this claim lapsed): theirs to settle.
        if sent {
            let r = self
                .client()
                .update_item()
                .table_name(self.table())
                .key("pk", s(OUTBOX))
                .key("sk", s(key))
                .update_expression("SET sent = :yes")
                .condition_expression("#owner = :owner")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":owner", s(owner))
                .expression_attribute_values(":yes", AttributeValue::Bool(true))
                .send()
                .await;
            match r {
                Err(e) if !is_conditional_failure(&e) => {
                    Err(sdk_error("dynamodb settle outbox", e))
                }
                _ => Ok(()),
            }
        } else {
            let r = self
                .client()
                .delete_item()
                .table_name(self.table())
                .key("pk", s(OUTBOX))
                .key("sk", s(key))
                .condition_expression("#owner = :owner AND sent = :no")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":owner", s(owner))
                .expression_attribute_values(":no", AttributeValue::Bool(false))
                .send()
                .await;
            match r {
                Err(e) if !is_conditional_failure(&e) => {
                    Err(sdk_error("dynamodb release outbox", e))
                }
                _ => Ok(()),
            }
        }
    }
}
