//! The Terraform in `terraform/` against the code that runs in it: table
//! names and keys, the stream view, the event source mapping's response
//! types and the Lambda's environment (IAM: `terraform_iam.rs`). The
//! names live in one place (the host's constants); these tests fail when
//! either side drifts.

mod alarms;
pub(crate) mod iam;
mod mapper;

use std::collections::BTreeMap;
use std::path::Path;

use hcl::{Block, Body};
use prism_aws::{outputs, registry, spool};
use prism_core::stream::ledger;
use prism_e2e::wasm::ROOT;
use prism_lambda::vars;

/// Every top-level block of the `.tf` files in a directory.
pub(crate) fn blocks(dir: &str) -> Vec<Block> {
    let dir = Path::new(ROOT).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .tf files in {}", dir.display());
    files
        .iter()
        .flat_map(|f| {
            let body: Body = hcl::parse(&std::fs::read_to_string(f).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            body.into_blocks()
        })
        .collect()
}

pub(crate) fn find<'a>(blocks: &'a [Block], kind: &str, labels: &[&str]) -> &'a Block {
    blocks
        .iter()
        .find(|b| {
            b.identifier() == kind
                && b.labels()
                    .iter()
                    .map(|l| l.as_str())
                    .eq(labels.iter().copied())
        })
        .unwrap_or_else(|| panic!("no {kind} {labels:?} in terraform/"))
}

/// A local value's expression as HCL text, from whichever `locals` block
/// defines it.
pub(crate) fn local(blocks: &[Block], key: &str) -> String {
    let defining: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.identifier() == "locals" && b.body().attributes().any(|a| a.key() == key))
        .collect();
    assert_eq!(
        defining.len(),
        1,
        "local.{key} is defined {} times",
        defining.len()
    );
    attr(defining[0], key)
}

/// An attribute's expression as HCL text (`"x"`, `aws_s3_bucket.plugins.arn`, …).
pub(crate) fn attr(b: &Block, key: &str) -> String {
    b.body()
        .attributes()
        .find(|a| a.key() == key)
        .unwrap_or_else(|| panic!("{} {:?} has no {key}", b.identifier(), b.labels()))
        .expr()
        .to_string()
}

pub(crate) fn nested<'a>(b: &'a Block, ident: &str) -> Vec<&'a Block> {
    b.body()
        .blocks()
        .filter(|n| n.identifier() == ident)
        .collect()
}

/// A list attribute's items as HCL text, strings unquoted.
pub(crate) fn list(b: &Block, key: &str) -> Vec<String> {
    let hcl::Expression::Array(items) = b
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .unwrap_or_else(|| panic!("{} {:?} has no {key}", b.identifier(), b.labels()))
        .expr()
        .clone()
    else {
        panic!("{key} is not a list")
    };
    items
        .iter()
        .map(|e| e.to_string().trim_matches('"').to_owned())
        .collect()
}

/// A Lambda function's environment variables: name → HCL expression text.
pub(crate) fn env_vars(f: &Block) -> BTreeMap<String, String> {
    let env = nested(f, "environment");
    let hcl::Expression::Object(vars) = env[0]
        .body()
        .attributes()
        .find(|a| a.key() == "variables")
        .unwrap()
        .expr()
        .clone()
    else {
        panic!("environment.variables is not an object")
    };
    vars.iter()
        .map(|(k, v)| (k.to_string().trim_matches('"').to_owned(), v.to_string()))
        .collect()
}

pub(crate) fn quoted(s: &str) -> String {
    format!("{s:?}")
}

