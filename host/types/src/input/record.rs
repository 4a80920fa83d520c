//! One DynamoDB stream record, in the JSON shape Lambda delivers, to a [`Change`].

use serde_json::{Map, Value};

use super::attr;
use crate::change::{Change, ChangeKind};

/// Convert one stream record. Errors say what is wrong; the caller adds where.
pub fn to_change(record: &Value) -> Result<Change, String> {
    let rec = record
        .as_object()
        .ok_or("a stream record must be a JSON object")?;
    let event_id = rec
        .get("eventID")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let name = rec
        .get("eventName")
        .ok_or("missing eventName")?
        .as_str()
        .ok_or("eventName must be a string")?;
    let kind = match name {
        "INSERT" => ChangeKind::Insert,
        "MODIFY" => ChangeKind::Modify,
        "REMOVE" => ChangeKind::Remove,
        other => {
            return Err(format!(
                "eventName {other:?} is not INSERT, MODIFY or REMOVE"
            ));
        }
    };
    let ddb = rec
        .get("dynamodb")
        .ok_or("missing the \"dynamodb\" object")?
        .as_object()
        .ok_or("\"dynamodb\" must be an object")?;
    let sequence = ddb
        .get("SequenceNumber")
        .ok_or("missing dynamodb.SequenceNumber")?
        .as_str()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or("dynamodb.SequenceNumber must be a string of decimal digits")?
        .to_owned();
    let time_ms = match ddb.get("ApproximateCreationDateTime") {
        None | Some(Value::Null) => 0,
        Some(v) => {
            let secs = v
                .as_f64()
                .ok_or("dynamodb.ApproximateCreationDateTime must be a number of seconds")?;
            if !(0.0..1e11).contains(&secs) {
                return Err(format!(
                    "dynamodb.ApproximateCreationDateTime {secs} is out of range"
                ));
            }
            (secs * 1000.0).round() as u64
        }
    };
    // An image and the model builder's bookkeeping of it.
    let image = |field: &str| -> Result<(Option<Value>, Option<String>), String> {
        match ddb.get(field) {
            None | Some(Value::Null) => Ok((None, None)),
            Some(Value::Object(m)) => {
                let mut item =
                    attr::map_to_json(m, "").map_err(|e| format!("dynamodb.{field}: {e}"))?;
                // The model builder's revision and sources are not the
                // receivers' business; they are kept beside the image, as
                // output dedup's identity of it.
                let books = crate::bookkeeping::take_bookkeeping(&mut item);
                Ok((Some(Value::Object(item)), books))
            }
            Some(_) => Err(format!("dynamodb.{field} must be an object")),
        }
    };
    let (new, new_books) = image("NewImage")?;
    let (old, old_books) = image("OldImage")?;
    let view = "the stream must use StreamViewType NEW_AND_OLD_IMAGES";
    match (kind, &old, &new) {
        (ChangeKind::Insert, _, None) => {
            return Err(format!("INSERT record has no NewImage; {view}"));
        }
        (ChangeKind::Modify, None, _) => {
            return Err(format!("MODIFY record has no OldImage; {view}"));
        }
        (ChangeKind::Modify, _, None) => {
            return Err(format!("MODIFY record has no NewImage; {view}"));
        }
        (ChangeKind::Remove, None, _) => {
            return Err(format!("REMOVE record has no OldImage; {view}"));
        }
        _ => {}
    }
    let keys = ddb
        .get("Keys")
        .ok_or("missing dynamodb.Keys")?
        .as_object()
        .ok_or("dynamodb.Keys must be an object")?;
    let key = key_string(keys)?;
    // An insert has no old image and a remove no new one, whatever the record says.
    let (old, new) = match kind {
        ChangeKind::Insert => (None, new),
        ChangeKind::Remove => (old, None),
        ChangeKind::Modify => (old, new),
    };
    let (old_books, new_books) = match kind {
        ChangeKind::Insert => (None, new_books),
        ChangeKind::Remove => (old_books, None),
        ChangeKind::Modify => (old_books, new_books),
    };
    let mut change = Change::new(key, kind, old, new, sequence, time_ms);
    change.event_id = event_id;
    change.old_bookkeeping = old_books;
    change.new_bookkeeping = new_books;
    Ok(change)
}

