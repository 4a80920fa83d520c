//! Test support for the AWS path: moto server (started by `scripts/test`,
//! its URL in `PRISM_TEST_AWS_ENDPOINT`), with a fresh table and bucket per
//! test so tests run in parallel without seeing each other.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use std::collections::HashMap;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use prism_aws::{self as aws, ArtifactStore, AwsTarget, DynamoRegistry};

/// One test's AWS resources.
pub struct AwsEnv {
    pub endpoint: String,
    pub table: String,
    pub bucket: String,
    pub registry: DynamoRegistry,
    pub store: ArtifactStore,
    pub ddb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
}

/// The moto endpoint, or `None` (with a note) when it is not running and
/// not required. With `PRISM_REQUIRE_ALL=1` a missing moto fails the test.
pub fn endpoint() -> Option<String> {
    match std::env::var("PRISM_TEST_AWS_ENDPOINT") {
        Ok(e) => Some(e),
        Err(_) if std::env::var_os("PRISM_REQUIRE_ALL").is_some() => {
            panic!("PRISM_TEST_AWS_ENDPOINT is not set; run scripts/test, which starts moto server")
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: no moto server (PRISM_TEST_AWS_ENDPOINT unset); scripts/test starts one"
            );
            None
        }
    }
}

static N: AtomicU32 = AtomicU32::new(0);

/// A runtime for the async SDK calls.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Create a registry table and a plugin bucket named for `test`.
pub async fn setup(endpoint: &str, test: &str) -> AwsEnv {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!("prism-test-{test}-{}-{n}", std::process::id()).replace('_', "-");
    let target = AwsTarget {
        endpoint_url: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
    };
    let config = aws::sdk_config(&target).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let s3 = aws::s3_client(&config, &target);
    create_registry_table(&ddb, &name).await;
    s3.create_bucket().bucket(&name).send().await.unwrap();
    AwsEnv {
        endpoint: endpoint.to_owned(),
        table: name.clone(),
        bucket: name.clone(),
        registry: DynamoRegistry::new(ddb.clone(), &name),
        store: ArtifactStore::new(s3.clone(), &name),
        ddb,
        s3,
    }
}

/// The registry table as Terraform will create it.
pub async fn create_registry_table(ddb: &aws_sdk_dynamodb::Client, name: &str) {
    let attr = |n: &str, t| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(t)
            .build()
            .unwrap()
    };
    let key = |n: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    ddb.create_table()
        .table_name(name)
        .attribute_definitions(attr("receiver", ScalarAttributeType::S))
        .attribute_definitions(attr("version", ScalarAttributeType::N))
        .key_schema(key("receiver", KeyType::Hash))
        .key_schema(key("version", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

fn key_schema(name: &str) -> (AttributeDefinition, KeySchemaElement) {
    (
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap(),
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(KeyType::Hash)
            .build()
            .unwrap(),
    )
}

/// A stream of NEW_AND_OLD_IMAGES, as prism reads every table's stream.
fn new_and_old_images() -> aws_sdk_dynamodb::types::StreamSpecification {
    use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType};
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .unwrap()
}

/// The product-model table (key `pk`) with a NEW_AND_OLD_IMAGES stream;
/// returns the stream ARN.
pub async fn create_model_table(ddb: &aws_sdk_dynamodb::Client, name: &str) -> String {
    let (attr, key) = key_schema("pk");
    let out = ddb
        .create_table()
        .table_name(name)
        .attribute_definitions(attr)
        .key_schema(key)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(new_and_old_images())
        .send()
        .await
        .unwrap();
    out.table_description
        .and_then(|d| d.latest_stream_arn)
        .expect("the table has a stream")
}

/// The retry ledger table (key `record`).
pub async fn create_ledger_table(ddb: &aws_sdk_dynamodb::Client, name: &str) {
    let (attr, key) = key_schema(prism_core::stream::ledger::KEY);
    ddb.create_table()
        .table_name(name)
        .attribute_definitions(attr)
        .key_schema(key)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

/// The output dedup table (receiver S, key S).
pub async fn create_outputs_table(ddb: &aws_sdk_dynamodb::Client, name: &str) {
    use prism_aws::outputs::{KEY_PRODUCT, KEY_RECEIVER};
    let (ra, rk) = key_schema(KEY_RECEIVER);
    let (ka, _) = key_schema(KEY_PRODUCT);
    ddb.create_table()
        .table_name(name)
        .attribute_definitions(ra)
        .attribute_definitions(ka)
        .key_schema(rk)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(KEY_PRODUCT)
                .key_type(KeyType::Range)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

/// A plain JSON value as a DynamoDB attribute (numbers keep their exact text).
pub fn attr(v: &serde_json::Value) -> aws_sdk_dynamodb::types::AttributeValue {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    use serde_json::Value as V;
    match v {
        V::Null => A::Null(true),
        V::Bool(b) => A::Bool(*b),
        V::Number(n) => A::N(n.to_string()),
        V::String(s) => A::S(s.clone()),
        V::Array(a) => A::L(a.iter().map(attr).collect()),
        V::Object(o) => A::M(o.iter().map(|(k, v)| (k.clone(), attr(v))).collect()),
    }
}

/// Write a plain JSON document as an item.
pub async fn put(ddb: &aws_sdk_dynamodb::Client, table: &str, doc: &serde_json::Value) {
    let item = doc
        .as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), attr(v)))
        .collect();
    ddb.put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

/// Delete the item with key `pk`.
pub async fn delete(ddb: &aws_sdk_dynamodb::Client, table: &str, pk: &str) {
    ddb.delete_item()
        .table_name(table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.into()))
        .send()
        .await
        .unwrap();
}

