//! The order a tick works lanes in, and where a cut-short tick resumes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::spool::Lane;

/// Where the last tick stopped, shared by the clones of a [`super::Dispatcher`]
/// (a warm Lambda's successive ticks). Process memory only: a cold start
/// begins at the top, which is still fair (see [`fair_order`]).
#[derive(Debug, Clone, Default)]
pub struct TickCursor(Arc<Mutex<Option<String>>>);

impl TickCursor {
    /// The last lane the previous tick reached, if it was cut short.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, lane: Option<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = lane;
    }
}

/// The order a tick works lanes in: round-robin across receivers (each
/// receiver's lanes in name order: its first lane, then every other
/// receiver's first, then its second…), starting after the lane named
/// `after`. One receiver with hundreds of failing lanes cannot keep
/// another receiver's lane waiting past the first round, and a tick cut
/// short by its deadline resumes where it stopped, even when the lane it
/// stopped at has drained since (it resumes where that lane would be: a
/// restart from the top would leave the lanes after it waiting for as long
/// as ticks keep being cut short).
pub fn fair_order<T>(lanes: Vec<(Lane, T)>, after: Option<&str>) -> Vec<(Lane, T)> {
    // The lane named `after`, if it is gone, takes its place as `None`.
    let gone = after
        .and_then(Lane::parse)
        .filter(|a| !lanes.iter().any(|(l, _)| l == a));
    let mut by_receiver: BTreeMap<String, Vec<(Lane, Option<T>)>> = BTreeMap::new();
    for (lane, info) in lanes {
        by_receiver
            .entry(lane.receiver().to_owned())
            .or_default()
            .push((lane, Some(info)));
    }
    if let Some(lane) = gone {
        by_receiver
            .entry(lane.receiver().to_owned())
            .or_default()
            .push((lane, None));
    }
    let mut by_receiver: BTreeMap<String, VecDeque<(Lane, Option<T>)>> = by_receiver
        .into_iter()
        .map(|(r, mut ls)| {
            ls.sort_by(|a, b| a.0.cmp(&b.0));
            (r, ls.into())
        })
        .collect();
    let mut order = Vec::new();
    while !by_receiver.is_empty() {
        by_receiver.retain(|_, q| {
            if let Some(l) = q.pop_front() {
                order.push(l);
            }
            !q.is_empty()
        });
    }
    if let Some(i) = after.and_then(|a| order.iter().position(|(l, _)| l.to_string() == a)) {
        order.rotate_left(i + 1);
    }
    order
        .into_iter()
        .filter_map(|(l, info)| Some((l, info?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(receiver: &str, key: &str) -> (Lane, ()) {
        (
            Lane::Retry {
                receiver: receiver.into(),
                key: key.into(),
            },
            (),
        )
    }

    fn names(order: &[(Lane, ())]) -> Vec<String> {
        order.iter().map(|(l, _)| l.to_string()).collect()
    }

    #[test]
    fn fifty_lanes_of_one_receiver_do_not_hold_up_another() {
        let mut lanes: Vec<_> = (0..50).map(|i| retry("a", &format!("K{i:02}"))).collect();
        lanes.push(retry("b", "K00"));
        lanes.push((
            Lane::Buffer {
                receiver: "c".into(),
            },
            (),
        ));
        let order = fair_order(lanes, None);
        assert_eq!(order.len(), 52);
        let first_round: Vec<&str> = order[..3].iter().map(|(l, _)| l.receiver()).collect();
        assert_eq!(first_round, ["a", "b", "c"]);
        // Each receiver's own lanes keep their order.
        let a: Vec<String> = names(&order)
            .into_iter()
            .filter(|n| n.contains("/a/"))
            .collect();
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(a, sorted);
    }

    /// Issue 28, item 10: the lane a cut-short tick stopped at drained, and
    /// the next tick started from the top; ticks cut short as often kept
    /// the lanes after it waiting for ever.
    #[test]
    fn a_tick_resumes_where_a_drained_lane_was() {
        let lanes = |drained: &str| {
            [
                retry("a", "1"),
                retry("a", "2"),
                retry("a", "3"),
                retry("a", "4"),
                retry("b", "1"),
            ]
            .into_iter()
            .filter(|(l, _)| l.to_string() != drained)
            .collect::<Vec<_>>()
        };
        let all = names(&fair_order(lanes(""), None));
        assert_eq!(
            all,
            [
                "retry/a/1",
                "retry/b/1",
                "retry/a/2",
                "retry/a/3",
                "retry/a/4"
            ]
        );
        // Stopped at a/2, which then drained: on with a/3.
        let resumed = names(&fair_order(lanes("retry/a/2"), Some("retry/a/2")));
        assert_eq!(
            resumed,
            ["retry/a/3", "retry/a/4", "retry/a/1", "retry/b/1"]
        );
        // A receiver whose lanes are all gone: on after where they were
        // (its first round place, between a's and b's).
        let resumed = names(&fair_order(lanes(""), Some("retry/aa/1")));
        assert_eq!(resumed[0], "retry/b/1", "{resumed:?}");
    }

    #[test]
    fn a_tick_cut_short_resumes_after_the_last_lane_it_reached() {
        let lanes = || {
            vec![
                retry("a", "1"),
                retry("a", "2"),
                retry("b", "1"),
                retry("b", "2"),
            ]
        };
        let all = names(&fair_order(lanes(), None));
        assert_eq!(all.len(), 4);
        let resumed = names(&fair_order(lanes(), Some(&all[1])));
        assert_eq!(resumed, [&*all[2], &*all[3], &*all[0], &*all[1]]);
        // A name that is no lane at all: from the top.
        assert_eq!(names(&fair_order(lanes(), Some("nonsense"))), all);
        let cursor = TickCursor::default();
        let shared = cursor.clone();
        cursor.set(Some(all[2].clone()));
        assert_eq!(shared.get().as_deref(), Some(all[2].as_str()));
    }
}
