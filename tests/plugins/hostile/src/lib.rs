//! A receiver that misbehaves on purpose. Its config key `behaviour` picks how:
//! `loop`, `memory`, `huge-output`, `many-messages`, `panic`, `recursion`,
//! `file`, `retry`, `reject`, `malformed`, `chatty`, `probe` (report what the
//! sandbox lets it see), `leak` (keep 8 MiB more per call, and echo),
//! `count` (echo with how many calls this instance has served), `sleep`
//! (`std::thread::sleep` for an hour: blocks inside a WASI host call),
//! `nap` (sleep 30 ms, then report what its clocks saw), `alias-output`
//! (1,000 messages whose bodies are one 200 KiB buffer: cheap in the guest,
//! 200 MB for a host that copies before it checks), `alias-log` (one log
//! call whose 10,000 fields all point at one 200 KiB string), `fill`
//! (touch `fill_mib` MiB of memory, then echo: a receiver at its memory cap),
//! `spin` (count to `spin` in a loop, then echo: slow but legal), `random`
//! (ask `wasi:random` for `random_len` bytes, 64 MiB by default: a host
//! that allocates whatever is asked pays it outside the memory cap), or
//! anything else (behave: echo the key).
//!
//! With `only_key` set, it misbehaves only for that product key and behaves
//! for the others. With `panic_key` set, it also panics (a trap) on that
//! product key, whatever the behaviour. How it echoes: see [`echo`] (the simulation's receivers
//! are echoes).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// What `leak` keeps, and what `count` counts: state across calls, which a
/// plugin must not have (the host may reuse an instance for many changes).
static HOARD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static CALLS: AtomicU64 = AtomicU64::new(0);

use prism_sdk::{Change, FormatError, Message, Receiver, config, export_receiver, json, log};

/// The hostile receiver.
pub struct Hostile;

impl Receiver for Hostile {
    fn format(change: &Change) -> Result<Vec<Message>, FormatError> {
        if config::get("panic_key").is_some_and(|k| k == change.key) {
            panic!("{} cannot be formatted", change.key);
        }
        let behaviour = config::get_or("behaviour", "behave");
        let targeted = config::get("only_key").is_none_or(|k| k == change.key);
        if !targeted {
            return Ok(vec![echo(change)]);
        }
        match behaviour.as_str() {
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![7u8; 1 << 20]));
                }
            }
            "huge-output" => {
                let kib: usize = config::get_or("output_kib", "5120").parse().unwrap_or(5120);
                Ok(vec![Message::new("text/plain", vec![b'x'; kib << 10])])
            }
            "many-messages" => Ok((0..10_000)
                .map(|i| Message::new("text/plain", i.to_string()))
                .collect()),
            "panic" => panic!("boom: no price for {}", change.key),
            "recursion" => Ok(vec![Message::new(
                "text/plain",
                recurse(black_box(1 << 30)).to_string(),
            )]),
            "file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => Ok(vec![Message::new("text/plain", text)]),
                Err(e) => panic!("could not open /etc/passwd: {e}"),
            },
            "retry" => Err(FormatError::retry("downstream lookup unavailable")),
            "fanout" => {
                let parts: usize = config::get_or("parts", "3").parse().unwrap_or(3);
                Ok((0..parts)
                    .map(|part| {
                        Message::json(
                            &json!({"key": change.key, "sequence": change.sequence, "part": part}),
                        )
                    })
                    .collect())
            }
            "reject" => Err(FormatError::reject(format!("{} has no EAN", change.key))),
            "malformed" => Ok(vec![Message::new("not a content type", "x")]),
            "chatty" => {
                for i in 0..10_000 {
                    println!("line {i} of very chatty output");
                    log::info(&format!("log record {i}"));
                }
                Ok(vec![echo(change)])
            }
            "probe" => Ok(vec![Message::json(&probe())]),
            "leak" => {
                HOARD
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(black_box(vec![1u8; 8 << 20]));
                Ok(vec![echo(change)])
            }
            "count" => {
                let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(vec![Message::json(&json!({"key": change.key, "calls": n}))])
            }
            "sleep" => {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(vec![echo(change)])
            }
            "nap" => {
                let (t0, w0) = (Instant::now(), SystemTime::now());
                std::thread::sleep(Duration::from_millis(30));
                let slept = t0.elapsed().as_nanos() as u64;
                let wall = SystemTime::now()
                    .duration_since(w0)
                    .map(|d| d.as_nanos() as u64);
                Ok(vec![Message::json(
                    &json!({"key": change.key, "slept_ns": slept, "wall_ns": wall.ok()}),
                )])
            }
            "alias-output" => Ok(aliased::messages(1000, 200 << 10)),
            "fill" => {
                let mib: usize = config::get_or("fill_mib", "60").parse().unwrap_or(60);
                let hoard = black_box(vec![1u8; mib << 20]);
                let sum: u64 = hoard.iter().step_by(4096).map(|&b| u64::from(b)).sum();
                Ok(vec![Message::json(
                    &json!({"key": change.key, "pages": sum}),
                )])
            }
            "spin" => {
                let n: u64 = config::get_or("spin", "1000000")
                    .parse()
                    .unwrap_or(1_000_000);
                let mut i: u64 = 0;
                while black_box(i) < n {
                    i += 1;
                }
                Ok(vec![echo(change)])
            }
            "random" => {
                let len: u64 = config::get_or("random_len", "67108864")
                    .parse()
                    .unwrap_or(64 << 20);
                let got = random::bytes(len);
                Ok(vec![Message::json(
                    &json!({"key": change.key, "random_bytes": got}),
                )])
            }
            "alias-log" => {
                aliased::log_fields(10_000, 200 << 10);
                Ok(vec![echo(change)])
            }
            _ => Ok(vec![echo(change)]),
        }
    }
}

