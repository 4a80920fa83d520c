//! Both versions of the receiver contract, served side by side: the
//! example receivers as they were built for 0.1.0 (fixtures) and the same
//! sources built for 0.2.0 give byte-identical output through one
//! dispatcher; 0.2.0 copies only the images a plugin reads; a plugin whose
//! output depends on earlier calls is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use prism_core::dispatch::to_wit;
use prism_e2e::{changes, engine, files, read, register, run, sample, wasm};
use prism_engine::Contract;
use prism_engine::determinism::{self, Nondeterministic};
use prism_types::limits::Limits;
use prism_types::manifest::Mode;

use crate::{prism, text};

/// One example receiver: (name, 0.2.0 build, mode is batch, config).
type Example = (
    &'static str,
    &'static str,
    bool,
    &'static [(&'static str, &'static str)],
);

const EXAMPLES: &[Example] = &[
    ("website", wasm::WEBSITE, false, &[("language", "de")]),
    ("leaflet", wasm::LEAFLET, false, &[]),
    ("pricelist", wasm::PRICELIST, true, &[("market", "DE")]),
    ("logistics", wasm::LOGISTICS, false, &[]),
];

fn batch() -> Mode {
    Mode::Batch {
        max_count: 50,
        max_bytes: 1 << 20,
        max_age_secs: 3600,
    }
}

#[test]
fn the_fixtures_are_0_1_and_the_examples_build_as_0_2() {
    let e = engine();
    for (name, path, _, _) in EXAMPLES {
        let old = e.load(&read(&prism_e2e::fixture_0_1(name))).unwrap();
        let new = e.load(&read(path)).unwrap();
        assert_eq!(old.contract(), Contract::V0_1, "{name}");
        assert_eq!(new.contract(), Contract::V0_2, "{name}");
    }
}

#[test]
fn one_dispatcher_serves_0_1_and_0_2_builds_with_byte_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, out) = (dir.path().join("reg"), dir.path().join("out"));
    for (name, path, batched, config) in EXAMPLES {
        let mode = if *batched { batch() } else { Mode::Immediate };
        let old = prism_e2e::fixture_0_1(name);
        let limits = prism_e2e::relaxed();
        register(&reg, &format!("{name}-v1"), &old, mode, limits, config);
        register(&reg, &format!("{name}-v2"), path, mode, limits, config);
    }
    let (_, report) = run(&engine(), &reg, &changes(&sample(120)), &out, 2);
    assert_eq!(report.errors(), 0, "{report:?}");
    for (name, ..) in EXAMPLES {
        let v1 = files(&out, &format!("{name}-v1"), |_| true);
        let v2 = files(&out, &format!("{name}-v2"), |_| true);
        assert!(v1.len() >= 6, "{name}: only {} files", v1.len());
        assert_eq!(v1.len(), v2.len(), "{name}");
        for ((file, a), (file2, b)) in v1.iter().zip(&v2) {
            assert_eq!(file, file2, "{name}");
            if file.ends_with(".meta.json") {
                // Everything but who sent it: the receiver and its plugin.
                let strip = |t: &str| {
                    let mut v: serde_json::Value = serde_json::from_str(t).unwrap();
                    let m = v.as_object_mut().unwrap();
                    assert!(m.remove("receiver").is_some() && m.remove("plugin_digest").is_some());
                    v
                };
                assert_eq!(strip(a), strip(b), "{name}: {file}");
            } else {
                assert_eq!(a, b, "{name}: {file}: 0.1 and 0.2 bodies differ");
            }
        }
    }
}

/// Every image a 0.2 session copied, over `changes`, fresh per change.
fn images_read(
    path: &str,
    changes: &[prism_types::change::Change],
    config: &[(&str, &str)],
) -> (u64, u64, usize) {
    let e = engine();
    let plugin = e.load(&read(path)).unwrap();
    let config: BTreeMap<String, String> = config
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let config = Arc::new(config);
    let (mut images, mut formatted) = (0, 0);
    let mut with_images = 0;
    for c in changes {
        let w = to_wit(c);
        let mut s = plugin.session(config.clone(), Limits::default()).unwrap();
        if s.accepts(&w).unwrap() {
            assert!(s.format(&w).unwrap().is_ok());
            formatted += 1;
            with_images += usize::from(c.new_json.is_some()) + usize::from(c.old_json.is_some());
        }
        images += s.image_reads().images;
    }
    (images, formatted, with_images)
}

#[test]
fn a_0_2_filter_copies_no_image_and_format_copies_each_image_at_most_once() {
    let changes = changes(&sample(60));
    for (name, path, _, config) in EXAMPLES {
        let (images, formatted, available) = images_read(path, &changes, config);
        assert!(formatted > 0, "{name}");
        // Images are read only for formatted changes, never in the filter,
        // and never twice for one change.
        assert!(
            images as usize <= available,
            "{name}: {images} image reads for {formatted} formatted changes with {available} images"
        );
        assert!(images > 0, "{name} reads the images it formats");
    }
    // The website filter skips most of a full refresh: it copies nothing
    // for the skipped changes.
    let e = engine();
    let plugin = e.load(&read(wasm::WEBSITE)).unwrap();
    let skipped: Vec<_> = changes
        .iter()
        .map(to_wit)
        .filter(|w| {
            let mut s = plugin.session(Arc::default(), Limits::default()).unwrap();
            let yes = s.accepts(w).unwrap();
            assert_eq!(s.image_reads().images, 0, "accepts read an image");
            !yes
        })
        .collect();
    assert!(!skipped.is_empty());
}

