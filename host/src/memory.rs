//! The host's memory budget for plugin calls: by default what the
//! container may use (its cgroup's limit) minus a reserve for the host
//! itself (caches, watches, the compiler).

use std::path::Path;

/// What the host keeps for itself out of the container's limit.
pub const RESERVE_MIB: u32 = 192;
/// The budget where no limit is found: no cgroup limit and no /proc/meminfo.
const FALLBACK_MIB: u32 = 2048;

/// The default budget: the cgroup's memory limit (v2 `memory.max`, else
/// v1 `memory.limit_in_bytes`) minus [`RESERVE_MIB`]; without a limit, half
/// the machine's memory. At least 64 MiB.
pub fn default_budget_mib() -> u32 {
    let limit = cgroup_limit_bytes(Path::new("/sys/fs/cgroup")).or_else(|| mem_total_bytes().map(|b| b / 2));
    match limit {
        Some(bytes) => u32::try_from(bytes >> 20)
            .unwrap_or(u32::MAX)
            .saturating_sub(RESERVE_MIB)
            .max(64),
        None => FALLBACK_MIB,
    }
}

/// The memory limit of the cgroup mounted at `root`, if it has one.
fn cgroup_limit_bytes(root: &Path) -> Option<u64> {
    let read = |file: &str| std::fs::read_to_string(root.join(file)).ok();
    if let Some(max) = read("memory.max") {
        return max.trim().parse().ok(); // "max" (no limit) does not parse
    }
    // cgroup v1 says "no limit" with a huge number.
    read("memory/memory.limit_in_bytes")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&v| v < 1 << 60)
}

/// The machine's memory (`MemTotal` of /proc/meminfo).
fn mem_total_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_comes_from_cgroup_v2_or_v1() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.max"), "1073741824\n").unwrap();
        assert_eq!(cgroup_limit_bytes(dir.path()), Some(1 << 30));
        std::fs::write(dir.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit_bytes(dir.path()), None);

        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir(v1.path().join("memory")).unwrap();
        std::fs::write(v1.path().join("memory/memory.limit_in_bytes"), "536870912").unwrap();
        assert_eq!(cgroup_limit_bytes(v1.path()), Some(512 << 20));
        std::fs::write(v1.path().join("memory/memory.limit_in_bytes"), "9223372036854771712").unwrap();
        assert_eq!(cgroup_limit_bytes(v1.path()), None);
    }
}
