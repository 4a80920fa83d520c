//! The DynamoDB registry and the S3 artifact store against moto: register,
//! versions and rollback, conditional writes, enable/disable, remove, and a
//! dispatcher snapshot that compiles nothing.

use prism_aws::{ArtifactStore, ErrorKind};
use prism_core::receivers::ReceiverSet;
use prism_e2e::aws::{endpoint, rt, setup};
use prism_e2e::{manifest, read, wasm};
use prism_engine::{EngineOptions, LoadSource, PluginEngine};
use prism_types::digest::Digest;
use prism_types::manifest::Mode;

use crate::{prism, text};

#[test]
fn the_cli_registers_versions_rolls_back_disables_and_removes() {
    let Some(ep) = endpoint() else { return };
    let env = rt().block_on(setup(&ep, "cli"));
    let remote = ["--table", &env.table, "--endpoint-url", &ep];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(remote);
        let o = prism(&all);
        let (out, err) = text(&o);
        assert!(o.status.success(), "prism {all:?}:\n{out}\n{err}");
        out
    };
    let bucket = ["--bucket", env.bucket.as_str()];
    // A new receiver on AWS needs somewhere to deliver to.
    let o = prism(
        &[
            &[
                "plugin",
                "register",
                wasm::LOGISTICS,
                "--receiver",
                "warehouse",
            ][..],
            &bucket,
            &remote,
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("has no destination: pass --queue"),
        "{:?}",
        text(&o)
    );
    run(&[
        &[
            "plugin",
            "register",
            wasm::LOGISTICS,
            "--receiver",
            "warehouse",
            "--config",
            "site=north",
            "--queue",
            "warehouse-q",
            "--dead-letter-queue",
            "warehouse-dlq",
        ][..],
        &bucket,
    ]
    .concat());
    let out = run(&[
        &[
            "plugin",
            "register",
            wasm::WEBSITE,
            "--receiver",
            "warehouse",
        ][..],
        &bucket,
    ]
    .concat());
    assert!(
        out.contains("warehouse: v1 (") && out.contains(") -> v2 ("),
        "{out}"
    );

    // The registry alone (its queues do not exist here: `status` would say so).
    let status = run(&["plugin", "list"]);
    let line = status.lines().find(|l| l.starts_with("warehouse")).unwrap();
    assert!(
        line.contains("v2 of 2") && line.contains("enabled"),
        "{status}"
    );
    assert!(
        line.contains(&Digest::of(&read(wasm::WEBSITE)).short()),
        "{status}"
    );

    let shown = run(&["plugin", "show", "warehouse"]);
    assert!(
        shown.contains("site = \"north\"") && shown.contains("warehouse-dlq"),
        "settings and destination are kept across versions: {shown}"
    );
    assert!(
        shown.contains(&format!("v1    {}", Digest::of(&read(wasm::LOGISTICS)))),
        "{shown}"
    );
    assert!(shown.contains("<- live"), "{shown}");

    let out = run(&["plugin", "rollback", "warehouse"]);
    assert!(out.contains("warehouse: v2 -> v1"), "{out}");
    let head = rt()
        .block_on(env.registry.head("warehouse"))
        .unwrap()
        .unwrap();
    assert_eq!(
        head.manifest.plugin.digest,
        Digest::of(&read(wasm::LOGISTICS))
    );
    assert_eq!((head.current, head.latest), (1, 2));

    run(&["plugin", "disable", "warehouse"]);
    assert!(run(&["plugin", "list"]).contains("disabled"));
    run(&["plugin", "enable", "warehouse"]);
    assert!(
        !rt()
            .block_on(env.registry.head("warehouse"))
            .unwrap()
            .unwrap()
            .manifest
            .plugin
            .digest
            .to_string()
            .is_empty()
    );

    // The component and its precompiled form are in the bucket, by digest.
    let digest = Digest::of(&read(wasm::WEBSITE));
    let keys: Vec<String> = rt().block_on(async {
        let out = env
            .s3
            .list_objects_v2()
            .bucket(&env.bucket)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    });
    assert!(
        keys.contains(&ArtifactStore::wasm_key("warehouse", &digest)),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("precompiled/")
                && k.ends_with(&format!("{}.cwasm", digest.hex()))),
        "{keys:?}"
    );

    let out = run(&["plugin", "remove", "warehouse"]);
    assert!(out.contains("removed warehouse (3 registry items"), "{out}");
    assert!(
        rt().block_on(env.registry.head("warehouse"))
            .unwrap()
            .is_none()
    );

    // Errors name what is wrong.
    let o = prism(&[&["plugin", "rollback", "nobody"][..], &remote].concat());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("no receiver \"nobody\""),
        "{:?}",
        text(&o)
    );
    let o = prism(&[
        "plugin",
        "register",
        wasm::SOCKET,
        "--receiver",
        "spy",
        "--table",
        &env.table,
        "--bucket",
        &env.bucket,
        "--endpoint-url",
        &ep,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("REJECTED, not registered"));
}

