//! A realistic, deterministic sample catalogue and change stream, for the
//! demo, the tests and the benchmarks.
//!
//! Products have marketing texts in English, German and French, prices for
//! three markets, logistics data (EAN, weight, dimensions, packaging) and
//! images. The stream, as Lambda-shaped DynamoDB stream records, has:
//! 1. an insert per product;
//! 2. modifies that each touch one field (a price, a text, a weight, a
//!    packaging type, an image, a status);
//! 3. a few removes;
//! 4. a full refresh that rewrites every remaining product, of which about
//!    3 % really change.

pub mod shadow;

use serde_json::{Map, Value, json};

use prism_types::input::attr;

/// The model table's name in the sample streams' ARNs.
pub const MODEL_TABLE: &str = "prism-dev-product-model";

/// Sample settings.
#[derive(Debug, Clone, Copy)]
pub struct SampleOptions {
    /// How many products.
    pub products: usize,
    /// PRNG seed: the same seed gives the same stream, byte for byte.
    pub seed: u64,
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self {
            products: 300,
            seed: 42,
        }
    }
}

/// splitmix64: small, fast, deterministic.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, xs: &'a [&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

pub(crate) const BRANDS: &[&str] = &[
    "Voltar",
    "Kranich & Söhne",
    "Nordlicht",
    "Atelier Brun",
    "Hexa<Tools>",
];
const KINDS: &[(&str, &str, &str, &str)] = &[
    (
        "drills",
        "Cordless Drill",
        "Akku-Bohrschrauber",
        "Perceuse sans fil",
    ),
    ("saws", "Circular Saw", "Handkreissäge", "Scie circulaire"),
    ("lamps", "Work Lamp", "Arbeitsleuchte", "Lampe de travail"),
    (
        "sanders",
        "Orbital Sander",
        "Exzenterschleifer",
        "Ponceuse excentrique",
    ),
    (
        "kits",
        "Bit Set, 32 pcs.",
        "Bit-Set, 32-tlg.",
        "Coffret d'embouts, 32 pcs",
    ),
];
const PACKAGING: &[&str] = &["box", "blister", "bag", "case"];

/// The product document for product number `n`.
pub fn product(n: usize, rng_seed: u64) -> Value {
    let mut rng = Rng(rng_seed ^ (n as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let sku = sku(n);
    let brand = rng.pick(BRANDS);
    let (category, en, de, fr) = KINDS[rng.below(KINDS.len() as u64) as usize];
    let model = 100 + rng.below(900);
    let base_cents = 999 + rng.below(40_000);
    let price = |cents: u64| -> Value {
        serde_json::from_str(&format!("{}.{:02}", cents / 100, cents % 100)).expect("decimal")
    };
    json!({
        "pk": sku,
        "sku": sku,
        "brand": brand,
        "category": category,
        "status": "active",
        "texts": {
            "en": {"name": format!("{brand} {en} {model}"), "description": format!("The {en} {model}: built for daily use, \"pro\" grade."),
                   "bullets": ["Robust housing", format!("{} W motor", 300 + rng.below(900))]},
            "de": {"name": format!("{brand} {de} {model}"), "description": format!("{de} {model} für den täglichen Einsatz."),
                   "bullets": ["Robustes Gehäuse"]},
            "fr": {"name": format!("{brand} {fr} {model}"), "description": format!("{fr} {model}, qualité « pro »."),
                   "bullets": []}
        },
        "prices": {
            "DE": {"currency": "EUR", "amount": price(base_cents)},
            "AT": {"currency": "EUR", "amount": price(base_cents + 100)},
            "CH": {"currency": "CHF", "amount": price(base_cents * 105 / 100)}
        },
        "logistics": {
            "ean": ean13(400_000_000_000 + n as u64),
            "weight_g": 200 + rng.below(4_800),
            "dimensions_mm": {"length": 100 + rng.below(400), "width": 50 + rng.below(200), "height": 30 + rng.below(300)},
            "packaging": {"type": rng.pick(PACKAGING), "units_per_carton": 1 + rng.below(12)}
        },
        "images": [
            {"role": "main", "url": format!("https://cdn.example.com/p/{sku}/main.jpg")},
            {"role": "side", "url": format!("https://cdn.example.com/p/{sku}/side.jpg")}
        ]
    })
}

/// The SKU (and table key) of product `n`.
pub fn sku(n: usize) -> String {
    format!("P-{n:05}")
}

fn ean13(body12: u64) -> String {
    let digits: Vec<u32> = format!("{body12:012}")
        .chars()
        .map(|c| c.to_digit(10).expect("digit"))
        .collect();
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { *d } else { d * 3 })
        .sum();
    format!("{body12:012}{}", (10 - sum % 10) % 10)
}

/// Builds stream records with increasing sequence numbers and times.
pub struct StreamWriter {
    seq: u128,
    time_s: u64,
    records: Vec<Value>,
}

impl Default for StreamWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamWriter {
    /// Start at sequence 100000000000000000001 and 2026-01-01T00:00:00Z.
    pub fn new() -> Self {
        Self {
            seq: 100_000_000_000_000_000_000,
            time_s: 1_767_225_600,
            records: Vec::new(),
        }
    }

    /// Append a model-table record: `old`/`new` are plain JSON items (with `pk`).
    pub fn push(&mut self, key: &str, old: Option<&Value>, new: Option<&Value>) {
        let keys = json!({ "pk": key });
        self.push_to(MODEL_TABLE, &keys, old, new);
    }

    /// Append a record of `table` with these key attributes (plain JSON).
    pub fn push_to(&mut self, table: &str, keys: &Value, old: Option<&Value>, new: Option<&Value>) {
        self.seq += 1;
        self.time_s += 1;
        let name = match (old, new) {
            (None, Some(_)) => "INSERT",
            (Some(_), Some(_)) => "MODIFY",
            _ => "REMOVE",
        };
        let image = |v: &Value| Value::Object(attr::item_from_json(v.as_object().expect("object")));
        let mut ddb = Map::new();
        ddb.insert("ApproximateCreationDateTime".into(), json!(self.time_s));
        ddb.insert("Keys".into(), image(keys));
        if let Some(n) = new {
            ddb.insert("NewImage".into(), image(n));
        }
        if let Some(o) = old {
            ddb.insert("OldImage".into(), image(o));
        }
        ddb.insert("SequenceNumber".into(), json!(self.seq.to_string()));
        ddb.insert("StreamViewType".into(), json!("NEW_AND_OLD_IMAGES"));
        self.records.push(json!({
            "eventID": format!("{:032x}", self.seq),
            "eventName": name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-central-1",
            "dynamodb": ddb,
            "eventSourceARN": format!("arn:aws:dynamodb:eu-central-1:000000000000:table/{table}/stream/2026-01-01T00:00:00.000"),
        }));
    }

    /// The records.
    pub fn records(&self) -> &[Value] {
        &self.records
    }

    /// The records as JSON Lines.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        for r in &self.records {
            out.push_str(&r.to_string());
            out.push('\n');
        }
        out
    }
}

