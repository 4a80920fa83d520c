//! Redrive: a receiver's dead letters through its current plugin, on the
//! dispatcher's own path (dedup, lanes, parking), that receiver alone.
//!
//! - A **parked** change is sent again as it was while the product is
//!   still as the change left it (its model document is the change's new
//!   image). Otherwise the product's newer versions went through the
//!   stream after it, but the receiver's interest may have passed over
//!   them, so the change is sent brought up to date: from its old image to
//!   the document now ([`catch_up`]).
//! - After the send, each product is read again, as a backfill's page is:
//!   one the model still holds as sent cannot have been overtaken (a newer
//!   version is written after that read, and the stream delivers it after
//!   it). One that changed may have had its newer version delivered before
//!   the redrive's older one: it is sent again at what the model holds,
//!   and checked again, the last send too. A product still changing after
//!   [`ROUNDS`] corrections keeps its letter.
//! - A **consumer** failure (a delivered message the receiver's consumer
//!   gave up on) goes back to the receiver's queue as it was.
//! - **Unknown** messages are left alone.
//!
//! A letter is deleted only once what replaces it is safe: delivered,
//! parked again (a new letter), held in a lane, or superseded. Letters are
//! held (invisible) while the redrive works; what it does not finish
//! reappears by itself when the hold ends.
//!
//! The queue is behind [`DeadLetters`] (SQS in the CLI, a model in the
//! simulation), the model behind [`ModelSource`].

use std::collections::HashMap;

use serde_json::{Value, json};

use prism_types::change::{Change, ChangeKind};

use crate::model::ModelSource;
use crate::stream::StreamProcessor;

/// Checks of the redriven products against the model, each sending what
/// changed again.
pub const ROUNDS: usize = 4;
/// How long a redrive holds its letters (seconds): what it does not
/// finish reappears after this.
pub const HOLD_SECS: u32 = 900;

/// Which kind of dead letter a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LetterKind {
    /// The dispatcher parked a change (attribute `prism-error-kind`).
    Parked,
    /// The consumer failed on a delivered message (attribute `prism-key`,
    /// no `prism-error-kind`).
    Consumer,
    /// Neither (not written by prism).
    Unknown,
}

impl LetterKind {
    /// From a message's attributes.
    pub fn of(attributes: &HashMap<String, String>) -> Self {
        if attributes.contains_key("prism-error-kind") {
            Self::Parked
        } else if attributes.contains_key("prism-key") {
            Self::Consumer
        } else {
            Self::Unknown
        }
    }

    /// Its name in listings.
    pub fn name(self) -> &'static str {
        match self {
            Self::Parked => "parked",
            Self::Consumer => "consumer",
            Self::Unknown => "unknown",
        }
    }
}

/// One message of a dead-letter queue, held while a redrive works on it.
#[derive(Debug, Clone)]
pub struct Letter {
    /// The queue's id for it.
    pub id: String,
    /// The handle that deletes or releases this receipt of it.
    pub receipt: String,
    /// Its body.
    pub body: String,
    /// Its string attributes.
    pub attributes: HashMap<String, String>,
    /// Its message group (FIFO).
    pub group: Option<String>,
    /// What it is.
    pub kind: LetterKind,
}

/// A receiver's dead-letter queue (and its queue, for consumer failures).
#[async_trait::async_trait]
pub trait DeadLetters: Send + Sync {
    /// The queue, for messages.
    fn place(&self) -> String;
    /// Up to `max` letters, each held invisible for `hold_secs`.
    async fn hold(&self, max: usize, hold_secs: u32) -> Result<Vec<Letter>, crate::Error>;
    /// A parked letter's change (loaded from where it was claimed when it
    /// was too large for the queue).
    async fn change(&self, letter: &Letter) -> Result<Change, crate::Error>;
    /// Delete a letter.
    async fn delete(&self, letter: &Letter) -> Result<(), crate::Error>;
    /// Make held letters visible again at once.
    async fn release(&self, letters: &[&Letter]) -> Result<(), crate::Error>;
    /// Send a consumer failure back to the receiver's queue, as it was.
    async fn send_back(&self, letter: &Letter) -> Result<(), crate::Error>;
}

