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
pub mod assign;
pub mod leases;
pub mod ownership;

pub use assign::{Decision, Round, ShardBy, ShardLease, fair_share, shard_of};
pub use leases::{ShardError, ShardLeases, ShardOptions};
pub use ownership::{InFlight, Ownership};
