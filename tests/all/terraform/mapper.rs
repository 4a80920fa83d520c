//! The mapper's Terraform against the code: its Lambda's environment, one
//! event source mapping per shadow table, a role that is the only writer of
//! the model, and shadow tables (keys, indexes) that match the example
//! mapper's manifest.

use prism_aws::sqs;
use prism_aws::{artifacts, model_store, shadow as shadow_reads};
use prism_lambda::mapper::vars;
use serde_json::Value;

use crate::terraform::iam::policy;
use crate::terraform::{attr, blocks, env_vars, find, list, nested, quoted};

#[test]
fn the_mapper_lambda_gets_the_variables_the_mapper_reads() {
    let tf = blocks("terraform");
    let f = find(&tf, "resource", &["aws_lambda_function", "mapper"]);
    assert_eq!(attr(f, "runtime"), quoted("provided.al2023"));
    assert_eq!(list(f, "architectures"), ["arm64"]);
    assert!(attr(f, "filename").contains("var.mapper_lambda_zip"));
    let set = env_vars(f);
    for name in set.keys() {
        assert!(
            vars::ALL.contains(&name.as_str()),
            "Terraform sets {name}, which the mapper does not read"
        );
    }
    for name in vars::REQUIRED {
        assert!(
            set.contains_key(*name),
            "Terraform does not set the required {name}"
        );
    }
    assert_eq!(set[vars::MODEL_TABLE], "aws_dynamodb_table.model.name");
    assert_eq!(set[vars::PLUGIN_BUCKET], "aws_s3_bucket.plugins.bucket");
    assert_eq!(set[vars::SHADOW_PREFIX], "local.shadow_prefix");
    assert_eq!(
        set[vars::DEAD_LETTER_QUEUE],
        "aws_sqs_queue.mapper_dead_letters.url"
    );
    // The shadow tables are named with the same prefix the mapper strips.
    let shadow = find(&tf, "resource", &["aws_dynamodb_table", "shadow"]);
    assert_eq!(
        attr(shadow, "name"),
        quoted("${local.shadow_prefix}${each.key}")
    );
    assert!(attr(shadow, "stream_view_type").contains("NEW_AND_OLD_IMAGES"));
    assert_eq!(
        nested(shadow, "dynamic")
            .iter()
            .filter(|d| d.labels()[0].as_str() == "global_secondary_index")
            .count(),
        1
    );
}

#[test]
fn every_shadow_stream_drives_the_mapper_which_reports_item_failures() {
    let tf = blocks("terraform");
    let m = find(
        &tf,
        "resource",
        &["aws_lambda_event_source_mapping", "shadow_streams"],
    );
    assert_eq!(attr(m, "for_each"), "aws_dynamodb_table.shadow");
    assert_eq!(attr(m, "event_source_arn"), "each.value.stream_arn");
    assert_eq!(attr(m, "function_name"), "aws_lambda_function.mapper.arn");
    assert_eq!(
        list(m, "function_response_types"),
        ["ReportBatchItemFailures"]
    );
    assert_eq!(attr(m, "bisect_batch_on_function_error"), "true");
}

#[test]
fn only_the_mapper_writes_the_model_and_it_reads_only_shadow_tables() {
    let tf = blocks("terraform");
    let st = policy(&tf, "mapper");
    let granted = |action: &str, resource: &str| {
        st.iter()
            .any(|(a, r)| a.iter().any(|x| x == action) && r.iter().any(|x| x.contains(resource)))
    };
    for a in model_store::ACTIONS {
        assert!(
            granted(a, "aws_dynamodb_table.model.arn"),
            "the mapper calls {a} on the model"
        );
    }
    for a in shadow_reads::ACTIONS {
        assert!(
            granted(a, "aws_dynamodb_table.shadow"),
            "the mapper calls {a} on shadow tables"
        );
        assert!(
            granted(a, "/index/*"),
            "the mapper queries declared indexes with {a}"
        );
    }
    for a in sqs::ACTIONS {
        assert!(
            granted(a, "aws_sqs_queue.mapper_dead_letters.arn"),
            "the mapper parks with {a}"
        );
    }
    let mappers = format!(
        "${{aws_s3_bucket.plugins.arn}}/{}*",
        artifacts::MAPPER_PREFIX
    );
    assert!(granted("s3:GetObject", &mappers));
    // Writes: the model only; no shadow table is ever written.
    for (actions, resources) in &st {
        let writes = actions
            .iter()
            .any(|a| a.contains("Put") || a.contains("Delete") || a.contains("Update"));
        if writes && actions.iter().any(|a| a.starts_with("dynamodb:")) {
            assert_eq!(resources, &["aws_dynamodb_table.model.arn"], "{actions:?}");
        }
        assert!(
            actions.iter().all(|a| !a.contains('*')),
            "wildcard action in {actions:?}"
        );
    }
    // And no other role writes the model.
    for role in ["dispatcher", "api"] {
        for (actions, resources) in policy(&tf, role) {
            if resources
                .iter()
                .any(|r| r.contains("aws_dynamodb_table.model.arn"))
            {
                assert!(
                    !actions
                        .iter()
                        .any(|a| a.contains("Put") || a.contains("Delete") || a.contains("Update")),
                    "the {role} role may write the model: {actions:?}"
                );
            }
        }
    }
}

#[test]
fn the_example_environment_declares_the_tables_the_example_mapper_reads() {
    let tf = blocks("terraform/examples/dev");
    let module = find(&tf, "module", &["prism"]);
    let expr = module
        .body()
        .attributes()
        .find(|a| a.key() == "shadow_tables")
        .expect("shadow_tables")
        .expr()
        .clone();
    let declared = plain(&expr);
    let declared = declared.as_object().unwrap_or_else(|| panic!("{declared}"));
    let tables = prism_sample::shadow::tables();
    assert_eq!(declared.len(), tables.len(), "{declared:?}");
    for t in tables {
        let d = &declared[&t.name];
        assert_eq!(d["hash_key"], t.key[0].as_str(), "{}", t.name);
        assert_eq!(
            d.get("range_key").and_then(Value::as_str),
            t.key.get(1).map(String::as_str),
            "{}",
            t.name
        );
        let indexes: std::collections::BTreeMap<String, String> = d
            .get("indexes")
            .map(|i| serde_json::from_value(i.clone()).unwrap())
            .unwrap_or_default();
        assert_eq!(indexes, t.indexes, "{}", t.name);
    }
}

/// A literal HCL expression as JSON (object keys and strings unquoted).
fn plain(e: &hcl::Expression) -> Value {
    match e {
        hcl::Expression::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.to_string().trim_matches('"').to_owned(), plain(v)))
                .collect(),
        ),
        hcl::Expression::Array(a) => Value::Array(a.iter().map(plain).collect()),
        hcl::Expression::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    }
}
