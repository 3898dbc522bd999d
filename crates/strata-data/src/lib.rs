//! strata-data: datasets and loaders.
//!
//! - [`Mnist`]: the bundled MNIST digits (embedded, checksum-verified).
//! - [`idx`]: IDX files, gzipped or raw, validated before allocating.
//! - [`npy`]: NumPy `.npy` read/write (C order, little-endian); [`NpyRows`]
//!   reads a large one a batch of rows at a time.
//! - [`Dataset`]: in-memory inputs (N, ...) with class ids or dense targets.
//! - [`ImageFolder`]: one sub-folder per class of PNG/JPEG images, in memory.
//! - [`ImageStream`]: the same folder decoded on worker threads as training
//!   goes, with [`transforms`] (random resized crop, flip, colour jitter).
//! - [`augment`]: seeded flips, padded crops, normalisation of NHWC batches.
//! - [`pictures`]: PNG grids of convolution kernels and training curves.
//! - [`attribution_pictures`]: PNG saliency maps, Grad-CAM overlays, feature-map grids.
//! - [`DataLoader`]: seeded, shuffled batches prepared on a background thread.

pub mod attribution_pictures;
pub mod augment;
pub mod checksum;
pub mod dataset;
pub mod error;
pub mod idx;
pub mod image_folder;
pub mod image_stream;
pub mod loader;
pub mod mnist;
pub mod npy;
pub mod npy_rows;
pub mod pictures;
pub mod transforms;

pub use augment::Augment;
pub use checksum::{sha256_hex, Sha256Sums};
pub use dataset::Dataset;
pub use error::{DataError, Result};
pub use idx::{read_idx, IdxArray};
pub use image_folder::{
    list_class_files, split_files, ImageFolder, ImageFolderConfig, LabelledFiles,
};
pub use image_stream::{BatchPart, ImageStream, ImageStreamConfig, StreamBatch, StreamEpoch};
pub use loader::{AugmentFn, Batch, DataLoader, DataLoaderConfig, EpochIter};
pub use mnist::Mnist;
pub use npy::{read_npy, read_npy_bytes, write_npy_f32, write_npy_i64, NpyArray, NpyDtype};
pub use npy_rows::NpyRows;
pub use transforms::{
    decode_image, Augmentation, ColorJitter, DecodedImage, ImageTransform, RandomResizedCrop,
    IMAGENET_MEAN, IMAGENET_STD,
};
