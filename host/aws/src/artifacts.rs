//! Plugin artifacts in S3, content-addressed:
//! - `plugins/<sha256>.wasm`: the component as registered;
//! - `precompiled/<engine-compat-hash>/<sha256>.cwasm`: compiled for one
//!   engine configuration, so a cold start compiles nothing;
//! - `mappers/<name>.toml`: a model mapper's manifest (its component is
//!   under `plugins/` like any other).
//!
//! Downloads are cached in a local directory (Lambda's `/tmp`) and checked
//! against their digest.

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;

use super::sdk_error;
use prism_types::digest::Digest;

/// Where components live in the bucket.
pub const WASM_PREFIX: &str = "plugins/";
/// Where precompiled artifacts live in the bucket.
pub const CWASM_PREFIX: &str = "precompiled/";
/// Where mapper manifests live in the bucket.
pub const MAPPER_PREFIX: &str = "mappers/";
/// What a dispatcher does to the bucket: reads components and precompiled
/// artifacts, and writes precompiled artifacts it had to compile itself
/// (under [`CWASM_PREFIX`] only). Terraform grants exactly these.
pub const DISPATCHER_READS: &[&str] = &["s3:GetObject"];
/// See [`DISPATCHER_READS`].
pub const DISPATCHER_WRITES: &[&str] = &["s3:PutObject"];

/// An artifact that could not be stored or fetched.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// S3 said no.
    #[error("s3://{bucket}/{key}: {message}")]
    S3 {
        /// Bucket.
        bucket: String,
        /// Object key.
        key: String,
        /// What S3 said.
        message: String,
    },
    /// The object's bytes do not hash to its name.
    #[error("s3://{bucket}/{key}: content is {actual}, not the digest it is stored under")]
    Corrupt {
        /// Bucket.
        bucket: String,
        /// Object key.
        key: String,
        /// What it hashes to.
        actual: String,
    },
    /// Local cache I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// What [`ArtifactStore::fetch_cwasm`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precompiled {
    /// The compile cache already had it (prism wrote it).
    Cached,
    /// Fetched, proven against the recorded digest, and cached.
    Fetched,
    /// No trusted digest is recorded for this engine: nothing was fetched.
    NotRecorded,
    /// A digest is recorded but the bucket has no object.
    Missing,
    /// The object in the bucket is not the recorded one: discarded.
    Untrusted {
        /// The object key.
        key: String,
        /// What its bytes hash to.
        actual: Digest,
        /// What the registry says they must hash to.
        recorded: Digest,
    },
}

/// The plugin bucket.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

impl ArtifactStore {
    /// A store in `bucket`.
    pub fn new(s3: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            s3,
            bucket: bucket.into(),
        }
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key of a component.
    pub fn wasm_key(digest: &Digest) -> String {
        format!("{WASM_PREFIX}{}.wasm", digest.hex())
    }

    /// The object key of a precompiled component.
    pub fn cwasm_key(engine_hash: &str, digest: &Digest) -> String {
        format!("{CWASM_PREFIX}{engine_hash}/{}.cwasm", digest.hex())
    }

    /// The object key of a mapper's manifest.
    pub fn mapper_key(mapper: &str) -> String {
        format!("{MAPPER_PREFIX}{mapper}.toml")
    }

    /// Publish a mapper: its component, then its manifest (without the
    /// local file name), which is what makes the new version live.
    /// Returns the manifest's key.
    pub async fn put_mapper(
        &self,
        manifest: &prism_core::mapping::MapperManifest,
        wasm: &[u8],
    ) -> Result<String, ArtifactError> {
        let mut manifest = manifest.clone();
        manifest.plugin.digest = self.put_wasm(wasm).await?;
        manifest.plugin.file = None;
        let key = Self::mapper_key(&manifest.mapper);
        self.put(&key, manifest.to_toml().into_bytes(), "application/toml")
            .await?;
        Ok(key)
    }

    /// A text object (a mapper manifest), or `None` if there is none.
    pub async fn text(&self, key: &str) -> Result<Option<String>, ArtifactError> {
        match self.get(key).await? {
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| self.err(key, format!("not UTF-8: {e}"))),
            None => Ok(None),
        }
    }

    /// Upload a component under its digest (idempotent).
    pub async fn put_wasm(&self, wasm: &[u8]) -> Result<Digest, ArtifactError> {
        let digest = Digest::of(wasm);
        self.put(&Self::wasm_key(&digest), wasm.to_vec(), "application/wasm")
            .await?;
        Ok(digest)
    }

    /// Upload a precompiled artifact for `engine_hash` (a dispatcher does
    /// this for what it had to compile).
    pub async fn put_cwasm(
        &self,
        engine_hash: &str,
        digest: &Digest,
        bytes: Vec<u8>,
    ) -> Result<(), ArtifactError> {
        self.put(
            &Self::cwasm_key(engine_hash, digest),
            bytes,
            "application/octet-stream",
        )
        .await
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), ArtifactError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.err(key, sdk_error(&e)))?;
        Ok(())
    }

    /// Fetch a component, from `cache_dir` when it is there, else from S3
    /// (then cached). The bytes are checked against the digest either way.
    pub async fn wasm(&self, digest: &Digest, cache_dir: &Path) -> Result<Vec<u8>, ArtifactError> {
        let local = cache_dir
            .join("plugins")
            .join(format!("{}.wasm", digest.hex()));
        if let Ok(bytes) = std::fs::read(&local)
            && Digest::of(&bytes) == *digest
        {
            return Ok(bytes);
        }
        let key = Self::wasm_key(digest);
        let bytes = self
            .get(&key)
            .await?
            .ok_or_else(|| self.err(&key, "no such object".into()))?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(ArtifactError::Corrupt {
                bucket: self.bucket.clone(),
                key,
                actual: actual.to_string(),
            });
        }
        write_atomic(&local, &bytes)?;
        Ok(bytes)
    }

    /// Put the precompiled artifact for `digest` where the engine's compile
    /// cache will find it, if S3 has one **and** its sha256 is `trusted` (the
    /// digest a trusted writer recorded in the registry). Anything else in
    /// the bucket is native code nobody vouched for: it is discarded, never
    /// written to the cache, and the component is compiled from its `.wasm`.
    pub async fn fetch_cwasm(
        &self,
        engine_hash: &str,
        digest: &Digest,
        cache_file: &Path,
        trusted: Option<&Digest>,
    ) -> Result<Precompiled, ArtifactError> {
        if cache_file.exists() {
            return Ok(Precompiled::Cached);
        }
        let Some(trusted) = trusted else {
            return Ok(Precompiled::NotRecorded);
        };
        let key = Self::cwasm_key(engine_hash, digest);
        match self.get(&key).await? {
            Some(bytes) => {
                let actual = Digest::of(&bytes);
                if actual != *trusted {
                    return Ok(Precompiled::Untrusted {
                        key,
                        actual,
                        recorded: *trusted,
                    });
                }
                write_atomic(cache_file, &bytes)?;
                Ok(Precompiled::Fetched)
            }
            None => Ok(Precompiled::Missing),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArtifactError> {
        match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let data = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.err(key, e.to_string()))?;
                Ok(Some(data.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(self.err(key, sdk_error(&e))),
        }
    }

    fn err(&self, key: &str, message: String) -> ArtifactError {
        ArtifactError::S3 {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            message,
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    let io = |source| ArtifactError::Io {
        path: path.display().to_string(),
        source,
    };
    prism_types::atomic::write(path, bytes).map_err(io)
}
