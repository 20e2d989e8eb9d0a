//! Which shard a parent belongs to, and which shards a replica should hold:
//! pure decisions over what one round of reading the Leases saw, so that
//! the Lease task only carries them out.
//!
//! - A parent's shard is a stable hash of its namespace and name (or of its
//!   namespace alone) modulo the number of shards: the first eight bytes of
//!   a SHA-256, the same on every replica, platform and release.
//! - A replica holds up to its fair share, ⌈shards / live replicas⌉.
//! - Each shard has a preferred replica, the one ranked first for it by
//!   rendezvous hashing among the live replicas. Every replica computes the
//!   same ranking, so they reach for different free shards instead of racing
//!   for the same ones, and a replica joining or leaving moves only about
//!   its share of shards.
//! - A replica over its share releases the shards it is least preferred for
//!   first, shard 0 (which also carries the cluster-scoped work) last.
//! - A free shard is one with no holder, or whose Lease expired by this
//!   replica's clock. A held Lease is never taken before it expires.

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// What a parent's shard is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ShardBy {
    /// Its namespace and name: parents spread evenly.
    #[default]
    Name,
    /// Its namespace alone: a tenant's parents stay on one replica.
    Namespace,
}

/// The shard of a parent (`namespace` is `None` for a cluster-scoped one),
/// among `shards` (at least 1).
pub fn shard_of(by: ShardBy, namespace: Option<&str>, name: &str, shards: u32) -> u32 {
    let namespace = namespace.unwrap_or("");
    let key = match by {
        ShardBy::Name => format!("{namespace}/{name}"),
        ShardBy::Namespace => namespace.to_owned(),
    };
    (stable_hash(key.as_bytes()) % u64::from(shards.max(1))) as u32
}

/// The most shards one replica takes while `live` replicas are alive:
/// ⌈shards / live⌉ (all of them when none is known alive).
pub fn fair_share(shards: u32, live: usize) -> u32 {
    let live = u32::try_from(live).unwrap_or(u32::MAX).max(1);
    shards.div_ceil(live)
}

/// One shard's Lease as this replica last read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardLease {
    /// Its holder, if any.
    pub holder: Option<String>,
    /// Whether it went unrenewed for its duration, by this replica's clock.
    pub expired: bool,
}

/// What a replica saw in one round: the live replicas (by their heartbeat
/// Leases) and every shard's Lease, indexed by shard.
#[derive(Debug, Clone)]
pub struct Round<'a> {
    /// This replica.
    pub me: &'a str,
    /// The replicas whose heartbeat has not expired (this one included or
    /// not: it counts as live either way).
    pub members: &'a [String],
    /// Shard `i`'s Lease at index `i`; a missing Lease is a free shard.
    pub leases: &'a [ShardLease],
}

/// What a replica does with the shard Leases after a round.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Shards it holds and keeps: renew their Leases.
    pub renew: BTreeSet<u32>,
    /// Free shards to take, in order of preference.
    pub acquire: Vec<u32>,
    /// Shards it holds beyond its share: stop, then give their Leases up.
    pub release: BTreeSet<u32>,
}