#[test]
fn concurrent_writers_cannot_lose_each_others_updates() {
    let Some(ep) = endpoint() else { return };
    rt().block_on(async {
        let env = setup(&ep, "conflict").await;
        let wasm = read(wasm::LOGISTICS);
        let m = manifest("shop", &wasm, Mode::Immediate, prism_e2e::relaxed(), &[]);
        env.registry.publish(&m, None, "alice").await.unwrap();
        // Two operators read the same head…
        let seen_a = env.registry.head("shop").await.unwrap().unwrap();
        let seen_b = seen_a.clone();
        // …the first write wins, the second is refused, not silently lost.
        let mut a = m.clone();
        a.config.insert("by".into(), "alice".into());
        env.registry
            .publish(&a, Some(&seen_a), "alice")
            .await
            .unwrap();
        let mut b = m.clone();
        b.config.insert("by".into(), "bob".into());
        let err = env
            .registry
            .publish(&b, Some(&seen_b), "bob")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(err.to_string().contains("changed by someone else"), "{err}");
        let mut off = seen_b.clone();
        off.manifest.enabled = false;
        let err = env
            .registry
            .update_head(&seen_b, off, "bob")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        // Creating a receiver that already exists is a conflict too.
        let err = env.registry.publish(&m, None, "carol").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        let head = env.registry.head("shop").await.unwrap().unwrap();
        assert_eq!(head.manifest.config["by"], "alice");
        assert_eq!((head.current, head.revision), (2, 2));
    });
}

