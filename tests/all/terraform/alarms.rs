//! The alarms and the dashboard (`terraform/alarms.tf`, `dashboard.tf`,
//! `modules/receiver-queue/alarms.tf`) against the metrics the code writes:
//! every prism metric they name is one an EMF line carries, with the
//! dimensions it carries, in the namespace the Lambdas are told to use; and
//! every alarm notifies someone.

use hcl::{Block, Expression};
use prism_core::stream::metrics::{FUNCTION_METRICS, RECEIVER_METRICS};
use prism_lambda::vars;
use prism_mapping::stream::MAPPER_METRICS;

use crate::terraform::{attr, blocks, env_vars, find, local, nested};

/// How the Terraform names prism's namespace (a local in the root module,
/// a variable in the receiver module).
const PRISM_NAMESPACE: &[&str] = &[
    "local.ns",
    "local.metrics_namespace",
    "var.metrics_namespace",
];

/// One metric a Terraform file refers to: namespace (as HCL), name, and
/// the dimension names, where it was found.
#[derive(Debug)]
struct Used {
    namespace: String,
    name: String,
    dimensions: Vec<String>,
    at: String,
}

fn unquote(e: &Expression) -> String {
    e.to_string().trim_matches('"').to_owned()
}

/// Metrics in alarms: every block (at any depth) with `namespace` and
/// `metric_name`, and its `dimensions` keys.
fn alarm_metrics(b: &Block, at: &str, out: &mut Vec<Used>) {
    let get = |k: &str| {
        b.body()
            .attributes()
            .find(|a| a.key() == k)
            .map(|a| a.expr().clone())
    };
    if let (Some(ns), Some(name)) = (get("namespace"), get("metric_name")) {
        let dimensions = match get("dimensions") {
            Some(Expression::Object(o)) => o
                .keys()
                .map(|k| k.to_string().trim_matches('"').to_owned())
                .collect(),
            Some(other) => panic!("{at}: dimensions is not a literal object: {other}"),
            None => vec![],
        };
        out.push(Used {
            namespace: ns.to_string(),
            name: unquote(&name),
            dimensions,
            at: at.to_owned(),
        });
    }
    for n in b.body().blocks() {
        alarm_metrics(n, at, out);
    }
}

/// Metrics in dashboard widgets: arrays `[namespace, name, dim, value, …]`
/// anywhere in an expression.
fn widget_metrics(e: &Expression, at: &str, out: &mut Vec<Used>) {
    match e {
        Expression::Array(items) => {
            let first = items.first().map(|f| f.to_string());
            let is_metric = first
                .as_deref()
                .is_some_and(|f| PRISM_NAMESPACE.contains(&f) || f.starts_with("\"AWS/"));
            if is_metric && items.len() >= 2 {
                out.push(Used {
                    namespace: items[0].to_string(),
                    name: unquote(&items[1]),
                    dimensions: items[2..].iter().step_by(2).map(unquote).collect(),
                    at: at.to_owned(),
                });
            } else {
                items.iter().for_each(|i| widget_metrics(i, at, out));
            }
        }
        Expression::Object(o) => o.values().for_each(|v| widget_metrics(v, at, out)),
        Expression::FuncCall(f) => f.args.iter().for_each(|a| widget_metrics(a, at, out)),
        Expression::ForExpr(f) => {
            widget_metrics(&f.collection_expr, at, out);
            widget_metrics(&f.value_expr, at, out);
        }
        Expression::Parenthesis(p) => widget_metrics(p, at, out),
        Expression::Conditional(c) => {
            widget_metrics(&c.true_expr, at, out);
            widget_metrics(&c.false_expr, at, out);
        }
        _ => {}
    }
}

fn used(dir: &str) -> Vec<Used> {
    let mut out = vec![];
    for b in blocks(dir) {
        let at = format!(
            "{dir}: {} {:?}",
            b.identifier(),
            b.labels().iter().map(|l| l.as_str()).collect::<Vec<_>>()
        );
        alarm_metrics(&b, &at, &mut out);
        for a in b.body().attributes() {
            widget_metrics(a.expr(), &format!("{at}.{}", a.key()), &mut out);
        }
    }
    out
}

/// What the code writes for a prism metric: the dimension names, or `None`
/// when it writes no such metric.
fn emitted(name: &str) -> Option<Vec<&'static str>> {
    if RECEIVER_METRICS.contains(&name) {
        Some(vec!["Receiver"])
    } else if MAPPER_METRICS.contains(&name) {
        Some(vec!["Mapper"])
    } else if FUNCTION_METRICS.contains(&name) {
        Some(vec![])
    } else {
        None
    }
}

