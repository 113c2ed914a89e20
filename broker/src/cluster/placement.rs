//! Replica placement: where the active controller puts the replicas of new partitions
//! (CreateTopics, CreatePartitions), and the checks an explicit assignment must pass.
//!
//! Pure functions over plain data, so the controller can call them while it holds the
//! metadata image, and tests can check them over many layouts.
//!
//! # Expected flow of [`assign`]
//!
//! 1. Group the candidates into racks (KIP-36). If no candidate has a rack, all of them
//!    form one rack and placement is rack-unaware. If only some have one, each rack-less
//!    broker is a rack of its own: nothing says two rack-less brokers share a failure
//!    domain, and one shared "unknown" rack would let them take only one replica per
//!    partition between them, piling the rest onto the named racks. (Kafka's ZooKeeper-era
//!    assigner refused mixed clusters outright; that would fail every CreateTopics while
//!    `broker.rack` is being rolled out, so we place instead.)
//! 2. Count each candidate's load from `existing`: replicas, and preferred leaderships
//!    (first replica). Entries for brokers that are not candidates (fenced, unregistered)
//!    are ignored: they cannot receive replicas, so their load does not matter here.
//! 3. For each new partition, the preferred leader is the broker with the fewest
//!    preferred leaderships (then fewest replicas, then lowest id). Leadership is chosen
//!    first and from all candidates because leaders carry the produce and fetch traffic.
//!    One consequence: a newly joined, empty broker leads every new partition until its
//!    leaderships catch up with the others' (moving existing partitions is not this
//!    module's job).
//! 4. The followers are picked one at a time: each takes, among brokers not yet in the
//!    partition, the smallest key `(replicas of its rack already in this partition,
//!    replicas, most leaderships first, id)`. The first component is water-filling over
//!    racks: a rack gets its second replica of a partition only once every rack that still
//!    has an unused broker has one. The third makes ties go to brokers that already lead
//!    more: a broker that leads less is about to be picked as a leader and gain a replica
//!    that way. (With fewest-leaderships-first instead, RF 2 on three brokers ends its
//!    first three partitions at replica counts 2, 3 and 1.)
//! 5. Add the partition to the loads, so the next partition sees it.
//!
//! # Guarantees of [`assign`]
//!
//! By construction (and checked by the property test below):
//! - `count` lists of exactly `replication_factor` distinct candidate ids.
//! - Per partition, racks are water-filled: if rack A holds at least two more of the
//!   partition's replicas than rack B, every broker of B is in the partition. Hence the
//!   replicas sit on distinct racks whenever there are at least `replication_factor` racks,
//!   and on every rack when there are fewer.
//! - Each partition's leader had the fewest preferred leaderships of all candidates when it
//!   was placed (existing plus placed so far). So the spread of leaderships (max - min over
//!   the candidates) never grows past the larger of 1 and what it was before the call; from
//!   no existing load it stays at most 1.
//! - Rack-unaware: no follower had more replicas, when it was placed, than a broker left
//!   out of its partition.
//! - With distinct candidate ids, the result depends only on the set of candidates, not
//!   their order: ties go to the lowest id, so tests and replays are reproducible.
//!
//! Checked, not derived: starting from no existing load, replica counts per broker differ
//! by at most one after every partition when the racks do not force otherwise: placement
//! is rack-unaware, or every rack has the same number of brokers and either each rack is a
//! single broker or `replication_factor` is a multiple of the number of racks. For
//! rack-unaware placement the check is exhaustive up to 32 brokers: after `n` partitions
//! on `n` brokers every count is equal again, so the run repeats and one round decides
//! every `count`. Rack layouts are checked by the property test. With other rack layouts
//! the racks themselves force imbalance (three brokers in rack A and one in rack B at RF 2
//! put B's broker in every partition, as in Kafka).

use std::{
    cmp::Reverse,
    collections::{HashMap, HashSet},
};

/// A broker that may receive replicas (registered and unfenced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
}

/// Why a placement was refused; the Display text is sent to Kafka clients as the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// -> Kafka INVALID_REPLICATION_FACTOR
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// -> Kafka INVALID_REPLICA_ASSIGNMENT
    #[error("{0}")]
    InvalidReplicaAssignment(String),
}