#[test]
fn a_cold_start_from_the_registry_compiles_nothing_and_isolates_bad_entries() {
    let Some(ep) = endpoint() else { return };
    rt().block_on(async {
        let env = setup(&ep, "snapshot").await;
        let build_cache = tempfile::tempdir().unwrap();
        let builder = PluginEngine::new(&EngineOptions {
            cache_dir: Some(build_cache.path().to_owned()),
            ..Default::default()
        })
        .unwrap();
        for (id, path) in [
            ("web", wasm::WEBSITE),
            ("stock", wasm::LOGISTICS),
            ("leaflet", wasm::LEAFLET),
        ] {
            let wasm = read(path);
            let digest = env.store.put_wasm(id, &wasm).await.unwrap();
            let cwasm = builder.precompile(&wasm).unwrap();
            let cwasm_digest = Digest::of(&cwasm);
            env.store
                .put_cwasm(builder.compatibility_hash(), &digest, cwasm)
                .await
                .unwrap();
            let mut m = manifest(id, &wasm, Mode::Immediate, prism_e2e::relaxed(), &[]);
            m.enabled = id != "leaflet";
            env.registry.publish(&m, None, "ops").await.unwrap();
            // As `register` does: vouch for the artifact.
            env.registry
                .record_precompiled(id, builder.compatibility_hash(), &digest, &cwasm_digest)
                .await
                .unwrap();
        }
        // A receiver whose artifact was never uploaded, and an item with an unknown field.
        let ghost = b"not uploaded".to_vec();
        env.registry
            .publish(
                &manifest("ghost", &ghost, Mode::Immediate, prism_e2e::relaxed(), &[]),
                None,
                "ops",
            )
            .await
            .unwrap();
        let mut item = env
            .ddb
            .get_item()
            .table_name(&env.table)
            .key("receiver", av_s("stock"))
            .key("version", av_n("0"))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        item.insert("receiver".into(), av_s("odd"));
        if let Some(aws_sdk_dynamodb::types::AttributeValue::M(entry)) = item.get_mut("entry") {
            entry.insert("receiver".into(), av_s("odd"));
            entry.insert("colour".into(), av_s("red"));
        }
        env.ddb
            .put_item()
            .table_name(&env.table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();

        // A fresh "Lambda": empty /tmp, a new engine.
        let tmp = tempfile::tempdir().unwrap();
        let (engine, snap) = cold_snapshot(&env, tmp.path()).await;
        let problems: Vec<String> = snap.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("/ghost") && p.contains("no such object")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("unknown field `colour`")),
            "{problems:?}"
        );
        let set = ReceiverSet::load(&engine, snap);
        let ids: Vec<&str> = set.active.iter().map(|r| r.id()).collect();
        assert_eq!(ids, ["stock", "web"]);
        assert_eq!(set.disabled, ["leaflet"]);
        assert!(
            set.loads
                .iter()
                .all(|(_, src, _)| *src == LoadSource::Cached),
            "compiled something: {:?}",
            set.loads
        );
    });
}

/// A cold-started dispatcher's engine (compile cache under `tmp`, empty)
/// and its first registry snapshot.
async fn cold_snapshot(
    env: &prism_e2e::aws::AwsEnv,
    tmp: &std::path::Path,
) -> (PluginEngine, prism_types::registry::Snapshot) {
    let engine = PluginEngine::new(&EngineOptions {
        cache_dir: Some(tmp.join("compiled")),
        ..Default::default()
    })
    .unwrap();
    let snap = prism_aws::snapshot(&env.registry, &env.store, &engine, &tmp.join("artifacts"))
        .await
        .unwrap();
    (engine, snap)
}

fn av_s(s: &str) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::S(s.into())
}

fn av_n(s: &str) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::N(s.into())
}

