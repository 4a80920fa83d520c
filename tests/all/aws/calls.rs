//! moto's recording of the suite read as the requests IAM evaluates: each
//! call's role (from the SDK app name prism sends, `prism_aws::Caller`),
//! action, resource and condition keys. The test environment names its
//! tables, queues and buckets its own way; each is mapped to the Terraform
//! resource it stands for: tables by the key schema they were created with
//! (the recording has every `CreateTable`), queues by name, the bucket is
//! always the plugin bucket. Used by `iam_recorded.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine as _;
use serde_json::Value as Json;

use crate::aws::iam::{Request, object_arn, queue_arn, table_arn};

/// Marks a table the suite never created (a test of a wrong table name):
/// AWS answers `ResourceNotFoundException` whatever the policy says.
const NO_SUCH_TABLE: &str = "never-created-";

/// The receiver a team deploy pipeline's request is about: its registry
/// key, or its component prefix.
fn team_of(r: &Request) -> Option<String> {
    if let Some(keys) = r.context.get("dynamodb:LeadingKeys")
        && let [one] = keys.as_slice()
    {
        return Some(one.clone());
    }
    let key = r.resource.split(":::").nth(1)?.split_once('/')?.1;
    let rest = key.strip_prefix(prism_aws::artifacts::WASM_PREFIX)?;
    Some(rest.split('/').next()?.to_owned())
}

/// One recorded request.
struct Recorded {
    headers: HashMap<String, String>,
    method: String,
    url: String,
    body: Vec<u8>,
}

fn parse_line(line: &str) -> Option<Recorded> {
    let v: Json = serde_json::from_str(line).ok()?;
    let headers = v["headers"]
        .as_object()?
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_owned()))
        .collect();
    let body = match (v["body"].as_str(), v["body_encoded"].as_bool()) {
        (Some(b), Some(true)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .unwrap_or_default(),
        (Some(b), _) => b.as_bytes().to_vec(),
        _ => Vec::new(),
    };
    Some(Recorded {
        headers,
        method: v["method"].as_str()?.to_owned(),
        url: v["url"].as_str()?.to_owned(),
        body,
    })
}

impl Recorded {
    fn header(&self, k: &str) -> &str {
        self.headers.get(k).map_or("", String::as_str)
    }

    /// The role whose policy applies, from the SDK's app name.
    fn caller(&self) -> Option<&'static str> {
        let ua = format!(
            "{} {}",
            self.header("x-amz-user-agent"),
            self.header("user-agent")
        );
        [
            ("app/prism-dispatcher", "dispatcher"),
            ("app/prism-mapper", "mapper"),
            ("app/prism-api", "api"),
            ("app/prism-deployer", "deployer"),
            ("app/prism-operator", "operator"),
        ]
        .into_iter()
        .find(|(tag, _)| ua.contains(tag))
        .map(|(_, role)| role)
    }

    /// The signing service (`dynamodb`, `s3`, `sqs`, …).
    fn service(&self) -> &str {
        let auth = self.header("authorization");
        auth.split("Credential=")
            .nth(1)
            .and_then(|c| c.split('/').nth(3))
            .unwrap_or("")
    }

    fn target(&self) -> &str {
        self.header("x-amz-target").rsplit('.').next().unwrap_or("")
    }

    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }

    fn path(&self) -> String {
        let after_scheme = self.url.split("://").nth(1).unwrap_or(&self.url);
        let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
        path.split('?').next().unwrap_or("/").to_owned()
    }

    fn query(&self) -> &str {
        self.url.split_once('?').map_or("", |(_, q)| q)
    }
}

/// What each test table stands for, from its `CreateTable`.
#[derive(Default)]
struct Tables {
    /// name → (kind, hash key, range key)
    by_name: HashMap<String, (String, String, Option<String>)>,
}

impl Tables {
    fn learn(&mut self, r: &Recorded) {
        if r.service() != "dynamodb" || r.target() != "CreateTable" {
            return;
        }
        let b = r.json();
        let name = b["TableName"].as_str().unwrap_or_default().to_owned();
        let key = |t: &str| {
            b["KeySchema"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|k| k["KeyType"] == t)
                .and_then(|k| k["AttributeName"].as_str())
                .map(str::to_owned)
        };
        let (hash, range) = (key("HASH").unwrap_or_default(), key("RANGE"));
        let kind = match (hash.as_str(), range.as_deref()) {
            ("receiver", Some("version")) => "registry",
            (r, Some(k))
                if r == prism_aws::outputs::KEY_RECEIVER
                    && k == prism_aws::outputs::KEY_PRODUCT =>
            {
                "outputs"
            }
            (k, None) if k == prism_core::stream::ledger::KEY => "ledger",
            (k, _) if k == prism_aws::spool::KEY_LANE => "spool",
            ("pk", None)
                if b["StreamSpecification"]["StreamEnabled"] == true
                    && !name.contains("shadow") =>
            {
                "model"
            }
            _ => "shadow-products",
        };
        self.by_name.insert(name, (kind.to_owned(), hash, range));
    }

