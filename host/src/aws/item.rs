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
