//! DynamoDB-typed attribute values (`{"S": "x"}`, `{"N": "1"}`, …) to plain JSON.
//!
//! | DynamoDB | JSON in the image |
//! |---|---|
//! | `S` | string |
//! | `N` | number, exact (see [`super::number`]) |
//! | `BOOL` | `true` / `false` |
//! | `NULL` | `null` |
//! | `M` | object |
//! | `L` | array |
//! | `B` | string: the bytes in standard base64 (validated) |
//! | `SS` | array of strings, sorted |
//! | `NS` | array of numbers, sorted numerically |
//! | `BS` | array of base64 strings, sorted |
//!
//! Sets are sorted because DynamoDB does not keep their order: without it, an
//! unchanged set could show up as a change.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Number, Value};

use super::number::Decimal;

/// Convert one DynamoDB-typed attribute; `path` (a JSON pointer) names it in errors.
pub fn to_json(attr: &Value, path: &str) -> Result<Value, String> {
    let obj = attr.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        format!(
            "attribute at {} must be an object with exactly one type key, got {}",
            show(path),
            brief(attr)
        )
    })?;
    let (ty, v) = obj.iter().next().expect("len is 1");
    let want = |what: &str| {
        format!(
            "attribute at {}: {ty} must be {what}, got {}",
            show(path),
            brief(v)
        )
    };
    Ok(match ty.as_str() {
        "S" => Value::String(v.as_str().ok_or_else(|| want("a string"))?.to_owned()),
        "N" => number(v.as_str().ok_or_else(|| want("a string"))?, path)?,
        "BOOL" => Value::Bool(v.as_bool().ok_or_else(|| want("a boolean"))?),
        "NULL" => match v {
            Value::Bool(true) => Value::Null,
            _ => return Err(want("true")),
        },
        "B" => Value::String(binary(
            v.as_str().ok_or_else(|| want("a base64 string"))?,
            path,
        )?),
        "M" => Value::Object(map_to_json(
            v.as_object().ok_or_else(|| want("an object"))?,
            path,
        )?),
        "L" => {
            let items = v.as_array().ok_or_else(|| want("an array"))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(to_json(item, &format!("{path}/{i}"))?);
            }
            Value::Array(out)
        }
        "SS" => {
            let mut s = set(v, path, ty, |x, _| {
                x.as_str().map(str::to_owned).ok_or("a string")
            })?;
            s.sort();
            s.into_iter().map(Value::String).collect()
        }
        "NS" => {
            let mut s = set(v, path, ty, |x, p| {
                let t = x.as_str().ok_or("a string")?;
                Decimal::parse(t)
                    .map_err(|_| "a number string")
                    .map(|d| (d, p.to_owned()))
            })?;
            s.sort_by(|a, b| a.0.cmp_value(&b.0));
            let mut out = Vec::with_capacity(s.len());
            for (d, p) in s {
                out.push(number(&d.to_json_text(), &p)?);
            }
            Value::Array(out)
        }
        "BS" => {
            let mut s = set(v, path, ty, |x, p| {
                let t = x.as_str().ok_or("a base64 string")?;
                binary(t, p).map_err(|_| "valid base64")
            })?;
            s.sort();
            s.into_iter().map(Value::String).collect()
        }
        other => {
            return Err(format!(
                "attribute at {}: unknown DynamoDB type {other:?} (expected S, N, B, BOOL, NULL, M, L, SS, NS or BS)",
                show(path)
            ));
        }
    })
}

/// Convert a DynamoDB item (a map of typed attributes) to a JSON object.
pub fn map_to_json(item: &Map<String, Value>, path: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (k, v) in item {
        let child = format!("{path}/{}", prism_contract::pointer::escape_token(k));
        out.insert(k.clone(), to_json(v, &child)?);
    }
    Ok(out)
}

/// The reverse: plain JSON to a DynamoDB-typed attribute (strings `S`,
/// numbers `N` with their exact text, booleans `BOOL`, null `NULL`, objects
/// `M`, arrays `L`). Used to write items and build stream records.
pub fn from_json(v: &Value) -> Value {
    let mut m = Map::new();
    let (ty, val) = match v {
        Value::String(s) => ("S", Value::String(s.clone())),
        Value::Number(n) => ("N", Value::String(n.to_string())),
        Value::Bool(b) => ("BOOL", Value::Bool(*b)),
        Value::Null => ("NULL", Value::Bool(true)),
        Value::Object(o) => ("M", Value::Object(item_from_json(o))),
        Value::Array(a) => ("L", Value::Array(a.iter().map(from_json).collect())),
    };
    m.insert(ty.to_owned(), val);
    Value::Object(m)
}