#[test]
fn tables_have_the_keys_the_code_uses() {
    let tf = blocks("terraform");
    let table = |name| find(&tf, "resource", &["aws_dynamodb_table", name]);
    let attr_types = |b: &Block| -> BTreeMap<String, String> {
        nested(b, "attribute")
            .iter()
            .map(|a| (attr(a, "name"), attr(a, "type")))
            .collect()
    };

    let reg = table("registry");
    assert_eq!(attr(reg, "hash_key"), quoted(registry::KEY_RECEIVER));
    assert_eq!(attr(reg, "range_key"), quoted(registry::KEY_VERSION));
    let types = attr_types(reg);
    assert_eq!(types[&quoted(registry::KEY_RECEIVER)], quoted("S"));
    assert_eq!(types[&quoted(registry::KEY_VERSION)], quoted("N"));

    let ledger_t = table("ledger");
    assert_eq!(attr(ledger_t, "hash_key"), quoted(ledger::KEY));
    assert_eq!(attr_types(ledger_t)[&quoted(ledger::KEY)], quoted("S"));
    let ttl = nested(ledger_t, "ttl");
    assert_eq!(attr(ttl[0], "attribute_name"), quoted(ledger::EXPIRES_AT));
    assert_eq!(attr(ttl[0], "enabled"), "true");

    let outputs_t = table("outputs");
    assert_eq!(attr(outputs_t, "hash_key"), quoted(outputs::KEY_RECEIVER));
    assert_eq!(attr(outputs_t, "range_key"), quoted(outputs::KEY_PRODUCT));

    let spool_t = table("spool");
    assert_eq!(attr(spool_t, "hash_key"), quoted(spool::KEY_LANE));
    assert_eq!(attr(spool_t, "range_key"), quoted(spool::KEY_ENTRY));
    let types = attr_types(spool_t);
    assert_eq!(types[&quoted(spool::KEY_LANE)], quoted("S"));
    assert_eq!(types[&quoted(spool::KEY_ENTRY)], quoted("S"));
    let ttl = nested(spool_t, "ttl");
    assert_eq!(attr(ttl[0], "attribute_name"), quoted(spool::EXPIRES_AT));
    assert_eq!(attr(ttl[0], "enabled"), "true");

    // The dispatcher diffs old and new images: it needs both.
    let model = table("model");
    assert_eq!(attr(model, "stream_enabled"), "true");
    assert_eq!(
        attr(model, "stream_view_type"),
        quoted("NEW_AND_OLD_IMAGES")
    );

    for t in tf
        .iter()
        .filter(|b| b.identifier() == "resource" && b.labels()[0].as_str() == "aws_dynamodb_table")
    {
        let name = t.labels()[1].as_str();
        assert_eq!(attr(t, "billing_mode"), quoted("PAY_PER_REQUEST"), "{name}");
        assert_eq!(nested(t, "point_in_time_recovery").len(), 1, "{name}");
        let sse = nested(t, "server_side_encryption");
        assert_eq!(
            attr(sse[0], "kms_key_arn"),
            "aws_kms_key.main.arn",
            "{name}"
        );
    }
}

#[test]
fn the_event_source_mapping_lets_the_dispatcher_report_item_failures() {
    let tf = blocks("terraform");
    let esm = find(
        &tf,
        "resource",
        &["aws_lambda_event_source_mapping", "model_stream"],
    );
    assert_eq!(
        attr(esm, "event_source_arn"),
        "aws_dynamodb_table.model.stream_arn"
    );
    assert_eq!(
        list(esm, "function_response_types"),
        ["ReportBatchItemFailures"]
    );
    assert_eq!(attr(esm, "bisect_batch_on_function_error"), "true");
    assert_eq!(attr(esm, "maximum_retry_attempts"), "var.max_retries");
    assert_eq!(
        attr(esm, "maximum_record_age_in_seconds"),
        "var.max_record_age_seconds"
    );
    assert_eq!(attr(esm, "batch_size"), "var.batch_size");
    assert_eq!(
        attr(esm, "maximum_batching_window_in_seconds"),
        "var.batching_window_seconds"
    );
    let dest = nested(esm, "destination_config");
    let on_failure = nested(dest[0], "on_failure");
    assert_eq!(
        attr(on_failure[0], "destination_arn"),
        "aws_sqs_queue.stream_failures.arn"
    );
}

#[test]
fn the_lambda_gets_the_variables_the_dispatcher_reads() {
    let tf = blocks("terraform");
    let f = find(&tf, "resource", &["aws_lambda_function", "dispatcher"]);
    assert_eq!(attr(f, "runtime"), quoted("provided.al2023"));
    assert_eq!(list(f, "architectures"), ["arm64"]);
    assert_eq!(attr(f, "handler"), quoted("bootstrap"));
    let set = env_vars(f);
    for name in set.keys() {
        assert!(
            vars::ALL.contains(&name.as_str()),
            "Terraform sets {name}, which the dispatcher does not read"
        );
    }
    for name in vars::REQUIRED {
        assert!(
            set.contains_key(*name),
            "Terraform does not set the required {name}"
        );
    }
    assert_eq!(
        set[vars::REGISTRY_TABLE],
        "aws_dynamodb_table.registry.name"
    );
    assert_eq!(set[vars::LEDGER_TABLE], "aws_dynamodb_table.ledger.name");
    assert_eq!(set[vars::PLUGIN_BUCKET], "aws_s3_bucket.plugins.bucket");
    assert_eq!(set[vars::UNREADABLE_QUEUE], "aws_sqs_queue.unreadable.url");
    assert_eq!(set[vars::OUTPUTS_TABLE], "aws_dynamodb_table.outputs.name");
    assert_eq!(set[vars::SPOOL_TABLE], "aws_dynamodb_table.spool.name");
}

