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
//! - [`ownership`]: the shards held now and the reconciles running in each,
//!   shared by the Lease task and the controllers.
//! - [`leases`]: the task that reads and writes the Leases.
//! - [`status`]: `trellis status`, who holds what, from the Leases.
pub mod assign;
pub mod leases;
pub mod ownership;
pub mod status;

/// How `trellis run` shards its parents.
#[derive(Debug, Clone)]
pub struct ShardingOptions {
    /// How many shards (more than 1).
    pub shards: u32,
    /// What a parent's shard is computed from.
    pub by: ShardBy,
    /// Where the Leases are, who this replica is, how long a Lease lasts.
    pub leases: ShardOptions,
}

pub use assign::{Decision, Round, ShardBy, ShardLease, fair_share, shard_of};
pub use leases::{ShardError, ShardLeases, ShardOptions};
pub use ownership::{InFlight, Ownership};
