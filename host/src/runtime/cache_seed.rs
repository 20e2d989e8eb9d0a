//! Seeding the compiled-module cache from a read-only copy: the host image
//! carries its bundled plugins compiled (`trellis plugin compile`) in a
//! folder of the image, and `trellis run --module-cache-seed` copies them
//! into the writable cache before the engine starts, so a new pod serves
//! them without compiling. Files the cache has already are left as they
//! are; wasmtime's cache keys its entries by module hash and engine
//! settings, so an entry made for another CPU or version is never used.

use super::RuntimeError;
use std::path::Path;

/// Copies every file under `seed` that `cache` lacks, keeping the relative
/// paths; returns how many were copied.
pub(super) fn seed(seed: &Path, cache: &Path) -> Result<usize, RuntimeError> {
    let failed = |source| RuntimeError::CacheSeed {
        seed: seed.to_owned(),
        cache: cache.to_owned(),
        source,
    };
    if !seed.is_dir() {
        return Err(failed(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the seed is not a folder",
        )));
    }
    copy_missing(seed, cache).map_err(failed)
}

fn copy_missing(from: &Path, to: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut copied = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copied += copy_missing(&entry.path(), &target)?;
        } else if kind.is_file() && !target.exists() {
            // Written aside and renamed, so a crash never leaves half an
            // entry that wasmtime would then have to reject.
            let partial = to.join(format!(".{}.seeding", entry.file_name().to_string_lossy()));
            std::fs::copy(entry.path(), &partial)?;
            std::fs::rename(&partial, &target)?;
            copied += 1;
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_what_the_cache_lacks_and_keeps_what_it_has() {
        let seed_dir = tempfile::tempdir().unwrap();
        let cache_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(seed_dir.path().join("modules/engine-a")).unwrap();
        std::fs::write(seed_dir.path().join("modules/engine-a/one"), b"seeded one").unwrap();
        std::fs::write(seed_dir.path().join("modules/engine-a/two"), b"seeded two").unwrap();
        std::fs::create_dir_all(cache_dir.path().join("modules/engine-a")).unwrap();
        std::fs::write(cache_dir.path().join("modules/engine-a/two"), b"cached two").unwrap();

        assert_eq!(seed(seed_dir.path(), cache_dir.path()).unwrap(), 1);
        let read = |name: &str| std::fs::read(cache_dir.path().join("modules/engine-a").join(name)).unwrap();
        assert_eq!(read("one"), b"seeded one");
        assert_eq!(read("two"), b"cached two");
        // Again: nothing left to copy, nothing left behind.
        assert_eq!(seed(seed_dir.path(), cache_dir.path()).unwrap(), 0);
        let names: Vec<_> = std::fs::read_dir(cache_dir.path().join("modules/engine-a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_missing_seed_is_an_error_naming_it() {
        let cache_dir = tempfile::tempdir().unwrap();
        let err = seed(Path::new("/nonexistent/seed"), cache_dir.path()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/seed"), "{err}");
    }
}