/// A change as a model-table stream record, the inverse of [`to_change`]
/// (key, kind, images, sequence, time and event id survive the round
/// trip): how a stored change (a dead letter, a backfilled document) goes
/// through the same dispatch path as the stream's own records.
pub fn from_change(c: &Change) -> Value {
    let image = |v: &Value, books: Option<&str>| {
        let mut plain = v.as_object().cloned().unwrap_or_default();
        if let Some(Ok(Value::Object(books))) = books.map(serde_json::from_str::<Value>) {
            plain.extend(books);
        }
        Value::Object(attr::item_from_json(&plain))
    };
    let mut ddb = Map::new();
    ddb.insert(
        "ApproximateCreationDateTime".into(),
        serde_json::json!(c.time_ms as f64 / 1000.0),
    );
    ddb.insert(
        "Keys".into(),
        image(&serde_json::json!({ "pk": c.key }), None),
    );
    if let Some(n) = &c.new {
        ddb.insert("NewImage".into(), image(n, c.new_bookkeeping.as_deref()));
    }
    if let Some(o) = &c.old {
        ddb.insert("OldImage".into(), image(o, c.old_bookkeeping.as_deref()));
    }
    ddb.insert("SequenceNumber".into(), Value::String(c.sequence.clone()));
    ddb.insert("StreamViewType".into(), "NEW_AND_OLD_IMAGES".into());
    let name = match c.kind {
        ChangeKind::Insert => "INSERT",
        ChangeKind::Modify => "MODIFY",
        ChangeKind::Remove => "REMOVE",
    };
    let mut rec = Map::new();
    if let Some(id) = &c.event_id {
        rec.insert("eventID".into(), Value::String(id.clone()));
    }
    rec.insert("eventName".into(), name.into());
    rec.insert("eventSource".into(), "aws:dynamodb".into());
    rec.insert("dynamodb".into(), Value::Object(ddb));
    Value::Object(rec)
}

/// The product key: the single key attribute's value, or for a composite key
/// the values in attribute-name order joined with `#`.
pub fn key_string(keys: &Map<String, Value>) -> Result<String, String> {
    if keys.is_empty() {
        return Err("dynamodb.Keys is empty".into());
    }
    let mut parts = Vec::with_capacity(keys.len());
    for (name, v) in keys {
        let plain =
            attr::to_json(v, &format!("/{name}")).map_err(|e| format!("dynamodb.Keys: {e}"))?;
        parts.push(match plain {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => {
                return Err(format!(
                    "dynamodb.Keys: key attribute {name:?} must be S, N or B, got {other}"
                ));
            }
        });
    }
    Ok(parts.join("#"))
}