/// The key, the sequence and the new image's `/v` and `/noise` (the
/// simulation tells a backfill's message by them); with `echo = "image"` the key and the new image's
/// `/v` instead (the same output for changes that leave `v` alone, which
/// output dedup suppresses); with `echo = "transition"` the old image's `/v`
/// too (an output that depends on where the product came from); with
/// `group_by = "parity"` in the message group `g0` or `g1` by the key's
/// last byte (a group spanning products).
fn echo(change: &Change) -> Message {
    let v = |image: &Option<prism_sdk::Image>| image.as_ref().and_then(|i| i.get("/v")).cloned();
    let mut m = match config::get("echo").as_deref() {
        Some("image") => Message::json(&json!({"key": change.key, "v": v(&change.new)})),
        Some("transition") => {
            Message::json(&json!({"key": change.key, "from": v(&change.old), "v": v(&change.new)}))
        }
        _ => {
            let field = |p: &str| change.new.as_ref().and_then(|i| i.get(p)).cloned();
            Message::json(&json!({
                "key": change.key,
                "sequence": change.sequence,
                "v": field("/v"),
                "noise": field("/noise"),
            }))
        }
    };
    if config::get("group_by").as_deref() == Some("parity") {
        let last = change.key.bytes().last().unwrap_or(0);
        m = m.group(format!("g{}", last % 2));
    }
    m
}

fn recurse(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        black_box(recurse(black_box(n - 1))) + 1
    }
}

/// Everything the sandbox lets a plugin observe about its environment.
fn probe() -> prism_sdk::Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64);
    let hash = RandomState::new().hash_one("same input");
    let mut map = HashMap::new();
    map.insert("a", 1);
    json!({
        "env": std::env::vars().collect::<Vec<_>>(),
        "args": std::env::args().collect::<Vec<_>>(),
        "now_ms": now.ok(),
        "random_hash": hash.to_string(),
        "cwd": std::env::current_dir().map(|p| p.display().to_string()).ok(),
        "read_root": std::fs::read_dir("/").is_ok(),
        "stdin": std::io::read_to_string(std::io::stdin()).unwrap_or_default(),
        "config": config::entries(),
    })
}

export_receiver!(Hostile);

/// Values that many list entries share one buffer: what the canonical ABI
/// allows and a host that copies before it checks pays for many times over.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod aliased {
    use std::mem::ManuallyDrop;

    use prism_sdk::__wasm::bindings::prism::receiver::log as wit_log;
    use prism_sdk::Message;

    /// `count` messages whose bodies are all the same `len` bytes.
    pub fn messages(count: usize, len: usize) -> Vec<Message> {
        let mut shared = ManuallyDrop::new(vec![b'x'; len]);
        let ptr = shared.as_mut_ptr();
        (0..count)
            .map(|_| {
                // SAFETY: never dropped in the guest; the lowered result only
                // points at the shared buffer (the host refuses it).
                let body = unsafe { Vec::from_raw_parts(ptr, len, len) };
                Message::new("text/plain", body)
            })
            .collect()
    }

    /// One log call with `count` fields whose key and value are all the same
    /// `len`-byte string.
    pub fn log_fields(count: usize, len: usize) {
        let mut shared = ManuallyDrop::new("k".repeat(len));
        let ptr = shared.as_mut_ptr();
        let fields: Vec<ManuallyDrop<(String, String)>> = (0..count)
            .map(|_| {
                // SAFETY: as above; ManuallyDrop keeps them from being freed.
                let s = || unsafe { String::from_raw_parts(ptr, len, len) };
                ManuallyDrop::new((s(), s()))
            })
            .collect();
        // SAFETY: ManuallyDrop<T> is repr(transparent) over T.
        let fields: &[(String, String)] =
            unsafe { std::slice::from_raw_parts(fields.as_ptr().cast(), fields.len()) };
        wit_log::log(wit_log::Level::Info, "aliased fields", fields);
    }
}

/// `wasi:random/random.get-random-bytes`, called directly with any length.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod random {
    #[link(wasm_import_module = "wasi:random/random@0.2.0")]
    unsafe extern "C" {
        #[link_name = "get-random-bytes"]
        fn get_random_bytes(len: i64, ret: *mut usize);
    }

    /// Ask for `len` random bytes; how many came back.
    pub fn bytes(len: u64) -> usize {
        let mut ret = [0usize; 2];
        // SAFETY: the canonical ABI writes (pointer, length) of the list
        // into the two words at `ret`.
        unsafe { get_random_bytes(len as i64, ret.as_mut_ptr()) };
        ret[1]
    }
}

/// Natively: no host to ask.
#[cfg(not(target_arch = "wasm32"))]
mod random {
    /// Natively: `len` bytes, counted.
    pub fn bytes(len: u64) -> usize {
        len as usize
    }
}

/// Natively (clippy, `cargo test`) there is no host to alias against.
#[cfg(not(target_arch = "wasm32"))]
mod aliased {
    use prism_sdk::Message;

    /// Natively: `count` messages of `len` bytes each.
    pub fn messages(count: usize, len: usize) -> Vec<Message> {
        (0..count)
            .map(|_| Message::new("text/plain", vec![b'x'; len]))
            .collect()
    }

    /// Natively: one log record.
    pub fn log_fields(_count: usize, _len: usize) {
        prism_sdk::log::info("aliased fields");
    }
}
