//! Plain JSON to and from the SDK's DynamoDB attribute values, exactly
//! (numbers keep their text).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};

/// JSON to an attribute value (strings `S`, numbers `N`, objects `M`, …).
pub fn to_av(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_av).collect()),
        Value::Object(o) => {
            AttributeValue::M(o.iter().map(|(k, v)| (k.clone(), to_av(v))).collect())
        }
    }
}

/// An attribute value to JSON; `what` names it in errors.
pub fn from_av(v: &AttributeValue, what: &str) -> Result<Value, String> {
    Ok(match v {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => Value::Number(
            serde_json::from_str::<Number>(n).map_err(|e| format!("{what}: number {n:?}: {e}"))?,
        ),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::L(l) => Value::Array(
            l.iter()
                .map(|x| from_av(x, what))
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::M(m) => Value::Object(map_from_av(m, what)?),
        other => return Err(format!("{what}: unsupported attribute type {other:?}")),
    })
}

/// A map of attribute values to a JSON object.
pub fn map_from_av(
    m: &HashMap<String, AttributeValue>,
    what: &str,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (k, v) in m {
        out.insert(k.clone(), from_av(v, &format!("{what}.{k}"))?);
    }
    Ok(out)
}

/// `item_json` and `attr_json`: an item in DynamoDB JSON (`{"S": …}`,
/// `{"M": {…}}`, sets, base64 binaries), the shape Lambda delivers and
/// [`prism_types::input::attr`] reads, for the `AttributeValue` in scope where the
/// macro is used: the DynamoDB and the Streams SDK each have their own type,
/// with the same variants.
macro_rules! dynamodb_json {
    ($blob:ty) => {
        /// An item in DynamoDB JSON.
        pub fn item_json(item: &HashMap<String, AttributeValue>) -> Value {
            Value::Object(
                item.iter()
                    .map(|(k, v)| (k.clone(), attr_json(v)))
                    .collect(),
            )
        }

        /// One attribute value in DynamoDB JSON.
        pub fn attr_json(v: &AttributeValue) -> Value {
            use base64::Engine as _;
            let b64 = |b: &$blob| base64::engine::general_purpose::STANDARD.encode(b.as_ref());
            match v {
                AttributeValue::S(s) => serde_json::json!({ "S": s }),
                AttributeValue::N(n) => serde_json::json!({ "N": n }),
                AttributeValue::B(b) => serde_json::json!({ "B": b64(b) }),
                AttributeValue::Bool(b) => serde_json::json!({ "BOOL": b }),
                AttributeValue::Null(n) => serde_json::json!({ "NULL": n }),
                AttributeValue::Ss(s) => serde_json::json!({ "SS": s }),
                AttributeValue::Ns(n) => serde_json::json!({ "NS": n }),
                AttributeValue::Bs(bs) => {
                    serde_json::json!({ "BS": bs.iter().map(b64).collect::<Vec<_>>() })
                }
                AttributeValue::L(l) => {
                    serde_json::json!({ "L": l.iter().map(attr_json).collect::<Vec<_>>() })
                }
                AttributeValue::M(m) => serde_json::json!({ "M": item_json(m) }),
                // A type newer than this SDK: say so rather than guess.
                _ => serde_json::json!({ "UNKNOWN": format!("{v:?}") }),
            }
        }
    };
}
pub(crate) use dynamodb_json;

/// The DynamoDB SDK's items in DynamoDB JSON.
pub mod ddb {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::types::AttributeValue;
    use serde_json::Value;

    super::dynamodb_json!(aws_sdk_dynamodb::primitives::Blob);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        let v: Value =
            serde_json::from_str(r#"{"a":[1,"x",true,null,{"n":12345678901234567890.123456789}]}"#)
                .unwrap();
        assert_eq!(from_av(&to_av(&v), "t").unwrap(), v);
    }
}