/// SQS queues for one test, named apart from other tests', and a
/// multi-threaded runtime for the async calls (the SQS sink blocks on it).
pub struct Queues {
    pub client: aws_sdk_sqs::Client,
    pub rt: tokio::runtime::Runtime,
    pub prefix: String,
}

impl Queues {
    /// `None` when moto is not running (see [`endpoint`]).
    pub fn new(test: &str) -> Option<Self> {
        let ep = endpoint()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let target = AwsTarget {
            endpoint_url: Some(ep),
            region: Some("us-east-1".into()),
        };
        let client = aws_sdk_sqs::Client::new(&rt.block_on(aws::sdk_config(&target)));
        Some(Self {
            client,
            rt,
            prefix: format!("t{}-{test}", std::process::id()),
        })
    }

    /// Create queue `<prefix>-<name>` (FIFO when it ends in `.fifo`); its URL.
    pub fn create(&self, name: &str) -> String {
        let name = format!("{}-{name}", self.prefix);
        let fifo = name.ends_with(".fifo");
        self.rt.block_on(async {
            let mut req = self.client.create_queue().queue_name(&name);
            if fifo {
                req = req.attributes(QueueAttributeName::FifoQueue, "true");
            }
            req.send().await.unwrap().queue_url.unwrap()
        })
    }

    /// Every message in the queue: (body, attributes, group id).
    pub fn drain(&self, url: &str) -> Vec<(String, HashMap<String, String>, Option<String>)> {
        self.rt.block_on(async {
            let mut all = Vec::new();
            loop {
                let out = self
                    .client
                    .receive_message()
                    .queue_url(url)
                    .max_number_of_messages(10)
                    .message_attribute_names("All")
                    .message_system_attribute_names(MessageSystemAttributeName::All)
                    .send()
                    .await
                    .unwrap();
                let msgs = out.messages();
                if msgs.is_empty() {
                    break;
                }
                for m in msgs {
                    let attrs = m
                        .message_attributes()
                        .map(|a| {
                            a.iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.string_value().unwrap_or_default().to_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let group = m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                        .cloned();
                    all.push((m.body().unwrap_or_default().to_owned(), attrs, group));
                    self.client
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(m.receipt_handle().unwrap())
                        .send()
                        .await
                        .unwrap();
                }
            }
            all
        })
    }
}

/// The spool table (lane S, entry S).
pub async fn create_spool_table(ddb: &aws_sdk_dynamodb::Client, name: &str) {
    use prism_aws::spool::{KEY_ENTRY, KEY_LANE};
    let (la, lk) = key_schema(KEY_LANE);
    let (ea, _) = key_schema(KEY_ENTRY);
    ddb.create_table()
        .table_name(name)
        .attribute_definitions(la)
        .attribute_definitions(ea)
        .key_schema(lk)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(KEY_ENTRY)
                .key_type(KeyType::Range)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

/// A shadow table as `decl` declares it (string keys, one GSI per declared
/// index, projecting everything) with a NEW_AND_OLD_IMAGES stream; returns
/// the stream ARN.
pub async fn create_shadow_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    decl: &prism_mapping::TableDecl,
) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
        ProjectionType, ScalarAttributeType,
    };
    let mut attrs: Vec<&String> = decl.key.iter().chain(decl.indexes.values()).collect();
    attrs.sort();
    attrs.dedup();
    let definitions = attrs
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(a.as_str())
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        })
        .collect();
    let element = |a: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(a)
            .key_type(t)
            .build()
            .unwrap()
    };
    let mut key = vec![element(&decl.key[0], KeyType::Hash)];
    if let Some(sort) = decl.key.get(1) {
        key.push(element(sort, KeyType::Range));
    }
    let mut req = ddb
        .create_table()
        .table_name(name)
        .set_attribute_definitions(Some(definitions))
        .set_key_schema(Some(key))
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(new_and_old_images());
    for (index, attr) in &decl.indexes {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index)
                .key_schema(element(attr, KeyType::Hash))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        );
    }
    let out = req.send().await.unwrap();
    out.table_description
        .and_then(|d| d.latest_stream_arn)
        .expect("the table has a stream")
}
