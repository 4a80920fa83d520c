//! The Terraform in `terraform/` against the code that runs in it: table
//! names and keys, the stream view, the event source mapping's response
//! types, the Lambda's environment and the IAM actions the code calls. The
//! names live in one place (the host's constants); these tests fail when
//! either side drifts.

use std::collections::BTreeMap;
use std::path::Path;

use hcl::{Block, Body};
use prism_aws::ledger as ledger_table;
use prism_aws::sqs;
use prism_aws::{artifacts, outputs, registry, spool};
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

/// The dispatcher policy's statements: (actions, resources) as HCL text.
fn statements(tf: &[Block]) -> Vec<(Vec<String>, Vec<String>)> {
    policy(tf, "dispatcher")
}

/// A policy document's statements: (actions, resources) as HCL text.
pub(crate) fn policy(tf: &[Block], name: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let doc = find(tf, "data", &["aws_iam_policy_document", name]);
    nested(doc, "statement")
        .iter()
        .map(|s| (list(s, "actions"), list_or_expr(s, "resources")))
        .collect()
}

/// A list attribute's items (as [`list`]), or, for a computed list (a
/// `for` expression), the whole expression as one item.
pub(crate) fn list_or_expr(b: &Block, key: &str) -> Vec<String> {
    let expr = b
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .unwrap_or_else(|| panic!("{} {:?} has no {key}", b.identifier(), b.labels()))
        .expr();
    match expr {
        hcl::Expression::Array(_) => list(b, key),
        other => vec![other.to_string()],
    }
}

#[test]
fn the_role_grants_exactly_what_the_code_calls_where_it_calls_it() {
    let tf = blocks("terraform");
    let st = statements(&tf);
    let granted = |action: &str, resource: &str| {
        st.iter()
            .any(|(a, r)| a.iter().any(|x| x == action) && r.iter().any(|x| x == resource))
    };
    let plugins = format!("${{aws_s3_bucket.plugins.arn}}/{}*", artifacts::WASM_PREFIX);
    let precompiled = format!(
        "${{aws_s3_bucket.plugins.arn}}/{}*",
        artifacts::CWASM_PREFIX
    );
    let needs: Vec<(&[&str], &str)> = vec![
        (
            registry::DISPATCHER_ACTIONS,
            "aws_dynamodb_table.registry.arn",
        ),
        (ledger_table::ACTIONS, "aws_dynamodb_table.ledger.arn"),
        (outputs::ACTIONS, "aws_dynamodb_table.outputs.arn"),
        (spool::ACTIONS, "aws_dynamodb_table.spool.arn"),
        (artifacts::DISPATCHER_READS, &plugins),
        (artifacts::DISPATCHER_READS, &precompiled),
        (artifacts::DISPATCHER_WRITES, &precompiled),
        (sqs::ACTIONS, "local.receiver_queue_arns"),
        (sqs::ACTIONS, "aws_sqs_queue.unreadable.arn"),
    ];
    for (actions, resource) in needs {
        for a in actions {
            assert!(
                granted(a, resource),
                "the dispatcher calls {a} on {resource}, and the role does not grant it"
            );
        }
    }
    // Least privilege: components are never written by the dispatcher, no
    // action is a wildcard, and only X-Ray (which has no resources) is on "*".
    for a in artifacts::DISPATCHER_WRITES {
        assert!(
            !granted(a, &plugins),
            "the dispatcher may not write {plugins}"
        );
    }
    for (actions, resources) in &st {
        assert!(
            actions.iter().all(|a| !a.contains('*')),
            "wildcard action in {actions:?}"
        );
        if resources.iter().any(|r| r == "*") {
            assert!(
                actions.iter().all(|a| a.starts_with("xray:")),
                "{actions:?} on *"
            );
        }
    }
}