#[test]
fn a_warm_dispatcher_picks_up_registry_changes_after_its_ttl() {
    use prism_aws::reload::LiveReceivers;
    use std::time::Duration;
    let Some(ep) = endpoint() else { return };
    rt().block_on(async {
        let env = setup(&ep, "reload").await;
        let tmp = tempfile::tempdir().unwrap();
        let engine = PluginEngine::new(&EngineOptions {
            cache_dir: Some(tmp.path().join("compiled")),
            ..Default::default()
        })
        .unwrap();
        let publish = |id: &'static str, path: &'static str, seen: Option<prism_aws::Head>| {
            let env = &env;
            async move {
                let wasm = read(path);
                env.store.put_wasm(id, &wasm).await.unwrap();
                let m = manifest(id, &wasm, Mode::Immediate, prism_e2e::relaxed(), &[]);
                env.registry
                    .publish(&m, seen.as_ref(), "ops")
                    .await
                    .unwrap()
            }
        };
        let digest = |set: &ReceiverSet, id: &str| {
            set.active
                .iter()
                .find(|r| r.id() == id)
                .map(|r| *r.digest())
        };
        publish("shop", wasm::LOGISTICS, None).await;

        // Wide enough that the publishes below finish within it even on a busy machine.
        let ttl = Duration::from_secs(2);
        let mut live = LiveReceivers::new(
            env.registry.clone(),
            env.store.clone(),
            tmp.path().join("artifacts"),
            ttl,
        );
        let (set, err) = live.current(&engine).await;
        assert!(err.is_none());
        assert_eq!(
            digest(&set, "shop"),
            Some(Digest::of(&read(wasm::LOGISTICS)))
        );
        let first = set.active[0].clone();

        // A new version and a new receiver: not seen within the TTL, seen after it.
        let head = env.registry.head("shop").await.unwrap();
        publish("shop", wasm::WEBSITE, head).await;
        publish("leaflet", wasm::LEAFLET, None).await;
        let (set, _) = live.current(&engine).await;
        assert_eq!(set.active.len(), 1, "still within the TTL");
        tokio::time::sleep(ttl).await;
        let (set, _) = live.current(&engine).await;
        assert_eq!(digest(&set, "shop"), Some(Digest::of(&read(wasm::WEBSITE))));
        assert!(digest(&set, "leaflet").is_some());
        let leaflet = set
            .active
            .iter()
            .find(|r| r.id() == "leaflet")
            .unwrap()
            .clone();

        // Disabling is picked up; an unchanged receiver keeps its loaded plugin.
        let head = env.registry.head("shop").await.unwrap().unwrap();
        let mut off = head.clone();
        off.manifest.enabled = false;
        env.registry.update_head(&head, off, "ops").await.unwrap();
        let changes = live.refresh(&engine).await.unwrap();
        assert_eq!(changes.gone, ["shop"]);
        let (set, _) = live.current(&engine).await;
        assert_eq!(set.disabled, ["shop"]);
        assert!(
            std::sync::Arc::ptr_eq(&set.active[0], &leaflet),
            "unchanged receivers are not reloaded"
        );
        assert!(!std::sync::Arc::ptr_eq(&first, &leaflet));

        // The registry becomes unreadable: the last good set stays in use.
        env.ddb
            .delete_table()
            .table_name(&env.table)
            .send()
            .await
            .unwrap();
        tokio::time::sleep(ttl).await;
        let (set, err) = live.current(&engine).await;
        assert!(err.is_some(), "the error is reported");
        assert_eq!(set.active.len(), 1, "and the dispatcher keeps serving");
    });
}

