//! On-disk cache of precompiled components.
//!
//! Layout: `<dir>/<engine-compat-hash>/<wasm-sha256>.cwasm`. The first key is
//! the engine's precompile compatibility hash, so an artifact is only ever
//! loaded into an engine that can run it; the second is the component's own
//! digest. Files are written to a temporary name and renamed, so a crash
//! never leaves a half-written artifact under a real name.
//!
//! Trust: loading a `.cwasm` runs native code produced by Cranelift. The cache
//! directory must be writable only by prism (plugin authors hand in `.wasm`,
//! never `.cwasm`).

use std::path::{Path, PathBuf};

use prism_types::digest::Digest;

/// A directory of precompiled artifacts for one engine configuration.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// The cache under `root` for an engine with this compatibility hash.
    pub fn new(root: &Path, engine_hash: &str) -> Self {
        Self {
            dir: root.join(engine_hash),
        }
    }

    /// Where the artifact for `digest` lives (whether or not it exists yet).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.cwasm", digest.hex()))
    }

    /// Store an artifact atomically.
    pub fn store(&self, digest: &Digest, artifact: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.path(digest);
        prism_types::atomic::write(&path, artifact)?;
        Ok(path)
    }

    /// Forget a broken artifact so it is rebuilt.
    pub fn evict(&self, digest: &Digest) {
        let _ = std::fs::remove_file(self.path(digest));
    }
}