impl Round<'_> {
    /// The live replicas, this one included, sorted and without repeats.
    fn live(&self) -> Vec<&str> {
        let mut live: Vec<&str> = self.members.iter().map(String::as_str).collect();
        live.push(self.me);
        live.sort_unstable();
        live.dedup();
        live
    }

    /// Decides which shards to renew, take and give up.
    pub fn decide(&self) -> Decision {
        let shards = u32::try_from(self.leases.len()).unwrap_or(u32::MAX);
        let live = self.live();
        let share = fair_share(shards, live.len()) as usize;
        let held: Vec<u32> = (0..shards)
            .filter(|&s| self.leases[s as usize].holder.as_deref() == Some(self.me))
            .collect();
        let mut decision = Decision::default();
        if held.len() > share {
            // Least preferred first; shard 0 last.
            let mut by_preference = held.clone();
            by_preference.sort_by_key(|&s| (s == 0, self.preferred(s, &live), weight(s, self.me)));
            decision.release = by_preference[..held.len() - share].iter().copied().collect();
        } else {
            let mut free: Vec<u32> = (0..shards)
                .filter(|&s| {
                    let lease = &self.leases[s as usize];
                    lease.holder.is_none() || (lease.expired && lease.holder.as_deref() != Some(self.me))
                })
                .collect();
            // Preferred ones first, then by this replica's weight.
            free.sort_by_key(|&s| {
                (
                    std::cmp::Reverse(self.preferred(s, &live)),
                    std::cmp::Reverse(weight(s, self.me)),
                )
            });
            free.truncate(share - held.len());
            decision.acquire = free;
        }
        decision.renew = held.into_iter().filter(|s| !decision.release.contains(s)).collect();
        decision
    }

    /// Whether this replica ranks first for `shard` among `live`.
    fn preferred(&self, shard: u32, live: &[&str]) -> bool {
        live.iter().max_by_key(|member| (weight(shard, member), **member)) == Some(&self.me)
    }
}

/// The rendezvous weight of `member` for `shard`.
fn weight(shard: u32, member: &str) -> u64 {
    stable_hash(format!("{shard}/{member}").as_bytes())
}