#[test]
fn receiver_queues_are_named_the_way_the_role_allows() {
    let tf = blocks("terraform");
    let locals = find(&tf, "locals", &[]);
    let name = attr(locals, "name");
    let prefix =
        attr(locals, "receiver_queue_prefix").replace("${local.name}", name.trim_matches('"'));
    assert_eq!(
        attr(locals, "receiver_queue_arns")
            .matches("${local.receiver_queue_prefix}*")
            .count(),
        1
    );
    let module = blocks("terraform/modules/receiver-queue");
    let base = attr(find(&module, "locals", &[]), "base");
    assert!(
        base.trim_matches('"').starts_with(prefix.trim_matches('"')),
        "receiver-queue names its queues {base}, the role allows {prefix}*"
    );
}

#[test]
fn the_read_api_serves_the_routes_the_code_answers_behind_iam() {
    use prism_aws::read_model as model;
    use prism_core::api::route;
    use prism_lambda::api::vars as api_vars;
    let tf = blocks("terraform");
    let routes = find(&tf, "resource", &["aws_apigatewayv2_route", "read"]);
    let hcl::Expression::FuncCall(set) = routes
        .body()
        .attributes()
        .find(|a| a.key() == "for_each")
        .unwrap()
        .expr()
        .clone()
    else {
        panic!("for_each is not toset([...])")
    };
    let hcl::Expression::Array(keys) = &set.args[0] else {
        panic!("toset of something other than a list")
    };
    let keys: Vec<String> = keys
        .iter()
        .map(|k| k.to_string().trim_matches('"').to_owned())
        .collect();
    assert_eq!(
        keys,
        route::ROUTES,
        "API Gateway routes and the router differ"
    );
    // Every declared route parses to a route the code answers.
    for k in route::ROUTES {
        let path = k
            .trim_start_matches("GET ")
            .replace("{key}", "P-1")
            .replace("{receiver}", "r");
        assert!(route::parse("GET", &path).is_ok(), "{k}");
    }
    assert_eq!(attr(routes, "authorization_type"), quoted("AWS_IAM"));
    let integration = find(&tf, "resource", &["aws_apigatewayv2_integration", "read"]);
    assert_eq!(attr(integration, "integration_type"), quoted("AWS_PROXY"));
    assert_eq!(attr(integration, "payload_format_version"), quoted("2.0"));
    assert_eq!(
        attr(integration, "integration_uri"),
        "aws_lambda_function.api.invoke_arn"
    );

    let f = find(&tf, "resource", &["aws_lambda_function", "api"]);
    let set = env_vars(f);
    for name in set.keys() {
        assert!(
            api_vars::ALL.contains(&name.as_str()),
            "Terraform sets {name}, which the API does not read"
        );
    }
    for name in api_vars::REQUIRED {
        assert!(
            set.contains_key(*name),
            "Terraform does not set the required {name}"
        );
    }
    assert_eq!(set[api_vars::MODEL_TABLE], "aws_dynamodb_table.model.name");

    let st = policy(&tf, "api");
    let granted = |action: &str, resource: &str| {
        st.iter()
            .any(|(a, r)| a.iter().any(|x| x == action) && r.iter().any(|x| x == resource))
    };
    for a in model::ACTIONS {
        assert!(
            granted(a, "aws_dynamodb_table.model.arn"),
            "{a} on the model"
        );
    }
    for a in registry::READER_ACTIONS {
        assert!(
            granted(a, "aws_dynamodb_table.registry.arn"),
            "{a} on the registry"
        );
    }
    // Read-only on the data: the API writes no table.
    for (actions, _) in &st {
        for a in actions {
            assert!(
                !a.starts_with("s3:Put") && !a.starts_with("s3:Delete"),
                "the read API may not {a}"
            );
        }
        for a in actions {
            assert!(
                !a.starts_with("dynamodb:")
                    || a.contains("Get")
                    || a.contains("Describe")
                    || a.contains("Scan"),
                "the read API may not {a}"
            );
        }
    }
}

/// Precompiled artifacts are native code a dispatcher runs: no role but the
/// dispatcher's may write to the plugin bucket (operators register with
/// their own credentials), so the read API's and the mapper's cannot.
#[test]
fn only_the_dispatcher_role_writes_the_plugin_bucket() {
    let tf = blocks("terraform");
    for role in ["api", "mapper"] {
        for (actions, resources) in policy(&tf, role) {
            let writes: Vec<&String> = actions
                .iter()
                .filter(|a| {
                    a.starts_with("s3:") && !a.starts_with("s3:Get") && !a.starts_with("s3:List")
                })
                .collect();
            assert!(
                writes.is_empty(),
                "the {role} role may {writes:?} on {resources:?}"
            );
        }
    }
}

