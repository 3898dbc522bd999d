//! MNIST: 60,000 training and 10,000 test digits, 28×28 grey, as NHWC float32
//! in [0, 1] (`pixel / 255`) with class ids 0–9.
//!
//! The four gzipped IDX files are embedded in the binary, so
//! [`Mnist::load_bundled`] works from any working directory; they are
//! verified against the embedded `SHA256SUMS` (sums of the uncompressed files).

use std::path::Path;

use strata_core::Tensor;

use crate::checksum::Sha256Sums;
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::idx::{decode_idx, read_idx, IdxArray};

macro_rules! bundled {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../data/mnist/",
            $name
        ))
    };
}

static TRAIN_IMAGES_GZ: &[u8] = bundled!("train-images-idx3-ubyte.gz");
static TRAIN_LABELS_GZ: &[u8] = bundled!("train-labels-idx1-ubyte.gz");
static TEST_IMAGES_GZ: &[u8] = bundled!("t10k-images-idx3-ubyte.gz");
static TEST_LABELS_GZ: &[u8] = bundled!("t10k-labels-idx1-ubyte.gz");
static SHA256SUMS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../data/mnist/SHA256SUMS"
));

/// The four MNIST file names (uncompressed; `.gz` is appended when gzipped).
pub const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Side length of an MNIST digit.
pub const MNIST_SIDE: usize = 28;
/// Number of MNIST classes.
pub const MNIST_CLASSES: usize = 10;

/// The MNIST training and test sets.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// (60000, 28, 28, 1) in [0, 1].
    pub train_images: Tensor,
    /// 60000 class ids in 0..10.
    pub train_labels: Vec<usize>,
    /// (10000, 28, 28, 1) in [0, 1].
    pub test_images: Tensor,
    /// 10000 class ids in 0..10.
    pub test_labels: Vec<usize>,
}

impl Mnist {
    /// Decodes the copy of MNIST embedded in the binary, verifying its checksums.
    pub fn load_bundled() -> Result<Mnist> {
        let sums = Sha256Sums::parse("bundled data/mnist/SHA256SUMS", SHA256SUMS)?;
        let blobs = [
            TRAIN_IMAGES_GZ,
            TRAIN_LABELS_GZ,
            TEST_IMAGES_GZ,
            TEST_LABELS_GZ,
        ];
        let parts = decode_all(|i| {
            let name = format!("bundled data/mnist/{}.gz", MNIST_FILES[i]);
            let arr = decode_idx(&name, blobs[i].to_vec(), None)?;
            verify_and_convert(i, name, arr, Some(&sums))
        })?;
        Mnist::from_parts(parts)
    }

    /// Loads the four files from `dir`, each either raw or with a `.gz`
    /// suffix; when `dir/SHA256SUMS` exists every file is verified against it.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Mnist> {
        let dir = dir.as_ref();
        let sums_path = dir.join("SHA256SUMS");
        let sums = if sums_path.is_file() {
            Some(Sha256Sums::read(&sums_path)?)
        } else {
            None
        };
        let parts = decode_all(|i| {
            let raw = dir.join(MNIST_FILES[i]);
            let path = if raw.is_file() {
                raw
            } else {
                dir.join(format!("{}.gz", MNIST_FILES[i]))
            };
            let arr = read_idx(&path, None)?;
            verify_and_convert(i, path.display().to_string(), arr, sums.as_ref())
        })?;
        Mnist::from_parts(parts)
    }

    /// The training set as a [`Dataset`] (cheap: the image tensor is shared).
    pub fn train(&self) -> Result<Dataset> {
        Dataset::new(self.train_images.clone(), self.train_labels.clone())
    }

    /// The test set as a [`Dataset`].
    pub fn test(&self) -> Result<Dataset> {
        Dataset::new(self.test_images.clone(), self.test_labels.clone())
    }

    fn from_parts(parts: Vec<Part>) -> Result<Mnist> {
        let mut it = parts.into_iter();
        let (train_images, train_labels, test_images, test_labels) =
            match (it.next(), it.next(), it.next(), it.next()) {
                (
                    Some(Part::Images(a)),
                    Some(Part::Labels(an, b)),
                    Some(Part::Images(c)),
                    Some(Part::Labels(cn, d)),
                ) => {
                    check_count(&an, &b, &a)?;
                    check_count(&cn, &d, &c)?;
                    (a, b, c, d)
                }
                _ => {
                    return Err(DataError::shape(
                        "MNIST",
                        "images, labels, images, labels",
                        "other files",
                    ))
                }
            };
        Ok(Mnist {
            train_images,
            train_labels,
            test_images,
            test_labels,
        })
    }
}