    fn arn(&self, name: &str) -> String {
        match self.by_name.get(name) {
            Some((kind, ..)) => table_arn(kind),
            None => table_arn(&format!("{NO_SUCH_TABLE}{name}")),
        }
    }

    fn hash_key(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(|(_, h, _)| h.as_str())
    }

    /// The table name inside a stream ARN.
    fn of_stream(arn: &str) -> &str {
        arn.split(":table/")
            .nth(1)
            .and_then(|t| t.split('/').next())
            .unwrap_or("")
    }
}

/// A DynamoDB attribute value as the text IAM compares.
fn av_text(v: &Json) -> Option<String> {
    v.get("S")
        .or_else(|| v.get("N"))
        .and_then(Json::as_str)
        .map(str::to_owned)
}

/// The attribute names an update or condition expression touches.
fn expression_names(expr: &str, names: &Json) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_alphanumeric() || c == '_' || c == '#' || c == ':' {
            token.push(c);
            continue;
        }
        if let Some(p) = token.strip_prefix('#')
            && let Some(n) = names.get(format!("#{p}")).and_then(Json::as_str)
        {
            out.push(n.to_owned());
        }
        token.clear();
    }
    out
}

fn dynamodb_requests(
    role: &str,
    r: &Recorded,
    tables: &Tables,
    last_stream: &mut HashMap<&'static str, String>,
) -> Vec<Request> {
    let op = r.target().to_owned();
    let b = r.json();
    let one = |action: &str, table: &str| {
        Request::new(role, &format!("dynamodb:{action}"), &tables.arn(table))
    };
    let leading = |table: &str, item: &Json| -> Option<String> {
        tables
            .hash_key(table)
            .and_then(|h| item.get(h))
            .and_then(av_text)
    };
    let keys_of = |req: Request, vals: Vec<String>| {
        if vals.is_empty() {
            return req;
        }
        let v: Vec<&str> = vals.iter().map(String::as_str).collect();
        req.with("dynamodb:LeadingKeys", &v)
    };
    let table = b["TableName"].as_str().unwrap_or_default();
    match op.as_str() {
        "GetItem" | "DeleteItem" => {
            vec![keys_of(
                one(&op, table),
                leading(table, &b["Key"]).into_iter().collect(),
            )]
        }
        "PutItem" => {
            let req = keys_of(
                one(&op, table),
                leading(table, &b["Item"]).into_iter().collect(),
            );
            let attrs: Vec<&str> = b["Item"]
                .as_object()
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            vec![req.with("dynamodb:Attributes", &attrs)]
        }
        "UpdateItem" => {
            let mut attrs: BTreeSet<String> = b["Key"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            attrs.extend(expression_names(
                b["UpdateExpression"].as_str().unwrap_or(""),
                &b["ExpressionAttributeNames"],
            ));
            let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
            vec![
                keys_of(
                    one(&op, table),
                    leading(table, &b["Key"]).into_iter().collect(),
                )
                .with("dynamodb:Attributes", &attrs),
            ]
        }
        "Query" => {
            let mut req = one(&op, table);
            if let Some(index) = b["IndexName"].as_str() {
                req.resource = format!("{}/index/{index}", req.resource);
            }
            // The partition key's value: `<hash> = :v` in the key condition.
            let hash = tables.hash_key(table).unwrap_or_default();
            let cond = b["KeyConditionExpression"].as_str().unwrap_or("");
            let placeholder = b["ExpressionAttributeNames"]
                .as_object()
                .and_then(|m| m.iter().find(|(_, v)| *v == hash).map(|(k, _)| k.clone()))
                .unwrap_or_else(|| hash.to_owned());
            let value = cond
                .split(" AND ")
                .find_map(|part| {
                    let (l, r) = part.split_once('=')?;
                    (l.trim() == placeholder).then(|| r.trim().to_owned())
                })
                .and_then(|v| av_text(&b["ExpressionAttributeValues"][v]));
            vec![keys_of(req, value.into_iter().collect())]
        }
        "BatchGetItem" | "BatchWriteItem" => b["RequestItems"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(t, v)| {
                let items: Vec<&Json> = if op == "BatchGetItem" {
                    v["Keys"].as_array().into_iter().flatten().collect()
                } else {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|w| {
                            w["PutRequest"]
                                .get("Item")
                                .or_else(|| w["DeleteRequest"].get("Key"))
                        })
                        .collect()
                };
                let vals: BTreeSet<String> = items.iter().filter_map(|i| leading(t, i)).collect();
                keys_of(one(&op, t), vals.into_iter().collect())
            })
            .collect(),
        "TransactWriteItems" | "TransactGetItems" => b["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                let (kind, body) = i.as_object()?.iter().next()?;
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    _ => "GetItem",
                };
                let t = body["TableName"].as_str().unwrap_or_default();
                let item = body
                    .get("Item")
                    .or_else(|| body.get("Key"))
                    .unwrap_or(&Json::Null);
                Some(keys_of(
                    one(action, t),
                    leading(t, item).into_iter().collect(),
                ))
            })
            .collect(),
        "DescribeStream" | "GetShardIterator" => {
            let arn = b["StreamArn"].as_str().unwrap_or_default();
            let resource = format!("{}/stream/x", tables.arn(Tables::of_stream(arn)));
            let role_key: &'static str = match role {
                "dispatcher" => "dispatcher",
                "mapper" => "mapper",
                "api" => "api",
                _ => "deployer",
            };
            last_stream.insert(role_key, resource.clone());
            vec![Request::new(role, &format!("dynamodb:{op}"), &resource)]
        }
        "GetRecords" => {
            let resource = last_stream
                .get(role)
                .cloned()
                .unwrap_or_else(|| format!("{}/stream/x", table_arn("model")));
            vec![Request::new(role, "dynamodb:GetRecords", &resource)]
        }
        "ListStreams" => vec![Request::new(
            role,
            "dynamodb:ListStreams",
            &format!("{}/stream/*", tables.arn(table)),
        )],
        _ if !table.is_empty() => vec![one(&op, table)],
        _ => vec![Request::new(role, &format!("dynamodb:{op}"), "*")],
    }
}

