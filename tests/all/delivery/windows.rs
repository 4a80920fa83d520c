//! Batch windows cut within a stream batch. While a receiver's buffer is
//! empty, the dispatcher formats and sends full windows straight from the
//! batch, and only what is left at its end goes to the spool: a flood's
//! stream batches then cost no spool requests at all. A buffer that holds
//! earlier changes is topped up and flushed first, so windows stay in
//! stream order; a window that cannot be delivered waits in the buffer.

use prism_core::dispatch::TickOptions;
use prism_core::spool::{Spool, now_ms};

use crate::support::world::{World, failed, products};

/// The product keys of every row the queue got, window by window in the
/// order of their first key (each body: a header line, then one row per
/// product).
fn rows(bodies: &[String]) -> Vec<String> {
    let mut windows: Vec<Vec<String>> = bodies
        .iter()
        .map(|b| {
            b.lines()
                .skip(1)
                .map(|l| l.split(';').next().unwrap().to_owned())
                .collect()
        })
        .collect();
    windows.sort();
    windows.concat()
}

fn buffered(w: &World) -> u64 {
    let s = prism_aws::spool::DynamoSpool::new(w.ddb.clone(), w.spool(), w.q.rt.handle().clone());
    std::thread::scope(|t| {
        t.spawn(|| s.lanes().unwrap().iter().map(|(_, i)| i.count).sum())
            .join()
            .unwrap()
    })
}

fn keys(range: std::ops::Range<usize>) -> Vec<String> {
    products(range)
        .iter()
        .map(|p| p["pk"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn full_windows_are_sent_from_the_stream_batch_and_only_the_rest_is_buffered() {
    let Some(w) = World::new("windows-cut") else {
        return;
    };
    let queue = w.register_pricelist_with(10, true);
    let spool = w.spool();
    let p = w.processor(&[("PRISM_SPOOL_TABLE", spool.as_str())]);

    // 25 inserts, an empty buffer: two windows go out at once, five wait.
    w.write(&products(0..25));
    let out = w.invoke(&p, &w.records());
    assert!(failed(&out).is_empty(), "{:?}", out.response);
    let st = &out.report.receivers["pricelist"];
    assert_eq!((st.batches, st.buffered), (2, 5), "{st:?}");
    let first = w.bodies(&queue);
    assert_eq!(first.len(), 2);
    assert_eq!(rows(&first), keys(0..20));
    assert_eq!(buffered(&w), 5);

    // The next 25: the five waiting are topped up to a window and flushed
    // first, then two more windows are cut, and nothing is left over.
    w.write(&products(25..50));
    let out = w.invoke(&p, &w.records());
    assert!(failed(&out).is_empty(), "{:?}", out.response);
    let st = &out.report.receivers["pricelist"];
    assert_eq!(st.buffered, 5, "the top-up: {st:?}");
    assert_eq!(st.batches, 3, "{st:?}");
    let second = w.bodies(&queue);
    assert_eq!(second.len(), 3);
    assert_eq!(rows(&second), keys(20..50), "in order, each product once");
    assert_eq!(buffered(&w), 0);
}

#[test]
fn a_window_that_cannot_be_delivered_waits_in_the_buffer_with_what_came_after() {
    let Some(w) = World::new("windows-dead") else {
        return;
    };
    // The queue does not exist yet.
    w.register_pricelist_with(10, false);
    let spool = w.spool();
    let p = w.processor(&[("PRISM_SPOOL_TABLE", spool.as_str())]);
    w.write(&products(0..25));
    let out = w.invoke(&p, &w.records());
    assert!(
        failed(&out).is_empty(),
        "nothing fails the stream batch: {:?}",
        out.response
    );
    let st = &out.report.receivers["pricelist"];
    assert_eq!(
        st.buffered, 25,
        "the failed window and all after it: {st:?}"
    );
    assert!(st.held.is_empty(), "{st:?}");
    assert_eq!(buffered(&w), 25);

    let queue = w.q.create("pricelist");
    let t =
        w.q.rt
            .block_on(p.tick(TickOptions {
                force: true,
                ..TickOptions::at(now_ms())
            }))
            .unwrap();
    assert_eq!(t.waiting, 0, "{t:?}");
    let bodies = w.bodies(&queue);
    assert_eq!(bodies.len(), 3, "windows of 10, 10 and 5");
    assert_eq!(rows(&bodies), keys(0..25), "in order, each product once");
}
