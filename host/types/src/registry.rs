//! The local registry: a directory with one manifest per receiver
//! (`<anything>.toml`) and the `.wasm` files they name.
//!
//! A bad manifest or a missing/mismatched `.wasm` disables only that
//! receiver: it is reported as an [`Error`] and the rest load.

use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, ErrorKind};
use crate::manifest::ReceiverManifest;

/// One usable entry: its manifest, where it came from, and its component bytes.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The manifest.
    pub manifest: ReceiverManifest,
    /// Where it was read from (a file path or a registry key), for messages.
    pub origin: String,
    /// The component, already checked against `manifest.plugin.digest`.
    pub wasm: Vec<u8>,
}

/// What a registry holds right now.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Usable entries, sorted by receiver id.
    pub entries: Vec<Entry>,
    /// Entries that could not be used, with the reason.
    pub problems: Vec<Error>,
    /// Precompiled artifacts that were discarded because their bytes are
    /// not the ones recorded by a trusted writer (object keys).
    pub untrusted_artifacts: Vec<String>,
    /// Quarantines a dispatcher recorded, by receiver: a new process starts
    /// with them rather than with a clean breaker.
    pub quarantines: std::collections::BTreeMap<String, Quarantine>,
}

/// A receiver's quarantine as a dispatcher recorded it, so that the
/// breaker's state outlives the process that opened it (a cold start, or
/// another instance on another shard, starts quarantined too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quarantine {
    /// Until when (Unix ms) the receiver is not run; after that its next
    /// call is a probe.
    pub until_ms: u64,
    /// Quarantines in a row: the next lasts twice as long.
    pub ejections: u32,
    /// The component it was recorded for: another version starts fresh.
    pub digest: Digest,
}

/// A directory registry.
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    dir: PathBuf,
}

impl LocalRegistry {
    /// A registry rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Read every manifest and its component.
    pub fn load(&self) -> Result<Snapshot, Error> {
        let io = |path: &Path, source| {
            Error::caused_by(ErrorKind::Io, path.display().to_string(), source)
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|e| io(&self.dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut snap = Snapshot::default();
        for path in paths {
            match self.read_entry(&path) {
                Ok(entry) => {
                    let dup = snap
                        .entries
                        .iter()
                        .find(|e| e.manifest.receiver == entry.manifest.receiver);
                    if let Some(first) = dup {
                        snap.problems.push(Error::new(
                            ErrorKind::Duplicate,
                            entry.origin,
                            format!(
                                "receiver {} is already defined in {}",
                                entry.manifest.receiver, first.origin
                            ),
                        ));
                    } else {
                        snap.entries.push(entry);
                    }
                }
                Err(e) => snap.problems.push(e),
            }
        }
        snap.entries
            .sort_by(|a, b| a.manifest.receiver.cmp(&b.manifest.receiver));
        Ok(snap)
    }

    fn read_entry(&self, path: &Path) -> Result<Entry, Error> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::caused_by(ErrorKind::Io, origin.clone(), source))?;
        let manifest = ReceiverManifest::from_toml(&text, &origin)?;
        let file = manifest.plugin.file.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::NoFile,
                origin.clone(),
                "[plugin] has no `file` (a local registry needs the .wasm next to the manifest)",
            )
        })?;
        let wasm_path = path.parent().unwrap_or(Path::new(".")).join(file);
        let wasm = std::fs::read(&wasm_path).map_err(|source| {
            Error::caused_by(ErrorKind::Io, wasm_path.display().to_string(), source)
        })?;
        let actual = Digest::of(&wasm);
        if actual != manifest.plugin.digest {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                origin,
                format!(
                    "digest mismatch for receiver {}: the manifest says {}, but {} is {actual}",
                    manifest.receiver,
                    manifest.plugin.digest,
                    wasm_path.display()
                ),
            ));
        }
        Ok(Entry {
            manifest,
            origin,
            wasm,
        })
    }

    /// Write (or replace) a receiver's manifest and copy its component next to
    /// it as `<digest>.wasm`. Returns the manifest path.
    pub fn put(&self, mut manifest: ReceiverManifest, wasm: &[u8]) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let digest = Digest::of(wasm);
        let file = format!("{}.wasm", digest.hex());
        std::fs::write(self.dir.join(&file), wasm)?;
        manifest.plugin.digest = digest;
        manifest.plugin.file = Some(file);
        let path = self.dir.join(format!("{}.toml", manifest.receiver));
        std::fs::write(&path, manifest.to_toml())?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::PluginRef;

    fn manifest(id: &str) -> ReceiverManifest {
        let plugin = PluginRef {
            digest: Digest::of(b""),
            file: None,
        };
        ReceiverManifest::new(id, plugin)
    }

    #[test]
    fn put_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let reg = LocalRegistry::new(dir.path());
        reg.put(manifest("b"), b"wasm-b").unwrap();
        reg.put(manifest("a"), b"wasm-a").unwrap();
        let snap = reg.load().unwrap();
        assert!(snap.problems.is_empty(), "{:?}", snap.problems);
        let ids: Vec<_> = snap
            .entries
            .iter()
            .map(|e| e.manifest.receiver.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(snap.entries[0].wasm, b"wasm-a");
    }

    #[test]
    fn a_tampered_wasm_disables_only_its_receiver() {
        let dir = tempfile::tempdir().unwrap();
        let reg = LocalRegistry::new(dir.path());
        reg.put(manifest("good"), b"good").unwrap();
        reg.put(manifest("bad"), b"original").unwrap();
        std::fs::write(
            dir.path()
                .join(format!("{}.wasm", Digest::of(b"original").hex())),
            b"tampered",
        )
        .unwrap();
        let snap = reg.load().unwrap();
        assert_eq!(snap.entries.len(), 1);
        let e = snap.problems[0].to_string();
        assert!(e.contains("digest mismatch for receiver bad"), "{e}");
        assert!(e.contains(&Digest::of(b"tampered").to_string()), "{e}");
    }

    #[test]
    fn unknown_fields_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let reg = LocalRegistry::new(dir.path());
        let path = reg.put(manifest("x"), b"x").unwrap();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("enabled = true", "enabled = true\ncolour = 1");
        std::fs::write(&path, text).unwrap();
        let e = reg.load().unwrap().problems[0].to_string();
        assert!(
            e.contains("x.toml") && e.contains("unknown field `colour`"),
            "{e}"
        );
    }
}