/// One candidate as [`assign`] tracks it while placing.
#[derive(Debug)]
struct Broker {
    id: i32,
    /// Index into the rack table built by [`brokers_by_rack`].
    rack: usize,
    /// Replicas hosted: existing plus placed by this call.
    replicas: usize,
    /// Preferred leaderships (first replica): existing plus placed by this call.
    leaders: usize,
}

/// Replica lists for `count` new partitions with `replication_factor` replicas each.
/// `existing` is every current partition's replica list in the cluster (preferred leader first),
/// so new replicas and new leaders go where load is lowest.
///
/// See the module docs for the algorithm and what it guarantees. A candidate id listed
/// twice counts once (the first entry's rack wins).
pub fn assign(
    candidates: &[Candidate],
    existing: &[Vec<i32>],
    count: usize,
    replication_factor: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if replication_factor < 1 {
        return Err(PlacementError::InvalidReplicationFactor(format!(
            "replication factor must be at least 1, not {replication_factor}"
        )));
    }
    let (mut brokers, rack_count) = brokers_by_rack(candidates);
    if brokers.is_empty() {
        return Err(PlacementError::InvalidReplicationFactor(
            "no brokers are available to host replicas".to_owned(),
        ));
    }
    if replication_factor > brokers.len() {
        return Err(PlacementError::InvalidReplicationFactor(format!(
            "replication factor {replication_factor} is larger than the {} available brokers",
            brokers.len()
        )));
    }

    let index: HashMap<i32, usize> = brokers.iter().enumerate().map(|(i, b)| (b.id, i)).collect();
    for replicas in existing {
        for (position, id) in replicas.iter().enumerate() {
            if let Some(&i) = index.get(id) {
                brokers[i].replicas += 1;
                if position == 0 {
                    brokers[i].leaders += 1;
                }
            }
        }
    }

    let mut placed = Vec::with_capacity(count);
    let mut in_rack = vec![0usize; rack_count];
    let mut taken = vec![false; brokers.len()];
    let mut chosen: Vec<usize> = Vec::with_capacity(replication_factor);
    for _ in 0..count {
        in_rack.fill(0);
        taken.fill(false);
        chosen.clear();
        // The leader first; every rack is still empty, so racks play no part in it.
        let leader = least(&brokers, &taken, |b| (b.leaders, b.replicas, b.id));
        taken[leader] = true;
        in_rack[brokers[leader].rack] += 1;
        chosen.push(leader);
        while chosen.len() < replication_factor {
            let follower = least(&brokers, &taken, |b| {
                (in_rack[b.rack], b.replicas, Reverse(b.leaders), b.id)
            });
            taken[follower] = true;
            in_rack[brokers[follower].rack] += 1;
            chosen.push(follower);
        }
        brokers[chosen[0]].leaders += 1;
        for &i in &chosen {
            brokers[i].replicas += 1;
        }
        placed.push(chosen.iter().map(|&i| brokers[i].id).collect());
    }
    Ok(placed)
}

/// Index of the broker not yet `taken` with the smallest `key`.
///
/// Callers only ask while fewer than `replication_factor <= brokers.len()` are taken.
fn least<K: Ord>(brokers: &[Broker], taken: &[bool], key: impl Fn(&Broker) -> K) -> usize {
    brokers
        .iter()
        .enumerate()
        .filter(|&(i, _)| !taken[i])
        .min_by_key(|&(_, b)| key(b))
        .map(|(i, _)| i)
        .expect("replication factor <= brokers, so an untaken broker remains")
}

/// The distinct candidates with zero load, and how many racks they form.
///
/// Rack indices follow the module docs: one rack for all when nobody has a rack,
/// otherwise a rack per name plus a rack per rack-less broker.
fn brokers_by_rack(candidates: &[Candidate]) -> (Vec<Broker>, usize) {
    let rack_aware = candidates.iter().any(|c| c.rack.is_some());
    let mut seen = HashSet::new();
    let mut racks: HashMap<&str, usize> = HashMap::new();
    let mut rack_count = 0;
    let mut brokers = Vec::with_capacity(candidates.len());
    for c in candidates {
        if !seen.insert(c.id) {
            continue;
        }
        let rack = match (&c.rack, rack_aware) {
            (_, false) => 0,
            (Some(name), true) => *racks.entry(name.as_str()).or_insert_with(|| {
                rack_count += 1;
                rack_count - 1
            }),
            (None, true) => {
                rack_count += 1;
                rack_count - 1
            }
        };
        brokers.push(Broker {
            id: c.id,
            rack,
            replicas: 0,
            leaders: 0,
        });
    }
    if !rack_aware && !brokers.is_empty() {
        rack_count = 1;
    }
    (brokers, rack_count)
}