/// The environment's queue a test queue stands for.
fn queue_for(name: &str) -> String {
    let base = name.trim_end_matches(".fifo");
    if base.ends_with("unreadable") {
        queue_arn("prism-dev-unreadable")
    } else if base.ends_with("stream-failures") {
        queue_arn("prism-dev-stream-failures")
    } else if base.ends_with("mapper-dlq") {
        queue_arn("prism-dev-mapper-dlq")
    } else {
        queue_arn(&format!("prism-dev-rcv-{name}"))
    }
}

fn sqs_requests(role: &str, r: &Recorded) -> Vec<Request> {
    let b = r.json();
    let name = b["QueueUrl"]
        .as_str()
        .and_then(|u| u.rsplit('/').next())
        .or_else(|| b["QueueName"].as_str())
        .unwrap_or_default();
    let action = match r.target() {
        "SendMessageBatch" => "SendMessage",
        "DeleteMessageBatch" => "DeleteMessage",
        "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
        other => other,
    };
    vec![Request::new(
        role,
        &format!("sqs:{action}"),
        &queue_for(name),
    )]
}

fn s3_requests(role: &str, r: &Recorded) -> Vec<Request> {
    let path = r.path();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let _bucket = parts.next().unwrap_or_default();
    let key = parts.next().unwrap_or_default();
    let key = percent_decode(key);
    let action = match (r.method.as_str(), key.is_empty()) {
        ("GET" | "HEAD", false) => "s3:GetObject",
        ("PUT", false) => "s3:PutObject",
        ("DELETE", false) => "s3:DeleteObject",
        ("GET" | "HEAD", true) => "s3:ListBucket",
        ("POST", true) if r.query().contains("delete") => "s3:DeleteObject",
        _ => "s3:Unknown",
    };
    let mut req = Request::new(role, action, &object_arn(&key));
    if action == "s3:ListBucket" {
        let prefix = r
            .query()
            .split('&')
            .find_map(|kv| kv.strip_prefix("prefix="))
            .map(percent_decode)
            .unwrap_or_default();
        req = req.with("s3:prefix", &[&prefix]);
    }
    vec![req]
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The calls of a recording, as requests of the roles that make them, and
/// the number of calls per caller (evaluated or not).
pub(crate) fn requests(recording: &str) -> (BTreeSet<Request>, BTreeMap<String, usize>) {
    let lines: Vec<Recorded> = recording.lines().filter_map(parse_line).collect();
    let mut tables = Tables::default();
    lines.iter().for_each(|r| tables.learn(r));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut last_stream = HashMap::new();
    for r in &lines {
        let caller = r.caller().unwrap_or("harness");
        *counts.entry(caller.to_owned()).or_default() += 1;
        if matches!(caller, "harness" | "operator") {
            continue;
        }
        let reqs = match r.service() {
            "dynamodb" => dynamodb_requests(caller, r, &tables, &mut last_stream),
            "sqs" => sqs_requests(caller, r),
            "s3" => s3_requests(caller, r),
            other => vec![Request::new(
                caller,
                &format!("{other}:{}", r.target()),
                "*",
            )],
        };
        for mut req in reqs {
            if req.resource.contains(NO_SUCH_TABLE) {
                *counts.entry("no such table".into()).or_default() += 1;
                continue;
            }
            // A team's role is its receiver's: evaluated as that team's.
            if req.policy == "deployer"
                && let Some(team) = team_of(&req)
            {
                req.policy = format!("deployer:{team}");
            }
            out.insert(req);
        }
    }
    (out, counts)
}
