//! The spool on AWS, against moto: retry lanes in DynamoDB that keep a dead
//! queue from failing the stream batch, the tick that empties them in order
//! once the queue is back, and a batch buffer in DynamoDB whose flush is
//! killed at each point of its protocol and resumed by `prism flush`.

use prism_core::dispatch::TickOptions;
use prism_core::spool::{Spool, now_ms};
use prism_e2e::wasm;
use serde_json::json;

use crate::support::world::{World, expected, failed, products};
use crate::text;

fn spool(w: &World) -> prism_aws::spool::DynamoSpool {
    prism_aws::spool::DynamoSpool::new(w.ddb.clone(), w.spool(), w.q.rt.handle().clone())
}

fn lanes(w: &World) -> usize {
    let s = spool(w);
    std::thread::scope(|t| t.spawn(|| s.lanes().unwrap().len()).join().unwrap())
}

#[test]
fn a_dead_queue_waits_in_retry_lanes_and_the_tick_delivers_it_in_order() {
    let Some(w) = World::new("spool-lanes") else {
        return;
    };
    let (site_q, _) = w.register(wasm::WEBSITE, "website", &[], true);
    // The warehouse's queue does not exist yet.
    let (wh_q, _) = w.register(wasm::LOGISTICS, "warehouse", &[], false);
    let p = w.processor(&[("PRISM_SPOOL_TABLE", &w.spool())]);
    let mut docs = products(0..4);
    w.write(&docs);
    docs[3]["logistics"]["weight_g"] = json!(1);
    w.write(&docs[3..]);
    let records = w.records();

    let out = w.invoke(&p, &records);
    assert!(
        failed(&out).is_empty(),
        "nothing fails the batch: {:?}",
        out.response
    );
    let wh = &out.report.receivers["warehouse"];
    assert_eq!(
        wh.laned, 5,
        "four products' inserts and P-00003's change: {wh:?}"
    );
    assert!(wh.held.is_empty());
    assert_eq!(
        w.bodies(&site_q),
        expected(&records, "website", wasm::WEBSITE, &[]),
        "the website carries on"
    );
    assert_eq!(lanes(&w), 4, "one lane per product");

    // Still down: the tick keeps them.
    let t = w.q.rt.block_on(p.tick(TickOptions::at(now_ms()))).unwrap();
    assert_eq!(t.waiting, 5);

    w.q.create("warehouse");
    let t = w.q.rt.block_on(p.tick(TickOptions::at(now_ms()))).unwrap();
    assert_eq!(t.waiting, 0, "{t:?}");
    assert!(t.errors.is_empty(), "{t:?}");
    assert_eq!(
        w.bodies(&wh_q),
        expected(&records, "warehouse", wasm::LOGISTICS, &[]),
        "exactly what it would have got"
    );
    assert_eq!(lanes(&w), 0);
}

/// A spool that cannot be read stops the whole batch before anything is
/// sent: which products have changes waiting in a lane is unknown, and
/// sending their newer changes would overtake them (found by the
/// simulation, `sim::pinned`). It used to run without lanes and fail only
/// what it had to hold. Lambda retries the batch.
#[test]
fn without_a_readable_spool_the_batch_is_retried_whole_and_nothing_is_sent() {
    let Some(w) = World::new("spool-gone") else {
        return;
    };
    let (queue, _) = w.register(wasm::LOGISTICS, "warehouse", &[], true);
    let p = w.processor(&[("PRISM_SPOOL_TABLE", "no-such-table")]);
    w.write(&products(0..2));
    let records = w.records();
    let event = serde_json::json!({ "Records": records });
    let err =
        w.q.rt
            .block_on(p.handle(&event))
            .expect_err("the batch fails");
    assert!(
        err.kind() == prism_core::ErrorKind::SpoolUnreadable,
        "{err}"
    );
    assert!(err.to_string().contains("no-such-table"), "{err}");
    assert!(w.bodies(&queue).is_empty(), "nothing was sent");
}