/// What a redrive did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Parked changes sent through the current plugin (delivered, parked
    /// again with a new letter, or held in a lane).
    pub redriven: usize,
    /// Of the redriven, how many were sent as the product is now (it had
    /// changed since they were parked).
    pub caught_up: usize,
    /// Parked changes of a product that came and went since (nothing to
    /// send).
    pub superseded: usize,
    /// Products sent again at a newer version the stream wrote meanwhile.
    pub corrected: usize,
    /// Consumer failures sent back to the queue.
    pub moved: usize,
    /// Letters left in the queue because something failed.
    pub failed: usize,
    /// Messages prism did not write (left alone).
    pub unknown: usize,
    /// Of the redriven, how many were parked again.
    pub parked_again: u64,
}

/// `c` brought up to the model's `now`: from where `c` started (what the
/// receiver had at most) to the product as it is now; `None` when there
/// was nothing before and is nothing now.
pub fn catch_up(c: &Change, now: Option<Value>) -> Option<Change> {
    let kind = match (&c.old, &now) {
        (None, None) => return None,
        (None, Some(_)) => ChangeKind::Insert,
        (Some(_), None) => ChangeKind::Remove,
        (Some(_), Some(_)) => ChangeKind::Modify,
    };
    Some(Change::new(
        c.key.clone(),
        kind,
        c.old.clone(),
        now,
        c.sequence.clone(),
        c.time_ms,
    ))
}

/// The corrections `sent` needs: each product the model no longer holds
/// as sent, brought up to it from where its change started, not from
/// what was sent. What was sent may still wait in a lane, unreceived, and
/// a correction under its sequence replaces it there; from the sent
/// image, a receiver whose interest passes over the rest (a noise-only
/// difference) would never get the update (the simulation found it, seed
/// 20234). Shared by a redrive's and a replay's checks (`what` names which).
pub async fn drifted(
    model: &dyn ModelSource,
    sent: &[Change],
    what: &str,
) -> Result<Vec<Change>, crate::Error> {
    let mut again = Vec::new();
    for c in sent {
        let now = model.get(&c.key).await.map_err(|e| {
            crate::Error::redrive(
                format!("checking {} after the {what}", c.key),
                e.to_string(),
            )
        })?;
        if now != c.new
            && let Some(fix) = catch_up(c, now)
        {
            again.push(fix);
        }
    }
    Ok(again)
}

/// One redrive of one receiver's dead letters.
pub struct Redrive<'a> {
    /// The receiver.
    pub receiver: &'a str,
    /// Its dead letters.
    pub letters: &'a dyn DeadLetters,
    /// The model, to skip what the product has moved past and to check
    /// each send.
    pub model: &'a dyn ModelSource,
    /// The processor running `receiver` alone, in replay mode (its
    /// changes keep their sequences, which a lane that parked them
    /// remembers as handled). `None`: a dry run, which changes nothing.
    pub processor: Option<&'a StreamProcessor>,
    /// Read at most this many letters.
    pub max: usize,
    /// Names this redrive's records (the retry ledger must not take them
    /// for the original delivery, nor one round for another).
    pub run_id: String,
    /// Where progress lines go.
    pub say: &'a (dyn Fn(String) + Send + Sync),
}

