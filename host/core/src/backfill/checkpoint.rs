//! Where a backfill has got to: one checkpoint per segment, written after
//! every page that went out, so a run stopped anywhere (Ctrl-C, a Lambda
//! timeout, a crash) resumes after the last page it finished. A page is
//! at most sent twice, never skipped.
//!
//! On AWS the checkpoints live in the spool table (`prism_aws::backfill`).
//! From a laptop they can also live in a state directory
//! ([`DirCheckpoints`]), one JSON file per segment.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One segment's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The segment.
    pub segment: u32,
    /// Of how many.
    pub segments: u32,
    /// The run's start (epoch seconds); see [`super::records::sequence`].
    pub run: u64,
    /// Where the next page starts (the last page's `LastEvaluatedKey`, in
    /// DynamoDB JSON); `None` before the first page.
    pub after: Option<Value>,
    /// The segment has been read to its end.
    pub done: bool,
    /// Items sent so far.
    pub items: u64,
    /// Pages finished so far.
    pub pages: u64,
    /// Products the stream changed while they were sent, sent again at
    /// their newest version.
    pub corrected: u64,
    /// A page went out and has not been confirmed: a crash, or a product
    /// that kept changing. The next attempt numbers it afresh.
    #[serde(default)]
    pub open: bool,
    /// Page attempts that did not finish. Their record ids and sequence
    /// numbers are never used again: a done mark or the retry ledger would
    /// take a new attempt, whose versions may differ, for the old one.
    #[serde(default)]
    pub abandoned: u64,
    /// The keys (DynamoDB JSON) of the open page's products. What that
    /// attempt sent may be older than the table, and a scan may not find
    /// those products again (removed since): the next attempt checks them
    /// first, by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_keys: Vec<serde_json::Map<String, Value>>,
    /// When this was written (ms since the epoch).
    pub updated_ms: u64,
}

impl Checkpoint {
    /// The start of `segment` of `segments` in `run`.
    pub fn start(segment: u32, segments: u32, run: u64) -> Self {
        Self {
            segment,
            segments,
            run,
            after: None,
            done: false,
            items: 0,
            pages: 0,
            corrected: 0,
            open: false,
            abandoned: 0,
            open_keys: Vec::new(),
            updated_ms: 0,
        }
    }
}

/// A place for one receiver's checkpoints.
#[async_trait::async_trait]
pub trait Checkpoints: Send + Sync {
    /// Every checkpoint of the receiver's run, any segment count.
    async fn all(&self) -> Result<Vec<Checkpoint>, crate::Error>;
    /// Write one.
    async fn save(&self, cp: &Checkpoint) -> Result<(), crate::Error>;
    /// Forget them all (a fresh run).
    async fn clear(&self) -> Result<(), crate::Error>;
    /// Where they are, for messages.
    fn place(&self) -> String;

    /// The checkpoint of `segment` of `segments`, if there is one.
    async fn load(&self, segment: u32, segments: u32) -> Result<Option<Checkpoint>, crate::Error> {
        Ok(self
            .all()
            .await?
            .into_iter()
            .find(|c| c.segment == segment && c.segments == segments))
    }
}

/// A checkpoint store's failure, naming where it keeps them.
pub fn checkpoint_error(place: String, message: String) -> crate::Error {
    crate::Error::new(crate::ErrorKind::Checkpoint, place, message)
}

/// Checkpoints as files in a directory (one per segment).
#[derive(Debug, Clone)]
pub struct DirCheckpoints {
    dir: PathBuf,
}

impl DirCheckpoints {
    /// `state_dir/backfill/<receiver>`.
    pub fn new(state_dir: &std::path::Path, receiver: &str) -> Self {
        Self {
            dir: state_dir.join("backfill").join(receiver),
        }
    }

    fn err(&self, message: String) -> crate::Error {
        checkpoint_error(self.place(), message)
    }
}

#[async_trait::async_trait]
impl Checkpoints for DirCheckpoints {
    async fn all(&self) -> Result<Vec<Checkpoint>, crate::Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.err(e.to_string())),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| self.err(e.to_string()))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| self.err(format!("{}: {e}", path.display())))?;
            out.push(
                serde_json::from_str(&text)
                    .map_err(|e| self.err(format!("{}: {e}", path.display())))?,
            );
        }
        out.sort_by_key(|c: &Checkpoint| (c.segments, c.segment));
        Ok(out)
    }

    async fn save(&self, cp: &Checkpoint) -> Result<(), crate::Error> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.err(e.to_string()))?;
        let path = self.dir.join(format!(
            "segment-{:04}-of-{:04}.json",
            cp.segment, cp.segments
        ));
        // Write, then rename: a crash mid-write leaves the old checkpoint.
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(cp).expect("a checkpoint serializes");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| self.err(format!("{}: {e}", path.display())))
    }

    async fn clear(&self) -> Result<(), crate::Error> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.err(e.to_string())),
            _ => Ok(()),
        }
    }

    fn place(&self) -> String {
        format!("state directory {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_written_before_open_pages_were_counted_still_reads() {
        let old = r#"{"segment":0,"segments":2,"run":1760000000,"after":null,"done":false,"items":100,"pages":1,"corrected":0,"updated_ms":5}"#;
        let cp: Checkpoint = serde_json::from_str(old).unwrap();
        assert!(!cp.open);
        assert_eq!(cp.abandoned, 0);
    }

    #[tokio::test]
    async fn a_state_directory_keeps_one_file_per_segment() {
        let dir = tempfile::tempdir().unwrap();
        let c = DirCheckpoints::new(dir.path(), "website");
        assert!(c.all().await.unwrap().is_empty());
        let mut cp = Checkpoint::start(1, 4, 1_760_000_000);
        cp.after = Some(serde_json::json!({"pk": {"S": "P-9"}}));
        cp.items = 100;
        c.save(&cp).await.unwrap();
        c.save(&Checkpoint::start(0, 4, 1_760_000_000))
            .await
            .unwrap();
        cp.items = 200;
        c.save(&cp).await.unwrap();
        assert_eq!(c.load(1, 4).await.unwrap(), Some(cp.clone()));
        assert_eq!(c.load(1, 8).await.unwrap(), None);
        assert_eq!(c.all().await.unwrap().len(), 2);
        c.clear().await.unwrap();
        assert!(c.all().await.unwrap().is_empty());
    }
}
