//! The HTTP read path: real HTTP requests against `prism serve` with the
//! model in moto, receivers from a local registry. The model document, a
//! product as each receiver renders it, and every error: unknown key or
//! receiver, a plugin that rejects, traps or loops, output over the
//! sandbox's limit and a response over the API's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use prism_e2e::aws::{Queues, create_model_table, put, setup};
use prism_e2e::{register, relaxed, wasm};
use prism_sample::StreamWriter;
use prism_types::limits::Limits;
use prism_types::manifest::Mode;
use serde_json::Value;

use crate::support::world::expected;

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (status, content type, body) of `GET path` (or another method).
fn request(addr: &str, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, content_type, raw[split + 4..].to_vec())
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[test]
fn prism_serve_answers_with_the_model_and_each_receivers_rendering_and_names_every_error() {
    let Some(q) = Queues::new("serve") else {
        return;
    };
    let ep = prism_e2e::aws::endpoint().unwrap();
    let env = q.rt.block_on(setup(&ep, "serve"));
    let model = format!("{}-model", env.table);
    let docs: Vec<Value> = (0..3).map(|n| prism_sample::product(n, 7)).collect();
    q.rt.block_on(async {
        create_model_table(&env.ddb, &model).await;
        for d in &docs {
            // As the model builder writes it: with its bookkeeping.
            let mut item = d.clone();
            item["_prism_rev"] = serde_json::json!(3);
            item["_prism_sources"] = serde_json::json!({"products/{\"article_no\":\"x\"}": "12"});
            put(&env.ddb, &model, &item).await;
        }
    });
    let key = docs[1]["pk"].as_str().unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path();
    register(
        reg,
        "website",
        wasm::WEBSITE,
        Mode::Immediate,
        relaxed(),
        &[],
    );
    // The same receiver as it was built for prism:receiver@0.1.0: the read
    // API serves both contract versions through one engine.
    register(
        reg,
        "website-0-1",
        &prism_e2e::fixture_0_1("website"),
        Mode::Immediate,
        relaxed(),
        &[],
    );
    let hostile = |id: &str, behaviour: &str, limits: Limits| {
        register(
            reg,
            id,
            wasm::HOSTILE,
            Mode::Immediate,
            limits,
            &[("behaviour", behaviour)],
        );
    };
    hostile("rejecter", "reject", relaxed());
    hostile("trapper", "panic", relaxed());
    hostile(
        "looper",
        "loop",
        Limits {
            timeout_ms: 200,
            ..Limits::default()
        },
    );
    hostile("huge", "huge-output", relaxed());
    hostile(
        "huge-allowed",
        "huge-output",
        Limits {
            max_output_bytes: 8 << 20,
            memory_mib: 64,
            ..relaxed()
        },
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_prism-under-test"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--model-table",
            &model,
            "--registry",
        ])
        .arg(reg)
        .args(["--endpoint-url", &ep, "--region", "us-east-1"])
        .env(
            "PRISM_CACHE_DIR",
            std::env::temp_dir().join("prism-e2e-cache"),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    let server = Server(child, addr);
    let get = |path: &str| request(&server.1, "GET", path);

    // The model document, exactly as written, without the builder's bookkeeping.
    let (status, ct, body) = get(&format!("/v1/products/{key}"));
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    assert_eq!(json_of(&body), docs[1]);

    // The website's rendering: what the pipeline makes of an insert.
    let mut w = StreamWriter::new();
    w.push(&key, None, Some(&docs[1]));
    let want = expected(w.records(), "website", wasm::WEBSITE, &[]);
    let (status, ct, body) = get(&format!("/v1/receivers/website/products/{key}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(ct.starts_with("application/"), "{ct}");
    assert_eq!(vec![String::from_utf8(body).unwrap()], want);
    let (status, ct_old, body) = get(&format!("/v1/receivers/website-0-1/products/{key}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        ct_old, ct,
        "0.1 and 0.2 builds answer with one content type"
    );
    assert_eq!(
        vec![String::from_utf8(body).unwrap()],
        want,
        "the 0.1 build renders byte-identically to the 0.2 build"
    );

    let error = |path: &str, status: u16, kind: &str, says: &str| {
        let (got, ct, body) = get(path);
        let v = json_of(&body);
        assert_eq!(
            (got, ct.as_str()),
            (status, "application/json"),
            "{path}: {v}"
        );
        assert_eq!(v["kind"], kind, "{path}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(says), "{path}: {msg:?} does not say {says:?}");
    };
    error("/v1/products/NOPE-1", 404, "not-found", "no product NOPE-1");
    error(
        &format!("/v1/receivers/nobody/products/{key}"),
        404,
        "not-found",
        "receiver nobody is not registered",
    );
    error(
        "/v1/receivers/website/products/NOPE-1",
        404,
        "not-found",
        "no product NOPE-1",
    );
    error(
        &format!("/v1/receivers/rejecter/products/{key}"),
        422,
        "rejected",
        "has no EAN",
    );
    error(
        &format!("/v1/receivers/trapper/products/{key}"),
        503,
        "trap",
        "boom",
    );
    error(
        &format!("/v1/receivers/looper/products/{key}"),
        503,
        "timeout",
        "looper",
    );
    error(
        &format!("/v1/receivers/huge/products/{key}"),
        503,
        "output",
        "huge",
    );
    error(
        &format!("/v1/receivers/huge-allowed/products/{key}"),
        503,
        "too-large",
        "over the API's limit",
    );
    error("/v2/products/x", 404, "not-found", "no route");
    let (status, _, _) = request(&server.1, "POST", &format!("/v1/products/{key}"));
    assert_eq!(status, 405);

    // Still serving after all of that.
    assert_eq!(get(&format!("/v1/products/{key}")).0, 200);
}
