//! A 350 KB product through every path a change can wait in: immediate
//! delivery, a batch buffer, a retry lane and a dead-letter queue. Both
//! images together are ~700 KB: over a DynamoDB item (400 KB) and an SQS
//! message (256 KiB). Before claim checks such a change was held and retried
//! until the record aged out of the stream.

use prism_aws::claims::{ClaimStore, resolve_dead_letter};
use prism_core::dispatch::TickOptions;
use prism_core::spool::now_ms;
use prism_e2e::wasm;
use serde_json::{Value, json};

use crate::support::world::{World, failed, products};

const BLOB: usize = 350_000;

#[test]
fn a_350_kb_product_is_delivered_buffered_laned_and_parked_through_claim_checks() {
    let Some(w) = World::new("claims") else {
        return;
    };
    let (imm_q, _) = w.register(wasm::HOSTILE, "imm", &[], true);
    // Its queue does not exist yet: the change waits in a retry lane.
    let (lane_q, _) = w.register(wasm::HOSTILE, "lane", &[], false);
    let (_, parked_dlq) = w.register(wasm::HOSTILE, "parked", &["behaviour=reject"], true);
    let batch_q = w.register_pricelist();
    let spool = w.spool();
    let p = w.processor(&[("PRISM_SPOOL_TABLE", spool.as_str())]);

    let mut doc = products(0..1).remove(0);
    doc["blob"] = json!("x".repeat(BLOB));
    w.write(std::slice::from_ref(&doc));
    doc["blob"] = json!("y".repeat(BLOB));
    doc["prices"]["DE"]["amount"] = json!(9.99);
    w.write(std::slice::from_ref(&doc));
    let records = w.records();
    assert_eq!(records.len(), 2);

    let out = w.invoke(&p, &records);
    assert!(failed(&out).is_empty(), "nothing held: {:?}", out.response);
    let r = &out.report.receivers;
    assert_eq!(r["imm"].messages, 2, "{:?}", r["imm"]);
    assert_eq!(r["lane"].laned, 2, "{:?}", r["lane"]);
    assert_eq!(r["pricelist"].buffered, 2, "{:?}", r["pricelist"]);
    assert_eq!(r["parked"].rejected, 2, "{:?}", r["parked"]);
    assert_eq!(w.bodies(&imm_q).len(), 2);

    // The dead letters carry a reference; a reader gets the whole change back.
    let claims = ClaimStore::new(w.env.s3.clone(), &w.bucket);
    let letters = w.q.drain(&parked_dlq);
    assert_eq!(letters.len(), 2);
    for (body, attrs, _) in &letters {
        assert!(
            body.len() < 4096,
            "the letter itself is small: {}",
            body.len()
        );
        assert!(attrs["prism-claim"].starts_with("claims/"), "{attrs:?}");
        let letter: Value = w.q.rt.block_on(resolve_dead_letter(&claims, body)).unwrap();
        assert_eq!(letter["error_kind"], "rejected");
        let blob = letter["change"]["new"]["blob"].as_str().unwrap();
        assert_eq!(blob.len(), BLOB);
    }

    // The lane's queue comes back and the buffer is flushed: the claimed
    // changes are read back from the plugin bucket and delivered.
    w.q.create("lane");
    let t =
        w.q.rt
            .block_on(p.tick(TickOptions {
                now_ms: now_ms(),
                force: true,
                break_leases: false,
            }))
            .unwrap();
    assert_eq!(t.waiting, 0, "{t:?}");
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(t.receivers["lane"].messages, 2, "{t:?}");
    assert_eq!(t.receivers["pricelist"].batches, 1, "{t:?}");
    let laned: Vec<Value> = w
        .bodies(&lane_q)
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(laned.len(), 2);
    assert!(!w.bodies(&batch_q).is_empty());

    // Content-addressed: the spool entries and the dead letters share keys.
    let listed =
        w.q.rt
            .block_on(
                w.env
                    .s3
                    .list_objects_v2()
                    .bucket(&w.bucket)
                    .prefix(prism_aws::claims::PREFIX)
                    .send(),
            )
            .unwrap();
    let keys = listed.contents().len();
    assert!((2..=6).contains(&keys), "{keys} claims");
}

/// Issue 28, item 9: a change too big for DynamoDB waits in a retry lane as
/// a claim check in the plugin bucket, and the bucket's lifecycle expires
/// `claims/` after 30 days, while a lane waits as long as its queue is
/// down. Once the claim was gone every read of the lane failed, on every
/// tick, and the lane was never parked. Now the entry is parked as
/// unreadable, with the reason, and the lane drains.
#[test]
fn a_lane_entry_whose_claim_check_expired_is_parked_and_the_lane_drains() {
    let Some(w) = World::new("claim-gone") else {
        return;
    };
    // Its queue does not exist yet: the change waits in a retry lane.
    let (lane_q, lane_dlq) = w.register(wasm::HOSTILE, "lane", &[], false);
    let spool = w.spool();
    let p = w.processor(&[("PRISM_SPOOL_TABLE", spool.as_str())]);
    let mut doc = products(0..1).remove(0);
    doc["blob"] = json!("x".repeat(BLOB));
    w.write(std::slice::from_ref(&doc));
    let out = w.invoke(&p, &w.records());
    assert_eq!(out.report.receivers["lane"].laned, 1, "{:?}", out.report);

    // 30 days later: the lifecycle rule has removed the claim checks.
    w.q.rt.block_on(async {
        let listed = w
            .env
            .s3
            .list_objects_v2()
            .bucket(&w.bucket)
            .prefix(prism_aws::claims::PREFIX)
            .send()
            .await
            .unwrap();
        assert!(!listed.contents().is_empty(), "the change was claimed");
        for o in listed.contents() {
            w.env
                .s3
                .delete_object()
                .bucket(&w.bucket)
                .key(o.key().unwrap())
                .send()
                .await
                .unwrap();
        }
    });

    w.q.create("lane");
    let t =
        w.q.rt
            .block_on(p.tick(TickOptions {
                now_ms: now_ms(),
                force: true,
                break_leases: false,
            }))
            .unwrap();
    assert_eq!(t.waiting, 0, "the lane drained: {t:?}");
    assert!(w.bodies(&lane_q).is_empty(), "nothing to deliver");
    let letters = w.q.drain(&lane_dlq);
    assert_eq!(letters.len(), 1, "parked");
    let (body, _, _) = &letters[0];
    assert!(
        body.contains("unreadable") && body.contains("cannot be read back"),
        "{body}"
    );
}
