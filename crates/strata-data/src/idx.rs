//! IDX files (the MNIST format): a 4-byte magic `00 00 <dtype> <ndims>`, `ndims`
//! big-endian u32 dimensions, then the row-major payload. Only the unsigned
//! byte type (0x08) is accepted. Files may be gzipped (detected by `1f 8b`).
//!
//! Everything is validated before anything large is allocated: the declared
//! dimensions are multiplied with overflow checks, capped by a byte limit, and
//! compared with the payload actually present; gzip streams are read through a
//! `take(expected + 1)` reader so a decompression bomb cannot exhaust memory.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::checksum::Sha256Sums;
use crate::error::{DataError, Result};

/// The largest uncompressed IDX file accepted (1 GiB; MNIST's largest is 47 MB).
pub const MAX_IDX_BYTES: usize = 1 << 30;

/// The IDX data-type code for unsigned bytes, the only one accepted.
pub const IDX_DTYPE_U8: u8 = 0x08;

/// The largest deflate expansion ratio (a bound used only to size buffers).
const MAX_DEFLATE_RATIO: usize = 1032;

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    dims: Vec<usize>,
    bytes: Vec<u8>,
    offset: usize,
}

impl IdxArray {
    /// The declared dimensions, e.g. `[60000, 28, 28]`.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }
    /// The row-major payload (one byte per element).
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.offset..]
    }
    /// The whole uncompressed file (header and payload), as hashed by SHA256SUMS.
    pub fn raw(&self) -> &[u8] {
        &self.bytes
    }
}

/// True when `bytes` start with the gzip magic `1f 8b`.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// Validates the magic; returns the number of dimensions.
fn check_magic(name: &str, magic: &[u8]) -> Result<usize> {
    if magic.len() < 4 {
        return Err(DataError::format(
            name,
            "magic",
            format!("file too short: {} bytes, need at least 4", magic.len()),
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DataError::format(
            name,
            "magic",
            format!(
                "0x{:02x}{:02x}{:02x}{:02x} is not an IDX magic (expected 0x0000TTNN)",
                magic[0], magic[1], magic[2], magic[3]
            ),
        ));
    }
    if magic[2] != IDX_DTYPE_U8 {
        let kind = match magic[2] {
            0x09 => "signed byte",
            0x0B => "int16",
            0x0C => "int32",
            0x0D => "float32",
            0x0E => "float64",
            _ => "unknown",
        };
        return Err(DataError::format(
            name,
            "data type",
            format!(
                "0x{:02x} ({kind}) is not supported; only 0x08 (unsigned byte)",
                magic[2]
            ),
        ));
    }
    if magic[3] == 0 {
        return Err(DataError::format(name, "dimensions", "zero dimensions"));
    }
    Ok(magic[3] as usize)
}

/// Parses the dimension words; returns (dims, payload bytes), overflow-checked
/// and capped at `max_bytes` together with the header.
fn parse_dims(name: &str, words: &[u8], max_bytes: usize) -> Result<(Vec<usize>, usize)> {
    let mut dims = Vec::with_capacity(words.len() / 4);
    let mut total: usize = 1;
    for w in words.chunks_exact(4) {
        let d = u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize;
        dims.push(d);
        total = total.checked_mul(d).ok_or_else(|| {
            DataError::format(name, "dimensions", "element count overflows usize")
        })?;
    }
    let header = 4 + words.len();
    if total > max_bytes.saturating_sub(header) {
        return Err(DataError::format(
            name,
            "dimensions",
            format!("{dims:?} declares {total} bytes, over the limit of {max_bytes} bytes"),
        ));
    }
    Ok((dims, total))
}

/// Parses an uncompressed IDX file held in `bytes` (taken by value: no copy).
pub fn parse_idx(name: &str, bytes: Vec<u8>) -> Result<IdxArray> {
    let ndims = check_magic(name, &bytes)?;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::format(
            name,
            "dimensions",
            format!(
                "truncated header: {ndims} dimensions need {header} bytes, file has {}",
                bytes.len()
            ),
        ));
    }
    let (dims, payload) = parse_dims(name, &bytes[4..header], MAX_IDX_BYTES)?;
    let found = bytes.len() - header;
    if found != payload {
        return Err(DataError::format(
            name,
            "payload",
            format!("dimensions {dims:?} need {payload} bytes, file has {found}"),
        ));
    }
    Ok(IdxArray {
        dims,
        bytes,
        offset: header,
    })
}

fn gzip_error(name: &str, e: std::io::Error) -> DataError {
    DataError::format(name, "gzip stream", e.to_string())
}

