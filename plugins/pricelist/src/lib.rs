//! Reseller price list: a CSV file per batch window, one header row and one
//! row per changed product, for one market.
//!
//! Config: `market` (default `DE`), `language` for the name column (default
//! `en`), `delimiter` (default `;`). Runs in batch mode; a single change
//! becomes a one-row file.

use prism_sdk::csv::CsvWriter;
use prism_sdk::{Change, FormatError, Message, Receiver, config, export_receiver};

/// The reseller price-list receiver.
pub struct PriceList;

const HEADER: [&str; 7] = [
    "sku", "ean", "name", "currency", "price", "status", "sequence",
];

impl Receiver for PriceList {
    fn accepts(change: &Change) -> bool {
        let market = config::get_or("market", "DE");
        let lang = config::get_or("language", "en");
        change.changed(&format!("/prices/{market}"))
            || change.changed(&format!("/texts/{lang}/name"))
            || change.changed_any(&["/status", "/logistics/ean"])
    }

    fn format(change: &Change) -> Result<Vec<Message>, FormatError> {
        Self::format_batch(std::slice::from_ref(change))
    }

    fn format_batch(changes: &[Change]) -> Result<Vec<Message>, FormatError> {
        if changes.is_empty() {
            return Ok(vec![]);
        }
        let market = config::get_or("market", "DE");
        let lang = config::get_or("language", "en");
        let delimiter = match config::get_or("delimiter", ";").as_bytes() {
            [d] => *d,
            other => {
                return Err(FormatError::reject(format!(
                    "config delimiter must be one byte, got {other:?}"
                )));
            }
        };
        let mut csv = CsvWriter::new(delimiter).guard_formulas(true);
        csv.record(HEADER);
        for c in changes {
            csv.record(row(c, &market, &lang));
        }
        let first = &changes[0].sequence;
        let last = &changes[changes.len() - 1].sequence;
        Ok(vec![
            Message::new("text/csv; charset=utf-8", csv.finish())
                .group(format!("pricelist-{market}"))
                .attribute("rows", changes.len().to_string())
                .attribute("first-sequence", first.clone())
                .attribute("last-sequence", last.clone()),
        ])
    }
}

fn row(c: &Change, market: &str, lang: &str) -> [String; 7] {
    let seq = c.sequence.clone();
    let Some(doc) = c.new.as_ref() else {
        return [
            c.key.clone(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            "deleted".into(),
            seq,
        ];
    };
    let text = |p: &str| doc.str(p).unwrap_or_default().to_owned();
    [
        c.key.clone(),
        text("/logistics/ean"),
        text(&format!("/texts/{lang}/name")),
        text(&format!("/prices/{market}/currency")),
        doc.number_text(&format!("/prices/{market}/amount"))
            .unwrap_or_default(),
        text("/status"),
        seq,
    ]
}

export_receiver!(PriceList);

#[cfg(test)]
mod tests {
    use super::*;
    use prism_sdk::testing::set_config;
    use prism_sdk::{Value, json};

    fn p(name: &str, amount: &str) -> Value {
        let amount: Value = prism_sdk::serde_json::from_str(amount).unwrap();
        json!({"status": "active", "texts": {"en": {"name": name}}, "logistics": {"ean": "123"},
               "prices": {"DE": {"currency": "EUR", "amount": amount}}})
    }

    #[test]
    fn one_header_for_a_whole_batch() {
        set_config([("delimiter", ";")]);
        let batch = [
            Change::insert("A", p("Bolt; M8", "0.10")).with_sequence("100"),
            Change::remove("B", p("Nut", "1")).with_sequence("101"),
            Change::insert("C", p("=cmd()", "12345678901234567890.123456789")).with_sequence("102"),
        ];
        let msgs = PriceList::format_batch(&batch).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            msgs[0].body_str().unwrap(),
            "sku;ean;name;currency;price;status;sequence\r\n\
             A;123;\"Bolt; M8\";EUR;0.10;active;100\r\n\
             B;;;;;deleted;101\r\n\
             C;123;'=cmd();EUR;12345678901234567890.123456789;active;102\r\n"
        );
        assert!(msgs[0].attributes.contains(&("rows".into(), "3".into())));
    }

    #[test]
    fn only_price_list_fields_matter() {
        set_config([("market", "DE")]);
        let mut new = p("Bolt", "1");
        new["texts"]["en"]["description"] = "longer".into();
        assert!(!PriceList::accepts(&Change::modify(
            "A",
            p("Bolt", "1"),
            new
        )));
        assert!(PriceList::accepts(&Change::modify(
            "A",
            p("Bolt", "1"),
            p("Bolt", "2")
        )));
    }

    #[test]
    fn bad_delimiter_config_is_a_reject() {
        set_config([("delimiter", ";;")]);
        assert!(matches!(
            PriceList::format(&Change::insert("A", p("x", "1"))),
            Err(FormatError::Reject(_))
        ));
    }
}