#[test]
fn one_schedule_ticks_the_dispatcher_with_the_event_it_understands() {
    let tf = blocks("terraform");
    let rule = find(&tf, "resource", &["aws_cloudwatch_event_rule", "tick"]);
    assert!(attr(rule, "schedule_expression").contains("var.tick_minutes"));
    let target = find(&tf, "resource", &["aws_cloudwatch_event_target", "tick"]);
    assert_eq!(attr(target, "arn"), "aws_lambda_function.dispatcher.arn");
    assert_eq!(attr(target, "rule"), "aws_cloudwatch_event_rule.tick.name");
    // The input, handed to the Lambda entry point's own parser, is a tick.
    let input = target
        .body()
        .attributes()
        .find(|a| a.key() == "input")
        .unwrap()
        .expr()
        .clone();
    let hcl::Expression::FuncCall(call) = input else {
        panic!("input is not jsonencode(...)")
    };
    assert_eq!(call.name.to_string(), "jsonencode");
    let hcl::Expression::Object(object) = &call.args[0] else {
        panic!("jsonencode of something other than an object")
    };
    let event: serde_json::Map<String, serde_json::Value> = object
        .iter()
        .map(|(k, v)| {
            let value = match v {
                hcl::Expression::String(s) => serde_json::Value::from(s.as_str()),
                hcl::Expression::Bool(b) => serde_json::Value::from(*b),
                other => panic!("unexpected value {other:?}"),
            };
            (k.to_string().trim_matches('"').to_owned(), value)
        })
        .collect();
    let event = serde_json::Value::Object(event);
    assert_eq!(
        prism_lambda::invocation(&event),
        Ok(prism_lambda::Invocation::Tick { force: false }),
        "{event}"
    );
    let permission = find(&tf, "resource", &["aws_lambda_permission", "tick"]);
    assert_eq!(
        attr(permission, "principal"),
        quoted("events.amazonaws.com")
    );
    assert_eq!(
        attr(permission, "source_arn"),
        "aws_cloudwatch_event_rule.tick.arn"
    );
}

/// A record the event source mapping gives up on must still be in the
/// stream (24 h retention) when an operator reads the on-failure queue:
/// `max_record_age_seconds` is at most 18 h by default and by validation,
/// and -1 ("until the stream drops it") is refused.
#[test]
fn records_given_up_on_can_still_be_replayed_from_the_stream() {
    use hcl::eval::{Context, Evaluate};
    let tf = blocks("terraform");
    let v = find(&tf, "variable", &["max_record_age_seconds"]);
    let condition = nested(v, "validation")[0]
        .body()
        .attributes()
        .find(|a| a.key() == "condition")
        .unwrap()
        .expr()
        .clone();
    let allowed = |age: i64| -> bool {
        let mut ctx = Context::new();
        ctx.declare_var(
            "var",
            hcl::Value::Object(
                [("max_record_age_seconds".to_owned(), hcl::Value::from(age))]
                    .into_iter()
                    .collect(),
            ),
        );
        condition.evaluate(&ctx).unwrap() == hcl::Value::Bool(true)
    };
    for age in [60, 21_600, 64_800] {
        assert!(allowed(age), "{age} s should be allowed");
    }
    for age in [-1, 59, 64_801, 86_400] {
        assert!(
            !allowed(age),
            "{age} s leaves no time to replay from the stream"
        );
    }
    let default: i64 = attr(v, "default").parse().unwrap();
    assert!(
        allowed(default),
        "the default {default} s is refused by its own validation"
    );
    for f in ["lambda.tf", "mapper.tf"] {
        let text = std::fs::read_to_string(Path::new(ROOT).join("terraform").join(f)).unwrap();
        assert!(
            text.contains("maximum_record_age_in_seconds  = var.max_record_age_seconds"),
            "{f}"
        );
    }
}