/// A receiver team's deploy role reaches its own registry entry and the
/// component prefix, and nothing else: exactly the registry calls the CLI
/// makes for one receiver, each limited to that receiver's partition key;
/// `s3:PutObject` on `plugins/` only (never `precompiled/`, which holds
/// native code); no wildcard, no other service.
#[test]
fn a_receiver_team_role_may_touch_only_its_own_receiver() {
    let tf = blocks("terraform/modules/receiver-deployer");
    let doc = find(&tf, "data", &["aws_iam_policy_document", "this"]);
    let statements = nested(doc, "statement");
    let mut registry_actions = Vec::new();
    for st in &statements {
        let actions = list(st, "actions");
        let resources = list(st, "resources");
        for a in &actions {
            assert!(!a.contains('*'), "wildcard action {a}");
            let service = a.split(':').next().unwrap();
            assert!(["dynamodb", "s3", "kms"].contains(&service), "{a}");
        }
        if actions.iter().any(|a| a.starts_with("dynamodb:")) {
            assert_eq!(resources, ["var.registry_table_arn"]);
            let cond = nested(st, "condition");
            assert_eq!(cond.len(), 1, "registry access must be conditioned");
            assert_eq!(attr(cond[0], "test"), quoted("ForAllValues:StringEquals"));
            assert_eq!(attr(cond[0], "variable"), quoted("dynamodb:LeadingKeys"));
            assert_eq!(list(cond[0], "values"), ["var.receiver"]);
            registry_actions.extend(actions.iter().cloned());
        }
        if actions.iter().any(|a| a.starts_with("s3:")) {
            assert_eq!(actions, ["s3:PutObject"]);
            assert_eq!(
                resources,
                [format!(
                    "${{var.plugin_bucket_arn}}/{}*",
                    artifacts::WASM_PREFIX
                )]
            );
        }
    }
    registry_actions.sort();
    let mut wanted: Vec<String> = registry::TEAM_ACTIONS
        .iter()
        .map(|a| a.to_string())
        .collect();
    wanted.sort();
    assert_eq!(registry_actions, wanted, "exactly what the CLI calls");
    for forbidden in ["dynamodb:Scan", "dynamodb:DeleteItem"] {
        assert!(
            !registry_actions.iter().any(|a| a == forbidden),
            "{forbidden}"
        );
    }
}

/// Names never overlap across environments: an env may not contain the
/// words that mark receiver queues or shadow tables, and a receiver id may
/// not contain what would make its queue read as another receiver's.
#[test]
fn environment_and_receiver_names_cannot_overlap_anothers() {
    let conditions = |dir: &str, var: &str| -> String {
        let tf = blocks(dir);
        let v = find(&tf, "variable", &[var]);
        nested(v, "validation")
            .iter()
            .map(|b| attr(b, "condition"))
            .collect::<Vec<_>>()
            .join(" && ")
    };
    let env = conditions("terraform", "env");
    for word in ["rcv", "shadow"] {
        assert!(
            env.contains(&format!("!contains(split(\"-\", var.env), \"{word}\")")),
            "env must refuse the word {word}: {env}"
        );
    }
    for dir in [
        "terraform/modules/receiver-queue",
        "terraform/modules/receiver-deployer",
    ] {
        let receiver = conditions(dir, "receiver");
        assert!(
            receiver.contains("!contains(split(\"-\", var.receiver), \"rcv\")")
                && receiver.contains("!endswith(var.receiver, \"-dlq\")"),
            "{dir}: {receiver}"
        );
    }
    // The same rule in the code that validates registry entries.
    assert!(prism_types::manifest::validate_receiver_id("a-rcv-b").is_err());
    assert!(prism_types::manifest::validate_receiver_id("a-dlq").is_err());
}
