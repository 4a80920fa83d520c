//! The sandbox's guarantees as unit tests: each limit and attack against
//! a hand-made component ([`crate::handmade`]), through the same
//! `load` → `session` → `accepts` path the dispatcher takes. The
//! end-to-end suite (`tests/all/sandbox/`) runs real guests through the
//! whole host; these need no guest toolchain and run in milliseconds to
//! seconds.

use std::collections::BTreeMap;
use std::sync::Arc;

use prism_types::limits::Limits;

use crate::handmade::{Accepts, receiver};
use crate::{CallError, EngineOptions, Plugin, PluginEngine, WitChange, WitChangeKind};

fn engine() -> PluginEngine {
    PluginEngine::new(&EngineOptions {
        max_instances: 8,
        ..EngineOptions::default()
    })
    .expect("the engine starts")
}

fn change() -> WitChange {
    WitChange {
        key: "P-1".into(),
        kind: WitChangeKind::Insert,
        new_image: Some(r#"{"pk":"P-1"}"#.into()),
        old_image: None,
        changed_paths: vec![String::new()],
        sequence: "1".into(),
        time_ms: 0,
    }
}

fn limits() -> Limits {
    Limits {
        timeout_ms: 200,
        memory_mib: 32,
        ..Limits::default()
    }
}

fn load(engine: &PluginEngine, accepts: Accepts) -> Plugin {
    engine
        .load(&receiver(accepts))
        .unwrap_or_else(|e| panic!("{accepts:?} does not load: {e}"))
}

/// `accepts` once, in a fresh session.
fn call(plugin: &Plugin, limits: Limits) -> Result<bool, CallError> {
    let mut s = plugin.session(Arc::new(BTreeMap::new()), limits)?;
    s.accepts(&change())
}

#[test]
fn the_control_answers() {
    let e = engine();
    assert_eq!(call(&load(&e, Accepts::True), limits()), Ok(true));
}

#[test]
fn a_plugin_that_spins_is_stopped_at_its_time_budget() {
    let e = engine();
    let r = call(&load(&e, Accepts::Loop), limits());
    assert_eq!(r, Err(CallError::Timeout { budget_ms: 200 }));
}

#[test]
fn a_trap_is_a_trap_with_its_message() {
    let e = engine();
    match call(&load(&e, Accepts::Trap), limits()) {
        Err(CallError::Trap { message, .. }) => {
            assert!(message.contains("unreachable"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn endless_recursion_is_a_stack_overflow() {
    let e = engine();
    assert_eq!(
        call(&load(&e, Accepts::Recurse), limits()),
        Err(CallError::StackOverflow)
    );
}

#[test]
fn memory_past_the_cap_is_refused_and_under_it_granted() {
    let e = engine();
    // 16 pages (1 MiB) to start with, so 40 MiB more is over a 32 MiB cap.
    match call(&load(&e, Accepts::GrowMib(40)), limits()) {
        Err(CallError::MemoryLimit { cap, requested }) => {
            assert_eq!(cap, 32 << 20);
            assert!(requested > cap, "{requested}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(call(&load(&e, Accepts::GrowMib(16)), limits()), Ok(true));
}

#[test]
fn eight_memories_are_held_to_one_cap() {
    let e = engine();
    // Seven memories of 8 MiB each: 56 MiB in all, over a 32 MiB cap
    // although each alone is far under it.
    let hogs = load(
        &e,
        Accepts::Hogs {
            count: 7,
            mib: 8,
            strict: true,
        },
    );
    match call(&hogs, limits()) {
        Err(CallError::MemoryLimit { cap, .. }) => assert_eq!(cap, 32 << 20),
        other => panic!("{other:?}"),
    }
    let fits = load(
        &e,
        Accepts::Hogs {
            count: 3,
            mib: 8,
            strict: true,
        },
    );
    assert_eq!(call(&fits, limits()), Ok(true));
}

#[test]
fn a_failed_call_leaves_the_next_session_whole() {
    let e = engine();
    let (bad, good) = (load(&e, Accepts::GrowMib(40)), load(&e, Accepts::True));
    for _ in 0..3 {
        assert!(call(&bad, limits()).is_err());
        assert_eq!(call(&good, limits()), Ok(true));
    }
}

#[test]
fn what_is_not_a_component_is_refused_before_it_compiles() {
    let e = engine();
    let err = e.load(b"#!/bin/sh\nrm -rf /\n").err().expect("refused");
    assert_eq!(err.kind(), crate::ErrorKind::NotAComponent, "{err}");
    assert!(err.to_string().contains("magic bytes"), "{err}");
    // A core module (a guest built for the wrong target) gets the fix.
    let core = wasm_encoder::Module::new().finish();
    let err = e.load(&core).err().expect("refused");
    assert_eq!(err.kind(), crate::ErrorKind::NotAComponent, "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
}

#[test]
fn a_component_over_the_size_cap_is_refused_unread() {
    let wasm = receiver(Accepts::True);
    let small = PluginEngine::new(&EngineOptions {
        max_instances: 1,
        max_component_bytes: wasm.len() - 1,
        ..EngineOptions::default()
    })
    .expect("the engine starts");
    let err = small.load(&wasm).err().expect("refused");
    assert_eq!(err.kind(), crate::ErrorKind::TooLarge, "{err}");
    assert!(
        err.message().contains(&format!("is {} bytes", wasm.len())),
        "{err}"
    );
}

#[test]
fn a_component_that_is_not_a_receiver_does_not_load() {
    // A component exporting nothing fits no receiver world.
    let empty = wasm_encoder::Component::new().finish();
    let err = engine().load(&empty).err().expect("refused");
    assert_eq!(err.kind(), crate::ErrorKind::Shape, "{err}");
}
