//! Plugin artifacts in S3, content-addressed under their owner:
//! - `plugins/<receiver>/<sha256>.wasm`: a receiver's component as
//!   registered. A team's deploy role may write only its own receiver's
//!   prefix, so it can never replace or shadow another receiver's component;
//! - `mappers/<mapper>/<sha256>.wasm`: a model mapper's component;
//! - `precompiled/<engine-compat-hash>/<sha256>.cwasm`: compiled for one
//!   engine configuration, so a cold start compiles nothing;
//! - `mappers/<name>.toml`: a model mapper's manifest (its component is
//!   under `plugins/` like any other).
//!
//! Downloads are cached in a local directory (Lambda's `/tmp`) and checked
//! against their digest. An object's size is read (`HeadObject`) before any
//! of it is downloaded, and the download stops at the cap whatever the
//! size said: an oversized object costs one small request, never memory.
//! An artifact that was missing, oversized or corrupt is not fetched again
//! until a backoff has passed (30 s, doubling to 15 min), so one bad
//! receiver never costs every reload a download.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;

use super::sdk_error;
use crate::error::{Error, ErrorKind};
use prism_types::digest::Digest;

/// Where receivers' components live in the bucket (one prefix per receiver
/// below it).
pub const WASM_PREFIX: &str = "plugins/";
/// The largest component fetched (the engine refuses larger ones anyway).
pub const MAX_WASM_BYTES: u64 = prism_engine::DEFAULT_MAX_COMPONENT_BYTES as u64;
/// The largest precompiled artifact fetched: native code is several times
/// its component's size.
pub const MAX_CWASM_BYTES: u64 = 8 * MAX_WASM_BYTES;
/// The largest mapper manifest fetched.
pub const MAX_TEXT_BYTES: u64 = 1 << 20;
/// The first wait before a failed artifact is fetched again.
pub const FETCH_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);
/// The longest wait before a failed artifact is fetched again.
pub const MAX_FETCH_BACKOFF: std::time::Duration = std::time::Duration::from_secs(15 * 60);
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
    /// Artifacts that failed, by key: when to try again, and how often
    /// they failed in a row (shared by clones).
    failed: std::sync::Arc<std::sync::Mutex<HashMap<String, Failure>>>,
}

#[derive(Debug, Clone)]
struct Failure {
    retry_at: Instant,
    times: u32,
    last: String,
}

impl ArtifactStore {
    /// A store in `bucket`.
    pub fn new(s3: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            s3,
            bucket: bucket.into(),
            failed: Default::default(),
        }
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key of receiver `receiver`'s component.
    pub fn wasm_key(receiver: &str, digest: &Digest) -> String {
        format!("{WASM_PREFIX}{receiver}/{}.wasm", digest.hex())
    }

    /// The object key of mapper `mapper`'s component.
    pub fn mapper_wasm_key(mapper: &str, digest: &Digest) -> String {
        format!("{MAPPER_PREFIX}{mapper}/{}.wasm", digest.hex())
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
        manifest: &prism_mapping::MapperManifest,
        wasm: &[u8],
    ) -> Result<String, Error> {
        let mut manifest = manifest.clone();
        let digest = Digest::of(wasm);
        self.put(
            &Self::mapper_wasm_key(&manifest.mapper, &digest),
            wasm.to_vec(),
            "application/wasm",
        )
        .await?;
        manifest.plugin.digest = digest;
        manifest.plugin.file = None;
        let key = Self::mapper_key(&manifest.mapper);
        self.put(&key, manifest.to_toml().into_bytes(), "application/toml")
            .await?;
        Ok(key)
    }

