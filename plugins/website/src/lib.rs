//! Website receiver: one schema.org `Product` JSON-LD document per product,
//! in one language and one market chosen by config.
//!
//! Config: `language` (default `en`), `market` (default `DE`),
//! `base_url` (default `https://www.example.com`).

use prism_sdk::{Change, FormatError, Message, Receiver, Value, config, export_receiver, json};

/// The website receiver.
pub struct Website;

fn language() -> String {
    config::get_or("language", "en")
}

fn market() -> String {
    config::get_or("market", "DE")
}

impl Receiver for Website {
    fn accepts(change: &Change) -> bool {
        let (lang, market) = (language(), market());
        change.changed(&format!("/texts/{lang}"))
            || change.changed(&format!("/prices/{market}"))
            || change.changed_any(&[
                "/images",
                "/brand",
                "/status",
                "/category",
                "/logistics/ean",
            ])
    }

    fn format(change: &Change) -> Result<Vec<Message>, FormatError> {
        let sku = change.key.as_str();
        let Some(doc) = change.new.as_ref() else {
            let body = json!({"@context": "https://schema.org", "@type": "Product", "sku": sku, "deleted": true});
            return Ok(vec![jsonld(&body).attribute("action", "delete")]);
        };
        let (lang, market) = (language(), market());
        let name = doc
            .str(&format!("/texts/{lang}/name"))
            .ok_or_else(|| FormatError::reject(format!("no {lang} name for {sku}")))?;
        let base = config::get_or("base_url", "https://www.example.com");
        let mut product = json!({
            "@context": "https://schema.org",
            "@type": "Product",
            "sku": sku,
            "name": name,
            "url": format!("{base}/{lang}/p/{sku}"),
        });
        let obj = product.as_object_mut().expect("literal object");
        if let Some(d) = doc.str(&format!("/texts/{lang}/description")) {
            obj.insert("description".into(), d.into());
        }
        if let Some(b) = doc.str("/brand") {
            obj.insert("brand".into(), json!({"@type": "Brand", "name": b}));
        }
        if let Some(ean) = doc.str("/logistics/ean") {
            obj.insert("gtin13".into(), ean.into());
        }
        let images: Vec<Value> = doc
            .array("/images")
            .iter()
            .filter_map(|i| i.get("url").cloned())
            .collect();
        if !images.is_empty() {
            obj.insert("image".into(), Value::Array(images));
        }
        if let Some(price) = doc.get(&format!("/prices/{market}/amount")) {
            let currency = doc
                .str(&format!("/prices/{market}/currency"))
                .unwrap_or("EUR");
            let available = doc.str("/status") == Some("active");
            obj.insert(
                "offers".into(),
                json!({
                    "@type": "Offer",
                    "price": price,
                    "priceCurrency": currency,
                    "availability": if available { "https://schema.org/InStock" } else { "https://schema.org/Discontinued" },
                }),
            );
        }
        Ok(vec![
            jsonld(&product)
                .attribute("action", "upsert")
                .attribute("language", lang),
        ])
    }
}

fn jsonld(body: &Value) -> Message {
    Message::new("application/ld+json", body.to_string())
}

export_receiver!(Website);

#[cfg(test)]
mod tests {
    use super::*;
    use prism_sdk::testing::set_config;

    fn drill() -> Value {
        json!({
            "sku": "P-1", "brand": "Voltar", "status": "active",
            "texts": {"en": {"name": "Drill \"X\"", "description": "Strong"}, "de": {"name": "Bohrer"}},
            "prices": {"DE": {"currency": "EUR", "amount": 129.99}},
            "images": [{"url": "https://cdn/1.jpg", "role": "main"}],
            "logistics": {"ean": "4012345000017", "weight_g": 1800}
        })
    }

    #[test]
    fn renders_json_ld_in_the_configured_language() {
        set_config([("language", "de")]);
        let msgs = Website::format(&Change::insert("P-1", drill())).unwrap();
        let body: Value = serde_json_from(&msgs[0]);
        assert_eq!(body["name"], "Bohrer");
        assert_eq!(body["offers"]["price"].to_string(), "129.99");
        assert_eq!(body["gtin13"], "4012345000017");
        assert_eq!(msgs[0].content_type, "application/ld+json");
        assert!(
            msgs[0]
                .attributes
                .contains(&("language".into(), "de".into()))
        );
    }

    #[test]
    fn ignores_changes_to_other_languages_and_logistics() {
        set_config([("language", "en")]);
        let mut new = drill();
        new["texts"]["de"]["name"] = "Neu".into();
        new["logistics"]["weight_g"] = 1900.into();
        assert!(!Website::accepts(&Change::modify("P-1", drill(), new)));
        let mut new = drill();
        new["prices"]["DE"]["amount"] = 99.into();
        assert!(Website::accepts(&Change::modify("P-1", drill(), new)));
    }

    #[test]
    fn rejects_a_product_without_a_name() {
        set_config([("language", "fr")]);
        let err = Website::format(&Change::insert("P-1", drill())).unwrap_err();
        assert_eq!(err, FormatError::reject("no fr name for P-1"));
    }

    #[test]
    fn remove_becomes_a_delete() {
        let msgs = Website::format(&Change::remove("P-1", drill())).unwrap();
        assert!(msgs[0].body_str().unwrap().contains(r#""deleted":true"#));
        assert!(
            msgs[0]
                .attributes
                .contains(&("action".into(), "delete".into()))
        );
    }

    fn serde_json_from(m: &Message) -> Value {
        prism_sdk::serde_json::from_slice(&m.body).unwrap()
    }
}