#[test]
fn a_buffer_in_dynamodb_survives_a_flush_killed_at_each_point() {
    let Some(w) = World::new("spool-kill") else {
        return;
    };
    let queue = w.register_pricelist();
    let p = w.processor(&[("PRISM_SPOOL_TABLE", &w.spool())]);
    let flush = |crash: Option<&str>, extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_prism-under-test"));
        cmd.args([
            "flush",
            "--spool-table",
            &w.spool(),
            "--table",
            &w.table,
            "--bucket",
            &w.bucket,
            "--endpoint-url",
            &w.ep,
            "--region",
            "us-east-1",
            "--all",
        ])
        .args(extra)
        .env(
            "PRISM_CACHE_DIR",
            std::env::temp_dir().join("prism-e2e-cache"),
        );
        if let Some(c) = crash {
            cmd.env("PRISM_CRASH_AT", c);
        }
        cmd.output().unwrap()
    };
    for (round, point) in ["flush-claimed", "flush-sent", "flush-removed"]
        .iter()
        .enumerate()
    {
        w.write(&products(round * 10..round * 10 + 10));
        let out = w.invoke(&p, &w.records());
        assert_eq!(out.report.receivers["pricelist"].buffered, 10, "{point}");
        assert!(w.bodies(&queue).is_empty(), "{point}: buffered, not sent");

        let o = flush(Some(point), &[]);
        let (so, se) = text(&o);
        assert!(!o.status.success(), "{point}: killed\n{so}\n{se}");
        // The dead flush's lease keeps the buffer from a second flush (once
        // the window is removed there is nothing left to keep)...
        let o = flush(None, &[]);
        let (so, se) = text(&o);
        assert!(o.status.success(), "{point}:\n{so}\n{se}");
        if *point == "flush-removed" {
            assert!(so.contains("0 changes waiting"), "{point}: {so}");
        } else {
            assert!(so.contains("1 lanes skipped"), "{point}: {so}");
        }
        // ...until it is broken on purpose.
        let o = flush(None, &["--break-leases"]);
        let (so, se) = text(&o);
        assert!(o.status.success(), "{point}:\n{so}\n{se}");
        assert!(so.contains("0 changes waiting"), "{point}: {so}");

        let bodies = w.bodies(&queue);
        assert_eq!(
            bodies.len(),
            1,
            "{point}: one window, sent once: {bodies:#?}"
        );
        assert_eq!(
            bodies[0].lines().count(),
            11,
            "{point}: header and ten rows"
        );
        assert_eq!(lanes(&w), 0, "{point}");
    }
}

/// Where a tick cut short stopped is kept in the table, out of sight of the
/// lane listing, so a tick on another instance resumes after it.
#[test]
fn the_tick_cursor_is_kept_in_the_spool_table_and_is_not_a_lane() {
    let Some(w) = World::new("spool-cursor") else {
        return;
    };
    let s = spool(&w);
    std::thread::scope(|t| {
        t.spawn(|| {
            assert_eq!(s.tick_cursor().unwrap(), None);
            s.save_tick_cursor(Some("retry/website/P-00007")).unwrap();
            assert_eq!(
                s.tick_cursor().unwrap().as_deref(),
                Some("retry/website/P-00007")
            );
            assert!(s.lanes().unwrap().is_empty(), "the cursor is not a lane");
            s.save_tick_cursor(None).unwrap();
            assert_eq!(s.tick_cursor().unwrap(), None);
        })
        .join()
        .unwrap()
    });
}

