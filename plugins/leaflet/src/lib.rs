//! Leaflet receiver: marketing fields only (names, descriptions, bullet
//! points, brand, main image) in every language, as XML for the leaflet
//! generator. Prices and logistics never reach it.

use prism_sdk::xml::XmlWriter;
use prism_sdk::{Change, FormatError, Message, Receiver, export_receiver};

/// The leaflet receiver.
pub struct Leaflet;

const MARKETING: &[&str] = &["/texts", "/brand", "/images", "/category"];

impl Receiver for Leaflet {
    fn accepts(change: &Change) -> bool {
        change.changed_any(MARKETING)
    }

    fn format(change: &Change) -> Result<Vec<Message>, FormatError> {
        let mut x = XmlWriter::new();
        let Some(doc) = change.new.as_ref() else {
            x.open("product", &[("sku", &change.key), ("action", "delete")]);
            return Ok(vec![xml(x)]);
        };
        x.open("product", &[("sku", &change.key), ("action", "upsert")]);
        x.element_opt("brand", doc.str("/brand"));
        x.element_opt("category", doc.str("/category"));
        if let Some(texts) = doc.get("/texts").and_then(|t| t.as_object()) {
            if texts.is_empty() {
                return Err(FormatError::reject(format!(
                    "{}: no marketing texts",
                    change.key
                )));
            }
            x.open("texts", &[]);
            for (lang, t) in texts {
                x.open("text", &[("lang", lang)]);
                x.element_opt("name", t.get("name").and_then(|v| v.as_str()));
                x.element_opt("description", t.get("description").and_then(|v| v.as_str()));
                let bullets = t.get("bullets").and_then(|b| b.as_array());
                if let Some(bullets) = bullets.filter(|b| !b.is_empty()) {
                    x.open("bullets", &[]);
                    for b in bullets.iter().filter_map(|b| b.as_str()) {
                        x.element("bullet", b);
                    }
                    x.close();
                }
                x.close();
            }
            x.close();
        }
        let main = doc
            .array("/images")
            .iter()
            .find(|i| i.get("role").and_then(|r| r.as_str()) == Some("main"))
            .and_then(|i| i.get("url"))
            .and_then(|u| u.as_str());
        x.element_opt("image", main);
        Ok(vec![xml(x)])
    }
}

fn xml(x: XmlWriter) -> Message {
    Message::new("application/xml", x.finish())
}

export_receiver!(Leaflet);

#[cfg(test)]
mod tests {
    use super::*;
    use prism_sdk::{Value, json};

    fn product() -> Value {
        json!({
            "brand": "Voltar & Söhne", "category": "drills",
            "texts": {"en": {"name": "Drill <X>", "bullets": ["Fast", "Light"]}},
            "images": [{"url": "https://cdn/2.jpg", "role": "side"}, {"url": "https://cdn/1.jpg", "role": "main"}],
            "prices": {"DE": {"amount": 10, "currency": "EUR"}}
        })
    }

    #[test]
    fn writes_escaped_marketing_xml() {
        let msgs = Leaflet::format(&Change::insert("P-1", product())).unwrap();
        assert_eq!(
            msgs[0].body_str().unwrap(),
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><product sku="P-1" action="upsert">"#,
                "<brand>Voltar &amp; Söhne</brand><category>drills</category>",
                r#"<texts><text lang="en"><name>Drill &lt;X&gt;</name>"#,
                "<bullets><bullet>Fast</bullet><bullet>Light</bullet></bullets></text></texts>",
                "<image>https://cdn/1.jpg</image></product>"
            )
        );
    }

    #[test]
    fn price_changes_never_reach_the_leaflet() {
        let mut new = product();
        new["prices"]["DE"]["amount"] = 12.into();
        assert!(!Leaflet::accepts(&Change::modify("P-1", product(), new)));
        let mut new = product();
        new["texts"]["en"]["bullets"][1] = "Lighter".into();
        assert!(Leaflet::accepts(&Change::modify("P-1", product(), new)));
    }

    #[test]
    fn empty_texts_are_rejected() {
        let err = Leaflet::format(&Change::insert("P-1", json!({"texts": {}}))).unwrap_err();
        assert!(matches!(err, FormatError::Reject(_)));
    }
}
