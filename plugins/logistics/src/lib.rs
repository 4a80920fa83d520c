//! Logistics receiver: weight, dimensions and packaging for the warehouse
//! system. It reacts only when one of those changes (or a product appears or
//! goes) and ignores everything else.

use prism_sdk::{Change, FormatError, Message, Receiver, export_receiver, json};

/// The logistics receiver.
pub struct Logistics;

/// The fields the warehouse cares about.
pub const FIELDS: &[&str] = &[
    "/logistics/weight_g",
    "/logistics/dimensions_mm",
    "/logistics/packaging",
];

impl Receiver for Logistics {
    fn accepts(change: &Change) -> bool {
        change.changed_any(FIELDS)
    }

    fn format(change: &Change) -> Result<Vec<Message>, FormatError> {
        let Some(doc) = change.new.as_ref() else {
            return Ok(vec![Message::json(
                &json!({"sku": change.key, "deleted": true}),
            )]);
        };
        let weight = doc.get("/logistics/weight_g").ok_or_else(|| {
            FormatError::reject(format!("{}: no /logistics/weight_g", change.key))
        })?;
        let body = json!({
            "sku": change.key,
            "weight_g": weight,
            "dimensions_mm": doc.get("/logistics/dimensions_mm"),
            "packaging": doc.get("/logistics/packaging"),
            "changed": change.changed_paths.iter().filter(|p| p.starts_with("/logistics/")).collect::<Vec<_>>(),
        });
        Ok(vec![Message::json(&body).attribute("kind", "logistics")])
    }
}

export_receiver!(Logistics);

#[cfg(test)]
mod tests {
    use super::*;
    use prism_sdk::Value;

    fn item() -> Value {
        json!({"texts": {"en": {"name": "Drill"}}, "prices": {"DE": {"amount": 1}},
               "logistics": {"weight_g": 1800, "dimensions_mm": {"length": 300, "width": 90, "height": 250},
                             "packaging": {"type": "box", "units_per_carton": 4}, "ean": "1"}})
    }

    #[test]
    fn reacts_to_weight_dimensions_and_packaging_only() {
        for (path, value) in [
            ("/logistics/weight_g", json!(1900)),
            ("/logistics/dimensions_mm/height", json!(260)),
            ("/logistics/packaging/type", json!("bag")),
        ] {
            let mut new = item();
            *new.pointer_mut(path).unwrap() = value;
            assert!(
                Logistics::accepts(&Change::modify("P", item(), new)),
                "{path}"
            );
        }
        for (path, value) in [
            ("/texts/en/name", json!("x")),
            ("/prices/DE/amount", json!(2)),
            ("/logistics/ean", json!("2")),
        ] {
            let mut new = item();
            *new.pointer_mut(path).unwrap() = value;
            assert!(
                !Logistics::accepts(&Change::modify("P", item(), new)),
                "{path}"
            );
        }
    }

    #[test]
    fn message_names_what_changed() {
        let mut new = item();
        new["logistics"]["weight_g"] = 1900.into();
        let msgs = Logistics::format(&Change::modify("P", item(), new)).unwrap();
        assert_eq!(
            msgs[0].body_str().unwrap(),
            r#"{"changed":["/logistics/weight_g"],"dimensions_mm":{"height":250,"length":300,"width":90},"packaging":{"type":"box","units_per_carton":4},"sku":"P","weight_g":1900}"#
        );
    }

    #[test]
    fn missing_weight_is_rejected() {
        assert!(Logistics::format(&Change::insert("P", json!({"logistics": {}}))).is_err());
    }
}
