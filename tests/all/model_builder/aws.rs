//! The whole chain on AWS, against moto: writes to the master data
//! system's shadow tables, their streams through the mapper Lambda's
//! handler (the mapper published to the bucket with `prism mapper
//! publish`), the model table's stream through the dispatcher, and the
//! messages in the receivers' SQS queues.

use std::collections::BTreeMap;

use prism_aws::{AwsTarget, StreamReader};
use prism_e2e::aws::{attr, create_shadow_table};
use prism_e2e::{catalog_manifest, read, wasm, write_mapper};
use prism_lambda::mapper::{MapperConfig, MapperLambda, vars};
use prism_sample::shadow;
use serde_json::{Value, json};

use crate::support::emulator::{Emulator, log_lines};
use crate::support::world::World;
use crate::{prism, text};

/// The shadow tables (`<prefix><name>`) with a reader per stream.
struct Shadow {
    prefix: String,
    streams: BTreeMap<String, (StreamReader, Vec<prism_aws::ShardCursor>)>,
}

impl Shadow {
    fn create(w: &World) -> Self {
        let prefix = format!("{}-shadow-", w.table);
        let config = w.q.rt.block_on(prism_aws::sdk_config(&AwsTarget {
            endpoint_url: Some(w.ep.clone()),
            region: Some("us-east-1".into()),
        }));
        let mut streams = BTreeMap::new();
        for t in shadow::tables() {
            let name = format!("{prefix}{}", t.name);
            let arn = w.q.rt.block_on(create_shadow_table(&w.ddb, &name, &t));
            let reader = StreamReader::new(aws_sdk_dynamodbstreams::Client::new(&config), arn);
            let cursors = w.q.rt.block_on(async {
                let mut out = Vec::new();
                for s in reader.shards().await.unwrap() {
                    out.push(reader.open(&s, true).await.unwrap());
                }
                out
            });
            streams.insert(t.name.clone(), (reader, cursors));
        }
        Self { prefix, streams }
    }

    fn put(&self, w: &World, table: &str, item: Value) {
        w.q.rt.block_on(async {
            w.ddb
                .put_item()
                .table_name(format!("{}{table}", self.prefix))
                .set_item(Some(attrs(&item)))
                .send()
                .await
                .unwrap()
        });
    }

    fn delete(&self, w: &World, table: &str, key: Value) {
        w.q.rt.block_on(async {
            w.ddb
                .delete_item()
                .table_name(format!("{}{table}", self.prefix))
                .set_key(Some(attrs(&key)))
                .send()
                .await
                .unwrap()
        });
    }

    /// New records of one table's stream.
    fn records(&mut self, w: &World, table: &str) -> Vec<Value> {
        let (reader, cursors) = self.streams.get_mut(table).unwrap();
        w.q.rt.block_on(async {
            let mut out = Vec::new();
            for c in cursors.iter_mut() {
                loop {
                    let got = reader.read(c, 1000).await.unwrap();
                    if got.is_empty() {
                        break;
                    }
                    out.extend(got);
                }
            }
            out
        })
    }
}

/// A plain JSON object as DynamoDB attributes.
fn attrs(v: &Value) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), attr(v)))
        .collect()
}

/// `prism mapper publish` the catalog mapper to this world's bucket.
fn publish(w: &World) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_mapper(
        dir.path(),
        &catalog_manifest(&read(wasm::CATALOG)),
        wasm::CATALOG,
    );
    let o = prism(&[
        "mapper",
        "publish",
        "--manifest",
        manifest.to_str().unwrap(),
        "--bucket",
        &w.bucket,
        "--endpoint-url",
        &w.ep,
        "--region",
        "us-east-1",
    ]);
    let (out, err) = text(&o);
    assert!(
        o.status.success() && out.contains("mappers/catalog.toml"),
        "{out}\n{err}"
    );
}