impl Redrive<'_> {
    /// Run it.
    pub async fn run(&self) -> Result<Tally, crate::Error> {
        let letters = self.letters.hold(self.max, HOLD_SECS).await?;
        let mut t = Tally::default();
        let mut keep: Vec<&Letter> = Vec::new();
        let dry_run = self.processor.is_none();

        // Parked changes, oldest first per product.
        let mut parked: Vec<(&Letter, Change)> = Vec::new();
        for l in letters.iter().filter(|l| l.kind == LetterKind::Parked) {
            match self.letters.change(l).await {
                Ok(c) => parked.push((l, c)),
                Err(e) => {
                    (self.say)(format!("{}: {e}; left in the DLQ", l.id));
                    t.failed += 1;
                    keep.push(l);
                }
            }
        }
        parked.sort_by(|(_, a), (_, b)| {
            a.key
                .cmp(&b.key)
                .then(prism_types::change::cmp_sequence(&a.sequence, &b.sequence))
        });
        let mut current = Vec::new();
        for (l, c) in parked {
            match self.model.get(&c.key).await {
                Ok(doc) if doc == c.new => current.push((l, c)),
                Ok(doc) => match catch_up(&c, doc) {
                    // The product has changed since. Its newer versions
                    // went through the stream, but one the receiver's
                    // interest passed over would leave it without this
                    // change's update: it gets the product as it is now,
                    // from where this change started.
                    Some(now) => {
                        (self.say)(format!(
                            "{} {} (sequence {}): the product changed since; sending it as it is now",
                            l.id, c.key, c.sequence
                        ));
                        t.caught_up += 1;
                        current.push((l, now));
                    }
                    None => {
                        (self.say)(format!(
                            "skip {} {} (sequence {}): the product came and went since",
                            l.id, c.key, c.sequence
                        ));
                        t.superseded += 1;
                        if !dry_run {
                            self.letters.delete(l).await?;
                        }
                    }
                },
                Err(e) => {
                    (self.say)(format!(
                        "{}: reading {} from the model: {e}; left in the DLQ",
                        l.id, c.key
                    ));
                    t.failed += 1;
                    keep.push(l);
                }
            }
        }
        match self.processor {
            None => {
                for (l, c) in &current {
                    (self.say)(format!(
                        "would redrive {} {} (sequence {}) through {}'s current plugin",
                        l.id, c.key, c.sequence, self.receiver
                    ));
                }
                t.redriven = current.len();
            }
            Some(p) if !current.is_empty() => {
                self.redrive_parked(p, &current, &mut t, &mut keep).await?;
            }
            Some(_) => {}
        }

        // Consumer failures back to the queue, as they were.
        for l in letters.iter().filter(|l| l.kind == LetterKind::Consumer) {
            if dry_run {
                (self.say)(format!("would move {} back to the queue", l.id));
                t.moved += 1;
                continue;
            }
            match self.letters.send_back(l).await {
                Ok(()) => {
                    self.letters.delete(l).await?;
                    t.moved += 1;
                }
                Err(e) => {
                    (self.say)(format!("{}: {e}; left in the DLQ", l.id));
                    t.failed += 1;
                    keep.push(l);
                }
            }
        }
        for l in letters.iter().filter(|l| l.kind == LetterKind::Unknown) {
            t.unknown += 1;
            keep.push(l);
        }
        if dry_run {
            keep = letters.iter().collect();
        }
        self.letters.release(&keep).await?;
        Ok(t)
    }

    /// Send the `current` parked changes, check them, and delete the
    /// letters whose replacement is safe.
    async fn redrive_parked<'l>(
        &self,
        p: &StreamProcessor,
        current: &[(&'l Letter, Change)],
        t: &mut Tally,
        keep: &mut Vec<&'l Letter>,
    ) -> Result<(), crate::Error> {
        let changes: Vec<Change> = current.iter().map(|(_, c)| c.clone()).collect();
        let failed = self.dispatch(p, &changes, 0, t).await?;
        let sent: Vec<Change> = changes
            .iter()
            .enumerate()
            .filter(|(i, _)| !failed.contains(i))
            .map(|(_, c)| c.clone())
            .collect();
        let confirmed = self.confirm(p, sent, t).await?;
        for (i, (l, c)) in current.iter().enumerate() {
            if failed.contains(&i) {
                keep.push(l);
            } else if confirmed.contains(&c.key) {
                // Its letter stays: the product is still changing, and the
                // receiver may hold an older version than the model's.
                (self.say)(format!(
                    "{}: {} still changing after {ROUNDS} corrections; left in the DLQ, redrive again when it is quiet",
                    l.id, c.key
                ));
                keep.push(l);
            } else {
                self.letters.delete(l).await?;
            }
        }
        t.failed += failed.len() + confirmed.len();
        t.redriven += current.len() - failed.len() - confirmed.len();
        Ok(())
    }

    /// Run `changes` through the receiver alone, as stream records (round
    /// `round` of this redrive); the indices of those not handled (to stay
    /// in the DLQ). Lambda retries from the first failed record on: so
    /// does a redrive.
    async fn dispatch(
        &self,
        p: &StreamProcessor,
        changes: &[Change],
        round: usize,
        t: &mut Tally,
    ) -> Result<Vec<usize>, crate::Error> {
        let mut records: Vec<Value> = changes
            .iter()
            .map(prism_types::input::record::from_change)
            .collect();
        // Record ids of their own, per round: the retry ledger keys records
        // by source and sequence, and must take neither the original
        // delivery nor another round for this one.
        for (i, r) in records.iter_mut().enumerate() {
            r["eventSourceARN"] = json!(format!("prism:redrive:{}:{round}", self.run_id));
            r["eventID"] = json!(format!("redrive-{}-{round}-{i}", self.run_id));
        }
        let out = p
            .handle(&json!({ "Records": records }))
            .await
            .map_err(|e| {
                crate::Error::redrive(format!("redrive of {}", self.receiver), e.to_string())
            })?;
        let failed: Vec<usize> = out
            .response
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.as_deref())
            .filter_map(|seq| changes.iter().position(|c| c.sequence == seq))
            .collect();
        if let Some(st) = out.report.receivers.get(self.receiver) {
            t.parked_again += st.errors();
            (self.say)(format!(
                "dispatched {} changes: {} messages sent, {} parked again, {} held in lanes, {} in batch windows, {} passed over, {} already handled",
                changes.len(),
                st.messages,
                st.errors(),
                st.laned,
                st.buffered,
                st.filtered + st.skipped,
                st.already_handled
            ));
        }
        Ok(match failed.iter().min().copied() {
            Some(f) => (f..changes.len()).collect(),
            None => vec![],
        })
    }

    /// Read each sent product again and send what changed, [`ROUNDS`]
    /// times at most; the keys still changing after the last.
    async fn confirm(
        &self,
        p: &StreamProcessor,
        sent: Vec<Change>,
        t: &mut Tally,
    ) -> Result<Vec<String>, crate::Error> {
        let mut pending = sent;
        // Products whose correction could be neither sent nor parked.
        let mut unsent: Vec<String> = Vec::new();
        for round in 1..=ROUNDS + 1 {
            let again = drifted(self.model, &pending, "redrive").await?;
            if again.is_empty() || round > ROUNDS {
                unsent.extend(again.into_iter().map(|c| c.key));
                return Ok(unsent);
            }
            (self.say)(format!(
                "{} redriven products changed while they were sent; sending their newest version",
                again.len()
            ));
            let failed = self.dispatch(p, &again, round, t).await?;
            t.corrected += again.len() - failed.len();
            let (stuck, sent): (Vec<_>, Vec<_>) = again
                .into_iter()
                .enumerate()
                .partition(|(i, _)| failed.contains(i));
            for (_, c) in stuck {
                // Its letter would not help: a later redrive would find the
                // product changed and drop it, while the receiver may hold
                // the older version this redrive sent. The correction
                // itself waits in the dead-letter queue instead: redriven,
                // or superseded by a version written after this check (and
                // so delivered after this redrive's send).
                let error = format!(
                    "receiver {} on key {} sequence {}: delivery: a redrive's correction to the model's current version could not be sent",
                    self.receiver, c.key, c.sequence
                );
                match p
                    .park(
                        self.receiver,
                        &c,
                        prism_types::failure::FailureKind::Delivery,
                        error,
                    )
                    .await
                {
                    Ok(()) => t.parked_again += 1,
                    Err(e) => {
                        (self.say)(format!(
                            "{}: its correction could be neither sent nor parked ({e}); its letter stays, and the receiver may hold an older version than the model's",
                            c.key
                        ));
                        unsent.push(c.key);
                    }
                }
            }
            pending = sent.into_iter().map(|(_, c)| c).collect();
        }
        Ok(unsent)
    }
}