#[cfg(test)]
mod from_change_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_change_survives_the_round_trip_through_a_record() {
        let doc = json!({"sku": "P-1", "price": 12.5, "tags": ["a", "b"], "n": null, "big": 123456789012345678u64});
        for (kind, old, new) in [
            (ChangeKind::Insert, None, Some(doc.clone())),
            (
                ChangeKind::Modify,
                Some(json!({"sku": "P-1"})),
                Some(doc.clone()),
            ),
            (ChangeKind::Remove, Some(doc.clone()), None),
        ] {
            let mut c = Change::new(
                "P-1".into(),
                kind,
                old,
                new,
                "4200000000000000001".into(),
                1_767_225_600_000,
            );
            c.event_id = Some("e-1".into());
            let back = to_change(&from_change(&c)).unwrap();
            assert_eq!(back.to_json(), c.to_json(), "{kind:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(name: &str, ddb: Value) -> Value {
        json!({"eventID": "e1", "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": ddb})
    }

    fn ddb(extra: Value) -> Value {
        let mut base = json!({"Keys": {"pk": {"S": "P-1"}}, "SequenceNumber": "100", "ApproximateCreationDateTime": 1700000000.5});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    }

    #[test]
    fn modify_becomes_a_change_with_paths() {
        let r = rec(
            "MODIFY",
            ddb(json!({
                "OldImage": {"pk": {"S": "P-1"}, "price": {"N": "10"}},
                "NewImage": {"pk": {"S": "P-1"}, "price": {"N": "11.50"}}
            })),
        );
        let c = to_change(&r).unwrap();
        assert_eq!(
            (c.key.as_str(), c.kind, c.sequence.as_str(), c.time_ms),
            ("P-1", ChangeKind::Modify, "100", 1_700_000_000_500)
        );
        assert_eq!(c.changed_paths, vec!["/price"]);
        assert_eq!(c.new_json.as_deref(), Some(r#"{"pk":"P-1","price":11.5}"#));
        assert_eq!(c.event_id.as_deref(), Some("e1"));
    }

    #[test]
    fn the_model_builders_bookkeeping_is_not_shown() {
        let r = rec(
            "MODIFY",
            ddb(json!({
                "OldImage": {"pk": {"S": "P-1"}, "_prism_rev": {"N": "1"}},
                "NewImage": {"pk": {"S": "P-1"}, "_prism_rev": {"N": "2"}, "_prism_sources": {"M": {}}}
            })),
        );
        let c = to_change(&r).unwrap();
        assert_eq!(c.new_json.as_deref(), Some(r#"{"pk":"P-1"}"#));
        assert!(c.is_noop(), "a write of bookkeeping alone changes nothing");
        // Kept beside the images, as output dedup's identity of them.
        assert_eq!(c.old_bookkeeping.as_deref(), Some(r#"{"_prism_rev":1}"#));
        assert_eq!(
            c.new_bookkeeping.as_deref(),
            Some(r#"{"_prism_rev":2,"_prism_sources":{}}"#)
        );
        let back = to_change(&from_change(&c)).unwrap();
        assert_eq!(back.old_bookkeeping, c.old_bookkeeping);
        assert_eq!(back.new_bookkeeping, c.new_bookkeeping);
    }

    #[test]
    fn composite_keys_join_in_name_order() {
        let keys = json!({"sk": {"N": "7"}, "pk": {"S": "A"}});
        assert_eq!(key_string(keys.as_object().unwrap()).unwrap(), "A#7");
    }

    #[test]
    fn missing_images_are_explained() {
        let e = to_change(&rec("INSERT", ddb(json!({})))).unwrap_err();
        assert!(e.contains("INSERT record has no NewImage"), "{e}");
        let e = to_change(&rec("MODIFY", ddb(json!({"NewImage": {"a": {"S": "x"}}})))).unwrap_err();
        assert!(
            e.contains("MODIFY record has no OldImage") && e.contains("NEW_AND_OLD_IMAGES"),
            "{e}"
        );
        let e = to_change(&rec("REMOVE", ddb(json!({})))).unwrap_err();
        assert!(e.contains("REMOVE record has no OldImage"), "{e}");
    }

    #[test]
    fn malformed_records_are_explained() {
        assert!(to_change(&json!([1])).unwrap_err().contains("JSON object"));
        assert!(
            to_change(&rec("UPSERT", ddb(json!({}))))
                .unwrap_err()
                .contains("\"UPSERT\"")
        );
        let e = to_change(&rec(
            "INSERT",
            json!({"Keys": {"pk": {"S": "a"}}, "NewImage": {}}),
        ))
        .unwrap_err();
        assert!(e.contains("SequenceNumber"), "{e}");
        let e = to_change(&rec(
            "INSERT",
            ddb(json!({"NewImage": {"w": {"N": "1234567890123456789012345678901234567890"}}})),
        ))
        .unwrap_err();
        assert!(
            e.contains("dynamodb.NewImage") && e.contains("\"/w\""),
            "{e}"
        );
    }
}
