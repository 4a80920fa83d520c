//! The local spool: in memory, or kept in one JSON file (`DIR/spool.json`)
//! that is rewritten atomically (write a temporary file, then rename) after
//! every change, so a process killed at any point leaves either the old or
//! the new state, never half of one.
//!
//! A state directory serves one prism process at a time, so leases only
//! keep this process's threads apart and are not written to the file: a
//! process that was killed leaves its claims (progress) but no lease.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{Appended, Claim, LEASE_MS, Lane, LaneInfo, Spool, Spooled};

/// Sort key of an entry: the sequence, zero-padded so text order is numeric.
fn padded(sequence: &str) -> String {
    format!("{sequence:0>48}")
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Lane name → padded sequence → entry.
    lanes: BTreeMap<String, BTreeMap<String, Spooled>>,
    /// Lane name → claim and lease.
    claims: BTreeMap<String, Held>,
    /// Lane name → padded sequence → until when it counts as handled (ms).
    #[serde(default)]
    done: BTreeMap<String, BTreeMap<String, u64>>,
    /// Where the last tick cut short stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tick_cursor: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Held {
    claim: Claim,
    #[serde(skip)]
    lease_until: u64,
}

/// A spool in memory, optionally persisted to a file.
#[derive(Debug)]
pub struct LocalSpool {
    state: Mutex<State>,
    file: Option<PathBuf>,
}

impl Default for LocalSpool {
    fn default() -> Self {
        Self::memory()
    }
}

impl LocalSpool {
    /// A spool that lives as long as this process.
    pub fn memory() -> Self {
        Self {
            state: Mutex::new(State::default()),
            file: None,
        }
    }

    /// The spool kept in `DIR/spool.json` (created on first write).
    pub fn open(dir: &Path) -> Result<Self, crate::Error> {
        let file = dir.join("spool.json");
        let state = match std::fs::read_to_string(&file) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                crate::Error::spool(
                    file.display().to_string(),
                    "-",
                    format!("not a prism spool file: {e}"),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                return Err(crate::Error::spool(
                    file.display().to_string(),
                    "-",
                    e.to_string(),
                ));
            }
        };
        Ok(Self {
            state: Mutex::new(state),
            file: Some(file),
        })
    }

    fn store(&self) -> String {
        self.file
            .as_ref()
            .map_or_else(|| "memory".to_owned(), |f| f.display().to_string())
    }

    /// Apply `f` to the state and persist it.
    fn with<T>(&self, lane: &Lane, f: impl FnOnce(&mut State) -> T) -> Result<T, crate::Error> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut state);
        if let Some(file) = &self.file {
            let err = |e: std::io::Error| {
                crate::Error::spool(self.store(), lane.to_string(), e.to_string())
            };
            let text = serde_json::to_vec(&*state).expect("spool state serializes");
            prism_types::atomic::write(file, &text).map_err(err)?;
        }
        Ok(out)
    }
}

fn info(entries: &BTreeMap<String, Spooled>) -> LaneInfo {
    LaneInfo {
        count: entries.len() as u64,
        bytes: entries.values().map(|e| e.bytes).sum(),
        oldest_ms: entries.values().map(|e| e.spooled_ms).min().unwrap_or(0),
    }
}