/// The whole sample stream.
pub fn stream(opts: SampleOptions) -> StreamWriter {
    let mut w = StreamWriter::new();
    let mut rng = Rng(opts.seed);
    let mut current: Vec<Option<Value>> = (0..opts.products)
        .map(|n| Some(product(n, opts.seed)))
        .collect();
    for (n, p) in current.iter().enumerate() {
        w.push(&sku(n), None, p.as_ref());
    }
    // Single-field modifies.
    for _ in 0..opts.products / 2 {
        let n = rng.below(opts.products as u64) as usize;
        let Some(old) = current[n].clone() else {
            continue;
        };
        let mut new = old.clone();
        edit(&mut new, &mut rng);
        w.push(&sku(n), Some(&old), Some(&new));
        current[n] = Some(new);
    }
    // A few removes.
    for k in 0..(opts.products / 60).max(1) {
        let n = (k * 37 + 11) % opts.products;
        if let Some(old) = current[n].take() {
            w.push(&sku(n), Some(&old), None);
        }
    }
    // Full refresh: every product rewritten, about 3 % really changed.
    for (n, slot) in current.iter_mut().enumerate() {
        let Some(old) = slot.clone() else { continue };
        let mut new = old.clone();
        if rng.below(100) < 3 {
            edit(&mut new, &mut rng);
        }
        w.push(&sku(n), Some(&old), Some(&new));
        *slot = Some(new);
    }
    w
}

/// Change exactly one field, the way the master data system would.
pub(crate) fn edit(p: &mut Value, rng: &mut Rng) {
    match rng.below(6) {
        0 => {
            let cents = 999 + rng.below(40_000);
            p["prices"]["DE"]["amount"] =
                serde_json::from_str(&format!("{}.{:02}", cents / 100, cents % 100))
                    .expect("decimal");
        }
        1 => {
            p["texts"]["de"]["description"] =
                json!(format!("Neu: verbessert, Version {}.", rng.below(100)))
        }
        2 => p["logistics"]["weight_g"] = json!(200 + rng.below(4_800)),
        3 => p["logistics"]["packaging"]["type"] = json!(rng.pick(PACKAGING)),
        4 => {
            p["images"][1]["url"] = json!(format!(
                "https://cdn.example.com/p/{}/side-{}.jpg",
                p["sku"].as_str().unwrap_or(""),
                rng.below(9)
            ))
        }
        _ => {
            p["texts"]["en"]["name"] = json!(format!(
                "{} (new)",
                p["texts"]["en"]["name"].as_str().unwrap_or("")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_readable() {
        let a = stream(SampleOptions {
            products: 50,
            seed: 7,
        })
        .to_json_lines();
        let b = stream(SampleOptions {
            products: 50,
            seed: 7,
        })
        .to_json_lines();
        assert_eq!(a, b);
        let input = prism_types::input::parse(&a, "sample");
        assert!(input.errors.is_empty(), "{:?}", input.errors);
        let kinds = |k| input.changes.iter().filter(|c| c.kind == k).count();
        use prism_types::change::ChangeKind::*;
        assert_eq!(kinds(Insert), 50);
        assert!(kinds(Remove) >= 1);
        let noops = input.changes.iter().filter(|c| c.is_noop()).count();
        assert!(noops > 30, "a full refresh is mostly no-ops, got {noops}");
    }

    #[test]
    fn ean_check_digit() {
        assert_eq!(ean13(400_638_133_393), "4006381333931");
    }
}