/// A decoded MNIST file: images, or (file name, labels).
enum Part {
    Images(Tensor),
    Labels(String, Vec<usize>),
}

fn check_count(name: &str, labels: &[usize], images: &Tensor) -> Result<()> {
    if labels.len() != images.shape()[0] {
        return Err(DataError::shape(
            format!("{name}: dimensions"),
            format!("({},) to match the images", images.shape()[0]),
            format!("[{}]", labels.len()),
        ));
    }
    Ok(())
}

/// Hashes the uncompressed bytes on a second thread while converting them
/// (file `i` of [`MNIST_FILES`]: even = images, odd = labels).
fn verify_and_convert(
    i: usize,
    name: String,
    arr: IdxArray,
    sums: Option<&Sha256Sums>,
) -> Result<Part> {
    std::thread::scope(|s| {
        let check = sums.map(|sums| s.spawn(|| sums.verify(MNIST_FILES[i], &name, arr.raw())));
        let part = if i.is_multiple_of(2) {
            images_to_tensor(&name, &arr).map(Part::Images)
        } else {
            labels_to_vec(&name, &arr).map(|l| Part::Labels(name.clone(), l))
        };
        if let Some(h) = check {
            h.join().unwrap_or_else(|_| {
                Err(DataError::format(
                    &name,
                    "checksum",
                    "hashing thread panicked",
                ))
            })?;
        }
        part
    })
}

/// Runs `f(0..4)` on four threads and returns the results in order.
fn decode_all<F>(f: F) -> Result<Vec<Part>>
where
    F: Fn(usize) -> Result<Part> + Sync,
{
    let f = &f;
    let results: Vec<Result<Part>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|i| s.spawn(move || f(i))).collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                h.join().unwrap_or_else(|_| {
                    Err(DataError::format(
                        MNIST_FILES[i],
                        "decoder",
                        "decoding thread panicked",
                    ))
                })
            })
            .collect()
    });
    results.into_iter().collect()
}

/// (N, 28, 28) bytes → (N, 28, 28, 1) float32 in [0, 1].
fn images_to_tensor(name: &str, a: &IdxArray) -> Result<Tensor> {
    let dims = a.dims();
    if dims.len() != 3 || dims[1] != MNIST_SIDE || dims[2] != MNIST_SIDE {
        return Err(DataError::shape(
            format!("{name}: dimensions"),
            "(N, 28, 28)",
            format!("{dims:?}"),
        ));
    }
    let mut lut = [0f32; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        *v = i as f32 / 255.0;
    }
    let data: Vec<f32> = a.data().iter().map(|&b| lut[b as usize]).collect();
    Ok(Tensor::from_vec(
        data,
        &[dims[0], MNIST_SIDE, MNIST_SIDE, 1],
    )?)
}

