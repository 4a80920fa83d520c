//! IAM proven, not assumed. moto grants every call, so a policy that denies
//! what the code needs, or allows what it must not, passes every moto
//! test. Here each role's policy is rendered from `terraform/` as Terraform
//! would (hcl-rs evaluates the expressions against a fixed environment)
//! and evaluated, conditions included (`dynamodb:LeadingKeys`,
//! `dynamodb:Attributes`, `s3:prefix`), by a maintained IAM evaluator:
//! `@cloud-copilot/iam-simulate`, installed into the project's npm prefix
//! by `scripts/tools` and driven by `tests/iam/simulate.cjs`.
//!
//! - [`what_the_code_needs_is_allowed`] and
//!   [`what_each_role_must_never_do_is_denied`]: calls written down here;
//! - `iam_recorded.rs`: every call the e2e suite made, as moto recorded it.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Block, Map, Value};
use serde_json::{Value as Json, json};

use crate::terraform::{blocks, find, nested};
use prism_e2e::wasm::ROOT;

/// The account, region and environment policies are rendered for.
pub(crate) const ACCOUNT: &str = "123456789012";
pub(crate) const REGION: &str = "us-east-1";
const NAME: &str = "prism-dev";
/// The receiver the team deploy role is rendered for.
pub(crate) const TEAM: &str = "team-a";

/// The ARN of the environment's table of `kind` (`registry`, `model`, …).
pub(crate) fn table_arn(kind: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{NAME}-{kind}")
}

/// The ARN of an object in the plugin bucket (`key` empty: the bucket).
pub(crate) fn object_arn(key: &str) -> String {
    if key.is_empty() {
        format!("arn:aws:s3:::{NAME}-plugins-{ACCOUNT}")
    } else {
        format!("arn:aws:s3:::{NAME}-plugins-{ACCOUNT}/{key}")
    }
}

/// The ARN of queue `name` of the environment.
pub(crate) fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
}

/// The name of receiver `receiver`'s queue (`dlq`: its dead-letter queue).
pub(crate) fn receiver_queue(receiver: &str, dlq: bool) -> String {
    format!("{NAME}-rcv-{receiver}{}", if dlq { "-dlq" } else { "" })
}

fn obj<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<Map<String, Value>>(),
    )
}

fn arn(a: String) -> Value {
    obj([("arn", Value::String(a))])
}

fn flatten(args: FuncArgs) -> Result<Value, String> {
    fn walk(v: Value, out: &mut Vec<Value>) {
        match v {
            Value::Array(items) => items.into_iter().for_each(|i| walk(i, out)),
            other => out.push(other),
        }
    }
    let mut out = Vec::new();
    for v in args.into_values() {
        walk(v, &mut out);
    }
    Ok(Value::Array(out))
}

/// What the policies' expressions may refer to, as Terraform would resolve
/// it for environment `prism-dev` in account [`ACCOUNT`].
fn context(receiver: &str) -> Context<'static> {
    let mut ctx = Context::new();
    let tables =
        ["model", "registry", "ledger", "outputs", "spool"].map(|t| (t, arn(table_arn(t))));
    let mut tables: Map<String, Value> =
        tables.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    tables.insert(
        "shadow".into(),
        obj([("products", arn(table_arn("shadow-products")))]),
    );
    ctx.declare_var("aws_dynamodb_table", Value::Object(tables));
    ctx.declare_var("aws_s3_bucket", obj([("plugins", arn(object_arn("")))]));
    ctx.declare_var(
        "aws_sqs_queue",
        obj([
            ("unreadable", arn(queue_arn(&format!("{NAME}-unreadable")))),
            (
                "stream_failures",
                arn(queue_arn(&format!("{NAME}-stream-failures"))),
            ),
            (
                "mapper_dead_letters",
                arn(queue_arn(&format!("{NAME}-mapper-dlq"))),
            ),
        ]),
    );
    let key = format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab");
    ctx.declare_var("aws_kms_key", obj([("main", arn(key.clone()))]));
    let logs = |f: &str| {
        arn(format!(
            "arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{NAME}-{f}"
        ))
    };
    ctx.declare_var(
        "aws_cloudwatch_log_group",
        obj([
            ("dispatcher", logs("dispatcher")),
            ("api", logs("api")),
            ("mapper", logs("mapper")),
        ]),
    );
    ctx.declare_var(
        "local",
        obj([
            ("name", Value::String(NAME.into())),
            (
                "receiver_queue_arns",
                Value::String(queue_arn(&format!("{NAME}-rcv-*"))),
            ),
        ]),
    );
    ctx.declare_var(
        "var",
        obj([
            ("receiver", Value::String(receiver.into())),
            ("registry_table_arn", Value::String(table_arn("registry"))),
            ("plugin_bucket_arn", Value::String(object_arn(""))),
            ("kms_key_arn", Value::String(key)),
        ]),
    );
    ctx.declare_func(
        "flatten",
        FuncDef::builder()
            .variadic_param(ParamType::Any)
            .build(flatten),
    );
    ctx
}

