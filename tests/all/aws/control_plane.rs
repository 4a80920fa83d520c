//! What a receiver team holding only its own deploy role can do to other
//! receivers by writing DynamoDB or S3 directly, skipping `prism plugin
//! register`: every rule that protects another receiver holds at load.

use aws_sdk_dynamodb::types::AttributeValue;
use prism_core::receivers::ReceiverSet;
use prism_e2e::aws::{endpoint, rt, setup};
use prism_e2e::{manifest, read, wasm};
use prism_engine::{EngineOptions, PluginEngine};
use prism_types::digest::Digest;
use prism_types::manifest::Mode;
use prism_types::registry::{Entry, Snapshot};

/// A head item written under `team-a`'s key (which its role may write:
/// `dynamodb:LeadingKeys` sees only the key) whose entry names `web`, the
/// receiver of another team. It must never load as `web`: it would deliver
/// its plugin's output into web's queue and take over web's lanes, ledger,
/// dedup state and last error.
#[test]
fn an_item_under_one_teams_key_naming_another_receiver_is_refused() {
    let Some(ep) = endpoint() else { return };
    rt().block_on(async {
        let env = setup(&ep, "identity").await;
        let web = read(wasm::WEBSITE);
        env.store.put_wasm("web", &web).await.unwrap();
        let mut m = manifest("web", &web, Mode::Immediate, prism_e2e::relaxed(), &[]);
        env.registry.publish(&m, None, "web-team").await.unwrap();

        // Team A's own plugin, registered under its own key...
        let own = read(wasm::LOGISTICS);
        env.store.put_wasm("team-a", &own).await.unwrap();
        m = manifest("team-a", &own, Mode::Immediate, prism_e2e::relaxed(), &[]);
        env.registry.publish(&m, None, "team-a").await.unwrap();
        // ...then its head rewritten directly: same key, foreign identity.
        let mut item = env
            .ddb
            .get_item()
            .table_name(&env.table)
            .key("receiver", AttributeValue::S("team-a".into()))
            .key("version", AttributeValue::N("0".into()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        let Some(AttributeValue::M(entry)) = item.get_mut("entry") else {
            panic!("no entry map")
        };
        entry.insert("receiver".into(), AttributeValue::S("web".into()));
        env.ddb
            .put_item()
            .table_name(&env.table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();

        let tmp = tempfile::tempdir().unwrap();
        let engine = PluginEngine::new(&EngineOptions {
            cache_dir: Some(tmp.path().join("compiled")),
            ..Default::default()
        })
        .unwrap();
        let snap = prism_aws::snapshot(&env.registry, &env.store, &engine, tmp.path())
            .await
            .unwrap();
        let problems: Vec<String> = snap.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            problems.iter().any(|p| p.contains("/team-a/")
                && p.contains("names receiver \"web\"")
                && p.contains("stored under \"team-a\"")),
            "the foreign entry is named with both identities: {problems:?}"
        );
        let set = ReceiverSet::load(&engine, snap);
        let web_loaded: Vec<&Digest> = set
            .active
            .iter()
            .filter(|r| r.id() == "web")
            .map(|r| r.digest())
            .collect();
        assert_eq!(
            web_loaded,
            [&Digest::of(&web)],
            "web runs its own plugin, once"
        );
        assert!(set.active.iter().all(|r| r.id() != "team-a"));

        // The history API checks the key too.
        let versions = env.registry.versions("team-a").await.unwrap();
        assert_eq!(versions.len(), 1, "the history item itself is team A's");
    });
}

/// Two entries that claim one id reach the loader (a local registry, or any
/// future source): neither is loaded, and the reason names both.
#[test]
fn two_entries_claiming_one_receiver_are_both_refused_naming_each_other() {
    let engine = PluginEngine::new(&EngineOptions::default()).unwrap();
    let web = read(wasm::WEBSITE);
    let other = read(wasm::LOGISTICS);
    let entry = |wasm: &[u8], origin: &str| Entry {
        manifest: manifest("web", wasm, Mode::Immediate, prism_e2e::relaxed(), &[]),
        origin: origin.into(),
        wasm: wasm.to_vec(),
    };
    let set = ReceiverSet::load(
        &engine,
        Snapshot {
            entries: vec![entry(&web, "item-1"), entry(&other, "item-2")],
            ..Default::default()
        },
    );
    assert!(set.active.is_empty(), "an impostor must not run as web");
    assert_eq!(set.unavailable.len(), 2);
    for u in &set.unavailable {
        assert!(
            u.reason.contains("item-1 and item-2") && u.reason.contains("defined more than once"),
            "{}",
            u.reason
        );
    }
}

/// One batched receiver configured as the manifest docs' example
/// (`max_count = 500` at the default 200 ms: a 100 s window budget, capped
/// to 60 s) used to leave no time at all: the dispatcher kept back the
/// longest receiver's budget for everyone, so every record of every
/// receiver came back in `batchItemFailures`, invocation after invocation.
/// Under a real deadline (set here: the emulator sends 0), the immediate
/// receiver delivers everything and only the batched one defers.
#[test]
fn a_long_window_budget_defers_only_its_own_receiver_under_a_real_deadline() {
    use crate::support::world::{World, failed, products};
    use prism_core::stream::FINISH_RESERVE;
    use std::time::{Duration, SystemTime};
    let Some(w) = World::new("budget") else {
        return;
    };
    let (site, _) = w.register(wasm::WEBSITE, "website", &[], true);
    w.register_pricelist_with(500, true);
    let p = w.processor(&[]);
    w.write(&products(0..20));
    let records = w.records();
    assert_eq!(records.len(), 20);

    // Far more than the website needs, far less than the window's 60 s.
    let deadline = SystemTime::now() + FINISH_RESERVE + Duration::from_secs(20);
    let event = serde_json::json!({ "Records": records });
    let out =
        w.q.rt
            .block_on(p.handle_within(&event, Some(deadline)))
            .unwrap();
    let site_st = &out.report.receivers["website"];
    assert_eq!(site_st.deferred, 0, "{site_st:?}");
    assert!(site_st.held.is_empty(), "{site_st:?}");
    assert_eq!(w.bodies(&site).len(), 20, "the website got every product");
    let prices = &out.report.receivers["pricelist"];
    assert!(prices.deferred > 0, "{prices:?}");
    assert!(
        !failed(&out).is_empty(),
        "the price list's changes wait for a retry"
    );
}

/// A dispatcher told its invocation timeout refuses, at load and on its
/// own, a receiver whose call budget could never fit in an invocation, and
/// says why; `register --lambda-timeout` refuses it before it is live.
#[test]
fn a_receiver_whose_budget_cannot_fit_an_invocation_is_refused_at_load_and_register() {
    let engine = PluginEngine::new(&EngineOptions::default()).unwrap();
    let prices = read(wasm::PRICELIST);
    let web = read(wasm::WEBSITE);
    let batch = Mode::Batch {
        max_count: 500,
        max_bytes: 1 << 20,
        max_age_secs: 60,
    };
    let limits = prism_types::limits::Limits::default();
    let entries = vec![
        Entry {
            manifest: manifest("pricelist", &prices, batch, limits, &[]),
            origin: "item-prices".into(),
            wasm: prices.clone(),
        },
        Entry {
            manifest: manifest("website", &web, Mode::Immediate, limits, &[]),
            origin: "item-web".into(),
            wasm: web,
        },
    ];
    let set = ReceiverSet::load_within(
        &engine,
        Snapshot {
            entries,
            ..Default::default()
        },
        Some(std::time::Duration::from_secs(60)),
    );
    let ids: Vec<&str> = set.active.iter().map(|r| r.id()).collect();
    assert_eq!(ids, ["website"]);
    assert_eq!(set.unavailable.len(), 1);
    let reason = &set.unavailable[0].reason;
    assert!(
        reason.contains("item-prices")
            && reason.contains("60000 ms")
            && reason.contains("58000 ms"),
        "{reason}"
    );

    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().to_str().unwrap();
    let o = crate::prism(&[
        "plugin",
        "register",
        wasm::PRICELIST,
        "--receiver",
        "pricelist",
        "--registry",
        registry,
        "--batch-max-count",
        "500",
        "--lambda-timeout",
        "60",
    ]);
    let (out, err) = crate::text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains("REJECTED") && err.contains("PRISM_LAMBDA_TIMEOUT"),
        "{err}"
    );
}

/// A team can put any bytes under its own prefix. A component larger than
/// the cap is never downloaded (its size is read first), a corrupt one is
/// refused by its digest, and either makes only its own receiver
/// unavailable, and is not fetched again until its backoff has passed:
/// a reload every 30 s does not download it every time.
#[test]
fn an_oversized_or_corrupt_artifact_disables_only_its_receiver_and_backs_off() {
    let Some(ep) = endpoint() else { return };
    rt().block_on(async {
        let env = setup(&ep, "artifacts").await;
        let web = read(wasm::WEBSITE);
        env.store.put_wasm("web", &web).await.unwrap();
        let m = manifest("web", &web, Mode::Immediate, prism_e2e::relaxed(), &[]);
        env.registry.publish(&m, None, "web-team").await.unwrap();

        // "big": registered with a digest, then the object under that key
        // replaced with 1 byte more than any component may have.
        let small = b"registered bytes".to_vec();
        let big_digest = Digest::of(&small);
        let big = vec![0u8; prism_aws::artifacts::MAX_WASM_BYTES as usize + 1];
        put(
            &env,
            &prism_aws::ArtifactStore::wasm_key("big", &big_digest),
            big,
        )
        .await;
        let m = manifest("big", &small, Mode::Immediate, prism_e2e::relaxed(), &[]);
        env.registry.publish(&m, None, "big-team").await.unwrap();
        // "bad": bytes that are not its digest.
        let bad_digest = Digest::of(b"what was registered");
        put(
            &env,
            &prism_aws::ArtifactStore::wasm_key("bad", &bad_digest),
            b"something else".to_vec(),
        )
        .await;
        let mut m = manifest("bad", b"x", Mode::Immediate, prism_e2e::relaxed(), &[]);
        m.plugin.digest = bad_digest;
        env.registry.publish(&m, None, "bad-team").await.unwrap();

        let tmp = tempfile::tempdir().unwrap();
        let engine = PluginEngine::new(&EngineOptions {
            cache_dir: Some(tmp.path().join("compiled")),
            ..Default::default()
        })
        .unwrap();
        let problems = |snap: &Snapshot| -> Vec<String> {
            snap.problems.iter().map(|p| p.to_string()).collect()
        };
        let snap = prism_aws::snapshot(&env.registry, &env.store, &engine, tmp.path())
            .await
            .unwrap();
        let first = problems(&snap);
        assert_eq!(first.len(), 2, "{first:?}");
        assert!(
            first.iter().any(|p| p.contains("/big/")
                && p.contains(&format!(
                    "{} bytes",
                    prism_aws::artifacts::MAX_WASM_BYTES + 1
                ))
                && p.contains("not downloaded")),
            "{first:?}"
        );
        assert!(
            first
                .iter()
                .any(|p| p.contains("/bad/") && p.contains("not the digest")),
            "{first:?}"
        );
        let set = ReceiverSet::load(&engine, snap);
        let ids: Vec<&str> = set.active.iter().map(|r| r.id()).collect();
        assert_eq!(ids, ["web"], "the others run");

        // The next reload: neither is fetched again, both say why.
        let again = prism_aws::snapshot(&env.registry, &env.store, &engine, tmp.path())
            .await
            .unwrap();
        let second = problems(&again);
        assert_eq!(second.len(), 2, "{second:?}");
        assert!(
            second
                .iter()
                .all(|p| p.contains("not fetched again for") && p.contains("after it failed")),
            "{second:?}"
        );
    });
}

async fn put(env: &prism_e2e::aws::AwsEnv, key: &str, body: Vec<u8>) {
    env.s3
        .put_object()
        .bucket(&env.bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap();
}

/// The breaker's state used to die with the process (issue 27, item 6): a
/// cold start, or the instance on another shard, began with a clean window
/// and ran a quarantined plugin again. A quarantine is now recorded on the
/// receiver's head, and a new process starts with it: the plugin is not
/// run, and the website beside it is untouched.
#[test]
fn a_quarantine_outlives_the_process_that_opened_it() {
    use crate::support::world::{World, products};
    use std::time::Duration;
    let Some(w) = World::new("quarantine") else {
        return;
    };
    let (site, _) = w.register(wasm::WEBSITE, "website", &[], true);
    w.register(wasm::HOSTILE, "retrier", &["behaviour=retry"], true);
    let first = w.processor(&[]);
    // Long enough that the second process cannot see it expire.
    let breaker = prism_core::breaker::BreakerConfig {
        cool_down: Duration::from_secs(3600),
        ..first.dispatcher().breaker()
    };
    let dispatcher = first.dispatcher().to_builder().breaker(breaker).build();
    let first = first.into_builder().dispatcher(dispatcher).build();
    w.write(&products(0..8));
    let out = w.invoke(&first, &w.records());
    let st = &out.report.receivers["retrier"];
    assert!(
        st.quarantined > 0,
        "the first process quarantines it: {st:?}"
    );
    let head =
        w.q.rt
            .block_on(w.env.registry.head("retrier"))
            .unwrap()
            .unwrap();
    let q = head.quarantine.expect("recorded on the head");
    assert_eq!(q.digest, head.manifest.plugin.digest);
    assert_eq!(q.ejections, 1);

    // A new process: a fresh registry read and a fresh compile.
    let second = w.processor(&[]);
    w.write(&products(8..12));
    let out = w.invoke(&second, &w.records());
    let st = &out.report.receivers["retrier"];
    assert_eq!(st.seen, 4, "{st:?}");
    assert_eq!(st.quarantined, 4, "not run at all: {st:?}");
    assert!(!st.errors_by_kind.contains_key("retry-exhausted"), "{st:?}");
    assert_eq!(w.bodies(&site).len(), 12, "the website got every product");
    let (_, said) = w.try_prism(&["status"]);
    assert!(
        said.lines()
            .any(|l| l.starts_with("retrier") && l.contains("quarantined")),
        "prism status shows the recorded quarantine:\n{said}"
    );

    // An operator's action on the receiver starts it afresh.
    w.prism(&["plugin", "disable", "retrier"]);
    w.prism(&["plugin", "enable", "retrier"]);
    let head =
        w.q.rt
            .block_on(w.env.registry.head("retrier"))
            .unwrap()
            .unwrap();
    assert_eq!(head.quarantine, None);
}
