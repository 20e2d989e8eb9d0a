//! Sharding: the parents of every registered kind shared among the host's
//! replicas through Kubernetes Leases, with no other coordination.
//!
//! With `--shards N` each parent belongs to one of N shards (a stable hash
//! of its namespace and name, or of its namespace alone), each shard is held
//! by one replica through the Lease `trellis-shard-<i>`, and each replica
//! announces itself with a heartbeat Lease `trellis-member-<pod>`. A replica
//! holds up to its fair share of shards, releases the excess when another
//! joins, and takes over the shards of one whose Leases expired.
//!
//! - [`assign`]: the pure decisions: a parent's shard, the fair share, and
//!   which shards to renew, take and give up after reading the Leases.
pub mod assign;

pub use assign::{Decision, Round, ShardBy, ShardLease, fair_share, shard_of};