/// (N,) bytes → class ids in 0..10.
fn labels_to_vec(name: &str, a: &IdxArray) -> Result<Vec<usize>> {
    let dims = a.dims();
    if dims.len() != 1 {
        return Err(DataError::shape(
            format!("{name}: dimensions"),
            "(N,)",
            format!("{dims:?}"),
        ));
    }
    if let Some(pos) = a.data().iter().position(|&b| b as usize >= MNIST_CLASSES) {
        return Err(DataError::format(
            name,
            "labels",
            format!("label {} at index {pos} is not in 0..10", a.data()[pos]),
        ));
    }
    Ok(a.data().iter().map(|&b| b as usize).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::sha256_hex;
    use crate::idx::tests::{gz, idx_bytes};

    #[test]
    fn bundled_mnist() {
        let m = Mnist::load_bundled().unwrap();
        assert_eq!(m.train_images.shape(), &[60000, 28, 28, 1]);
        assert_eq!(m.test_images.shape(), &[10000, 28, 28, 1]);
        assert_eq!(m.train_labels.len(), 60000);
        assert_eq!(m.test_labels.len(), 10000);
        assert_eq!(m.train_labels[0], 5);
        assert_eq!(m.test_labels[0], 7);
        let d = m.train_images.data();
        assert!(d.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(d.contains(&1.0));
        // Every class appears.
        let mut counts = [0usize; 10];
        m.train_labels.iter().for_each(|&l| counts[l] += 1);
        assert!(counts.iter().all(|&c| c > 5000));
    }

    #[test]
    fn bundled_matches_load_dir() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");
        let a = Mnist::load_dir(dir).unwrap();
        let b = Mnist::load_bundled().unwrap();
        assert_eq!(a.test_labels, b.test_labels);
        assert!(a.test_images.allclose(&b.test_images, 0.0, 0.0));
    }

    fn write_tiny(dir: &Path, labels: &[u8], gzip: bool, sums: Option<&str>) {
        std::fs::create_dir_all(dir).unwrap();
        let n = labels.len() as u32;
        let pix: Vec<u8> = (0..n as usize * 784).map(|i| (i % 256) as u8).collect();
        let files = [
            idx_bytes(&[n, 28, 28], &pix),
            idx_bytes(&[n], labels),
            idx_bytes(&[n, 28, 28], &pix),
            idx_bytes(&[n], labels),
        ];
        let mut text = String::new();
        for (name, raw) in MNIST_FILES.iter().zip(files.iter()) {
            text.push_str(&format!("{}  {name}\n", sha256_hex(raw)));
            if gzip {
                std::fs::write(dir.join(format!("{name}.gz")), gz(raw)).unwrap();
            } else {
                std::fs::write(dir.join(name), raw).unwrap();
            }
        }
        if let Some(t) = sums {
            std::fs::write(dir.join("SHA256SUMS"), t).unwrap();
        } else {
            std::fs::write(dir.join("SHA256SUMS"), text).unwrap();
        }
    }

    fn tmp(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("strata-mnist-{tag}-{}", std::process::id()))
    }

    #[test]
    fn load_dir_raw_and_gz() {
        for gzip in [false, true] {
            let dir = tmp(if gzip { "gz" } else { "raw" });
            write_tiny(&dir, &[3, 1, 4], gzip, None);
            let m = Mnist::load_dir(&dir).unwrap();
            assert_eq!(m.train_images.shape(), &[3, 28, 28, 1]);
            assert_eq!(m.train_labels, vec![3, 1, 4]);
            assert_eq!(m.train_images.data()[255], 1.0);
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    #[test]
    fn load_dir_checksum_mismatch() {
        let dir = tmp("sum");
        let bad = MNIST_FILES
            .iter()
            .map(|n| format!("{}  {n}\n", "0".repeat(64)))
            .collect::<String>();
        write_tiny(&dir, &[1, 2], true, Some(&bad));
        let e = Mnist::load_dir(&dir).unwrap_err();
        assert!(matches!(e, DataError::Checksum { .. }), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn load_dir_count_mismatch_and_wrong_dims() {
        let dir = tmp("count");
        write_tiny(&dir, &[1, 2], false, None);
        // Replace the training labels with three entries (and drop the sums).
        std::fs::remove_file(dir.join("SHA256SUMS")).unwrap();
        std::fs::write(dir.join(MNIST_FILES[1]), idx_bytes(&[3], &[1, 2, 3])).unwrap();
        let e = Mnist::load_dir(&dir).unwrap_err();
        assert!(e.to_string().contains("to match the images"), "{e}");
        // Images that are not 28x28.
        std::fs::write(dir.join(MNIST_FILES[0]), idx_bytes(&[1, 2, 2], &[0; 4])).unwrap();
        let e = Mnist::load_dir(&dir).unwrap_err();
        assert!(e.to_string().contains("(N, 28, 28)"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn load_dir_bad_labels_and_missing() {
        let dir = tmp("lab");
        write_tiny(&dir, &[1, 12], false, None);
        let e = Mnist::load_dir(&dir).unwrap_err();
        assert!(e.to_string().contains("label 12"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
        let e = Mnist::load_dir(tmp("nowhere")).unwrap_err();
        assert!(matches!(e, DataError::Io { .. }), "{e}");
    }
}