impl Spool for LocalSpool {
    fn append(&self, lane: &Lane, entries: &[Spooled]) -> Result<Appended, crate::Error> {
        let now = super::now_ms();
        self.with(lane, |s| {
            let name = lane.to_string();
            let done = s.done.get(&name);
            // A retry lane is one product's: what is older than the newest
            // change it handled is stale (see `Spool::append`).
            let high = match lane {
                Lane::Retry { .. } => done.and_then(|d| {
                    d.iter()
                        .filter(|(_, until)| **until > now)
                        .map(|(k, _)| k.clone())
                        .max()
                }),
                Lane::Buffer { .. } => None,
            };
            let mut added = 0;
            let l = s.lanes.entry(name.clone()).or_default();
            for e in entries {
                let key = padded(&e.sequence);
                if !e.replay
                    && (done
                        .and_then(|d| d.get(&key))
                        .is_some_and(|&until| until > now)
                        || (!prism_types::change::is_backfill(&e.sequence)
                            && high.as_ref().is_some_and(|h| &key < h)))
                {
                    continue;
                }
                match l.entry(key) {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(e.clone());
                        added += 1;
                    }
                    // A replay's version replaces what waits under its
                    // sequence (see `Spool::append`).
                    std::collections::btree_map::Entry::Occupied(mut o) if e.replay => {
                        o.insert(e.clone());
                    }
                    std::collections::btree_map::Entry::Occupied(_) => {}
                }
            }
            let info = info(l);
            if l.is_empty() {
                s.lanes.remove(&name);
            }
            Appended { added, info }
        })
    }

    fn handled(
        &self,
        lane: &Lane,
        sequences: &[String],
    ) -> Result<std::collections::HashSet<String>, crate::Error> {
        let now = super::now_ms();
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(done) = s.done.get(&lane.to_string()) else {
            return Ok(Default::default());
        };
        Ok(sequences
            .iter()
            .filter(|q| done.get(&padded(q)).is_some_and(|&until| until > now))
            .cloned()
            .collect())
    }

    fn mark_handled(&self, lane: &Lane, sequences: &[String]) -> Result<(), crate::Error> {
        let until = super::now_ms() + super::DONE_MS;
        self.with(lane, |s| {
            let done = s.done.entry(lane.to_string()).or_default();
            for q in sequences {
                done.insert(padded(q), until);
            }
        })
    }

    fn read(&self, lane: &Lane) -> Result<Vec<Spooled>, crate::Error> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(s.lanes
            .get(&lane.to_string())
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default())
    }

    fn remove(&self, lane: &Lane, sequences: &[String]) -> Result<(), crate::Error> {
        let now = super::now_ms();
        self.with(lane, |s| {
            let name = lane.to_string();
            let done = s.done.entry(name.clone()).or_default();
            done.retain(|_, until| *until > now);
            for q in sequences {
                done.insert(padded(q), now + super::DONE_MS);
            }
            if let Some(l) = s.lanes.get_mut(&name) {
                for q in sequences {
                    l.remove(&padded(q));
                }
                if l.is_empty() {
                    s.lanes.remove(&name);
                }
            }
        })
    }

    fn lanes(&self) -> Result<Vec<(Lane, LaneInfo)>, crate::Error> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(s.lanes
            .iter()
            .filter_map(|(name, l)| Some((Lane::parse(name)?, info(l))))
            .collect())
    }

    fn claim(&self, lane: &Lane, now_ms: u64, steal: bool) -> Result<Option<Claim>, crate::Error> {
        self.with(lane, |s| {
            let held = s.claims.entry(lane.to_string()).or_default();
            if held.lease_until > now_ms && !steal {
                return None;
            }
            held.lease_until = now_ms + LEASE_MS;
            Some(held.claim.clone())
        })
    }

    fn save_claim(&self, lane: &Lane, claim: &Claim) -> Result<(), crate::Error> {
        self.with(lane, |s| {
            s.claims.entry(lane.to_string()).or_default().claim = claim.clone();
        })
    }

    fn unlock(&self, lane: &Lane, claim: &Claim) -> Result<(), crate::Error> {
        self.with(lane, |s| {
            s.claims.insert(
                lane.to_string(),
                Held {
                    claim: claim.clone(),
                    lease_until: 0,
                },
            );
        })
    }

    fn release(&self, lane: &Lane) -> Result<(), crate::Error> {
        self.with(lane, |s| {
            s.claims.remove(&lane.to_string());
        })
    }

    fn tick_cursor(&self) -> Result<Option<String>, crate::Error> {
        Ok(self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tick_cursor
            .clone())
    }

    fn save_tick_cursor(&self, lane: Option<&str>) -> Result<(), crate::Error> {
        let tick = Lane::Buffer {
            receiver: "#tick".into(),
        };
        self.with(&tick, |s| s.tick_cursor = lane.map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(sequence: &str, ms: u64) -> Spooled {
        Spooled {
            sequence: sequence.into(),
            spooled_ms: ms,
            bytes: 10,
            change: json!({"sequence": sequence}),
            sent: Vec::new(),
            replay: false,
        }
    }

    fn sequences(s: &LocalSpool, lane: &Lane) -> Vec<String> {
        s.read(lane)
            .unwrap()
            .into_iter()
            .map(|e| e.sequence)
            .collect()
    }

    fn buffer() -> Lane {
        Lane::Buffer {
            receiver: "pricelist".into(),
        }
    }

    /// A retry lane is one product's: once it handled a change, an older
    /// one of the product is stale and not taken (unless replayed); a
    /// buffer, which holds every product, takes it.
    #[test]
    fn a_retry_lane_refuses_what_is_older_than_what_it_handled() {
        let s = LocalSpool::memory();
        let retry = Lane::Retry {
            receiver: "web".into(),
            key: "P-1".into(),
        };
        // Stream sequences have 21 digits or more.
        let seq = |n: u64| (100_000_000_000_000_000_000u128 + u128::from(n)).to_string();
        s.append(&retry, &[entry(&seq(9), 1)]).unwrap();
        s.remove(&retry, &[seq(9)]).unwrap();
        assert_eq!(s.append(&retry, &[entry(&seq(7), 2)]).unwrap().added, 0);
        assert_eq!(s.append(&retry, &[entry(&seq(11), 2)]).unwrap().added, 1);
        let replayed = Spooled {
            replay: true,
            ..entry(&seq(7), 3)
        };
        assert_eq!(s.append(&retry, &[replayed]).unwrap().added, 1);
        // A backfill's correction numbers below every stream's on purpose:
        // not stale (the simulation found it refused, and lost).
        assert_eq!(
            s.append(&retry, &[entry("17960832000000001001", 4)])
                .unwrap()
                .added,
            1
        );

        s.append(&buffer(), &[entry("9", 1)]).unwrap();
        s.remove(&buffer(), &["9".into()]).unwrap();
        assert_eq!(s.append(&buffer(), &[entry("7", 2)]).unwrap().added, 1);
    }

    /// A redrive's correction carries the product's newer version under
    /// the parked change's sequence: it replaces the older one waiting in
    /// the buffer, where a stream retry's re-append leaves it as it was.
    #[test]
    fn a_replay_replaces_what_waits_under_its_sequence() {
        let s = LocalSpool::memory();
        let version = |v: u64, replay: bool| Spooled {
            change: json!({"sequence": "7", "v": v}),
            replay,
            ..entry("7", 1)
        };
        s.append(&buffer(), &[version(1, true)]).unwrap();
        assert_eq!(s.append(&buffer(), &[version(2, false)]).unwrap().added, 0);
        assert_eq!(s.read(&buffer()).unwrap()[0].change["v"], 1);
        let a = s.append(&buffer(), &[version(2, true)]).unwrap();
        assert_eq!((a.added, a.info.count), (0, 1));
        assert_eq!(s.read(&buffer()).unwrap()[0].change["v"], 2);
    }

    /// A window cut in a stream batch went out past the buffer: marked
    /// handled, a retry of the batch finds it so, and the buffer will not
    /// take it again either.
    #[test]
    fn what_is_marked_handled_is_found_handled_and_not_taken_again() {
        let s = LocalSpool::memory();
        let seqs = |v: &[&str]| v.iter().map(|q| q.to_string()).collect::<Vec<_>>();
        assert!(s.handled(&buffer(), &seqs(&["7", "8"])).unwrap().is_empty());
        s.mark_handled(&buffer(), &seqs(&["7", "8"])).unwrap();
        let h = s.handled(&buffer(), &seqs(&["7", "8", "9"])).unwrap();
        assert_eq!(h, ["7", "8"].map(String::from).into_iter().collect());
        assert_eq!(s.append(&buffer(), &[entry("8", 1)]).unwrap().added, 0);
        assert!(s.lanes().unwrap().is_empty(), "marks are no lane");
    }

    #[test]
    fn lanes_order_by_sequence_and_appends_are_idempotent() {
        let s = LocalSpool::memory();
        s.append(&buffer(), &[entry("10", 5), entry("9", 7)])
            .unwrap();
        let a = s.append(&buffer(), &[entry("10", 9)]).unwrap();
        assert_eq!(
            a,
            Appended {
                added: 0,
                info: LaneInfo {
                    count: 2,
                    bytes: 20,
                    oldest_ms: 5
                }
            }
        );
        let seqs = sequences(&s, &buffer());
        assert_eq!(seqs, ["9", "10"]);
        s.remove(&buffer(), &["9".into(), "10".into()]).unwrap();
        assert!(s.lanes().unwrap().is_empty());
        // A retried stream batch brings 9 and 10 again, and 11: only 11 is new.
        let a = s
            .append(&buffer(), &[entry("9", 1), entry("10", 1), entry("11", 1)])
            .unwrap();
        assert_eq!(a.added, 1);
        let seqs = sequences(&s, &buffer());
        assert_eq!(seqs, ["11"]);
        // A redrive of 9 (parked by a flush, so remembered as handled) is
        // added: it replays on purpose.
        let redriven = Spooled {
            replay: true,
            ..entry("9", 2)
        };
        assert_eq!(s.append(&buffer(), &[redriven]).unwrap().added, 1);
    }

    #[test]
    fn a_live_lease_keeps_others_out_and_progress_survives_unlock() {
        let s = LocalSpool::memory();
        let c = s.claim(&buffer(), 1000, false).unwrap().expect("free");
        assert_eq!(c, Claim::default());
        assert_eq!(s.claim(&buffer(), 2000, false).unwrap(), None, "leased");
        assert_eq!(
            s.claim(&buffer(), 2000, true).unwrap(),
            Some(Claim::default()),
            "stolen"
        );
        let progress = Claim {
            members: vec!["1".into()],
            sent: 3,
            ..Claim::default()
        };
        s.save_claim(&buffer(), &progress).unwrap();
        // The holder died: once the lease runs out the next one resumes it.
        assert_eq!(
            s.claim(&buffer(), 2000 + LEASE_MS + 1, false).unwrap(),
            Some(progress.clone())
        );
        s.unlock(&buffer(), &progress).unwrap();
        assert_eq!(s.claim(&buffer(), 0, false).unwrap(), Some(progress));
        s.release(&buffer()).unwrap();
        assert_eq!(
            s.claim(&buffer(), 0, false).unwrap(),
            Some(Claim::default())
        );
    }

    #[test]
    fn the_file_survives_a_reopen_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalSpool::open(dir.path()).unwrap();
        s.append(&buffer(), &[entry("1", 1)]).unwrap();
        s.save_claim(
            &buffer(),
            &Claim {
                sent: 2,
                ..Claim::default()
            },
        )
        .unwrap();
        drop(s);
        let s = LocalSpool::open(dir.path()).unwrap();
        assert_eq!(s.read(&buffer()).unwrap(), [entry("1", 1)]);
        // A new process: the progress is there, the lease is not.
        assert_eq!(s.claim(&buffer(), 0, false).unwrap().unwrap().sent, 2);
        std::fs::write(dir.path().join("spool.json"), "{").unwrap();
        let err = LocalSpool::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("spool.json") && err.contains("not a prism spool file"),
            "{err}"
        );
    }
}
