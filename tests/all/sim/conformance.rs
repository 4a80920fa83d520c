//! Conformance: the models cannot drift from AWS. A sample of the
//! simulation's fault-free schedules runs twice, once over the models and
//! once over prism's own AWS adapters (`SqsDelivery`, `DynamoSpool`,
//! `DynamoLedger`, `DynamoOutputs`) against moto, and both must end the
//! same: per receiver and product, the same messages in the same order,
//! and the same dead letters. Both must also keep every guarantee
//! (`check.rs`). Faults are the models' alone (moto has none to inject at
//! the same call), so the fault proxy's chaos tests (`chaos.rs`) cover AWS
//! under faults.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use prism_aws::ledger::DynamoLedger;
use prism_aws::outputs::DynamoOutputs;
use prism_aws::spool::DynamoSpool;
use prism_aws::sqs::SqsDelivery;
use prism_core::sink::DeadLetter;
use prism_e2e::aws::{Queues, create_ledger_table, create_outputs_table, create_spool_table};

use super::backends::{Accepted, Queue};
use super::check::{self, Tally};
use super::faults::FaultPlan;
use super::world::{Backends, Options, World};
use super::{RECEIVERS, drain, fixture, options, play};

/// Fault-free seeds (a seed's fault rate is `seed % 4`'s: 0 for these).
const SEEDS: [u64; 6] = [0, 8, 16, 24, 32, 40];

/// What one receiver ended with, in terms both sides share: per product,
/// the changes its messages are, in order; and its dead letters.
type Ended = (
    BTreeMap<String, Vec<String>>,
    BTreeSet<(String, String, String)>,
);

fn ended(q: &Queue) -> Ended {
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &q.messages {
        let body: Value = serde_json::from_str(&m.body).unwrap_or_default();
        let key = body["key"].as_str().unwrap_or(&m.key).to_owned();
        per_key.entry(key).or_default().push(m.sequence.clone());
    }
    let dead = q
        .dead
        .iter()
        .map(|d| (d.key.clone(), d.sequence.clone(), d.error_kind.clone()))
        .collect();
    (per_key, dead)
}

#[test]
fn the_models_end_where_aws_ends() {
    let Some(queues) = Queues::new("sim-conformance") else {
        return;
    };
    let fixture = fixture();
    // The fixture's manifests name queues `sim-<receiver>`: made here (and
    // emptied, should an earlier run have left any).
    let mut urls = BTreeMap::new();
    for r in RECEIVERS {
        let (queue, dlq) = super::queue_names(r);
        let names = [queue, dlq];
        let made: Vec<String> = names
            .iter()
            .map(|n| {
                queues.rt.block_on(async {
                    let mut req = queues.client.create_queue().queue_name(n);
                    if r.fifo {
                        req = req
                            .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true");
                    }
                    req.send().await.unwrap().queue_url.unwrap()
                })
            })
            .collect();
        for url in &made {
            queues.drain(url);
        }
        urls.insert(r.id, (made[0].clone(), made[1].clone()));
    }
    let target = prism_aws::AwsTarget {
        endpoint_url: prism_e2e::aws::endpoint(),
        region: Some("us-east-1".into()),
    };
    let config = queues.rt.block_on(prism_aws::sdk_config(&target));
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let mut compared = 0;
    for seed in SEEDS {
        let opts = Options {
            plan: FaultPlan::default(),
            redrives: false,
            ..options(seed)
        };
        let mut model = World::new(fixture, &opts);
        play(&mut model);
        let mut bad = drain(&mut model);

        let tables = format!("t{}-sim-conformance-{seed}", std::process::id());
        queues.rt.block_on(async {
            create_ledger_table(&ddb, &format!("{tables}-ledger")).await;
            create_outputs_table(&ddb, &format!("{tables}-outputs")).await;
            create_spool_table(&ddb, &format!("{tables}-spool")).await;
        });
        let make = |handle: &tokio::runtime::Handle| Backends {
            delivery: Arc::new(SqsDelivery {
                client: sqs.clone(),
                claims: None,
                in_flight: prism_aws::sqs::IN_FLIGHT,
                in_flight_per_queue: prism_aws::sqs::IN_FLIGHT_PER_QUEUE,
            }),
            spool: Arc::new(DynamoSpool::new(
                ddb.clone(),
                format!("{tables}-spool"),
                handle.clone(),
            )),
            ledger: Arc::new(DynamoLedger {
                client: ddb.clone(),
                table: format!("{tables}-ledger"),
            }),
            outputs: Arc::new(DynamoOutputs::new(ddb.clone(), format!("{tables}-outputs"))),
        };
        let mut aws = World::on_aws(fixture, &opts, &make);
        play(&mut aws);
        bad.extend(drain(&mut aws).into_iter().map(|v| format!("on AWS: {v}")));

        let models = model.queues.0.lock().unwrap();
        let mut tally = Tally::default();
        for r in RECEIVERS {
            let (url, dlq) = &urls[r.id];
            let mut on_aws = Queue::default();
            on_aws.fifo = r.fifo;
            on_aws.messages = queues
                .drain(url)
                .into_iter()
                .map(|(body, attrs, _)| Accepted {
                    body,
                    key: attrs.get("prism-key").cloned().unwrap_or_default(),
                    sequence: attrs.get("prism-sequence").cloned().unwrap_or_default(),
                })
                .collect();
            on_aws.dead = queues
                .drain(dlq)
                .into_iter()
                .map(|(body, _, _)| letter(&body))
                .collect();
            let empty = Queue::default();
            let in_model = models.get(r.id).unwrap_or(&empty);
            bad.extend(
                check::receiver(
                    r,
                    Some(&on_aws),
                    &aws.written,
                    &aws.given_up_ever,
                    &mut tally,
                )
                .into_iter()
                .map(|v| format!("on AWS: {v}")),
            );
            let (a, m) = (ended(&on_aws), ended(in_model));
            if a != m {
                bad.push(format!(
                    "{}: AWS ended {a:?}\n  the models ended {m:?}",
                    r.id
                ));
            }
            compared += on_aws.messages.len() + on_aws.dead.len();
        }
        assert!(
            bad.is_empty(),
            "seed {seed}: the models and AWS differ:\n{}",
            bad.join("\n")
        );
    }
    println!(
        "conformance: {} schedules, {compared} messages and letters the same on AWS as in the models",
        SEEDS.len()
    );
    assert!(compared > 0, "nothing was delivered");
}

/// A dead letter as the DLQ holds it (its JSON).
fn letter(body: &str) -> DeadLetter {
    let v: Value = serde_json::from_str(body).unwrap_or_default();
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    DeadLetter {
        receiver: s("receiver"),
        plugin_digest: v["plugin_digest"].as_str().map(str::to_owned),
        key: s("key"),
        sequence: s("sequence"),
        ordinal: v["ordinal"].as_u64().unwrap_or_default(),
        error_kind: s("error_kind"),
        error: s("error"),
        change: v["change"].clone(),
    }
}
