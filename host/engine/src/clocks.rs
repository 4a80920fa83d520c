//! The sandbox's `wasi:clocks/monotonic-clock` and `wasi:io/poll`, on its
//! virtual time ([`super::vtime`]): a sleep or a timed poll moves the
//! virtual clock instead of waiting in host code, where epoch interruption
//! cannot reach.

use wasmtime::component::Resource;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::runtime::in_tokio;

use super::sandbox::HostState;
use super::vtime::timeout;

impl monotonic_clock::Host for HostState {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(self.time().clock.now())
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let (time, table) = self.time_and_table();
        time.subscribe(table, when)
    }

    fn subscribe_duration(&mut self, duration: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let (time, table) = self.time_and_table();
        let deadline = time.clock.now().saturating_add(duration);
        time.subscribe(table, deadline)
    }
}

impl sync_poll::Host for HostState {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let (time, table) = self.time_and_table();
        // Whatever is ready now, without waiting.
        let mut ready = Vec::new();
        let mut earliest: Option<u64> = None;
        for (i, p) in pollables.iter().enumerate() {
            let i = u32::try_from(i)?;
            match time.sleeps.get(&p.rep()) {
                Some(&deadline) if deadline <= time.clock.now() => ready.push(i),
                Some(&deadline) => earliest = Some(earliest.map_or(deadline, |e| e.min(deadline))),
                None => {
                    let p = Resource::new_borrow(p.rep());
                    if in_tokio(async_poll::HostPollable::ready(table, p))? {
                        ready.push(i);
                    }
                }
            }
        }
        if !ready.is_empty() {
            return Ok(ready);
        }
        // Nothing is ready: the earliest virtual deadline comes first.
        if let Some(deadline) = earliest {
            time.wait_until(deadline)?;
            return Ok(pollables
                .iter()
                .enumerate()
                .filter(|(_, p)| time.sleeps.get(&p.rep()).is_some_and(|&d| d <= deadline))
                .map(|(i, _)| i as u32)
                .collect());
        }
        // Only real pollables: wait for them, within the budget.
        let left = time.remaining().ok_or_else(timeout)?;
        in_tokio(async {
            tokio::time::timeout(left, async_poll::Host::poll(table, pollables)).await
        })
        .map_err(|_| timeout())?
    }
}

impl sync_poll::HostPollable for HostState {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        let (time, table) = self.time_and_table();
        match time.sleeps.get(&pollable.rep()) {
            Some(&deadline) => Ok(deadline <= time.clock.now()),
            None => in_tokio(async_poll::HostPollable::ready(table, pollable)),
        }
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let (time, table) = self.time_and_table();
        if let Some(&deadline) = time.sleeps.get(&pollable.rep()) {
            return time.wait_until(deadline);
        }
        let left = time.remaining().ok_or_else(timeout)?;
        in_tokio(async {
            tokio::time::timeout(left, async_poll::HostPollable::block(table, pollable)).await
        })
        .map_err(|_| timeout())?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let (time, table) = self.time_and_table();
        time.sleeps.remove(&pollable.rep());
        async_poll::HostPollable::drop(table, pollable)
    }
}
