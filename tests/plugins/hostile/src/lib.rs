//! A receiver that misbehaves on purpose. Its config key `behaviour` picks how:
//! `loop`, `memory`, `huge-output`, `many-messages`, `panic`, `recursion`,
//! `file`, `retry`, `reject`, `malformed`, `chatty`, `probe` (report what the
//! sandbox lets it see), `leak` (keep 8 MiB more per call, and echo),
//! `count` (echo with how many calls this instance has served), or anything
//! else (behave: echo the key).
//!
//! With `only_key` set, it misbehaves only for that product key and behaves
//! for the others.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What `leak` keeps, and what `count` counts: state across calls, which a
/// plugin must not have (the host may reuse an instance for many changes).
static HOARD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static CALLS: AtomicU64 = AtomicU64::new(0);

use prism_sdk::{Change, FormatError, Message, Receiver, config, export_receiver, json, log};

/// The hostile receiver.
pub struct Hostile;

impl Receiver for Hostile {
    fn format(change: &Change) -> Result<Vec<Message>, FormatError> {
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
            "huge-output" => Ok(vec![Message::new("text/plain", vec![b'x'; 5 << 20])]),
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
            _ => Ok(vec![echo(change)]),
        }
    }
}

fn echo(change: &Change) -> Message {
    Message::json(&json!({"key": change.key, "sequence": change.sequence}))
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
