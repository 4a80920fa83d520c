//! The IAM in `terraform/` against the code: each role grants exactly the
//! calls the code makes, on exactly the resources it makes them on, and
//! names (environments, receivers, queues) cannot reach each other's.

use hcl::Block;
use prism_aws::ledger as ledger_table;
use prism_aws::sqs;
use prism_aws::{artifacts, outputs, registry, spool};

use crate::terraform::{attr, blocks, env_vars, find, list, local, nested, quoted};

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
    let claims = format!(
        "${{aws_s3_bucket.plugins.arn}}/{}*",
        prism_aws::claims::PREFIX
    );
    let needs: Vec<(&[&str], &str)> = vec![
        (prism_aws::claims::ACTIONS, &claims),
        (
            registry::DISPATCHER_ACTIONS,
            "aws_dynamodb_table.registry.arn",
        ),
        (ledger_table::ACTIONS, "aws_dynamodb_table.ledger.arn"),
        (outputs::ACTIONS, "aws_dynamodb_table.outputs.arn"),
        (spool::ACTIONS, "aws_dynamodb_table.spool.arn"),
        (
            prism_aws::backfill::MODEL_ACTIONS,
            "aws_dynamodb_table.model.arn",
        ),
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
    let name = local(&tf, "name");
    let prefix =
        local(&tf, "receiver_queue_prefix").replace("${local.name}", name.trim_matches('"'));
    assert_eq!(
        local(&tf, "receiver_queue_arns")
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
    use prism_lambda::api::vars as api_vars;
    use prism_read_api::route;
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
/// `s3:PutObject` on `plugins/<receiver>/` only (never another receiver's
/// components, nor `precompiled/`, which holds
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
            assert_eq!(actions, ["s3:GetObject", "s3:PutObject"]);
            assert_eq!(
                resources,
                [format!(
                    "${{var.plugin_bucket_arn}}/{}${{var.receiver}}/*",
                    artifacts::WASM_PREFIX
                )],
                "its own receiver's prefix only"
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

/// `registered_by` and `updated_by` are written by the team (issue 27, item
/// 8): a team's role can put any name there. The record of who wrote an
/// entry or a component is CloudTrail's: a trail logs every write to the
/// registry table and to the component prefixes (`plugins/`, `mappers/`),
/// with log-file validation, into a bucket that no prism role can write,
/// and no prism role may stop or change the trail.
#[test]
fn every_control_plane_write_is_recorded_by_a_trail_no_prism_role_can_touch() {
    let tf = blocks("terraform");
    let trail = find(&tf, "resource", &["aws_cloudtrail", "control_plane"]);
    assert_eq!(attr(trail, "enable_log_file_validation"), "true");
    assert_eq!(attr(trail, "s3_bucket_name"), "aws_s3_bucket.audit.id");
    // Each selector as field → (operator, values).
    let selectors: Vec<Vec<(String, String, Vec<String>)>> =
        nested(trail, "advanced_event_selector")
            .iter()
            .map(|sel| {
                nested(sel, "field_selector")
                    .iter()
                    .map(|f| {
                        let op = if f.body().attributes().any(|a| a.key() == "equals") {
                            "equals"
                        } else {
                            "starts_with"
                        };
                        (
                            attr(f, "field").trim_matches('"').to_owned(),
                            op.to_owned(),
                            list(f, op),
                        )
                    })
                    .collect()
            })
            .collect();
    let has = |sel: &[(String, String, Vec<String>)], field: &str, op: &str, value: &str| {
        sel.iter()
            .any(|(f, o, v)| f == field && o == op && v.iter().any(|x| x == value))
    };
    let writes_of = |resource_type: &str| {
        selectors
            .iter()
            .find(|s| has(s, "resources.type", "equals", resource_type))
            .unwrap_or_else(|| panic!("no selector logs {resource_type}"))
            .clone()
    };
    let table = writes_of("AWS::DynamoDB::Table");
    assert!(has(&table, "eventCategory", "equals", "Data"));
    assert!(has(
        &table,
        "resources.ARN",
        "equals",
        "aws_dynamodb_table.registry.arn"
    ));
    assert!(has(&table, "readOnly", "equals", "false"));
    let objects = writes_of("AWS::S3::Object");
    assert!(has(&objects, "readOnly", "equals", "false"));
    for prefix in [artifacts::WASM_PREFIX, artifacts::MAPPER_PREFIX] {
        assert!(
            has(
                &objects,
                "resources.ARN",
                "starts_with",
                &format!("${{aws_s3_bucket.plugins.arn}}/{prefix}")
            ),
            "component writes under {prefix} are not logged"
        );
    }

    // No role's policy names the trail's bucket or CloudTrail at all.
    type Statements = Vec<(Vec<String>, Vec<String>)>;
    let mut docs: Vec<(String, Statements)> = ["dispatcher", "api", "mapper"]
        .iter()
        .map(|r| (r.to_string(), policy(&tf, r)))
        .collect();
    docs.push((
        "deployer".into(),
        policy(&blocks("terraform/modules/receiver-deployer"), "this"),
    ));
    for (role, statements) in docs {
        for (actions, resources) in statements {
            assert!(
                !actions.iter().any(|a| a.starts_with("cloudtrail:")),
                "the {role} role may {actions:?}"
            );
            assert!(
                !resources.iter().any(|r| r.contains("aws_s3_bucket.audit")),
                "the {role} role reaches the audit bucket: {resources:?}"
            );
        }
    }
}