#[test]
fn a_plugin_compiled_at_start_up_is_shared_so_the_next_cold_start_compiles_nothing() {
    use prism_aws::reload::LiveReceivers;
    use std::time::Duration;
    let Some(ep) = endpoint() else { return };
    rt().block_on(async {
        let env = setup(&ep, "share").await;
        // Published without a precompiled artifact (as if precompiled for
        // another engine, e.g. on an x86 laptop for an arm64 Lambda).
        let wasm = read(wasm::LOGISTICS);
        let digest = env.store.put_wasm("shop", &wasm).await.unwrap();
        let m = manifest("shop", &wasm, Mode::Immediate, prism_e2e::relaxed(), &[]);
        env.registry.publish(&m, None, "ops").await.unwrap();

        let cold_start = || async {
            let tmp = tempfile::tempdir().unwrap();
            let engine = PluginEngine::new(&EngineOptions {
                cache_dir: Some(tmp.path().join("compiled")),
                ..Default::default()
            })
            .unwrap();
            let mut live = LiveReceivers::new(
                env.registry.clone(),
                env.store.clone(),
                tmp.path().join("artifacts"),
                Duration::from_secs(30),
            );
            let (set, err) = live.current(&engine).await;
            assert!(err.is_none(), "{err:?}");
            assert_eq!(set.active.len(), 1);
            (set.loads[0].1, engine.compatibility_hash().to_owned())
        };
        let (first, hash) = cold_start().await;
        assert_eq!(first, LoadSource::Compiled);
        let key = ArtifactStore::cwasm_key(&hash, &digest);
        env.s3
            .head_object()
            .bucket(&env.bucket)
            .key(&key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{key} was not uploaded: {e:?}"));
        let (second, _) = cold_start().await;
        assert_eq!(
            second,
            LoadSource::Cached,
            "the second cold start compiles nothing"
        );
    });
}

/// Native code runs only when its bytes are proven. Whoever can write the
/// `precompiled/` prefix puts plugin A's artifact under plugin B's key; a
/// dispatcher cold-starting with an empty cache discards it (its sha256 is
/// not the one `register` recorded), compiles B from its digest-checked
/// `.wasm`, and B's output is B's.
#[test]
fn a_precompiled_artifact_under_another_plugins_key_is_never_loaded() {
    use prism_core::dispatch::{Dispatcher, Progress};
    use prism_core::sink::Outbox;
    let Some(ep) = endpoint() else { return };
    rt().block_on(async {
        let env = setup(&ep, "cwasm-swap").await;
        let builder = PluginEngine::new(&EngineOptions::default()).unwrap();
        let hash = builder.compatibility_hash().to_owned();
        let (a, b) = (read(wasm::WEBSITE), read(wasm::LOGISTICS));
        let digest_b = env.store.put_wasm("shop", &b).await.unwrap();
        let cwasm_b = builder.precompile(&b).unwrap();
        env.store
            .put_cwasm(&hash, &digest_b, cwasm_b.clone())
            .await
            .unwrap();
        let m = manifest("shop", &b, Mode::Immediate, prism_e2e::relaxed(), &[]);
        env.registry.publish(&m, None, "ops").await.unwrap();
        assert!(
            env.registry
                .record_precompiled("shop", &hash, &digest_b, &Digest::of(&cwasm_b))
                .await
                .unwrap()
        );
        // A second writer cannot replace the record.
        assert!(
            !env.registry
                .record_precompiled("shop", &hash, &digest_b, &Digest::of(b"other"))
                .await
                .unwrap()
        );

        let cold_start = || async {
            let tmp = tempfile::tempdir().unwrap();
            let (engine, snap) = cold_snapshot(&env, tmp.path()).await;
            let untrusted = snap.untrusted_artifacts.clone();
            let set = ReceiverSet::load(&engine, snap);
            let out = tmp.path().join("out");
            let stream = prism_e2e::changes(&prism_e2e::sample(2));
            Dispatcher::default().run(&set, &stream, &Outbox::new(&out), &Progress::default());
            (set.loads[0].1, untrusted, prism_e2e::bodies(&out, "shop"))
        };
        // The proven artifact loads precompiled.
        let (source, untrusted, genuine) = cold_start().await;
        assert_eq!(source, LoadSource::Cached);
        assert!(untrusted.is_empty());
        assert!(!genuine.is_empty());

        // The attacker's swap: A's native code under B's key.
        env.store
            .put_cwasm(&hash, &digest_b, builder.precompile(&a).unwrap())
            .await
            .unwrap();
        let (source, untrusted, output) = cold_start().await;
        assert_eq!(source, LoadSource::Compiled, "compiled from B's .wasm");
        assert_eq!(
            untrusted,
            [ArtifactStore::cwasm_key(&hash, &digest_b)],
            "the discarded object is named"
        );
        assert_eq!(output, genuine, "B's output is B's");

        // Nothing recorded (e.g. uploaded by hand, or a new engine): never
        // fetched, compiled instead.
        let ghost = manifest("ghost", &a, Mode::Immediate, prism_e2e::relaxed(), &[]);
        let digest_a = env.store.put_wasm("ghost", &a).await.unwrap();
        env.store
            .put_cwasm(&hash, &digest_a, builder.precompile(&b).unwrap())
            .await
            .unwrap();
        env.registry.publish(&ghost, None, "ops").await.unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let engine = PluginEngine::new(&EngineOptions {
            cache_dir: Some(tmp.path().join("compiled")),
            ..Default::default()
        })
        .unwrap();
        let got = env
            .store
            .fetch_cwasm(
                &hash,
                &digest_a,
                &engine.cache_path(&digest_a).unwrap(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(got, prism_aws::Precompiled::NotRecorded);
        assert!(!engine.cache_path(&digest_a).unwrap().exists());
    });
}
