//! A shadow table's stream record to a [`ShadowChange`]: the model stream's
//! own reader for kind, images, sequence and time, plus the table (from
//! `eventSourceARN`) and the key as a JSON object.

use serde_json::Value;

use prism_engine::ShadowChange;
use prism_types::input::{attr, record};
use prism_types::mapper_manifest::MapperManifest;

/// The table name in a DynamoDB stream ARN
/// (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL`).
pub fn table_of_arn(arn: &str) -> Option<&str> {
    let rest = &arn[arn.find(":table/")? + ":table/".len()..];
    Some(rest.split('/').next().unwrap_or(rest)).filter(|t| !t.is_empty())
}

/// Convert one record of a shadow table's stream. Physical tables are named
/// `prefix` + the logical name the manifest declares.
pub fn to_shadow_change(
    rec: &Value,
    manifest: &MapperManifest,
    prefix: &str,
) -> Result<ShadowChange, String> {
    let arn = rec
        .get("eventSourceARN")
        .and_then(Value::as_str)
        .ok_or("missing eventSourceARN: a shadow record must say which table it is from")?;
    let physical =
        table_of_arn(arn).ok_or_else(|| format!("eventSourceARN {arn:?} names no table"))?;
    let decl = physical
        .strip_prefix(prefix)
        .and_then(|logical| manifest.table(logical))
        .ok_or_else(|| {
            let known: Vec<String> = manifest
                .tables
                .iter()
                .map(|t| format!("{prefix}{}", t.name))
                .collect();
            format!(
                "table {physical:?} is not a shadow table of mapper {:?} (expected one of: {})",
                manifest.mapper,
                known.join(", ")
            )
        })?;
    let change = record::to_change(rec)?;
    let keys = rec
        .pointer("/dynamodb/Keys")
        .and_then(Value::as_object)
        .ok_or("dynamodb.Keys must be an object")?;
    let key =
        Value::Object(attr::map_to_json(keys, "").map_err(|e| format!("dynamodb.Keys: {e}"))?);
    super::reads::check_key(decl, &key)?;
    Ok(ShadowChange {
        table: decl.name.clone(),
        key,
        kind: change.kind,
        old: change.old,
        new: change.new,
        sequence: change.sequence,
        time_ms: change.time_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest() -> MapperManifest {
        MapperManifest::from_toml(
            r#"
schema = 1
mapper = "catalog"
[plugin]
digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
[[tables]]
name = "prices"
key = ["article_no", "market"]
"#,
            "m.toml",
        )
        .unwrap()
    }

    fn rec(arn: &str, keys: Value) -> Value {
        json!({"eventID": "e1", "eventName": "INSERT", "eventSourceARN": arn,
               "dynamodb": {"Keys": keys, "NewImage": {"article_no": {"S": "P1"}, "market": {"S": "DE"}, "amount": {"N": "9.90"}},
                            "SequenceNumber": "7"}})
    }

    #[test]
    fn the_table_comes_from_the_arn_without_the_prefix() {
        let arn = "arn:aws:dynamodb:eu-central-1:1:table/prism-dev-shadow-prices/stream/2026";
        assert_eq!(table_of_arn(arn), Some("prism-dev-shadow-prices"));
        let keys = json!({"article_no": {"S": "P1"}, "market": {"S": "DE"}});
        let c = to_shadow_change(&rec(arn, keys), &manifest(), "prism-dev-shadow-").unwrap();
        assert_eq!((c.table.as_str(), c.sequence.as_str()), ("prices", "7"));
        assert_eq!(c.key, json!({"article_no": "P1", "market": "DE"}));
        assert_eq!(
            c.new.unwrap()["amount"].to_string(),
            "9.9",
            "numbers as the model stream reads them"
        );
    }

    #[test]
    fn unknown_tables_and_wrong_keys_are_explained() {
        let keys = json!({"article_no": {"S": "P1"}, "market": {"S": "DE"}});
        let e = to_shadow_change(
            &rec("arn:aws:dynamodb:r:1:table/warehouses/stream/x", keys),
            &manifest(),
            "",
        )
        .unwrap_err();
        assert!(
            e.contains("\"warehouses\"") && e.contains("expected one of: prices"),
            "{e}"
        );
        let e = to_shadow_change(
            &rec(
                "arn:aws:dynamodb:r:1:table/prices/stream/x",
                json!({"article_no": {"S": "P1"}}),
            ),
            &manifest(),
            "",
        )
        .unwrap_err();
        assert!(
            e.contains("key attributes [\"article_no\", \"market\"]"),
            "{e}"
        );
        let mut no_arn = rec("x", json!({}));
        no_arn.as_object_mut().unwrap().remove("eventSourceARN");
        assert!(
            to_shadow_change(&no_arn, &manifest(), "")
                .unwrap_err()
                .contains("eventSourceARN")
        );
    }
}