fn eval(b: &Block, key: &str, ctx: &Context<'_>) -> Option<Json> {
    let expr = b.body().attributes().find(|a| a.key() == key)?.expr();
    let v = expr
        .evaluate(ctx)
        .unwrap_or_else(|e| panic!("{} {:?}: {key}: {e}", b.identifier(), b.labels()));
    Some(serde_json::to_value(v).unwrap())
}

/// The policy document `data "aws_iam_policy_document" "<name>"` of the
/// `.tf` files in `dir`, as the JSON Terraform would render.
pub(crate) fn render(dir: &str, name: &str) -> Json {
    render_for(dir, name, TEAM)
}

/// [`render`], with the module variable `receiver` set to `receiver`.
pub(crate) fn render_for(dir: &str, name: &str, receiver: &str) -> Json {
    let tf = blocks(dir);
    let doc = find(&tf, "data", &["aws_iam_policy_document", name]);
    let ctx = context(receiver);
    let statements: Vec<Json> = nested(doc, "statement")
        .iter()
        .map(|st| {
            let mut s = serde_json::Map::new();
            if let Some(sid) = eval(st, "sid", &ctx) {
                s.insert("Sid".into(), sid);
            }
            let effect = eval(st, "effect", &ctx).unwrap_or(json!("Allow"));
            s.insert("Effect".into(), effect);
            s.insert(
                "Action".into(),
                eval(st, "actions", &ctx).expect("a statement has actions"),
            );
            s.insert(
                "Resource".into(),
                eval(st, "resources", &ctx).expect("a statement has resources"),
            );
            let mut conditions: BTreeMap<String, serde_json::Map<String, Json>> = BTreeMap::new();
            for c in nested(st, "condition") {
                let test = eval(c, "test", &ctx).unwrap();
                let variable = eval(c, "variable", &ctx).unwrap();
                let values = eval(c, "values", &ctx).unwrap();
                conditions
                    .entry(test.as_str().unwrap().to_owned())
                    .or_default()
                    .insert(variable.as_str().unwrap().to_owned(), values);
            }
            if !conditions.is_empty() {
                s.insert(
                    "Condition".into(),
                    serde_json::to_value(conditions).unwrap(),
                );
            }
            Json::Object(s)
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The deploy role of receiver `receiver`, by the name requests use
/// (`deployer:<receiver>`).
pub(crate) fn deployer_of(receiver: &str) -> (String, Json) {
    (
        format!("deployer:{receiver}"),
        render_for("terraform/modules/receiver-deployer", "this", receiver),
    )
}

/// Every role prism's Terraform defines, by the name requests use.
pub(crate) fn policies() -> BTreeMap<String, Json> {
    [
        ("dispatcher", render("terraform", "dispatcher")),
        ("mapper", render("terraform", "mapper")),
        ("api", render("terraform", "api")),
        (
            "deployer",
            render("terraform/modules/receiver-deployer", "this"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// One request to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Request {
    /// The role (a key of [`policies`]).
    pub policy: String,
    /// `service:Action`.
    pub action: String,
    /// The resource's ARN.
    pub resource: String,
    /// Condition keys and their values.
    pub context: BTreeMap<String, Vec<String>>,
}

impl Request {
    pub(crate) fn new(policy: &str, action: &str, resource: &str) -> Self {
        Self {
            policy: policy.into(),
            action: action.into(),
            resource: resource.into(),
            context: BTreeMap::new(),
        }
    }

    pub(crate) fn with(mut self, key: &str, values: &[&str]) -> Self {
        self.context
            .insert(key.into(), values.iter().map(|v| (*v).to_owned()).collect());
        self
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} on {}", self.policy, self.action, self.resource)?;
        for (k, v) in &self.context {
            write!(f, " {k}={v:?}")?;
        }
        Ok(())
    }
}

/// Evaluate `requests` against `policies`: each one's result (`Allowed`,
/// `ImplicitlyDenied`, `ExplicitlyDenied`, or `error` with the reason).
/// `None` when the evaluator is not installed and the run does not require
/// it (outside `scripts/test`).
pub(crate) fn simulate(
    policies: &BTreeMap<String, Json>,
    requests: &[Request],
) -> Option<Vec<String>> {
    let prefix = std::env::var("PRISM_NPM_PREFIX").unwrap_or_else(|_| format!("{ROOT}/.tools/npm"));
    let installed = std::path::Path::new(&prefix)
        .join("node_modules/@cloud-copilot/iam-simulate")
        .exists();
    if !installed {
        assert!(
            std::env::var_os("PRISM_REQUIRE_ALL").is_none(),
            "@cloud-copilot/iam-simulate is not in {prefix}: run scripts/tools"
        );
        eprintln!("SKIPPED: no IAM evaluator in {prefix} (scripts/tools installs it)");
        return None;
    }
    let input = json!({
        "policies": policies,
        "requests": requests.iter().enumerate().map(|(i, r)| json!({
            "id": i,
            "policy": r.policy,
            "action": r.action,
            "resource": r.resource,
            "context": r.context,
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new("node")
        .arg(format!("{ROOT}/tests/iam/simulate.cjs"))
        .env("PRISM_NPM_PREFIX", &prefix)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the IAM evaluator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Json> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), requests.len());
    Some(
        results
            .iter()
            .map(|r| {
                let result = r["result"].as_str().unwrap_or("error").to_owned();
                match r["detail"].as_str() {
                    Some(d) if !d.is_empty() => format!("{result}: {d}"),
                    _ => result,
                }
            })
            .collect(),
    )
}

/// Evaluate `requests`; the ones whose result is not `want`, described.
fn not(want: &str, requests: &[Request]) -> Vec<String> {
    let Some(results) = simulate(&policies(), requests) else {
        return Vec::new();
    };
    requests
        .iter()
        .zip(results)
        .filter(|(_, got)| got != want)
        .map(|(r, got)| format!("{r} -> {got}"))
        .collect()
}

fn wasm_key(receiver: &str) -> String {
    prism_aws::ArtifactStore::wasm_key(receiver, &prism_types::digest::Digest::of(b"x"))
}

/// The registry attribute the dispatcher writes when it shares a compiled
/// plugin (`record_precompiled`).
fn cwasm_attribute() -> String {
    format!(
        "{}{}#{}",
        prism_aws::registry::PRECOMPILED_PREFIX,
        "engine0123",
        prism_types::digest::Digest::of(b"x").hex()
    )
}

/// What each component's code calls, with the condition keys AWS sets.
/// The whole suite's calls are checked in `iam_recorded.rs`; these are the
/// ones a condition decides.
#[test]
fn what_the_code_needs_is_allowed() {
    use prism_aws::registry::{KEY_RECEIVER, KEY_VERSION, LAST_ERROR, QUARANTINE};
    let registry = table_arn("registry");
    let cwasm = cwasm_attribute();
    let mut needs = vec![
        // A quarantine outlives the process that opened it.
        Request::new("dispatcher", "dynamodb:UpdateItem", &registry).with(
            "dynamodb:Attributes",
            &[KEY_RECEIVER, KEY_VERSION, QUARANTINE],
        ),
        // prism status shows the dispatcher's last error per receiver.
        Request::new("dispatcher", "dynamodb:UpdateItem", &registry).with(
            "dynamodb:Attributes",
            &[KEY_RECEIVER, KEY_VERSION, LAST_ERROR],
        ),
        // A plugin compiled at a cold start is vouched for, so the next
        // cold start loads it precompiled (item 4: denied before).
        Request::new("dispatcher", "dynamodb:UpdateItem", &registry)
            .with("dynamodb:Attributes", &[KEY_RECEIVER, KEY_VERSION, &cwasm]),
        Request::new(
            "dispatcher",
            "s3:PutObject",
            &object_arn(&prism_aws::ArtifactStore::cwasm_key(
                "engine0123",
                &prism_types::digest::Digest::of(b"x"),
            )),
        ),
        Request::new("dispatcher", "s3:GetObject", &object_arn(&wasm_key(TEAM))),
        Request::new(
            "dispatcher",
            "sqs:SendMessage",
            &queue_arn(&receiver_queue(TEAM, false)),
        ),
        Request::new("api", "s3:GetObject", &object_arn(&wasm_key(TEAM))),
        // The team's own component, read back by the release gate.
        Request::new("deployer", "s3:PutObject", &object_arn(&wasm_key(TEAM))),
        Request::new("deployer", "s3:GetObject", &object_arn(&wasm_key(TEAM))),
    ];
    for action in prism_aws::registry::TEAM_ACTIONS {
        needs.push(
            Request::new("deployer", action, &registry).with("dynamodb:LeadingKeys", &[TEAM]),
        );
    }
    let denied = not("Allowed", &needs);
    assert!(denied.is_empty(), "denied:\n{}", denied.join("\n"));
}

/// The negative suite: what no role may do, whatever its holder writes
/// directly with it.
#[test]
fn what_each_role_must_never_do_is_denied() {
    use prism_aws::registry::{KEY_RECEIVER, KEY_VERSION};
    let registry = table_arn("registry");
    let other = "team-b";
    let mut forbidden = vec![
        // A team writing another team's registry items, or reading them.
        Request::new("deployer", "dynamodb:PutItem", &registry)
            .with("dynamodb:LeadingKeys", &[other]),
        Request::new("deployer", "dynamodb:UpdateItem", &registry)
            .with("dynamodb:LeadingKeys", &[other]),
        Request::new("deployer", "dynamodb:GetItem", &registry)
            .with("dynamodb:LeadingKeys", &[other]),
        Request::new("deployer", "dynamodb:Scan", &registry),
        Request::new("deployer", "dynamodb:DeleteItem", &registry)
            .with("dynamodb:LeadingKeys", &[TEAM]),
        Request::new("deployer", "dynamodb:BatchWriteItem", &registry)
            .with("dynamodb:LeadingKeys", &[TEAM, other]),
        // Another team's components, the shared root, native code.
        Request::new("deployer", "s3:PutObject", &object_arn(&wasm_key(other))),
        Request::new("deployer", "s3:GetObject", &object_arn(&wasm_key(other))),
        Request::new(
            "deployer",
            "s3:PutObject",
            &object_arn(&format!("plugins/{TEAM}-x/a.wasm")),
        ),
        Request::new("deployer", "s3:PutObject", &object_arn("plugins/a.wasm")),
        Request::new(
            "deployer",
            "s3:PutObject",
            &object_arn("precompiled/engine0123/a.cwasm"),
        ),
        Request::new(
            "deployer",
            "s3:PutObject",
            &object_arn("mappers/catalog.toml"),
        ),
        Request::new("deployer", "s3:DeleteObject", &object_arn(&wasm_key(TEAM))),
        Request::new(
            "deployer",
            "sqs:SendMessage",
            &queue_arn(&receiver_queue(other, false)),
        ),
        Request::new("deployer", "dynamodb:PutItem", &table_arn("model")),
        Request::new("deployer", "dynamodb:BatchWriteItem", &table_arn("spool")),
        // The read API only reads.
        Request::new(
            "api",
            "s3:PutObject",
            &object_arn("precompiled/engine0123/a.cwasm"),
        ),
        Request::new("api", "s3:PutObject", &object_arn("claims/a")),
        Request::new("api", "dynamodb:UpdateItem", &registry)
            .with("dynamodb:Attributes", &[KEY_RECEIVER, KEY_VERSION]),
        Request::new("api", "dynamodb:PutItem", &table_arn("model")),
        // The dispatcher never rewrites or deletes an entry, never writes
        // components, and sends only to receiver queues.
        Request::new("dispatcher", "dynamodb:DeleteItem", &registry),
        Request::new("dispatcher", "dynamodb:PutItem", &registry),
        Request::new("dispatcher", "dynamodb:UpdateItem", &registry)
            .with("dynamodb:Attributes", &[KEY_RECEIVER, KEY_VERSION, "entry"]),
        Request::new("dispatcher", "dynamodb:UpdateItem", &registry).with(
            "dynamodb:Attributes",
            &[KEY_RECEIVER, KEY_VERSION, "revision"],
        ),
        Request::new("dispatcher", "s3:PutObject", &object_arn(&wasm_key(TEAM))),
        Request::new(
            "dispatcher",
            "s3:PutObject",
            &object_arn("mappers/catalog.toml"),
        ),
        Request::new("dispatcher", "dynamodb:PutItem", &table_arn("model")),
        Request::new(
            "dispatcher",
            "sqs:SendMessage",
            &queue_arn("prism-prod-rcv-web"),
        ),
        // The mapper writes the model and nothing of the receivers'.
        Request::new("mapper", "dynamodb:UpdateItem", &registry),
        Request::new("mapper", "s3:PutObject", &object_arn(&wasm_key(TEAM))),
        Request::new(
            "mapper",
            "sqs:SendMessage",
            &queue_arn(&receiver_queue(TEAM, false)),
        ),
    ];
    // Every role: nothing on another environment's tables, and nothing on
    // the control-plane trail or its log files (the record of who wrote
    // the registry: terraform/audit.tf).
    let trail = format!("arn:aws:cloudtrail:{REGION}:{ACCOUNT}:trail/{NAME}-control-plane");
    let log = format!("arn:aws:s3:::{NAME}-audit-{ACCOUNT}/AWSLogs/{ACCOUNT}/a.json.gz");
    for role in ["dispatcher", "mapper", "api", "deployer"] {
        for action in [
            "cloudtrail:StopLogging",
            "cloudtrail:DeleteTrail",
            "cloudtrail:UpdateTrail",
            "cloudtrail:PutEventSelectors",
        ] {
            forbidden.push(Request::new(role, action, &trail));
        }
        for action in ["s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"] {
            forbidden.push(Request::new(role, action, &log));
        }
        forbidden.push(
            Request::new(
                role,
                "dynamodb:GetItem",
                &format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/prism-prod-registry"),
            )
            .with("dynamodb:LeadingKeys", &[TEAM]),
        );
    }
    let allowed: Vec<String> = {
        let Some(results) = simulate(&policies(), &forbidden) else {
            return;
        };
        forbidden
            .iter()
            .zip(results)
            .filter(|(_, got)| !got.ends_with("Denied"))
            .map(|(r, got)| format!("{r} -> {got}"))
            .collect()
    };
    assert!(allowed.is_empty(), "allowed:\n{}", allowed.join("\n"));
}

/// The evaluator itself is not a rubber stamp: the same request flips with
/// the condition value, and an unknown role is an error.
#[test]
fn the_evaluator_reads_conditions() {
    let registry = table_arn("registry");
    let r = |team: &str| {
        Request::new("deployer", "dynamodb:PutItem", &registry)
            .with("dynamodb:LeadingKeys", &[team])
    };
    let mut unknown = r(TEAM);
    unknown.policy = "nobody".into();
    let Some(results) = simulate(&policies(), &[r(TEAM), r("team-b"), unknown]) else {
        return;
    };
    assert_eq!(results[0], "Allowed");
    assert_eq!(results[1], "ImplicitlyDenied");
    assert!(results[2].starts_with("error"), "{}", results[2]);
}