fn mapper_lambda(w: &World, prefix: &str, model_table: &str, dlq: &str) -> MapperLambda {
    let cache = tempfile::tempdir().unwrap().keep();
    let env: BTreeMap<&str, String> = [
        (vars::MAPPER_MANIFEST, "mappers/catalog.toml".to_owned()),
        (vars::PLUGIN_BUCKET, w.bucket.clone()),
        (vars::MODEL_TABLE, model_table.to_owned()),
        (vars::SHADOW_PREFIX, prefix.to_owned()),
        (vars::DEAD_LETTER_QUEUE, dlq.to_owned()),
        (vars::CACHE_DIR, cache.display().to_string()),
        (vars::ENDPOINT_URL, w.ep.clone()),
    ]
    .into();
    let config = MapperConfig::from_vars(|k| env.get(k).cloned()).unwrap();
    let target = AwsTarget {
        endpoint_url: Some(w.ep.clone()),
        region: Some("us-east-1".into()),
    };
    let mut lambda = w.q.rt.block_on(async {
        let sdk = prism_aws::sdk_config(&target).await;
        config.build(&sdk, &target).await.unwrap()
    });
    lambda.emit_metrics = false;
    lambda
}

fn product(sku: &str, brand: &str) -> [(&'static str, Value); 3] {
    [
        (
            "texts",
            json!({"article_no": sku, "language": "en", "name": format!("Drill {sku}"), "description": "d", "bullets": []}),
        ),
        (
            "prices",
            json!({"article_no": sku, "market": "DE", "currency": "EUR", "amount": 19.99}),
        ),
        (
            "products",
            json!({"article_no": sku, "brand_id": brand, "product_group": "drills", "lifecycle": "ACTIVE",
                            "ean": "4000000000017", "net_weight_g": 900, "length_mm": 200, "width_mm": 80, "height_mm": 60,
                            "logistics_class": "LC-001", "media": []}),
        ),
    ]
}

/// Names (website) or SKUs (logistics CSV) in a queue's bodies.
fn names(w: &World, queue: &str, field: &str) -> Vec<String> {
    let mut out: Vec<String> =
        w.q.drain(queue)
            .into_iter()
            .map(|(body, _, _)| {
                let v: Value = serde_json::from_str(&body).unwrap_or(json!({}));
                format!("{}|{}", v["sku"].as_str().unwrap_or(""), v[field])
            })
            .collect();
    out.sort();
    out
}

#[test]
fn a_shadow_table_write_reaches_the_receivers_queues_through_mapper_and_dispatcher() {
    let Some(w) = World::new("mapper-chain") else {
        return;
    };
    let mut sh = Shadow::create(&w);
    let (site_q, _) = w.register(
        wasm::WEBSITE,
        "website",
        &["language=en", "market=DE"],
        true,
    );
    let dlq = w.q.create("mapper-dlq");

    // Ops publish the mapper to the bucket; the Lambda reads it from there.
    publish(&w);
    let mapper = mapper_lambda(&w, &sh.prefix, &w.model, &dlq);
    let dispatcher = w.processor(&[]);

    // The master data system writes a brand, a logistics class and three products.
    sh.put(&w, "brands", json!({"brand_id": "B-01", "name": "Voltar"}));
    sh.put(
        &w,
        "logistics",
        json!({"class_id": "LC-001", "packaging_type": "box", "units_per_carton": 6}),
    );
    for sku in ["P-1", "P-2", "P-3"] {
        for (table, item) in product(sku, "B-01") {
            sh.put(&w, table, item);
        }
    }
    // Each shadow stream's batch goes through the mapper Lambda's handler,
    // then the model stream's batch through the dispatcher.
    let pump = |sh: &mut Shadow| {
        let mut mapped = prism_mapping::stream::MapBatchReport::default();
        for table in ["brands", "logistics", "texts", "prices", "products"] {
            let records = sh.records(&w, table);
            if records.is_empty() {
                continue;
            }
            let o =
                w.q.rt
                    .block_on(mapper.handle(&json!({ "Records": records })))
                    .unwrap();
            assert!(
                o.response.batch_item_failures.is_empty(),
                "{table}: {:?}",
                o.report
            );
            mapped.tally.add(&o.report.tally);
            mapped.parked += o.report.parked;
        }
        let model = w.records();
        let d = w.invoke(&dispatcher, &model);
        assert!(d.response.batch_item_failures.is_empty());
        (mapped, model.len())
    };
    let (mapped, model_changes) = pump(&mut sh);
    assert_eq!((mapped.tally.upserted, model_changes), (3, 3), "{mapped:?}");
    assert_eq!(
        names(&w, &site_q, "brand"),
        [
            "P-1|{\"@type\":\"Brand\",\"name\":\"Voltar\"}",
            "P-2|{\"@type\":\"Brand\",\"name\":\"Voltar\"}",
            "P-3|{\"@type\":\"Brand\",\"name\":\"Voltar\"}"
        ]
    );
    // The document in the model table carries the mapper's bookkeeping, but
    // the receivers never saw it (their JSON-LD is built from the stream image).

    // A brand rename: one shadow write, three product messages.
    sh.put(
        &w,
        "brands",
        json!({"brand_id": "B-01", "name": "Voltar Pro"}),
    );
    let (mapped, model_changes) = pump(&mut sh);
    assert_eq!((mapped.tally.upserted, model_changes), (3, 3));
    assert_eq!(names(&w, &site_q, "brand").len(), 3);

    // The master system rewrites a price as it is: nothing flows downstream.
    sh.put(
        &w,
        "prices",
        json!({"article_no": "P-2", "market": "DE", "currency": "EUR", "amount": 19.99}),
    );
    let (mapped, model_changes) = pump(&mut sh);
    assert_eq!((mapped.tally.unchanged, model_changes), (1, 0));
    assert!(w.q.drain(&site_q).is_empty());

    // A product row goes: the website gets its delete.
    sh.delete(&w, "products", json!({"article_no": "P-3"}));
    let (mapped, _) = pump(&mut sh);
    assert_eq!(mapped.tally.deleted, 1);
    let gone = w.q.drain(&site_q);
    assert_eq!(gone.len(), 1);
    assert!(
        gone[0].0.contains("\"deleted\":true") && gone[0].0.contains("P-3"),
        "{}",
        gone[0].0
    );

    // A record from a table the mapper does not know is parked in its DLQ,
    // with the reason and the raw record; the batch does not fail.
    let stray = json!({"eventID": "x", "eventName": "INSERT", "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/warehouses/stream/x",
                       "dynamodb": {"Keys": {"id": {"S": "W1"}}, "NewImage": {"id": {"S": "W1"}}, "SequenceNumber": "9"}});
    let o =
        w.q.rt
            .block_on(mapper.handle(&json!({ "Records": [stray] })))
            .unwrap();
    assert!(o.response.batch_item_failures.is_empty());
    assert_eq!(o.report.parked, 1);
    let parked = w.q.drain(&dlq);
    assert_eq!(parked.len(), 1);
    assert!(
        parked[0]
            .0
            .contains(r#"table \"warehouses\" is not a shadow table"#)
            && parked[0].0.contains(r#""error_kind":"unreadable""#),
        "{}",
        parked[0].0
    );

    // The model table is unreachable: the record fails, to be retried (nothing lost).
    let broken = mapper_lambda(&w, &sh.prefix, "no-such-model-table", &dlq);
    sh.put(
        &w,
        "prices",
        json!({"article_no": "P-1", "market": "DE", "currency": "EUR", "amount": 17.5}),
    );
    let records = sh.records(&w, "prices");
    let o =
        w.q.rt
            .block_on(broken.handle(&json!({ "Records": records.clone() })))
            .unwrap();
    assert_eq!(o.response.batch_item_failures.len(), 1, "{:?}", o.report);
    assert_eq!(
        o.response.batch_item_failures[0].item_identifier.as_deref(),
        records[0]["dynamodb"]["SequenceNumber"].as_str()
    );
    assert!(
        w.q.drain(&dlq).is_empty(),
        "a transient failure is retried, not parked"
    );
    // Retried by the healthy mapper, it gets through once.
    let o =
        w.q.rt
            .block_on(mapper.handle(&json!({ "Records": records })))
            .unwrap();
    assert_eq!(o.report.tally.upserted, 1);
}

#[test]
fn prism_dev_with_a_mapper_follows_the_shadow_streams_through_to_the_queues() {
    let Some(w) = World::new("mapper-dev") else {
        return;
    };
    let sh = Shadow::create(&w);
    let (site_q, _) = w.register(
        wasm::WEBSITE,
        "website",
        &["language=en", "market=DE"],
        true,
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_mapper(
        dir.path(),
        &catalog_manifest(&read(wasm::CATALOG)),
        wasm::CATALOG,
    );
    sh.put(&w, "brands", json!({"brand_id": "B-01", "name": "Voltar"}));
    sh.put(
        &w,
        "logistics",
        json!({"class_id": "LC-001", "packaging_type": "box", "units_per_carton": 6}),
    );
    for sku in ["P-1", "P-2"] {
        for (table, item) in product(sku, "B-01") {
            sh.put(&w, table, item);
        }
    }
    let o = w.dev(&[
        "--mapper",
        manifest.to_str().unwrap(),
        "--shadow-prefix",
        &sh.prefix,
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains(&format!("following shadow table {}products", sh.prefix)),
        "{out}"
    );
    // Products arrive on their own stream: each maps to one model write once complete.
    assert!(out.contains("records -> 2 model writes"), "{out}");
    assert!(out.contains("website 2/2 msgs"), "{out}");
    assert_eq!(
        names(&w, &site_q, "name"),
        ["P-1|\"Drill P-1\"", "P-2|\"Drill P-2\""]
    );
}

#[test]
fn the_real_mapper_binary_maps_shadow_batches_under_the_runtime_api_emulator() {
    let Some(w) = World::new("mapper-emulated") else {
        return;
    };
    let Some(mut emulator) = Emulator::start() else {
        return;
    };
    let mut sh = Shadow::create(&w);
    publish(&w);
    let dlq = w.q.create("mapper-dlq");
    sh.put(&w, "brands", json!({"brand_id": "B-01", "name": "Voltar"}));
    sh.put(
        &w,
        "logistics",
        json!({"class_id": "LC-001", "packaging_type": "box", "units_per_carton": 6}),
    );
    for (table, item) in product("P-1", "B-01") {
        sh.put(&w, table, item);
    }

    let cache = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    emulator.run(
        env!("CARGO_BIN_EXE_prism-mapper-under-test"),
        &[
            (vars::MAPPER_MANIFEST, "mappers/catalog.toml"),
            (vars::PLUGIN_BUCKET, &w.bucket),
            (vars::MODEL_TABLE, &w.model),
            (vars::SHADOW_PREFIX, &sh.prefix),
            (vars::DEAD_LETTER_QUEUE, &dlq),
            (vars::CACHE_DIR, cache.path().to_str().unwrap()),
            (vars::ENDPOINT_URL, &w.ep),
        ],
        log.path(),
    );
    // One invocation per shadow table's batch, as each event source mapping makes.
    for table in ["brands", "logistics", "texts", "prices", "products"] {
        let event = json!({ "Records": sh.records(&w, table) }).to_string();
        let (ok, out, err) = emulator.invoke(&event);
        assert!(ok, "{table}: invoke failed:\n{out}\n{err}");
        let response: Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(response, json!({"batchItemFailures": []}), "{table}");
    }
    // The product is in the model table, and its stream carries it onward.
    let model = w.records();
    assert_eq!(model.len(), 1, "{model:?}");
    assert_eq!(model[0]["eventName"], "INSERT");
    assert_eq!(model[0]["dynamodb"]["NewImage"]["brand"]["S"], "Voltar");

    let (ok, _, err) = emulator.invoke(r#"{"x": 1}"#);
    assert!(!ok && err.contains("malformed event"), "{err}");
    drop(emulator);
    let lines = log_lines(log.path());
    assert!(
        lines.iter().any(|l| l["message"] == "cold start"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "mapper loaded" && l["mapper"] == "catalog"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "batch" && l["written"] == 1 && l["records"] == 1),
        "{lines:?}"
    );
    let emf: Vec<&Value> = lines.iter().filter(|l| l["Mapper"] == "catalog").collect();
    assert_eq!(emf.len(), 5, "one EMF line per batch: {lines:?}");
    assert_eq!(emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"], "prism");
    assert_eq!(
        emf.iter()
            .map(|l| l["ModelWrites"].as_f64().unwrap())
            .sum::<f64>(),
        1.0
    );
}
