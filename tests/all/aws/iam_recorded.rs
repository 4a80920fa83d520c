//! Every AWS call the e2e suite made, evaluated against the policy of the
//! role that would make it on AWS.
//!
//! `scripts/test` runs moto with its request recorder on
//! (`tests/iam/moto_recording.py`) and, after the suite, runs the ignored
//! test here on the recording (`PRISM_AWS_CALLS`). Each prism component
//! sends its name as the SDK's app name (`prism_aws::Caller`): the
//! dispatcher's, mapper's, read API's and a team deploy pipeline's calls
//! are evaluated against `terraform/`'s policies for those roles
//! (`iam.rs`); an operator's and the test harness's own calls are counted,
//! not evaluated (prism defines no operator role).
//!
//! How a recorded call becomes the request IAM evaluates: `aws_calls.rs`.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::aws::calls::requests;
use crate::aws::iam::{Request, deployer_of, policies, queue_arn, simulate, table_arn};

/// A call the code makes knowing the role may deny it, and what it does
/// then: (role, action, part of the resource, why it is fine).
const EXPECTED_DENIALS: &[(&str, &str, &str, &str)] = &[(
    "deployer",
    "s3:PutObject",
    "/precompiled/",
    "register offers the precompiled artifact; a team's role may not write native code, so register says so and the dispatcher compiles and shares it",
)];

#[test]
#[ignore = "scripts/test runs it after the suite, on moto's recording of it (PRISM_AWS_CALLS)"]
fn every_aws_call_the_suite_made_is_allowed_to_the_role_that_made_it() {
    let path = std::env::var("PRISM_AWS_CALLS")
        .expect("PRISM_AWS_CALLS names moto's recording of the suite (scripts/test sets it)");
    let recording = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (requests, counts) = requests(&recording);
    let requests: Vec<Request> = requests.into_iter().collect();
    eprintln!(
        "recorded calls by caller: {counts:?}; {} distinct requests evaluated",
        requests.len()
    );
    for role in ["dispatcher", "deployer"] {
        assert!(
            counts.get(role).copied().unwrap_or(0) > 0,
            "the recording has no call of the {role}: is the app name still sent? {counts:?}"
        );
    }
    let mut roles = policies();
    for r in &requests {
        if let Some(team) = r.policy.strip_prefix("deployer:") {
            let (name, doc) = deployer_of(team);
            roles.entry(name).or_insert(doc);
        }
    }
    let results = simulate(&roles, &requests).expect("the IAM evaluator is installed");
    let mut denied = Vec::new();
    let mut expected = BTreeMap::new();
    for (r, got) in requests.iter().zip(results) {
        if got == "Allowed" {
            continue;
        }
        let role = r.policy.split(':').next().unwrap_or_default();
        match EXPECTED_DENIALS.iter().find(|(want, action, part, _)| {
            role == *want && r.action == *action && r.resource.contains(part)
        }) {
            Some((.., why)) => *expected.entry(*why).or_insert(0) += 1,
            None => denied.push(format!("{r} -> {got}")),
        }
    }
    eprintln!("denied as the code expects: {expected:?}");
    assert!(
        denied.is_empty(),
        "{} call(s) the code makes would be denied on AWS:\n{}",
        denied.len(),
        denied.join("\n")
    );
}

/// The mapping itself, on hand-made recordings: a call is read as the
/// action, resource and condition keys AWS would evaluate.
#[test]
fn recorded_calls_are_read_as_aws_evaluates_them() {
    let line = |ua: &str, target: &str, service: &str, body: Json| {
        serde_json::json!({
            "headers": {
                "X-Amz-User-Agent": ua,
                "X-Amz-Target": target,
                "Authorization": format!("AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
            },
            "method": "POST",
            "url": "http://127.0.0.1:5000/",
            "body": body.to_string(),
            "body_encoded": false,
        })
        .to_string()
    };
    let create = line(
        "",
        "DynamoDB_20120810.CreateTable",
        "dynamodb",
        serde_json::json!({"TableName": "t-reg", "KeySchema": [
            {"AttributeName": "receiver", "KeyType": "HASH"},
            {"AttributeName": "version", "KeyType": "RANGE"}]}),
    );
    let update = line(
        "aws-sdk-rust app/prism-dispatcher",
        "DynamoDB_20120810.UpdateItem",
        "dynamodb",
        serde_json::json!({"TableName": "t-reg",
            "Key": {"receiver": {"S": "web"}, "version": {"N": "0"}},
            "UpdateExpression": "SET #e = :e",
            "ExpressionAttributeNames": {"#e": "last_error", "#r": "receiver"}}),
    );
    let send = line(
        "app/prism-dispatcher",
        "AmazonSQS.SendMessageBatch",
        "sqs",
        serde_json::json!({"QueueUrl": "http://h/123456789012/t1-x-web"}),
    );
    let harness = line(
        "",
        "DynamoDB_20120810.Scan",
        "dynamodb",
        serde_json::json!({"TableName": "t-reg"}),
    );
    let (reqs, counts) = requests(&[create, update, send, harness].join("\n"));
    let reqs: Vec<String> = reqs.iter().map(ToString::to_string).collect();
    assert_eq!(
        reqs,
        [
            format!(
                "dispatcher: dynamodb:UpdateItem on {} dynamodb:Attributes=[\"last_error\", \"receiver\", \"version\"] dynamodb:LeadingKeys=[\"web\"]",
                table_arn("registry")
            ),
            format!(
                "dispatcher: sqs:SendMessage on {}",
                queue_arn("prism-dev-rcv-t1-x-web")
            ),
        ]
    );
    assert_eq!(counts["harness"], 2);
    assert_eq!(counts["dispatcher"], 2);
}