/// The first eight bytes of the SHA-256 of `bytes`, big-endian.
fn stable_hash(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_parents_shard_is_stable_and_spread() {
        // Fixed values (Python: int.from_bytes(sha256(b"default/web")
        // .digest()[:8], "big") % 12): a change of hash would move every
        // parent between replicas of different releases.
        assert_eq!(shard_of(ShardBy::Name, Some("default"), "web", 12), 8);
        assert_eq!(shard_of(ShardBy::Name, Some("team-a"), "db", 12), 7);
        assert_eq!(shard_of(ShardBy::Name, Some("team-a"), "db", 3), 1);
        assert_eq!(shard_of(ShardBy::Namespace, Some("team-a"), "db", 12), 0);
        let counts = (0..1200).fold([0u32; 12], |mut counts, i| {
            counts[shard_of(ShardBy::Name, Some("team-a"), &format!("p{i}"), 12) as usize] += 1;
            counts
        });
        assert!(counts.iter().all(|&c| (60..=140).contains(&c)), "uneven: {counts:?}");
        assert_eq!(shard_of(ShardBy::Name, None, "anything", 1), 0);
        assert_eq!(shard_of(ShardBy::Name, None, "anything", 0), 0, "0 shards counts as 1");
    }

    #[test]
    fn by_namespace_a_tenants_parents_share_a_shard() {
        let shard = shard_of(ShardBy::Namespace, Some("team-a"), "one", 12);
        for name in ["two", "three", "four"] {
            assert_eq!(shard_of(ShardBy::Namespace, Some("team-a"), name, 12), shard);
        }
        let namespaces: BTreeSet<u32> = (0..50)
            .map(|i| shard_of(ShardBy::Namespace, Some(&format!("team-{i}")), "x", 12))
            .collect();
        assert!(namespaces.len() > 6, "namespaces spread over shards: {namespaces:?}");
    }

    #[test]
    fn the_fair_share_rounds_up() {
        assert_eq!(fair_share(12, 3), 4);
        assert_eq!(fair_share(12, 5), 3);
        assert_eq!(fair_share(12, 0), 12);
        assert_eq!(fair_share(1, 3), 1);
    }

    /// The Lease table every simulated replica reads: shard to holder, and
    /// the replicas whose Leases count as expired.
    struct Cluster {
        leases: BTreeMap<u32, String>,
        dead: BTreeSet<String>,
        shards: u32,
    }

    impl Cluster {
        fn new(shards: u32) -> Self {
            Self {
                leases: BTreeMap::new(),
                dead: BTreeSet::new(),
                shards,
            }
        }

        fn view(&self) -> Vec<ShardLease> {
            (0..self.shards)
                .map(|s| ShardLease {
                    holder: self.leases.get(&s).cloned(),
                    expired: self.leases.get(&s).is_some_and(|h| self.dead.contains(h)),
                })
                .collect()
        }

        /// One round per live replica, in order; an acquire succeeds if
        /// the shard is still free when that replica writes (as the
        /// resourceVersion guard makes it). Returns how many Leases changed.
        fn round(&mut self, replicas: &[&str]) -> usize {
            let members: Vec<String> = replicas.iter().map(|r| r.to_string()).collect();
            let mut changes = 0;
            for me in replicas {
                let leases = self.view();
                let decision = Round {
                    me,
                    members: &members,
                    leases: &leases,
                }
                .decide();
                for s in &decision.release {
                    self.leases.remove(s);
                    changes += 1;
                }
                for s in &decision.acquire {
                    let lease = &self.view()[*s as usize];
                    if lease.holder.is_none() || lease.expired {
                        self.leases.insert(*s, me.to_string());
                        changes += 1;
                    }
                }
            }
            changes
        }

        fn settle(&mut self, replicas: &[&str]) {
            for _ in 0..10 {
                if self.round(replicas) == 0 {
                    return;
                }
            }
            panic!("no steady state after 10 rounds: {:?}", self.leases);
        }

        fn held(&self, replica: &str) -> usize {
            self.leases.values().filter(|h| *h == replica).count()
        }
    }

    #[test]
    fn three_replicas_settle_on_four_shards_each() {
        let mut cluster = Cluster::new(12);
        cluster.settle(&["a", "b", "c"]);
        assert_eq!(cluster.leases.len(), 12, "every shard is held");
        for r in ["a", "b", "c"] {
            assert_eq!(cluster.held(r), 4, "{r}: {:?}", cluster.leases);
        }
    }

    #[test]
    fn the_survivors_take_a_dead_replicas_shards_once_its_leases_expire() {
        let mut cluster = Cluster::new(12);
        cluster.settle(&["a", "b", "c"]);
        // c stops renewing: its heartbeat goes first, its shard Leases
        // are not taken before they expire.
        let before = cluster.leases.clone();
        cluster.settle(&["a", "b"]);
        assert_eq!(cluster.leases, before, "nothing is taken before it expires");
        cluster.dead.insert("c".into());
        cluster.settle(&["a", "b"]);
        assert_eq!((cluster.held("a"), cluster.held("b"), cluster.held("c")), (6, 6, 0));
    }

    #[test]
    fn a_replica_joining_gets_its_share_and_only_that_moves() {
        let mut cluster = Cluster::new(12);
        cluster.settle(&["a", "b"]);
        let before = cluster.leases.clone();
        cluster.settle(&["a", "b", "c"]);
        assert_eq!((cluster.held("a"), cluster.held("b"), cluster.held("c")), (4, 4, 4));
        let moved = before.iter().filter(|(s, h)| cluster.leases.get(s) != Some(h)).count();
        assert_eq!(moved, 4, "only the newcomer's share moved");
    }

    #[test]
    fn shard_zero_is_released_last() {
        let leases: Vec<ShardLease> = (0..4)
            .map(|_| ShardLease {
                holder: Some("a".into()),
                expired: false,
            })
            .collect();
        let members = ["a".to_string(), "b".into(), "c".into(), "d".into()];
        let decision = Round {
            me: "a",
            members: &members,
            leases: &leases,
        }
        .decide();
        assert_eq!(decision.release.len(), 3);
        assert!(!decision.release.contains(&0), "{decision:?}");
        assert_eq!(decision.renew, BTreeSet::from([0]));
        assert!(decision.acquire.is_empty());
    }

    #[test]
    fn an_expired_lease_of_its_own_is_not_taken_again_as_free() {
        let leases = vec![ShardLease {
            holder: Some("a".into()),
            expired: true,
        }];
        let decision = Round {
            me: "a",
            members: &[],
            leases: &leases,
        }
        .decide();
        assert_eq!(decision.renew, BTreeSet::from([0]), "its own Lease is renewed");
        assert!(decision.acquire.is_empty());
    }
}