#[test]
fn a_0_2_plugin_is_stopped_at_the_message_that_crosses_its_limit() {
    let e = engine();
    let plugin = e.load(&read(wasm::HOSTILE)).unwrap();
    assert_eq!(plugin.contract(), Contract::V0_2);
    let config = Arc::new(BTreeMap::from([(
        "behaviour".to_owned(),
        "many-messages".to_owned(),
    )]));
    let c = &changes(&sample(1))[0];
    let mut s = plugin.session(config, Limits::default()).unwrap();
    let err = s.format(&to_wit(c)).unwrap_err().to_string();
    let limit = Limits::default().max_messages;
    // 0.1 reported the whole list (10,000); 0.2 stops at the first one over.
    assert!(
        err.contains(&format!(
            "returned {} messages, over its limit of {limit}",
            limit + 1
        )),
        "{err}"
    );
}

#[test]
fn a_plugin_that_keeps_state_between_calls_is_found_and_a_pure_one_passes() {
    let e = engine();
    let sample = changes(&sample(20));
    let wits: Vec<_> = sample.iter().map(to_wit).collect();
    let counting = e.load(&read(wasm::HOSTILE)).unwrap();
    let config = |b: &str| Arc::new(BTreeMap::from([("behaviour".to_owned(), b.to_owned())]));
    let found: Nondeterministic = determinism::check(
        &counting,
        config("count"),
        prism_e2e::relaxed(),
        &wits,
        false,
    )
    .unwrap_err();
    assert_eq!(
        found.key, sample[1].key,
        "the second change is the first to see a count of 2"
    );
    assert!(found.run.contains("stream order"), "{}", found.run);
    assert!(found.fresh.contains(r#""calls":1"#), "{}", found.fresh);
    assert!(found.other.contains(r#""calls":2"#), "{}", found.other);

    let behaving = determinism::check(
        &counting,
        config("behave"),
        prism_e2e::relaxed(),
        &wits,
        true,
    )
    .unwrap();
    assert_eq!(behaving.changes, wits.len());
    for (name, path, batched, cfg) in EXAMPLES {
        let p = e.load(&read(path)).unwrap();
        let cfg: BTreeMap<String, String> = cfg
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        determinism::check(&p, Arc::new(cfg), prism_e2e::relaxed(), &wits, *batched)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn check_and_register_refuse_a_stateful_plugin_unless_overridden_and_record_why() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    let reg = reg.to_str().unwrap();
    let o = prism(&[
        "plugin",
        "check",
        wasm::HOSTILE,
        "--config",
        "behaviour=count",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("determinism  REJECTED: output depends on earlier calls"),
        "{err}"
    );

    let register = |extra: &[&str]| {
        let mut args = vec![
            "plugin",
            "register",
            wasm::HOSTILE,
            "--allow-failures",
            "hostile on purpose: the test drives the dispatcher's failure paths",
            "--receiver",
            "counter",
            "--registry",
            reg,
            "--config",
            "behaviour=count",
        ];
        args.extend_from_slice(extra);
        prism(&args)
    };
    let o = register(&[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("REJECTED, not registered"), "{err}");
    assert!(!dir.path().join("reg/counter.toml").exists());

    let o = register(&["--allow-nondeterministic", "counts calls for a load test"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("fresh sandbox per change"), "{out}");
    let toml = std::fs::read_to_string(dir.path().join("reg/counter.toml")).unwrap();
    assert!(
        toml.contains(r#"nondeterministic = "counts calls for a load test""#),
        "{toml}"
    );
    assert!(toml.contains("reuse = 1"), "{toml}");
}

#[test]
fn check_register_and_the_release_gate_take_both_contract_versions() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    let reg = reg.to_str().unwrap();
    let old = prism_e2e::fixture_0_1("website");
    let o = prism(&["plugin", "check", &old]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("world    prism:receiver/receiver@0.1.0"),
        "{out}"
    );
    assert!(out.contains("deprecated"), "{out}");
    let o = prism(&["plugin", "check", wasm::WEBSITE]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("world    prism:receiver/receiver@0.2.0"),
        "{out}"
    );
    assert!(!out.contains("deprecated"), "{out}");

    // Register the 0.1 build, then gate the 0.2 build against it.
    let o = prism(&[
        "plugin",
        "register",
        &old,
        "--receiver",
        "website",
        "--registry",
        reg,
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("prism:receiver@0.1.0 is deprecated"),
        "register warns about the old contract: {out}"
    );
    let recorded = dir.path().join("changes.jsonl");
    std::fs::write(&recorded, sample(40)).unwrap();
    let o = prism(&[
        "plugin",
        "register",
        wasm::WEBSITE,
        "--receiver",
        "website",
        "--registry",
        reg,
        "--diff-changes",
        recorded.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("prism:receiver@0.2.0"), "{out}");
    assert!(out.contains(" 0 changed, 0 added, 0 removed"), "{out}");
}