/// Decompresses a gzipped IDX file, reading the header first so the payload is
/// read through a bounded reader. Returns the whole uncompressed file.
pub fn gunzip_idx(name: &str, compressed: &[u8], max_bytes: usize) -> Result<Vec<u8>> {
    let mut dec = MultiGzDecoder::new(compressed);
    let mut magic = [0u8; 4];
    read_full(&mut dec, &mut magic).map_err(|e| gzip_error(name, e))?;
    let ndims = check_magic(name, &magic)?;
    let mut words = vec![0u8; 4 * ndims];
    let got = read_full(&mut dec, &mut words).map_err(|e| gzip_error(name, e))?;
    if got < words.len() {
        return Err(DataError::format(
            name,
            "dimensions",
            format!(
                "truncated header: {ndims} dimensions need {} bytes, stream has {}",
                4 + words.len(),
                4 + got
            ),
        ));
    }
    let (dims, payload) = parse_dims(name, &words, max_bytes)?;
    let header = 4 + words.len();
    // Reserve no more than the compressed input could possibly expand to.
    let bound = compressed.len().saturating_mul(MAX_DEFLATE_RATIO);
    let mut out = Vec::with_capacity(header + payload.min(bound));
    out.extend_from_slice(&magic);
    out.extend_from_slice(&words);
    let limit = (payload as u64).saturating_add(1);
    dec.take(limit)
        .read_to_end(&mut out)
        .map_err(|e| gzip_error(name, e))?;
    let found = out.len() - header;
    if found != payload {
        let found = if found > payload {
            "more".to_string()
        } else {
            found.to_string()
        };
        return Err(DataError::format(
            name,
            "payload",
            format!("dimensions {dims:?} need {payload} bytes, stream has {found}"),
        ));
    }
    Ok(out)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Decodes IDX bytes (gzipped or raw). When `sums` is given, the uncompressed
/// bytes must hash to the entry for `key` (the file name without `.gz`).
pub fn decode_idx(
    name: &str,
    bytes: Vec<u8>,
    sums: Option<(&Sha256Sums, &str)>,
) -> Result<IdxArray> {
    let raw = if is_gzip(&bytes) {
        gunzip_idx(name, &bytes, MAX_IDX_BYTES)?
    } else {
        bytes
    };
    // Parse first (cheap, names the malformed field), then hash.
    let arr = parse_idx(name, raw)?;
    if let Some((sums, key)) = sums {
        sums.verify(key, name, arr.raw())?;
    }
    Ok(arr)
}

/// The SHA256SUMS key of an IDX file: its file name without a `.gz` suffix.
pub fn checksum_key(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.strip_suffix(".gz") {
        Some(stem) => stem.to_string(),
        None => name,
    }
}

/// Reads an IDX file (gzipped or raw), verified against `sums` when given.
pub fn read_idx(path: impl AsRef<Path>, sums: Option<&Sha256Sums>) -> Result<IdxArray> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if meta.len() > MAX_IDX_BYTES as u64 {
        return Err(DataError::format(
            &name,
            "size",
            format!("{} bytes, over the limit of {MAX_IDX_BYTES}", meta.len()),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let key = checksum_key(path);
    decode_idx(&name, bytes, sums.map(|s| (s, key.as_str())))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::checksum::sha256_hex;
    use flate2::write::GzEncoder;
    use std::io::Write;

    pub(crate) fn idx_bytes(dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    pub(crate) fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn raw_and_gzip_agree() {
        let raw = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let a = decode_idx("a", raw.clone(), None).unwrap();
        assert_eq!(a.dims(), &[2, 3]);
        assert_eq!(a.data(), &[1, 2, 3, 4, 5, 6]);
        let b = decode_idx("b", gz(&raw), None).unwrap();
        assert_eq!(a.dims(), b.dims());
        assert_eq!(a.data(), b.data());
        assert_eq!(b.raw(), &raw[..]);
    }

    #[test]
    fn labels_one_dimension() {
        let a = decode_idx("l", idx_bytes(&[4], &[5, 0, 4, 1]), None).unwrap();
        assert_eq!(a.dims(), &[4]);
        assert_eq!(a.data(), &[5, 0, 4, 1]);
    }

    #[test]
    fn truncated_payload() {
        let raw = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5]);
        let e = decode_idx("t.idx", raw.clone(), None).unwrap_err();
        assert!(e.to_string().contains("t.idx: invalid payload"), "{e}");
        let e = decode_idx("t.gz", gz(&raw), None).unwrap_err();
        assert!(e.to_string().contains("invalid payload"), "{e}");
        // Too long is also wrong.
        let raw = idx_bytes(&[2], &[1, 2, 3]);
        assert!(decode_idx("x", raw.clone(), None).is_err());
        assert!(decode_idx("x", gz(&raw), None).is_err());
    }

    #[test]
    fn truncated_header() {
        for n in 0..12 {
            let raw = idx_bytes(&[2, 3, 4], &[]);
            let cut = raw[..n.min(raw.len())].to_vec();
            assert!(decode_idx("h", cut.clone(), None).is_err());
            assert!(decode_idx("h", gz(&cut), None).is_err());
        }
    }

    #[test]
    fn huge_declared_shape_is_an_error_not_oom() {
        // 10^6 * 10^6 = 10^12 elements in a ~100-byte file.
        let mut raw = idx_bytes(&[1_000_000, 1_000_000], &[]);
        raw.extend_from_slice(&[0u8; 88]);
        let e = decode_idx("big", raw.clone(), None).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        let e = decode_idx("big.gz", gz(&raw), None).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        // Overflowing usize.
        let raw = idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[]);
        let e = decode_idx("ovf", raw, None).unwrap_err();
        assert!(e.to_string().contains("overflow"), "{e}");
    }

    #[test]
    fn decompression_bomb_is_bounded() {
        // Header claims 16 bytes, the stream carries 50 MB of zeros.
        let mut raw = idx_bytes(&[16], &[]);
        raw.extend(std::iter::repeat_n(0u8, 50_000_000));
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&raw).unwrap();
        let compressed = e.finish().unwrap();
        assert!(compressed.len() < 200_000, "{}", compressed.len());
        let e = decode_idx("bomb.gz", compressed, None).unwrap_err();
        assert!(e.to_string().contains("stream has more"), "{e}");
    }

    #[test]
    fn bad_magic_and_dtype() {
        let mut raw = idx_bytes(&[2], &[1, 2]);
        raw[0] = 7;
        let e = decode_idx("m", raw, None).unwrap_err();
        assert!(e.to_string().contains("invalid magic"), "{e}");
        let mut raw = idx_bytes(&[2], &[1, 2]);
        raw[2] = 0x0D;
        let e = decode_idx("d", raw, None).unwrap_err();
        assert!(e.to_string().contains("float32"), "{e}");
        let mut raw = idx_bytes(&[2], &[1, 2]);
        raw[3] = 0;
        assert!(decode_idx("z", raw, None).is_err());
    }

    #[test]
    fn garbage_and_broken_gzip() {
        let e = decode_idx("g", b"hello world, not idx".to_vec(), None).unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");
        let mut bad = gz(&idx_bytes(&[4], &[1, 2, 3, 4]));
        let n = bad.len();
        bad.truncate(n - 10);
        assert!(decode_idx("cut.gz", bad, None).is_err());
        let e = decode_idx("junk.gz", vec![0x1f, 0x8b, 1, 2, 3, 4, 5], None).unwrap_err();
        assert!(e.to_string().contains("junk.gz"), "{e}");
        assert!(decode_idx("empty", Vec::new(), None).is_err());
    }

    #[test]
    fn checksum_verified_on_uncompressed_bytes() {
        let raw = idx_bytes(&[3], &[9, 8, 7]);
        let sums =
            Sha256Sums::parse("SUMS", &format!("{}  lab-idx1-ubyte\n", sha256_hex(&raw))).unwrap();
        decode_idx("lab.gz", gz(&raw), Some((&sums, "lab-idx1-ubyte"))).unwrap();
        let other = idx_bytes(&[3], &[9, 8, 6]);
        let e = decode_idx("lab.gz", gz(&other), Some((&sums, "lab-idx1-ubyte"))).unwrap_err();
        assert!(matches!(e, DataError::Checksum { .. }), "{e}");
    }

    #[test]
    fn read_from_disk_and_key() {
        let dir = std::env::temp_dir().join(format!("strata-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x-idx1-ubyte.gz");
        std::fs::write(&p, gz(&idx_bytes(&[2], &[1, 2]))).unwrap();
        assert_eq!(checksum_key(&p), "x-idx1-ubyte");
        let a = read_idx(&p, None).unwrap();
        assert_eq!(a.data(), &[1, 2]);
        let e = read_idx(dir.join("missing"), None).unwrap_err();
        assert!(matches!(e, DataError::Io { .. }));
        std::fs::remove_dir_all(&dir).ok();
    }
}
