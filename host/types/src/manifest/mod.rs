//! The registry entry for one receiver: one schema, read from a local
//! manifest file (TOML) today and from the DynamoDB registry later.
//!
//! ```toml
//! schema = 1
//! receiver = "website-en"
//! enabled = true
//!
//! [plugin]
//! digest = "sha256:…"        # sha256 of the .wasm component
//! file = "website.wasm"       # local registry: path next to the manifest
//!
//! [mode]
//! kind = "batch"              # or "immediate" (the default)
//! max_count = 100             # a window's format may take 100 × timeout_ms:
//! max_bytes = 1048576         # 20 s, which must fit the dispatcher's
//! max_age_secs = 60           # invocation (PRISM_LAMBDA_TIMEOUT less 2 s)
//!
//! [limits]
//! timeout_ms = 200
//!
//! [config]
//! language = "en"
//! ```
//!
//! Unknown fields anywhere are errors that name the field.

mod queues;
pub use queues::{RECEIVER_QUEUE_INFIX, check_queue_owner, queue_name};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, ErrorKind};
use crate::limits::Limits;

/// The manifest schema version this prism reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// One receiver's registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverManifest {
    /// Schema version; must be [`SCHEMA_VERSION`].
    pub schema: u32,
    /// The receiver id: lowercase letters, digits and `-`, 1 to 48 characters.
    /// It also names the receiver's queue and outbox directory.
    pub receiver: String,
    /// A disabled receiver gets nothing.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Which plugin runs for this receiver.
    pub plugin: PluginRef,
    /// Immediate or batched delivery.
    #[serde(default)]
    pub mode: Mode,
    /// Where messages go (used by the queue-backed dispatcher).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Field interest: JSON pointers (tokens may be `*` or `**`) of the
    /// model fields this receiver cares about. A modify that touches none of
    /// them is not offered to the plugin at all; inserts and removes always
    /// are. Empty: every change is offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interest: Vec<String>,
    /// Output dedup: an output identical to the last one delivered for the
    /// same product is not sent again (immediate receivers). Off for a
    /// receiver that wants every refresh.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub dedup: bool,
    /// Sandbox limits; defaults apply to anything unset.
    #[serde(default)]
    pub limits: Limits,
    /// Free-form config handed to the plugin through `prism:receiver/config`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Set when the plugin was registered although its output for a change
    /// depended on earlier calls (`--allow-nondeterministic`): the reason
    /// given. Such a receiver always runs with `limits.reuse = 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nondeterministic: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The plugin a receiver runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    /// `sha256:<hex>` of the component bytes.
    pub digest: Digest,
    /// Local registry only: the `.wasm` file, relative to the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Mode {
    /// The most changes one plugin call formats: a batch window's
    /// `max_count`, else 1. The host-copy cap, and so the memory a call may
    /// cost the host, grows with it.
    pub fn window(&self) -> usize {
        match self {
            Mode::Immediate => 1,
            Mode::Batch { max_count, .. } => (*max_count).max(1),
        }
    }

    /// A batched receiver's window limits; `None` for an immediate one.
    pub fn batch_limits(&self) -> Option<WindowLimits> {
        match *self {
            Mode::Immediate => None,
            Mode::Batch {
                max_count,
                max_bytes,
                max_age_secs,
            } => Some(WindowLimits {
                max_count: max_count as u64,
                max_bytes: max_bytes as u64,
                max_age_ms: max_age_secs.saturating_mul(1000),
            }),
        }
    }
}

/// When a batched receiver's window is cut (see [`Mode::Batch`]): the one
/// rule shared by windows cut in a run and by the spool's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// Full at this many changes.
    pub max_count: u64,
    /// Full at this many image bytes.
    pub max_bytes: u64,
    /// Due when its oldest change is this old (ms).
    pub max_age_ms: u64,
}

impl WindowLimits {
    /// Is a window of `count` changes and `bytes` image bytes full?
    pub fn full(&self, count: u64, bytes: u64) -> bool {
        count >= self.max_count || bytes >= self.max_bytes
    }

    /// Is a window whose oldest change is from `oldest_ms` too old at `now_ms`?
    pub fn too_old(&self, oldest_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(oldest_ms) >= self.max_age_ms
    }
}

