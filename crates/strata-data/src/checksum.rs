//! `SHA256SUMS` files (the `sha256sum` tool's output): parse them and verify
//! bytes against the entry for a file name.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// The lowercase hexadecimal SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The entries of a `SHA256SUMS` file: file name → lowercase hex digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sha256Sums {
    entries: BTreeMap<String, String>,
    source: String,
}

impl Sha256Sums {
    /// Parses lines of `<64 hex digits> <space> [*| ]<file name>`; blank lines
    /// and `#` comments are skipped. `source` names the file in errors.
    pub fn parse(source: &str, text: &str) -> Result<Sha256Sums> {
        let mut entries = BTreeMap::new();
        for (lineno, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let field = format!("line {}", lineno + 1);
            let (digest, rest) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| DataError::format(source, &field, "expected '<digest>  <file>'"))?;
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(DataError::format(
                    source,
                    &field,
                    format!("'{digest}' is not a 64-digit hexadecimal SHA-256"),
                ));
            }
            let name = rest.trim_start_matches([' ', '\t']);
            let name = name.strip_prefix('*').unwrap_or(name).trim_end();
            if name.is_empty() {
                return Err(DataError::format(source, &field, "missing file name"));
            }
            entries.insert(name.to_string(), digest.to_ascii_lowercase());
        }
        Ok(Sha256Sums {
            entries,
            source: source.to_string(),
        })
    }

    /// Reads and parses a `SHA256SUMS` file.
    pub fn read(path: impl AsRef<Path>) -> Result<Sha256Sums> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            DataError::format(path.display(), "encoding", format!("not UTF-8: {e}"))
        })?;
        Sha256Sums::parse(&path.display().to_string(), text)
    }

    /// The expected digest for `name`, if listed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(String::as_str)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no entry was listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks `bytes` against the entry for `name`; a missing entry is an error
    /// too (a sums file was given, so every file it guards must be listed).
    /// `path` names the data file in errors.
    pub fn verify(&self, name: &str, path: &str, bytes: &[u8]) -> Result<()> {
        let expected = self.get(name).ok_or_else(|| {
            DataError::format(
                &self.source,
                "entries",
                format!("no SHA-256 listed for '{name}'"),
            )
        })?;
        let found = sha256_hex(bytes);
        if found != expected {
            return Err(DataError::Checksum {
                path: path.to_string(),
                expected: expected.to_string(),
                found,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_and_verify() {
        let d = sha256_hex(b"hello");
        let text = format!("# comment\n{d}  a.bin\n\n{} *b.bin\n", sha256_hex(b"x"));
        let sums = Sha256Sums::parse("SUMS", &text).unwrap();
        assert_eq!(sums.len(), 2);
        sums.verify("a.bin", "a.bin", b"hello").unwrap();
        sums.verify("b.bin", "b.bin", b"x").unwrap();
        let e = sums.verify("a.bin", "dir/a.bin", b"hellO").unwrap_err();
        assert!(matches!(e, DataError::Checksum { .. }), "{e}");
        assert!(e.to_string().contains("dir/a.bin"));
        let e = sums.verify("c.bin", "c.bin", b"").unwrap_err();
        assert!(e.to_string().contains("no SHA-256 listed for 'c.bin'"));
    }

    #[test]
    fn malformed_lines() {
        assert!(Sha256Sums::parse("S", "nothex  a\n").is_err());
        assert!(Sha256Sums::parse("S", &format!("{}\n", "a".repeat(64))).is_err());
        assert!(Sha256Sums::parse("S", &format!("{}   \n", "a".repeat(64))).is_err());
        let e = Sha256Sums::parse("S", "zz  f\n").unwrap_err();
        assert!(e.to_string().contains("S: invalid line 1"), "{e}");
    }
}
