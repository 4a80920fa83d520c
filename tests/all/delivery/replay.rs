//! `prism replay` against moto: the records an on-failure destination
//! message points at, read back from the stream and dispatched again.

use prism_e2e::wasm;
use serde_json::json;

use crate::support::world::{World, expected, products, sequences};
use crate::{prism, text};

#[test]
fn replay_reads_an_on_failure_messages_records_from_the_stream_and_delivers_them() {
    let Some(w) = World::new("replay") else {
        return;
    };
    let (site_q, _) = w.register(wasm::WEBSITE, "website", &[], true);
    w.write(&products(0..5));
    let records = w.records();
    let seqs = sequences(&records);
    let shard = w.q.rt.block_on(w.reader.shards()).unwrap().remove(0);
    let arn = w.reader.arn().to_owned();

    // What the event source mapping's on-failure destination keeps for a
    // batch that exhausted its retries: records 2 to 4.
    let message = json!({
        "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 3},
        "version": "1.0",
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": seqs[1],
            "endSequenceNumber": seqs[3],
            "batchSize": 3,
            "streamArn": arn,
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("failures.jsonl");
    std::fs::write(&file, format!("{message}\n")).unwrap();
    let out = w.prism(&[
        "replay",
        "--file",
        file.to_str().unwrap(),
        "--bucket",
        &w.bucket,
        "--model-table",
        &w.model,
    ]);
    assert!(out.contains(": 3 records from"), "{out}");
    assert!(out.contains("replayed 3 records; 0 still failing"), "{out}");
    assert_eq!(
        w.bodies(&site_q),
        expected(&records[1..4], "website", wasm::WEBSITE, &[])
    );

    // From a sequence number to the end of what the shard holds.
    let out = w.prism(&[
        "replay",
        "--stream-arn",
        &arn,
        "--shard",
        &shard,
        "--sequence",
        &seqs[3],
        "--bucket",
        &w.bucket,
        "--model-table",
        &w.model,
    ]);
    assert!(out.contains("replayed 2 records"), "{out}");
    assert_eq!(w.bodies(&site_q).len(), 2);

    // A record the stream does not hold is an error that names it.
    let o = prism(&[
        "replay",
        "--stream-arn",
        &arn,
        "--shard",
        "shardId-nope",
        "--sequence",
        "1",
        "--bucket",
        &w.bucket,
        "--model-table",
        &w.model,
        "--table",
        &w.table,
        "--endpoint-url",
        &w.ep,
        "--region",
        "us-east-1",
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("GetShardIterator at 1 in shardId-nope"),
        "{err}"
    );
}