/// How a receiver gets its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Mode {
    /// One `format` call per accepted change; messages go out at once.
    #[default]
    Immediate,
    /// Accepted changes are collected and formatted together by
    /// `format-batch` when any limit is reached.
    Batch {
        /// Flush after this many changes.
        #[serde(default = "default_batch_count")]
        max_count: usize,
        /// Flush when the buffered images reach this many bytes.
        #[serde(default = "default_batch_bytes")]
        max_bytes: usize,
        /// Flush when the oldest buffered change is this old.
        #[serde(default = "default_batch_age")]
        max_age_secs: u64,
    },
}

/// 100 changes at the default 200 ms budget: a 20 s window, which fits a
/// 60 s dispatcher invocation (500 would need 100 s, and such a receiver is
/// refused at load).
fn default_batch_count() -> usize {
    100
}
fn default_batch_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_batch_age() -> u64 {
    300
}

/// Where a receiver's messages are delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// The receiver's queue (URL or name). A name ending in `.fifo` is a FIFO queue.
    pub queue: String,
    /// Where rejected changes are parked, with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<String>,
}

impl ReceiverManifest {
    /// A new receiver's manifest with the defaults: enabled, immediate,
    /// dedup on, no field interest, no destination override, default
    /// limits, no config.
    pub fn new(receiver: impl Into<String>, plugin: PluginRef) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            receiver: receiver.into(),
            enabled: true,
            plugin,
            mode: Mode::Immediate,
            destination: None,
            interest: Vec::new(),
            dedup: true,
            limits: Limits::default(),
            config: BTreeMap::new(),
            nondeterministic: None,
        }
    }

    /// Parse and validate manifest text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, Error> {
        let parsed =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', "\n  "));
        Self::checked(parsed, origin)
    }

    /// Parse and validate an entry held as JSON (e.g. a DynamoDB item's map).
    pub fn from_json(value: serde_json::Value, origin: &str) -> Result<Self, Error> {
        Self::checked(
            serde_json::from_value(value).map_err(|e| e.to_string()),
            origin,
        )
    }

    /// A parsed manifest, validated; errors name `origin`.
    fn checked(parsed: Result<Self, String>, origin: &str) -> Result<Self, Error> {
        let m = parsed.map_err(|message| Error::new(ErrorKind::ManifestParse, origin, message))?;
        m.validate()
            .map_err(|message| Error::new(ErrorKind::ManifestInvalid, origin, message))?;
        Ok(m)
    }

    /// Render as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a manifest always serializes")
    }

    /// Check values the types cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema != SCHEMA_VERSION {
            return Err(format!(
                "schema {} is not supported (this prism reads schema {SCHEMA_VERSION})",
                self.schema
            ));
        }
        validate_receiver_id(&self.receiver)?;
        self.limits.validate()?;
        if let Some(reason) = &self.nondeterministic {
            if reason.trim().is_empty() || reason.len() > 512 {
                return Err("nondeterministic: the reason must be 1 to 512 bytes".into());
            }
            if self.limits.reuse != 1 {
                return Err(format!(
                    "limits.reuse is {}, but a plugin registered as nondeterministic must run with limits.reuse = 1 (a fresh sandbox per change)",
                    self.limits.reuse
                ));
            }
        }
        if let Some(d) = &self.destination {
            check_queue_owner(&self.receiver, &d.queue, false)?;
            if let Some(dlq) = &d.dead_letter_queue {
                check_queue_owner(&self.receiver, dlq, true)?;
            }
        }
        for p in &self.interest {
            if !p.starts_with('/') {
                return Err(format!(
                    "interest: {p:?} is not a JSON pointer (it must start with '/', e.g. \"/prices/*\")"
                ));
            }
        }
        if let Mode::Batch {
            max_count,
            max_bytes,
            max_age_secs,
        } = self.mode
            && (max_count == 0 || max_bytes == 0 || max_age_secs == 0)
        {
            return Err(
                "mode: batch limits max_count, max_bytes and max_age_secs must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Receiver ids name queues and directories: `[a-z0-9][a-z0-9-]{0,47}`.
/// Because a receiver's queues are `<prefix>-<env>-rcv-<id>[-dlq][.fifo]`,
/// an id may not contain `rcv` as a `-`-separated word nor end in `-dlq`:
/// either would let one receiver's queue name read as another's.
pub fn validate_receiver_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 48
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if !ok {
        return Err(format!(
            "receiver id {id:?} is invalid: use 1-48 lowercase letters, digits and '-', not starting with '-'"
        ));
    }
    if id.split('-').any(|w| w == "rcv") || id.ends_with("-dlq") {
        return Err(format!(
            "receiver id {id:?} is invalid: the word \"rcv\" and a \"-dlq\" ending are reserved for queue names"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_full_at_either_limit_and_due_at_its_age() {
        let w = Mode::Batch {
            max_count: 3,
            max_bytes: 100,
            max_age_secs: 2,
        }
        .batch_limits()
        .unwrap();
        assert!(!w.full(2, 99));
        assert!(w.full(3, 0));
        assert!(w.full(0, 100));
        assert!(!w.too_old(1_000, 2_999));
        assert!(w.too_old(1_000, 3_000));
        // A clock that went back is not an age.
        assert!(!w.too_old(5_000, 1_000));
        assert_eq!(Mode::Immediate.batch_limits(), None);
        // An age too large to count in ms saturates instead of wrapping.
        let forever = Mode::Batch {
            max_count: 1,
            max_bytes: 1,
            max_age_secs: u64::MAX,
        };
        assert!(!forever.batch_limits().unwrap().too_old(0, u64::MAX - 1));
    }

    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn text(extra: &str) -> String {
        format!(
            "schema = 1\nreceiver = \"web\"\n[plugin]\ndigest = \"{DIGEST}\"\nfile = \"w.wasm\"\n{extra}"
        )
    }

    #[test]
    fn minimal_manifest_takes_defaults() {
        let m = ReceiverManifest::from_toml(&text(""), "web.toml").unwrap();
        assert!(m.enabled);
        assert_eq!(m.mode, Mode::Immediate);
        assert_eq!(m.limits, Limits::default());
        assert_eq!(ReceiverManifest::from_toml(&m.to_toml(), "x").unwrap(), m);
    }

    #[test]
    fn interest_is_a_list_of_pointers() {
        let with = |list: &str| {
            ReceiverManifest::from_toml(
                &format!(
                    "schema = 1\nreceiver = \"web\"\ninterest = {list}\n[plugin]\ndigest = \"{DIGEST}\"\n"
                ),
                "web.toml",
            )
        };
        let m = with(r#"["/prices/*", "/logistics/**"]"#).unwrap();
        assert_eq!(m.interest, ["/prices/*", "/logistics/**"]);
        assert_eq!(ReceiverManifest::from_toml(&m.to_toml(), "x").unwrap(), m);
        let e = with(r#"["prices"]"#).unwrap_err().to_string();
        assert!(e.contains("\"prices\" is not a JSON pointer"), "{e}");
    }

    #[test]
    fn batch_mode_and_partial_limits() {
        let m = ReceiverManifest::from_toml(
            &text("[mode]\nkind = \"batch\"\nmax_count = 10\n[limits]\ntimeout_ms = 50\n"),
            "w",
        )
        .unwrap();
        assert_eq!(
            m.mode,
            Mode::Batch {
                max_count: 10,
                max_bytes: 4 * 1024 * 1024,
                max_age_secs: 300
            }
        );
        assert_eq!(m.limits.timeout_ms, 50);
        assert_eq!(m.limits.memory_mib, crate::limits::DEFAULT_MEMORY_MIB);
    }

    #[test]
    fn unknown_fields_are_named_with_the_file() {
        let e = ReceiverManifest::from_toml(&text("colour = \"red\"\n"), "registry/web.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("registry/web.toml: "), "{e}");
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = ReceiverManifest::from_toml(&text("[limits]\ntimeout = 5\n"), "w.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `timeout`"), "{e}");
        let e =
            ReceiverManifest::from_toml(&text("[mode]\nkind = \"batch\"\nmax_cnt = 5\n"), "w.toml")
                .unwrap_err()
                .to_string();
        assert!(e.contains("max_cnt"), "{e}");
    }

    #[test]
    fn json_form_round_trips_and_rejects_unknown_fields() {
        let m = ReceiverManifest::from_toml(&text("[config]\nlanguage = \"de\"\n"), "w").unwrap();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(ReceiverManifest::from_json(v.clone(), "item").unwrap(), m);
        let mut bad = v;
        bad["limits"]["fuel"] = 1.into();
        let e = ReceiverManifest::from_json(bad, "dynamodb://t/web/v1")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("dynamodb://t/web/v1: unknown field `fuel`"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_explained() {
        let e = ReceiverManifest::from_toml(&text("").replace("schema = 1", "schema = 2"), "w")
            .unwrap_err();
        assert!(e.to_string().contains("schema 2 is not supported"));
        let e = ReceiverManifest::from_toml(&text("").replace("\"web\"", "\"Web_1\""), "w")
            .unwrap_err();
        assert!(e.to_string().contains("receiver id \"Web_1\" is invalid"));
        let e =
            ReceiverManifest::from_toml(&text("").replace(DIGEST, "sha256:xyz"), "w").unwrap_err();
        assert!(e.to_string().contains("digest"), "{e}");
    }

    #[test]
    fn queue_urls_are_parsed_strictly_so_the_owner_check_reads_the_real_name() {
        let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/prism-prod-rcv-shop";
        assert_eq!(queue_name(url), Ok("prism-prod-rcv-shop"));
        assert_eq!(
            queue_name("http://127.0.0.1:4566/123456789012/q.fifo"),
            Ok("q.fifo")
        );
        // Each of these used to pass the owner check of receiver web
        // although it names (or may reach) shop's queue.
        for queue in [
            format!("{url}/"),
            format!("{url}/x"),
            format!("{url}?a=b"),
            format!("{url}#f"),
            "https://sqs.eu-west-1.amazonaws.com/prism-prod-rcv-shop".to_owned(),
            "https://sqs.eu-west-1.amazonaws.com/123456789012/".to_owned(),
            "https://user@sqs/123456789012/prism-prod-rcv-shop".to_owned(),
            "ftp://h/123456789012/prism-prod-rcv-shop".to_owned(),
            "prism-prod-rcv-shop/".to_owned(),
            ".fifo".to_owned(),
            "a".repeat(81),
            String::new(),
        ] {
            let e = check_queue_owner("web", &queue, false).unwrap_err();
            assert!(e.contains("is not a queue name or URL"), "{queue:?}: {e}");
        }
    }

    #[test]
    fn a_receiver_may_only_name_its_own_queues() {
        let q = "https://sqs.eu-west-1.amazonaws.com/123456789012/prism-prod-rcv-";
        assert!(check_queue_owner("web", &format!("{q}web"), false).is_ok());
        assert!(check_queue_owner("web", &format!("{q}web.fifo"), false).is_ok());
        assert!(check_queue_owner("web", "prism-prod-rcv-web-dlq", true).is_ok());
        assert!(check_queue_owner("web", "prism-prod-rcv-web-dlq.fifo", true).is_ok());
        // Outside the receiver namespace (local tests; the role forbids it on AWS).
        assert!(check_queue_owner("web", "my-test-queue", false).is_ok());
        for (queue, dlq) in [
            (format!("{q}shop"), false),
            (format!("{q}web-dlq"), false),
            ("prism-prod-rcv-web".to_owned(), true),
            ("prism-prod-rcv-shop-dlq".to_owned(), true),
            ("prism-prod-rcv-webx".to_owned(), false),
        ] {
            let e = check_queue_owner("web", &queue, dlq).unwrap_err();
            assert!(e.contains("is not receiver web's"), "{e}");
        }
        let mut m = ReceiverManifest::from_toml(&text(""), "m").unwrap();
        m.destination = Some(Destination {
            queue: "prism-prod-rcv-shop".into(),
            dead_letter_queue: None,
        });
        let e = m.validate().unwrap_err();
        assert!(
            e.contains("destination.queue \"prism-prod-rcv-shop\""),
            "{e}"
        );
    }

    #[test]
    fn reserved_words_cannot_make_an_id_that_names_another_queue() {
        for id in ["x-rcv-web", "rcv", "web-dlq"] {
            assert!(
                validate_receiver_id(id).unwrap_err().contains("reserved"),
                "{id}"
            );
        }
        assert!(validate_receiver_id("rcvr-web").is_ok());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text, and any TOML made of a manifest's own keys with values
        /// of any type, is a manifest or an error naming the file: never a
        /// panic.
        #[test]
        fn any_manifest_text_parses_or_is_refused_without_panicking(
            text in "\\PC{0,200}",
            fields in prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "schema", "receiver", "enabled", "mode", "dedup", "interest",
                        "[plugin]\ndigest", "[plugin]\nfile", "[limits]\ntimeout_ms",
                        "[limits]\nmax_messages", "[destination]\nqueue", "[config]\nk",
                    ]),
                    prop::sample::select(vec![
                        "1", "0", "-1", "99999999999999999999", "true", "\"x\"", "\"\"",
                        "[]", "[\"/a\"]", "{}", "\"batch\"", "1.5",
                    ]),
                ),
                0..8,
            ),
        ) {
            let _ = ReceiverManifest::from_toml(&text, "any.toml");
            let toml: String = fields.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
            if let Err(e) = ReceiverManifest::from_toml(&toml, "fields.toml") {
                prop_assert!(e.to_string().contains("fields.toml"), "{}", e);
            }
        }
    }
}
