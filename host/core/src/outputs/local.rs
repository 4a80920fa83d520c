//! The output state of local runs: a JSON Lines file in a state directory
//! (`prism run --state DIR`: `DIR/outputs.jsonl`), read before a run and
//! rewritten atomically after it.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{LastOutput, OutputMemory};

/// Where the state lives in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("outputs.jsonl")
}

/// Read the state in `dir` (empty if there is none yet).
pub fn load(dir: &Path) -> Result<OutputMemory, crate::Error> {
    let p = path(dir);
    let err = |message: String| {
        crate::Error::new(
            crate::ErrorKind::OutputsFile,
            p.display().to_string(),
            message,
        )
    };
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OutputMemory::default()),
        Err(e) => return Err(err(e.to_string())),
    };
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |what: &str| err(format!("line {}: {what}", n + 1));
        let v: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&format!("no {k:?}")))
        };
        let key = (field("receiver")?.to_owned(), field("key")?.to_owned());
        let sequence = field("sequence")?.to_owned();
        let mut hash = [0u8; 32];
        hex::decode_to_slice(field("hash")?, &mut hash).map_err(|e| bad(&format!("hash: {e}")))?;
        let image = match v.get("image").and_then(Value::as_str) {
            Some(text) => {
                let mut image = [0u8; 32];
                hex::decode_to_slice(text, &mut image).map_err(|e| bad(&format!("image: {e}")))?;
                Some(image)
            }
            None => None,
        };
        entries.push((
            key,
            LastOutput {
                sequence,
                hash,
                image,
            },
        ));
    }
    Ok(OutputMemory::from_entries(entries))
}

/// Write the whole state into `dir` (atomically: a reader never sees half a file).
pub fn save(dir: &Path, state: &OutputMemory) -> Result<(), crate::Error> {
    let p = path(dir);
    let err = |e: std::io::Error| {
        crate::Error::new(
            crate::ErrorKind::OutputsFile,
            p.display().to_string(),
            e.to_string(),
        )
    };
    let mut text = String::new();
    for ((receiver, key), e) in state.entries() {
        text.push_str(
            &json!({
                "receiver": receiver,
                "key": key,
                "sequence": e.sequence,
                "hash": hex::encode(e.hash),
                "image": e.image.map(hex::encode),
            })
            .to_string(),
        );
        text.push('\n');
    }
    prism_types::atomic::write(&p, text.as_bytes()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::{hash_messages, image_hash};

    #[test]
    fn state_round_trips_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().entries().is_empty());
        let m = OutputMemory::default();
        let h = hash_messages(&[prism_contract::Message::new("t", b"x".to_vec())]);
        let img = image_hash(Some("{}"));
        m.record("web", "P\t1\n", "42", h, img);
        save(dir.path(), &m).unwrap();
        let back = load(dir.path()).unwrap();
        assert!(back.unchanged("web", "P\t1\n", &h, &img));
        assert_eq!(back.entries(), m.entries());
        std::fs::write(path(dir.path()), "{\"receiver\": \"web\"}\n").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("outputs.jsonl: line 1: no \"key\""), "{e}");
    }
}