#[test]
fn every_prism_metric_in_alarms_and_the_dashboard_is_one_the_code_writes() {
    let mut all = used("terraform");
    all.extend(used("terraform/modules/receiver-queue"));
    let prism: Vec<&Used> = all
        .iter()
        .filter(|u| PRISM_NAMESPACE.contains(&u.namespace.as_str()))
        .collect();
    for u in &prism {
        let Some(dims) = emitted(&u.name) else {
            panic!("{}: {} is not a metric the code writes", u.at, u.name);
        };
        assert_eq!(
            u.dimensions, dims,
            "{}: {} is written with dimensions {dims:?}",
            u.at, u.name
        );
    }
    for u in all
        .iter()
        .filter(|u| !PRISM_NAMESPACE.contains(&u.namespace.as_str()))
    {
        assert!(
            u.namespace.starts_with("\"AWS/"),
            "{}: {} is in namespace {}, neither AWS's nor local.metrics_namespace",
            u.at,
            u.name,
            u.namespace
        );
    }
    // What the issue asks for is there: the test above is not vacuous.
    let names: Vec<&str> = all.iter().map(|u| u.name.as_str()).collect();
    for name in [
        "Errors",
        "ChangesQuarantined",
        "ChangesSeen",
        "SpoolWaiting",
        "UnavailableReceivers",
        "Messages",
        "MessagesSuppressed",
        "ChangesSkipped",
        "PluginTime",
        "IteratorAge",
        "Throttles",
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "5xx",
    ] {
        assert!(names.contains(&name), "no alarm or widget uses {name}");
    }
}

#[test]
fn the_metrics_land_in_the_namespace_the_alarms_read() {
    let tf = blocks("terraform");
    assert_eq!(local(&tf, "ns"), "local.metrics_namespace");
    assert_eq!(
        local(&tf, "metrics_namespace"),
        "local.name",
        "one namespace per environment"
    );
    for f in ["dispatcher", "mapper"] {
        let lambda = find(&tf, "resource", &["aws_lambda_function", f]);
        assert_eq!(
            env_vars(lambda)
                .get(vars::METRICS_NAMESPACE)
                .map(String::as_str),
            Some("local.metrics_namespace"),
            "the {f} Lambda writes its metrics where the alarms read them"
        );
    }
    // The example wires the module to the environment's namespace and topic.
    let dev = blocks("terraform/examples/dev");
    let queue = find(&dev, "module", &["website_queue"]);
    assert_eq!(
        attr(queue, "metrics_namespace"),
        "module.prism.metrics_namespace"
    );
    assert_eq!(
        attr(queue, "alarm_topic_arn"),
        "module.prism.alarm_topic_arn"
    );
}

#[test]
fn every_alarm_notifies_the_topic_and_the_topic_can_be_subscribed_to() {
    for (dir, topic) in [
        ("terraform", "aws_sns_topic.alarms.arn"),
        ("terraform/modules/receiver-queue", "var.alarm_topic_arn"),
    ] {
        let tf = blocks(dir);
        let alarms: Vec<&Block> = tf
            .iter()
            .filter(|b| {
                b.identifier() == "resource"
                    && b.labels()[0].as_str() == "aws_cloudwatch_metric_alarm"
            })
            .collect();
        assert!(alarms.len() >= 4, "{dir}: {} alarms", alarms.len());
        for a in alarms {
            let name = a.labels()[1].as_str();
            let actions: String = attr(a, "alarm_actions").split_whitespace().collect();
            assert_eq!(actions, format!("[{topic}]"), "{dir}: alarm {name}");
            assert_eq!(
                attr(a, "treat_missing_data"),
                "\"notBreaching\"",
                "{dir}: alarm {name}"
            );
            // A metric-math alarm returns exactly one series.
            let queries = nested(a, "metric_query");
            if !queries.is_empty() {
                let returned = queries
                    .iter()
                    .filter(|q| {
                        q.body()
                            .attributes()
                            .any(|x| x.key() == "return_data" && x.expr().to_string() == "true")
                    })
                    .count();
                assert_eq!(returned, 1, "{dir}: alarm {name}");
            }
        }
    }
    let tf = blocks("terraform");
    let sub = find(&tf, "resource", &["aws_sns_topic_subscription", "alarms"]);
    assert!(attr(sub, "for_each").contains("var.alarm_subscribers"));
    let topic = find(&tf, "resource", &["aws_sns_topic", "alarms"]);
    assert_eq!(attr(topic, "kms_master_key_id"), "aws_kms_key.main.arn");
}
