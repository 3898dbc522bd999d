//! Where the workspace's tests find the shared Keras reference values
//! (`../shared/fixtures` beside the project). A missing folder is a test
//! failure, not a silent pass, unless `STRATA_SKIP_FIXTURES=1` asks to skip.

use std::path::{Path, PathBuf};

/// The shared fixtures folder seen from a crate's `CARGO_MANIFEST_DIR`;
/// `None` (after saying so) only when it is missing and
/// `STRATA_SKIP_FIXTURES=1`. Panics when it is missing otherwise.
pub fn shared_fixtures(manifest_dir: &str) -> Option<PathBuf> {
    let p = Path::new(manifest_dir).join("../../../shared/fixtures");
    if p.is_dir() {
        return Some(p.canonicalize().unwrap_or(p));
    }
    if std::env::var("STRATA_SKIP_FIXTURES").as_deref() == Ok("1") {
        eprintln!(
            "skipped: fixtures not found at {} and STRATA_SKIP_FIXTURES=1",
            p.display()
        );
        return None;
    }
    panic!(
        "fixtures not found at {}: check out ../shared/fixtures beside the \
         project, or set STRATA_SKIP_FIXTURES=1 to skip the fixture tests",
        p.display()
    );
}

#[cfg(test)]
mod tests {
    #[test]
    #[should_panic(expected = "fixtures not found")]
    fn a_missing_folder_fails_loudly() {
        if std::env::var("STRATA_SKIP_FIXTURES").as_deref() == Ok("1") {
            panic!("fixtures not found (STRATA_SKIP_FIXTURES=1 is set: nothing else to check)");
        }
        super::shared_fixtures("/nonexistent/project/crates/strata-core");
    }

    #[test]
    fn the_shared_folder_is_found_from_a_crate() {
        let p = super::shared_fixtures(env!("CARGO_MANIFEST_DIR"));
        assert!(p.is_some_and(|p| p.join("ops").is_dir()));
    }
}
