//! Test support for the AWS path: moto server (started by `scripts/test`,
//! its URL in `PRISM_TEST_AWS_ENDPOINT`), with a fresh table and bucket per
//! test so tests run in parallel without seeing each other.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use prism_host::aws::{self, ArtifactStore, AwsTarget, DynamoRegistry};

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