    /// A text object (a mapper manifest), or `None` if there is none.
    pub async fn text(&self, key: &str) -> Result<Option<String>, Error> {
        match self.get(key, MAX_TEXT_BYTES).await? {
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| self.err(key, format!("not UTF-8: {e}"))),
            None => Ok(None),
        }
    }

    /// Upload `receiver`'s component under its digest (idempotent).
    pub async fn put_wasm(&self, receiver: &str, wasm: &[u8]) -> Result<Digest, Error> {
        let digest = Digest::of(wasm);
        self.put(
            &Self::wasm_key(receiver, &digest),
            wasm.to_vec(),
            "application/wasm",
        )
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
    ) -> Result<(), Error> {
        self.put(
            &Self::cwasm_key(engine_hash, digest),
            bytes,
            "application/octet-stream",
        )
        .await
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), Error> {
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

    /// Fetch receiver `receiver`'s component, from `cache_dir` when it is
    /// there, else from S3 (then cached). The bytes are checked against the
    /// digest either way.
    pub async fn wasm(
        &self,
        receiver: &str,
        digest: &Digest,
        cache_dir: &Path,
    ) -> Result<Vec<u8>, Error> {
        self.component(&Self::wasm_key(receiver, digest), digest, cache_dir)
            .await
    }

    /// Fetch mapper `mapper`'s component (as [`Self::wasm`]).
    pub async fn mapper_wasm(
        &self,
        mapper: &str,
        digest: &Digest,
        cache_dir: &Path,
    ) -> Result<Vec<u8>, Error> {
        self.component(&Self::mapper_wasm_key(mapper, digest), digest, cache_dir)
            .await
    }

    async fn component(
        &self,
        key: &str,
        digest: &Digest,
        cache_dir: &Path,
    ) -> Result<Vec<u8>, Error> {
        let local = cache_dir
            .join("plugins")
            .join(format!("{}.wasm", digest.hex()));
        if let Ok(bytes) = std::fs::read(&local)
            && Digest::of(&bytes) == *digest
        {
            return Ok(bytes);
        }
        self.backing_off(key)?;
        let fetched = async {
            let bytes = self
                .get(key, MAX_WASM_BYTES)
                .await?
                .ok_or_else(|| self.err(key, "no such object".into()))?;
            let actual = Digest::of(&bytes);
            if actual != *digest {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    self.url(key),
                    format!("content is {actual}, not the digest it is stored under"),
                ));
            }
            Ok(bytes)
        }
        .await;
        let bytes = self.settle(key, fetched)?;
        write_atomic(&local, &bytes)?;
        Ok(bytes)
    }

    /// `Err` while `key` is in its backoff after a failure.
    fn backing_off(&self, key: &str) -> Result<(), Error> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        match failed.get(key) {
            Some(f) if Instant::now() < f.retry_at => {
                let retry_in_secs = f
                    .retry_at
                    .saturating_duration_since(Instant::now())
                    .as_secs()
                    + 1;
                Err(Error::new(
                    ErrorKind::BackingOff,
                    key,
                    format!(
                        "not fetched again for {retry_in_secs} s after it failed: {}",
                        f.last
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Record how fetching `key` went: a failure starts (or doubles) its
    /// backoff, a success ends it.
    fn settle<T>(&self, key: &str, r: Result<T, Error>) -> Result<T, Error> {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        match &r {
            Ok(_) => {
                failed.remove(key);
            }
            Err(e) => {
                let times = failed.get(key).map_or(0, |f| f.times) + 1;
                let wait = FETCH_BACKOFF
                    .saturating_mul(1 << (times - 1).min(16))
                    .min(MAX_FETCH_BACKOFF);
                failed.insert(
                    key.to_owned(),
                    Failure {
                        retry_at: Instant::now() + wait,
                        times,
                        last: e.to_string(),
                    },
                );
            }
        }
        r
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
    ) -> Result<Precompiled, Error> {
        if cache_file.exists() {
            return Ok(Precompiled::Cached);
        }
        let Some(trusted) = trusted else {
            return Ok(Precompiled::NotRecorded);
        };
        let key = Self::cwasm_key(engine_hash, digest);
        match self.get(&key, MAX_CWASM_BYTES).await? {
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

    /// An object of at most `max` bytes, or `None` if there is none. Its
    /// size is asked first; the download stops at `max` whatever it said
    /// (the object may be replaced between the two calls).
    async fn get(&self, key: &str, max: u64) -> Result<Option<Vec<u8>>, Error> {
        let too_large = |size: u64| {
            Error::new(
                ErrorKind::TooLarge,
                self.url(key),
                format!("{size} bytes, more than the {max} an artifact may have; not downloaded"),
            )
        };
        let head = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let size = match head {
            Ok(h) => h.content_length().unwrap_or(0).max(0) as u64,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => return Ok(None),
            Err(e) => return Err(self.err(key, sdk_error(&e))),
        };
        if size > max {
            return Err(too_large(size));
        }
        let mut out = match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.err(key, sdk_error(&e))),
        };
        let mut bytes = Vec::with_capacity(size as usize);
        while let Some(chunk) = out
            .body
            .try_next()
            .await
            .map_err(|e| self.err(key, e.to_string()))?
        {
            if (bytes.len() + chunk.len()) as u64 > max {
                return Err(too_large((bytes.len() + chunk.len()) as u64));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(bytes))
    }

    fn err(&self, key: &str, message: String) -> Error {
        Error::new(ErrorKind::S3, self.url(key), message)
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |source| Error::caused_by(ErrorKind::CacheIo, path.display().to_string(), source);
    prism_types::atomic::write(path, bytes).map_err(io)
}
