//! Property tests for reading DynamoDB JSON: numbers keep their exact value
//! through normalization, and no input, however malformed, panics.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::attr;
use super::number::{Decimal, MAX_DIGITS};

/// A number as DynamoDB could hold it, written several ways: sign, 1–38
/// significant digits, padded with zeros, with or without an exponent.
fn dynamodb_number() -> impl Strategy<Value = (bool, String, i64, String)> {
    (
        any::<bool>(),
        "[1-9][0-9]{0,37}",
        -90i64..=88, // the adjusted exponent stays within DynamoDB's 1E-130..9.99E+125
        0usize..3,
        0usize..3,
        any::<bool>(),
    )
        .prop_map(|(neg, digits, exp, lead, trail, plain)| {
            let sign = if neg { "-" } else { "" };
            let text = if plain && (-40..=40).contains(&exp) {
                // Plain notation: move the point instead of writing e±x.
                let mut d = format!("{}{digits}{}", "0".repeat(lead), "0".repeat(trail));
                let point = d.len() as i64 - trail as i64 + exp;
                if point <= 0 {
                    d = format!("0.{}{d}", "0".repeat((-point) as usize));
                } else if point < d.len() as i64 {
                    d.insert(point as usize, '.');
                } else {
                    d.push_str(&"0".repeat((point - d.len() as i64) as usize));
                }
                format!("{sign}{d}")
            } else {
                format!(
                    "{sign}{}{digits}{}e{}",
                    "0".repeat(lead),
                    "0".repeat(trail),
                    exp - trail as i64
                )
            };
            (neg, digits, exp, text)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn numbers_keep_every_digit(( neg, digits, exp, text) in dynamodb_number()) {
        let canonical = format!("{}{}e{}", if neg { "-" } else { "" }, digits, exp);
        let d = Decimal::parse(&text).unwrap();
        prop_assert_eq!(&d, &Decimal::parse(&canonical).unwrap(), "{} vs {}", text, canonical);
        // The JSON text is a JSON number that reads back as the same decimal,
        // and printing it again changes nothing.
        let out = d.to_json_text();
        let v: Value = serde_json::from_str(&out).unwrap();
        prop_assert!(v.is_number(), "{}", out);
        prop_assert_eq!(v.to_string(), out.clone());
        let again = Decimal::parse(&out).unwrap();
        prop_assert_eq!(&again, &d);
        prop_assert_eq!(again.to_json_text(), out);
        prop_assert!(digits.trim_end_matches('0').len() <= MAX_DIGITS);
    }

    #[test]
    fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,60}") {
        let _ = Decimal::parse(&text);
    }

    #[test]
    fn any_attribute_value_converts_or_is_refused_without_panicking(v in attribute_value()) {
        let _ = attr::to_json(&v, "/x");
    }

    #[test]
    fn plain_json_round_trips_through_dynamodb_json(v in plain_json()) {
        let item = match v {
            Value::Object(o) => o,
            other => [("v".to_owned(), other)].into_iter().collect(),
        };
        let ddb = attr::item_from_json(&item);
        let back = attr::map_to_json(&ddb, "/").unwrap();
        prop_assert_eq!(Value::Object(back), Value::Object(item));
    }
}

/// Attribute-value-shaped JSON, well-formed or not: type tags that exist
/// and that do not, payloads of the wrong shape, nesting.
fn attribute_value() -> impl Strategy<Value = Value> {
    let tag = prop::sample::select(vec![
        "S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M", "Q", "",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            (tag.clone(), inner.clone()).prop_map(|(t, v)| json!({ t: v })),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Plain JSON as prism writes images: integers (exact), strings, booleans,
/// null, arrays and objects. (Floats are not generated: DynamoDB keeps
/// decimals, not binary floating point.)
fn plain_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