/// A plain JSON object to a DynamoDB item (a map of typed attributes).
pub fn item_from_json(o: &Map<String, Value>) -> Map<String, Value> {
    o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()
}

fn number(text: &str, path: &str) -> Result<Value, String> {
    let d = Decimal::parse(text).map_err(|e| format!("attribute at {}: {e}", show(path)))?;
    let canonical = d.to_json_text();
    // With serde_json's arbitrary_precision this keeps every digit.
    let n: Number = serde_json::from_str(&canonical)
        .map_err(|e| format!("attribute at {}: {e}", show(path)))?;
    Ok(Value::Number(n))
}

fn binary(text: &str, path: &str) -> Result<String, String> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| format!("attribute at {}: B is not valid base64 ({e})", show(path)))?;
    Ok(STANDARD.encode(bytes))
}

fn set<T>(
    v: &Value,
    path: &str,
    ty: &str,
    each: impl Fn(&Value, &str) -> Result<T, &'static str>,
) -> Result<Vec<T>, String> {
    let items = v.as_array().ok_or_else(|| {
        format!(
            "attribute at {}: {ty} must be an array, got {}",
            show(path),
            brief(v)
        )
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            each(x, path).map_err(|what| {
                format!(
                    "attribute at {}: {ty} element {i} must be {what}, got {}",
                    show(path),
                    brief(x)
                )
            })
        })
        .collect()
}

fn show(path: &str) -> String {
    if path.is_empty() {
        "the item root".into()
    } else {
        format!("{path:?}")
    }
}

fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.floor_char_boundary(60)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conv(v: Value) -> Result<Value, String> {
        to_json(&v, "/x")
    }

    #[test]
    fn converts_every_type() {
        let item = json!({"M": {
            "s": {"S": "hi"}, "n": {"N": "19.990"}, "b": {"BOOL": false}, "z": {"NULL": true},
            "bin": {"B": "aGVsbG8="}, "l": {"L": [{"N": "1"}, {"S": "a"}]},
            "ss": {"SS": ["b", "a"]}, "ns": {"NS": ["10", "9", "-1.50"]}, "bs": {"BS": ["Yg==", "YQ=="]}
        }});
        assert_eq!(
            conv(item).unwrap().to_string(),
            r#"{"b":false,"bin":"aGVsbG8=","bs":["YQ==","Yg=="],"l":[1,"a"],"n":19.99,"ns":[-1.5,9,10],"s":"hi","ss":["a","b"],"z":null}"#
        );
    }

    #[test]
    fn round_trips_plain_json() {
        let plain: Value = serde_json::from_str(
            r#"{"a":[1,"x",true,null,{"n":1.50}],"big":12345678901234567890123456789012345678}"#,
        )
        .unwrap();
        let typed = Value::Object(item_from_json(plain.as_object().unwrap()));
        let back = map_to_json(typed.as_object().unwrap(), "").unwrap();
        assert_eq!(
            Value::Object(back).to_string(),
            r#"{"a":[1,"x",true,null,{"n":1.5}],"big":12345678901234567890123456789012345678}"#
        );
    }

    #[test]
    fn keeps_38_digits() {
        let v = conv(json!({"N": "3.1415926535897932384626433832795028841"})).unwrap();
        assert_eq!(v.to_string(), "3.1415926535897932384626433832795028841");
    }

    #[test]
    fn errors_name_the_path_and_problem() {
        let e = conv(json!({"M": {"price": {"X": "1"}}})).unwrap_err();
        assert!(
            e.contains("\"/x/price\"") && e.contains("unknown DynamoDB type \"X\""),
            "{e}"
        );
        let e = conv(json!({"B": "not base64!"})).unwrap_err();
        assert!(e.contains("not valid base64"), "{e}");
        let e = conv(json!({"N": "1234567890123456789012345678901234567890"})).unwrap_err();
        assert!(e.contains("39 significant digits"), "{e}");
        let e = conv(json!({"S": 5})).unwrap_err();
        assert!(e.contains("S must be a string"), "{e}");
        let e = conv(json!({"S": "a", "N": "1"})).unwrap_err();
        assert!(e.contains("exactly one type key"), "{e}");
        let e = conv(json!({"NS": ["1", "x"]})).unwrap_err();
        assert!(e.contains("NS element 1"), "{e}");
        let e = conv(json!({"NULL": false})).unwrap_err();
        assert!(e.contains("NULL must be true"), "{e}");
    }
}