/// A retried stream batch brings a lane entry back without the `sent` list
/// that a delivery which failed midway recorded on it. Appending it again
/// wrote over the entry, so the retry would send those messages twice; it
/// is now left as it is (as the local spool always did).
#[test]
fn appending_an_entry_the_lane_holds_keeps_what_it_recorded() {
    use prism_core::spool::{Lane, Spooled};
    let Some(w) = World::new("spool-reappend") else {
        return;
    };
    let s = spool(&w);
    let lane = Lane::Retry {
        receiver: "fan".into(),
        key: "P-1".into(),
    };
    let change = prism_types::change::Change::new(
        "P-1".into(),
        prism_types::change::ChangeKind::Insert,
        None,
        Some(json!({"pk": "P-1"})),
        "100".into(),
        0,
    );
    let partly_sent = Spooled {
        sent: vec![0, 1],
        ..Spooled::new(&change, 1)
    };
    let (first, again, read) = std::thread::scope(|t| {
        t.spawn(|| {
            let first = s.append(&lane, &[partly_sent]).unwrap();
            let again = s.append(&lane, &[Spooled::new(&change, 2)]).unwrap();
            (first, again, s.read(&lane).unwrap())
        })
        .join()
        .unwrap()
    });
    assert_eq!((first.added, again.added), (1, 0));
    assert_eq!(read.len(), 1);
    assert_eq!(
        read[0].sent,
        [0, 1],
        "the messages that got out stay recorded"
    );
    assert_eq!(read[0].spooled_ms, 1);

    // A replay (a redrive's correction: the newer version under the parked
    // change's sequence) replaces it, and the lane still counts one.
    let newer = prism_types::change::Change::new(
        "P-1".into(),
        prism_types::change::ChangeKind::Insert,
        None,
        Some(json!({"pk": "P-1", "v": 2})),
        "100".into(),
        0,
    );
    let replay = Spooled {
        replay: true,
        ..Spooled::new(&newer, 3)
    };
    let (replaced, read) = std::thread::scope(|t| {
        t.spawn(|| (s.append(&lane, &[replay]).unwrap(), s.read(&lane).unwrap()))
            .join()
            .unwrap()
    });
    assert_eq!((replaced.added, replaced.info.count), (0, 1));
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].change["new"]["v"], 2, "{:?}", read[0].change);
}

/// Issue 28, item 10: an append writes its entries, then counts them in the
/// lane's index. Dying between the two left entries no index listed: the
/// stream's retry appended them again, found them there, added nothing,
/// and the lane was never worked. Now the re-append counts the lane again.
#[test]
fn an_append_that_died_before_counting_its_entries_is_counted_by_the_retry() {
    use prism_core::spool::{Lane, Spooled};
    use prism_e2e::fault_proxy::{Fault, FaultProxy, Rule};
    let Some(w) = World::new("spool-uncounted") else {
        return;
    };
    let proxy = FaultProxy::start(&w.ep, 5);
    let through_proxy = w.q.rt.block_on(async {
        let config = prism_aws::sdk_config(&prism_aws::AwsTarget {
            endpoint_url: Some(proxy.url.clone()),
            region: Some("us-east-1".into()),
        })
        .await;
        prism_aws::spool::DynamoSpool::new(
            aws_sdk_dynamodb::Client::new(&config),
            w.spool(),
            w.q.rt.handle().clone(),
        )
    });
    let lane = Lane::Retry {
        receiver: "imm".into(),
        key: "P-1".into(),
    };
    let entries: Vec<Spooled> = (1..=2)
        .map(|seq| {
            let change = prism_types::change::Change::new(
                "P-1".into(),
                prism_types::change::ChangeKind::Insert,
                None,
                Some(json!({"pk": "P-1", "v": seq})),
                format!("{seq}00"),
                0,
            );
            Spooled::new(&change, 1)
        })
        .collect();
    // The index's UpdateItem fails (the SDK's retries too): the entries are
    // in, the index is not.
    proxy.set_rules(vec![
        Rule::always("UpdateItem", Fault::ServerError).on("#index"),
    ]);
    let first = std::thread::scope(|t| {
        t.spawn(|| through_proxy.append(&lane, &entries))
            .join()
            .unwrap()
    });
    assert!(first.is_err(), "{first:?}");
    assert_eq!(lanes(&w), 0, "entries in, the lane unlisted");

    // The retry of the batch appends them again.
    proxy.set_rules(vec![]);
    let again = std::thread::scope(|t| {
        t.spawn(|| through_proxy.append(&lane, &entries).unwrap())
            .join()
            .unwrap()
    });
    assert_eq!(again.added, 0);
    assert_eq!(again.info.count, 2, "counted again");
    assert_eq!(lanes(&w), 1, "listed, so the tick works it");
}