/// Validates an explicit assignment from CreateTopics (partition index -> replicas) or
/// CreatePartitions (the new partitions' replicas in order). `first` is the index the first
/// new partition gets; `registered` are all registered broker ids (fenced or not, as Kafka allows);
/// `replication_factor` is Some when every partition must have exactly that many replicas.
///
/// The entries may come in any order; the result is in partition order. An empty
/// assignment is refused: callers pass one only when the request carried explicit
/// replicas, and a request that assigns no partition cannot be carried out as asked.
pub fn validate_manual(
    registered: &[i32],
    assignment: &[(i32, Vec<i32>)],
    first: i32,
    replication_factor: Option<usize>,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    let invalid = |message: String| Err(PlacementError::InvalidReplicaAssignment(message));
    if assignment.is_empty() {
        return invalid("the replica assignment names no partitions".to_owned());
    }

    let mut ordered: Vec<&(i32, Vec<i32>)> = assignment.iter().collect();
    ordered.sort_by_key(|(partition, _)| *partition);
    // i64, so `first + position` cannot overflow near i32::MAX.
    for (position, (partition, _)) in ordered.iter().enumerate() {
        let expected = i64::from(first) + position as i64;
        let partition = i64::from(*partition);
        if partition < i64::from(first) {
            return invalid(format!(
                "partition {partition} cannot be assigned: new partitions start at {first}"
            ));
        }
        if partition < expected {
            return invalid(format!("partition {partition} is assigned more than once"));
        }
        if partition > expected {
            return invalid(format!(
                "partition {expected} is missing from the replica assignment \
                 (partitions must be numbered consecutively from {first})"
            ));
        }
    }

    let registered: HashSet<i32> = registered.iter().copied().collect();
    // Every list must match the topic's replication factor, or else the first list.
    let width = replication_factor.unwrap_or_else(|| ordered.first().map_or(0, |(_, r)| r.len()));
    let mut lists = Vec::with_capacity(ordered.len());
    for (partition, replicas) in ordered {
        if replicas.is_empty() {
            return invalid(format!("partition {partition} has an empty replica list"));
        }
        let mut seen = HashSet::with_capacity(replicas.len());
        for broker in replicas {
            if !seen.insert(broker) {
                return invalid(format!(
                    "broker {broker} appears more than once in the assignment of partition {partition}"
                ));
            }
            if !registered.contains(broker) {
                return invalid(format!(
                    "broker {broker} in the assignment of partition {partition} is not registered"
                ));
            }
        }
        if replicas.len() != width {
            let len = replicas.len();
            return invalid(match replication_factor {
                Some(rf) => format!(
                    "partition {partition} has {len} replicas but the topic's replication factor is {rf}"
                ),
                None => format!(
                    "partition {partition} has {len} replicas but partition {first} has {width}; \
                     every partition needs the same number"
                ),
            });
        }
        lists.push(replicas.clone());
    }
    Ok(lists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn unracked(ids: impl IntoIterator<Item = i32>) -> Vec<Candidate> {
        ids.into_iter()
            .map(|id| Candidate { id, rack: None })
            .collect()
    }

    fn racked(layout: &[(i32, &str)]) -> Vec<Candidate> {
        layout
            .iter()
            .map(|&(id, rack)| Candidate {
                id,
                rack: Some(rack.to_owned()),
            })
            .collect()
    }

    /// Replicas and preferred leaderships per candidate (zero included).
    fn loads(
        candidates: &[Candidate],
        lists: &[Vec<i32>],
    ) -> (BTreeMap<i32, usize>, BTreeMap<i32, usize>) {
        let mut replicas: BTreeMap<i32, usize> = candidates.iter().map(|c| (c.id, 0)).collect();
        let mut leaders = replicas.clone();
        for list in lists {
            for (position, id) in list.iter().enumerate() {
                if let Some(n) = replicas.get_mut(id) {
                    *n += 1;
                    if position == 0 {
                        *leaders.get_mut(id).expect("same keys") += 1;
                    }
                }
            }
        }
        (replicas, leaders)
    }

    fn spread(counts: &BTreeMap<i32, usize>) -> usize {
        let max = counts.values().max().copied().unwrap_or(0);
        let min = counts.values().min().copied().unwrap_or(0);
        max - min
    }

    /// The rack each candidate counts as, per the module docs.
    fn effective_racks(candidates: &[Candidate]) -> BTreeMap<i32, String> {
        let aware = candidates.iter().any(|c| c.rack.is_some());
        candidates
            .iter()
            .map(|c| {
                let rack = match (&c.rack, aware) {
                    (_, false) => "all".to_owned(),
                    (Some(name), true) => format!("named:{name}"),
                    (None, true) => format!("alone:{}", c.id),
                };
                (c.id, rack)
            })
            .collect()
    }

    #[test]
    fn three_racks_of_two_get_one_replica_per_rack_and_even_load() {
        let candidates = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")]);
        let placed = assign(&candidates, &[], 12, 3).unwrap();
        let racks = effective_racks(&candidates);
        for list in &placed {
            let used: HashSet<&String> = list.iter().map(|id| &racks[id]).collect();
            assert_eq!(used.len(), 3, "{list:?} repeats a rack");
        }
        let (replicas, leaders) = loads(&candidates, &placed);
        assert!(replicas.values().all(|&n| n == 6), "{replicas:?}");
        assert!(leaders.values().all(|&n| n == 2), "{leaders:?}");
    }

    #[test]
    fn three_unracked_brokers_balance_replicas_and_leaders() {
        let candidates = unracked(1..=3);
        let placed = assign(&candidates, &[], 30, 2).unwrap();
        let (replicas, leaders) = loads(&candidates, &placed);
        assert!(replicas.values().all(|&n| n == 20), "{replicas:?}");
        assert!(leaders.values().all(|&n| n == 10), "{leaders:?}");
        // Ties go to the lowest id, so the exact lists are reproducible.
        assert_eq!(placed[..3], [vec![1, 2], vec![3, 1], vec![2, 3]]);
    }

    #[test]
    fn fewer_racks_than_replicas_still_uses_every_rack() {
        // 2 racks, 4 brokers, RF 3: three of rack a's brokers would do by load alone.
        let candidates = racked(&[(1, "a"), (2, "a"), (3, "a"), (4, "b")]);
        for list in assign(&candidates, &[], 8, 3).unwrap() {
            assert!(list.contains(&4), "{list:?} misses rack b");
        }
        // Two racks of three: every partition splits 2 + 1, never 3 + 0.
        let candidates = racked(&[(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b"), (6, "b")]);
        let racks = effective_racks(&candidates);
        for list in assign(&candidates, &[], 8, 3).unwrap() {
            let used: HashSet<&String> = list.iter().map(|id| &racks[id]).collect();
            assert_eq!(used.len(), 2, "{list:?} misses a rack");
        }
    }

    #[test]
    fn rackless_brokers_count_as_racks_of_their_own_when_others_have_racks() {
        let mut candidates = racked(&[(1, "a"), (2, "a")]);
        candidates.extend(unracked([3, 4]));
        // Three racks: "a", {3}, {4}. RF 3 takes one of each, so 3 and 4 are in every
        // partition and 1 and 2 never together.
        for list in assign(&candidates, &[], 6, 3).unwrap() {
            assert!(list.contains(&3) && list.contains(&4), "{list:?}");
            assert!(!(list.contains(&1) && list.contains(&2)), "{list:?}");
        }
    }

    #[test]
    fn existing_load_steers_new_replicas_and_leaders_elsewhere() {
        let candidates = unracked(1..=4);
        // Broker 1 already hosts and leads six single-replica partitions; broker 9 is not a
        // candidate (fenced), so its load is ignored.
        let mut existing = vec![vec![1]; 6];
        existing.push(vec![9, 2]);

        let placed = assign(&candidates, &existing, 3, 2).unwrap();
        assert!(placed.iter().all(|list| !list.contains(&1)), "{placed:?}");
        let leaders: HashSet<i32> = placed.iter().map(|list| list[0]).collect();
        assert_eq!(leaders, HashSet::from([2, 3, 4]));

        // RF 1: the others catch up to six leaderships before broker 1 gets another.
        let placed = assign(&candidates, &existing, 20, 1).unwrap();
        assert!(placed[..18].iter().all(|list| list[0] != 1), "{placed:?}");
        let (replicas, leaders) = loads(&candidates, &[existing, placed].concat());
        assert_eq!(spread(&leaders), 1, "{leaders:?}");
        assert_eq!(spread(&replicas), 1, "{replicas:?}");
    }

    #[test]
    fn candidate_order_does_not_matter() {
        let candidates = racked(&[(5, "b"), (1, "a"), (3, "c"), (2, "a"), (4, "b")]);
        let mut reversed = candidates.clone();
        reversed.reverse();
        assert_eq!(
            assign(&candidates, &[], 10, 2).unwrap(),
            assign(&reversed, &[], 10, 2).unwrap()
        );
    }

    #[test]
    fn zero_partitions_is_an_empty_placement() {
        assert_eq!(assign(&unracked([1]), &[], 0, 1), Ok(vec![]));
    }

    #[test]
    fn replication_factor_errors() {
        let two = unracked([1, 2]);
        assert!(matches!(
            assign(&two, &[], 1, 0),
            Err(PlacementError::InvalidReplicationFactor(_))
        ));
        assert_eq!(
            assign(&two, &[], 1, 3).unwrap_err().to_string(),
            "replication factor 3 is larger than the 2 available brokers"
        );
        assert_eq!(
            assign(&[], &[], 1, 1),
            Err(PlacementError::InvalidReplicationFactor(
                "no brokers are available to host replicas".to_owned()
            ))
        );
        // A broker listed twice is still one broker.
        assert!(matches!(
            assign(&unracked([1, 1]), &[], 1, 2),
            Err(PlacementError::InvalidReplicationFactor(_))
        ));
    }

    /// Rack-unaware from no load: both spreads stay at most 1 after every partition. After
    /// n partitions on n brokers every count is equal again and the run repeats, so two
    /// rounds per layout cover every `count`.
    #[test]
    fn unaware_placement_is_balanced_up_to_32_brokers() {
        for n in 1..=32 {
            let candidates = unracked(0..n);
            for rf in 1..=n as usize {
                let placed = assign(&candidates, &[], 2 * n as usize, rf).unwrap();
                let mut replicas = vec![0usize; n as usize];
                let mut leaders = vec![0usize; n as usize];
                for (done, list) in placed.iter().enumerate() {
                    leaders[list[0] as usize] += 1;
                    for &id in list {
                        replicas[id as usize] += 1;
                    }
                    let spread = |v: &[usize]| v.iter().max().unwrap() - v.iter().min().unwrap();
                    assert!(
                        spread(&replicas) <= 1 && spread(&leaders) <= 1,
                        "n {n} rf {rf} after {} partitions: {replicas:?} {leaders:?}",
                        done + 1
                    );
                }
            }
        }
    }

    fn registered() -> Vec<i32> {
        vec![1, 2, 3, 4]
    }

    fn invalid(assignment: &[(i32, Vec<i32>)], first: i32, rf: Option<usize>) -> String {
        match validate_manual(&registered(), assignment, first, rf) {
            Err(PlacementError::InvalidReplicaAssignment(message)) => message,
            other => panic!("expected INVALID_REPLICA_ASSIGNMENT, got {other:?}"),
        }
    }

    #[test]
    fn manual_assignment_in_any_order_comes_back_in_partition_order() {
        let assignment = [(1, vec![2, 3]), (0, vec![1, 2]), (2, vec![3, 4])];
        assert_eq!(
            validate_manual(&registered(), &assignment, 0, None),
            Ok(vec![vec![1, 2], vec![2, 3], vec![3, 4]])
        );
        // CreatePartitions: the topic has 3 partitions of RF 2, two more are added.
        let assignment = [(3, vec![4, 1]), (4, vec![1, 2])];
        assert_eq!(
            validate_manual(&registered(), &assignment, 3, Some(2)),
            Ok(vec![vec![4, 1], vec![1, 2]])
        );
    }

    #[test]
    fn manual_partition_indexes_must_be_consecutive() {
        let gap = invalid(&[(0, vec![1]), (2, vec![2])], 0, None);
        assert!(gap.starts_with("partition 1 is missing"), "{gap}");
        let late_start = invalid(&[(1, vec![1])], 0, None);
        assert!(
            late_start.starts_with("partition 0 is missing"),
            "{late_start}"
        );
        assert_eq!(
            invalid(&[(0, vec![1]), (0, vec![2])], 0, None),
            "partition 0 is assigned more than once"
        );
        assert_eq!(
            invalid(&[(2, vec![1]), (3, vec![2])], 3, None),
            "partition 2 cannot be assigned: new partitions start at 3"
        );
        assert_eq!(
            invalid(&[], 0, None),
            "the replica assignment names no partitions"
        );
        // No overflow at the top of the index range.
        assert!(validate_manual(&registered(), &[(i32::MAX, vec![1])], i32::MAX, None).is_ok());
    }

    #[test]
    fn manual_replica_lists_are_checked() {
        assert_eq!(
            invalid(&[(0, vec![1, 2]), (1, vec![])], 0, None),
            "partition 1 has an empty replica list"
        );
        assert_eq!(
            invalid(&[(0, vec![1, 2, 1])], 0, None),
            "broker 1 appears more than once in the assignment of partition 0"
        );
        assert_eq!(
            invalid(&[(0, vec![1]), (1, vec![2]), (2, vec![7])], 0, None),
            "broker 7 in the assignment of partition 2 is not registered"
        );
        assert_eq!(
            invalid(&[(0, vec![1, 2]), (1, vec![3])], 0, None),
            "partition 1 has 1 replicas but partition 0 has 2; every partition needs the same number"
        );
        assert_eq!(
            invalid(&[(5, vec![1, 2])], 5, Some(3)),
            "partition 5 has 2 replicas but the topic's replication factor is 3"
        );
    }

    /// Everything the module docs promise about one `assign` call.
    fn check_invariants(
        candidates: &[Candidate],
        existing: &[Vec<i32>],
        count: usize,
        rf: usize,
    ) -> Result<Vec<Vec<i32>>, TestCaseError> {
        let placed = assign(candidates, existing, count, rf)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let racks = effective_racks(candidates);
        let mut rack_sizes: BTreeMap<&String, usize> = BTreeMap::new();
        for rack in racks.values() {
            *rack_sizes.entry(rack).or_default() += 1;
        }
        let aware = candidates.iter().any(|c| c.rack.is_some());

        prop_assert_eq!(placed.len(), count);
        let (mut replicas, mut leaders) = loads(candidates, existing);
        let leader_spread_before = spread(&leaders);
        for list in &placed {
            prop_assert_eq!(list.len(), rf);
            let members: HashSet<i32> = list.iter().copied().collect();
            prop_assert_eq!(members.len(), rf, "{:?} repeats a broker", list);
            prop_assert!(list.iter().all(|id| racks.contains_key(id)), "{:?}", list);

            // Water-filling over racks.
            let mut used: BTreeMap<&String, usize> = rack_sizes.keys().map(|r| (*r, 0)).collect();
            for id in list {
                *used.get_mut(&racks[id]).expect("known rack") += 1;
            }
            for (a, &in_a) in &used {
                for (b, &in_b) in &used {
                    prop_assert!(
                        in_a < in_b + 2 || in_b == rack_sizes[b],
                        "{:?}: rack {} has {} replicas while {} has {} of {} brokers",
                        list,
                        a,
                        in_a,
                        b,
                        in_b,
                        rack_sizes[b]
                    );
                }
            }
            if rack_sizes.len() >= rf {
                prop_assert!(used.values().all(|&n| n <= 1), "{:?} repeats a rack", list);
            }

            // Greedy choices against the loads at the time.
            let fewest_leaderships = leaders.values().min().copied().unwrap_or(0);
            prop_assert_eq!(
                leaders[&list[0]],
                fewest_leaderships,
                "{:?} {:?}",
                list,
                leaders
            );
            if !aware {
                let most_on_followers = list[1..].iter().map(|id| replicas[id]).max();
                let fewest_left_out = replicas
                    .iter()
                    .filter(|(id, _)| !members.contains(id))
                    .map(|(_, &n)| n)
                    .min();
                if let (Some(followers), Some(left_out)) = (most_on_followers, fewest_left_out) {
                    prop_assert!(followers <= left_out, "{:?} {:?}", list, replicas);
                }
            }
            *leaders.get_mut(&list[0]).expect("candidate") += 1;
            for id in list {
                *replicas.get_mut(id).expect("candidate") += 1;
            }
        }
        prop_assert!(
            spread(&leaders) <= leader_spread_before.max(1),
            "{:?}",
            leaders
        );

        // Only the set of candidates matters, not its order.
        let mut reversed = candidates.to_vec();
        reversed.reverse();
        prop_assert_eq!(
            &assign(&reversed, existing, count, rf).expect("same input"),
            &placed
        );
        Ok(placed)
    }

    /// 1 to 12 brokers with distinct ids; no racks, all racked (up to 4 racks), or mixed.
    fn layout() -> impl Strategy<Value = Vec<Candidate>> {
        (
            proptest::sample::subsequence((0..40).collect::<Vec<i32>>(), 1..=12),
            0..3u8,
            proptest::collection::vec((0..4u8, any::<bool>()), 12),
        )
            .prop_map(|(ids, mode, racks)| {
                ids.into_iter()
                    .zip(racks)
                    .map(|(id, (rack, has_rack))| Candidate {
                        id,
                        rack: match mode {
                            0 => None,
                            1 => Some(format!("r{rack}")),
                            _ => has_rack.then(|| format!("r{rack}")),
                        },
                    })
                    .collect::<Vec<_>>()
            })
            .prop_shuffle()
    }

    /// Existing partitions over ids 0..40, so some name brokers that are not candidates.
    fn existing() -> impl Strategy<Value = Vec<Vec<i32>>> {
        prop_oneof![
            Just(vec![]),
            proptest::collection::vec(
                proptest::sample::subsequence((0..40).collect::<Vec<i32>>(), 1..=4).prop_shuffle(),
                0..30
            ),
        ]
    }

    proptest! {
        #[test]
        fn assign_keeps_its_invariants(
            (candidates, rf, count, existing) in layout().prop_flat_map(|c| {
                let n = c.len();
                (Just(c), 1..=n, 0..40usize, existing())
            })
        ) {
            let placed = check_invariants(&candidates, &existing, count, rf)?;
            if existing.is_empty() && candidates.iter().all(|c| c.rack.is_none()) {
                let (replicas, _) = loads(&candidates, &placed);
                prop_assert!(spread(&replicas) <= 1, "{:?}", replicas);
            }
        }

        /// Equal-size racks where the rack rule does not force imbalance: replica counts stay
        /// within one after every partition.
        #[test]
        fn even_racks_keep_replicas_within_one(
            (candidates, rf, count) in (1..=4usize, 1..=4usize).prop_flat_map(|(racks, per_rack)| {
                let n = racks * per_rack;
                let ids: Vec<i32> = (0..n as i32).collect();
                let rfs: Vec<usize> = (1..=n).filter(|rf| per_rack == 1 || rf % racks == 0).collect();
                (Just(ids).prop_shuffle(), proptest::sample::select(rfs), 0..40usize)
                    .prop_map(move |(ids, rf, count)| {
                        let candidates: Vec<Candidate> = ids
                            .iter()
                            .enumerate()
                            .map(|(slot, &id)| Candidate { id, rack: Some(format!("r{}", slot % racks)) })
                            .collect();
                        (candidates, rf, count)
                    })
            })
        ) {
            let placed = check_invariants(&candidates, &[], count, rf)?;
            for done in 1..=placed.len() {
                let (replicas, _) = loads(&candidates, &placed[..done]);
                prop_assert!(spread(&replicas) <= 1, "after {}: {:?}", done, replicas);
            }
        }
    }
}
