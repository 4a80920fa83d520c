//! A backfill's run: each segment's pages scanned, delivered through the
//! receiver, checked against the table and corrected, and checkpointed.

use super::*;

impl Backfiller<'_> {
    fn receiver(&self) -> &str {
        &self.spec.receiver
    }

    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.clock.now_ms())
    }

    /// Refuse a receiver that is not registered, disabled, or cannot run
    /// (its backfill would only park every product in its DLQ).
    pub async fn check_receiver(&self) -> Result<(), crate::Error> {
        let refuse = |message: String| {
            crate::Error::new(
                crate::ErrorKind::BackfillReceiver,
                self.receiver().to_owned(),
                message,
            )
        };
        match self
            .processor
            .presence(self.receiver())
            .await
            .map_err(|e| refuse(e.to_string()))?
        {
            Presence::Active => Ok(()),
            Presence::Disabled => Err(refuse(
                "is disabled: enable it (prism plugin enable) before a backfill".into(),
            )),
            Presence::Unavailable(why) => Err(refuse(format!(
                "cannot run ({why}); a backfill would only park every product in its DLQ"
            ))),
            Presence::Unknown => Err(refuse("is not in the registry".into())),
        }
    }

    /// Run segment `segment` from its checkpoint (or from the start, in
    /// `run`) until it is done or `limits` say stop. Returns its checkpoint.
    pub async fn run_segment(
        &self,
        segment: u32,
        run: u64,
        limits: Limits,
    ) -> Result<Checkpoint, crate::Error> {
        let segments = self.spec.segments;
        if segment >= segments {
            return Err(crate::Error::invalid(format!(
                "segment {segment} is out of range for {segments} segments"
            )));
        }
        let mut cp = self
            .checkpoints
            .load(segment, segments)
            .await?
            .unwrap_or_else(|| Checkpoint::start(segment, segments, run));
        let mut pages = 0;
        while !cp.done {
            if self.stop.load(Ordering::Relaxed)
                || limits.max_pages.is_some_and(|m| pages >= m)
                || limits.stop_at.is_some_and(|t| self.now() >= t)
            {
                break;
            }
            if cp.open && !cp.open_keys.is_empty() {
                self.recover(&mut cp).await?;
            }
            let page = self
                .model
                .scan(PageRequest {
                    segment,
                    segments,
                    limit: self.spec.page_size,
                    after: cp.after.as_ref(),
                })
                .await?;
            let items = page.items;
            if !items.is_empty() {
                if let Some(p) = self.pacer {
                    p.take(items.len()).await;
                }
                // Marked open before it goes out, with its keys: an attempt
                // that does not finish is numbered afresh next time, and
                // its products are checked first.
                if cp.open {
                    cp.abandoned += 1;
                }
                cp.open = true;
                cp.open_keys = items
                    .iter()
                    .map(|i| self.keys_of(&cp, i))
                    .collect::<Result<_, _>>()?;
                cp.updated_ms = self.clock.now_ms();
                self.checkpoints.save(&cp).await?;
                cp.corrected += self.send_page(&cp, &items, &[]).await?;
                self.totals
                    .items
                    .fetch_add(items.len() as u64, Ordering::Relaxed);
            }
            cp.items += items.len() as u64;
            cp.pages += 1;
            cp.open = false;
            cp.open_keys.clear();
            cp.after = page.after;
            cp.done = cp.after.is_none();
            cp.updated_ms = self.clock.now_ms();
            self.checkpoints.save(&cp).await?;
            pages += 1;
        }
        Ok(cp)
    }

    fn bad_item(&self, cp: &Checkpoint, e: String) -> crate::Error {
        crate::Error::model(
            self.model.table().to_owned(),
            format!("segment {} page {}: {e}", cp.segment, cp.pages),
        )
    }

    /// The key attributes of `item`.
    fn keys_of(&self, cp: &Checkpoint, item: &Value) -> Result<Map<String, Value>, crate::Error> {
        let item = item
            .as_object()
            .ok_or_else(|| self.bad_item(cp, "an item that is not an object".into()))?;
        records::keys_of(item, &self.key_names).map_err(|e| self.bad_item(cp, e))
    }

    /// The page before did not finish (the process died, or a product kept
    /// changing) after it may have sent: what went out may be older than
    /// the table, with no check after it, and a scan may not find those
    /// products again (removed since). They are read by key and sent as
    /// they are now (a remove for one that is gone), then checked as a page
    /// is. Numbered apart from every attempt, so no done mark or ledger
    /// entry takes it for one of them.
    async fn recover(&self, cp: &mut Checkpoint) -> Result<(), crate::Error> {
        cp.abandoned += 1;
        cp.updated_ms = self.clock.now_ms();
        self.checkpoints.save(cp).await?;
        let found = self.model.read(&cp.open_keys).await?;
        let found: HashMap<String, Value> = found
            .into_iter()
            .map(|v| {
                let keys = self.keys_of(cp, &v)?;
                let key = prism_types::input::record::key_string(&keys)
                    .map_err(|e| self.bad_item(cp, e))?;
                Ok((key, v))
            })
            .collect::<Result<_, crate::Error>>()?;
        let mut present = Vec::new();
        let mut gone = Vec::new();
        for keys in &cp.open_keys {
            let key =
                prism_types::input::record::key_string(keys).map_err(|e| self.bad_item(cp, e))?;
            match found.get(&key) {
                Some(v) => present.push(v.clone()),
                None => gone.push(keys.clone()),
            }
        }
        tracing::info!(
            receiver = self.receiver(),
            segment = cp.segment,
            page = cp.pages,
            products = cp.open_keys.len(),
            gone = gone.len(),
            "an unfinished page's products are checked and sent as they are now"
        );
        cp.corrected += self.send_page(cp, &present, &gone).await?;
        self.totals
            .recovered
            .fetch_add(cp.open_keys.len() as u64, Ordering::Relaxed);
        // Its numbers are never used again either.
        cp.abandoned += 1;
        cp.open = false;
        cp.open_keys.clear();
        cp.updated_ms = self.clock.now_ms();
        self.checkpoints.save(cp).await
    }

    /// Send one page (`items` as inserts, the products at `gone` as
    /// removes), then check it against the table until every product is
    /// as sent; returns how many were sent again.
    async fn send_page(
        &self,
        cp: &Checkpoint,
        items: &[Value],
        gone: &[Map<String, Value>],
    ) -> Result<u64, crate::Error> {
        struct Product {
            key: String,
            keys: Map<String, Value>,
            sent: Option<Value>,
        }
        let bad_item = |e: String| self.bad_item(cp, e);
        let mut products = Vec::with_capacity(items.len() + gone.len());
        for item in items {
            let keys = self.keys_of(cp, item)?;
            let key = prism_types::input::record::key_string(&keys).map_err(bad_item)?;
            products.push(Product {
                key,
                keys,
                sent: Some(item.clone()),
            });
        }
        for keys in gone {
            let key = prism_types::input::record::key_string(keys).map_err(bad_item)?;
            products.push(Product {
                key,
                keys: keys.clone(),
                sent: None,
            });
        }
        let now_secs = self.clock.now_ms() as f64 / 1000.0;
        let slot =
            records::slot(cp.pages + cp.abandoned, cp.segment, cp.segments).map_err(bad_item)?;
        let id = |round: u64, i: usize| {
            format!("backfill:{}:{}:{slot}:{round}:{i}", self.receiver(), cp.run,)
        };
        // A product that is gone is sent as a remove, its old image only
        // its key (what the receiver had of it is not known).
        let key_images: Vec<Value> = products
            .iter()
            .map(|p| Value::Object(p.keys.clone()))
            .collect();
        let firsts: Vec<Value> = products
            .iter()
            .enumerate()
            .map(|(i, p)| {
                records::Record {
                    event_id: id(0, i),
                    sequence: records::sequence(cp.run, slot, 0, i),
                    old: p.sent.is_none().then_some(&key_images[i]),
                    new: p.sent.as_ref(),
                    keys: p.keys.clone(),
                    now_secs,
                }
                .to_json()
            })
            .collect();
        self.deliver(cp.segment, &firsts).await?;

        let mut pending: Vec<usize> = (0..products.len()).collect();
        let mut corrected = 0;
        // Every send is checked, the last correction's too.
        for round in 1..=CORRECTION_ROUNDS + 1 {
            if round > 1 {
                // A product changing in a burst gets time to settle.
                self.clock.sleep(SETTLE * (1 << (round - 2))).await;
            }
            let keys: Vec<Map<String, Value>> =
                pending.iter().map(|&i| products[i].keys.clone()).collect();
            let now: HashMap<String, Value> = self
                .model
                .read(&keys)
                .await?
                .into_iter()
                .filter_map(|v| {
                    let keys = records::keys_of(v.as_object()?, &self.key_names).ok()?;
                    let key = prism_types::input::record::key_string(&keys).ok()?;
                    Some((key, v))
                })
                .collect();
            let changed: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&i| now.get(&products[i].key) != products[i].sent.as_ref())
                .collect();
            if changed.is_empty() {
                return Ok(corrected);
            }
            pending = changed;
            if round > CORRECTION_ROUNDS {
                break;
            }
            let changed = &pending;
            let mut again = Vec::new();
            for (n, &i) in changed.iter().enumerate() {
                let p = &products[i];
                let current = now.get(&p.key);
                let r = records::Record {
                    event_id: id(round, n),
                    sequence: records::sequence(cp.run, slot, round, n),
                    old: p.sent.as_ref(),
                    new: current,
                    keys: p.keys.clone(),
                    now_secs,
                };
                // Gone before the first send and still gone: nothing to say.
                if r.old.is_some() || r.new.is_some() {
                    again.push(r.to_json());
                }
            }
            tracing::info!(
                receiver = self.receiver(),
                segment = cp.segment,
                page = cp.pages,
                round,
                products = again.len(),
                "the stream changed products while they were sent; sending their newest version"
            );
            self.deliver(cp.segment, &again).await?;
            corrected += changed.len() as u64;
            self.totals
                .corrected
                .fetch_add(changed.len() as u64, Ordering::Relaxed);
            for &i in changed {
                let current = now.get(&products[i].key).cloned();
                products[i].sent = current;
            }
        }
        // The receiver may have got the stream's newer version before this
        // run's last send: it could end on an older one than the table's.
        // Not confirmed, the page stays open, and a rerun sends it again.
        let contended: Vec<String> = pending.iter().map(|&i| products[i].key.clone()).collect();
        self.totals
            .contended
            .fetch_add(contended.len() as u64, Ordering::Relaxed);
        Err(crate::Error::new(
            crate::ErrorKind::Contended,
            format!("segment {} page {}", cp.segment, cp.pages),
            format!(
                "{} still changing after {CORRECTION_ROUNDS} corrections, so the receiver may hold an older version than the model table; the checkpoint stays before this page: run the backfill again (it resumes here) when they are quiet",
                named(&contended)
            ),
        ))
    }

    /// Run `records` through the receiver until none fails, or fail.
    async fn deliver(&self, segment: u32, records: &[Value]) -> Result<(), crate::Error> {
        if records.is_empty() {
            return Ok(());
        }
        let event = json!({ "Records": records });
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let out = self
                .processor
                .handle_only(&event, self.receiver(), None)
                .await
                .map_err(|e| {
                    crate::Error::new(
                        crate::ErrorKind::Segment,
                        segment.to_string(),
                        e.to_string(),
                    )
                })?;
            if let Some(st) = out.report.receivers.get(self.receiver()) {
                self.totals.add(st);
                last = st.first_errors.join("; ");
            }
            if out.response.batch_item_failures.is_empty() {
                return Ok(());
            }
            self.totals.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                receiver = self.receiver(),
                segment,
                attempt,
                failed = out.response.batch_item_failures.len(),
                "backfill page not delivered; trying again"
            );
            self.clock
                .sleep(Duration::from_millis(100 << attempt))
                .await;
        }
        Err(crate::Error::new(
            crate::ErrorKind::Segment,
            segment.to_string(),
            format!(
                "{} records still not delivered after {ATTEMPTS} attempts{}; the checkpoint stays before this page, so a rerun resumes here",
                records.len(),
                if last.is_empty() {
                    String::new()
                } else {
                    format!(" (last errors: {last})")
                }
            ),
        ))
    }
}
