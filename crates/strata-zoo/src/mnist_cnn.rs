//! The Keras "Simple MNIST convnet" example
//! (<https://keras.io/examples/vision/mnist_convnet/>): two 3x3 ReLU
//! convolutions with 2x2 max-pooling, dropout 0.5 and a softmax classifier.
//! Layers carry Keras's default names (`conv2d`, `max_pooling2d`,
//! `conv2d_1`, ..., `dense`); on (28, 28, 1) with 10 classes it has 34,826
//! parameters, as in Keras.

use strata_nn::layers::{Conv2D, Dense, Dropout, Flatten, MaxPooling2D};
use strata_nn::{Activation, Model};

use crate::error::{Result, ZooError};

/// The default input: one 28x28 grey-level image.
pub const MNIST_INPUT_SHAPE: [usize; 3] = [28, 28, 1];

/// Builds the MNIST CNN for `input_shape` (H, W, C) and `classes` outputs.
pub fn mnist_cnn(input_shape: [usize; 3], classes: usize, seed: u64) -> Result<Model> {
    if classes == 0 {
        return Err(ZooError::config(
            "mnist-cnn",
            "classes",
            "must be at least 1",
        ));
    }
    let mut m = Model::sequential("mnist_cnn", &input_shape, seed);
    m.add(Conv2D::new(32, (3, 3)).activation(Activation::Relu))?;
    m.add(MaxPooling2D::new((2, 2), None, "valid"))?;
    m.add(Conv2D::new(64, (3, 3)).activation(Activation::Relu))?;
    m.add(MaxPooling2D::new((2, 2), None, "valid"))?;
    m.add(Flatten::new())?;
    m.add(Dropout::new(0.5))?;
    m.add(Dense::new(classes).activation(Activation::Softmax))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::Tensor;

    #[test]
    fn keras_names_shapes_and_param_count() {
        let mut m = mnist_cnn(MNIST_INPUT_SHAPE, 10, 0).unwrap();
        assert_eq!(m.count_params(), 34_826);
        assert_eq!(m.count_trainable_params(), 34_826);
        let names: Vec<&str> = m.layers().iter().map(|l| l.name()).collect();
        assert_eq!(
            names,
            [
                "conv2d",
                "max_pooling2d",
                "conv2d_1",
                "max_pooling2d_1",
                "flatten",
                "dropout",
                "dense"
            ]
        );
        assert_eq!(m.output_shapes(), vec![vec![10]]);
        assert!(m.ends_in_softmax());
        let y = m.forward(&[Tensor::zeros(&[2, 28, 28, 1])], false).unwrap();
        assert_eq!(y[0].shape(), &[2, 10]);
    }

    #[test]
    fn bad_options_are_errors() {
        assert!(mnist_cnn(MNIST_INPUT_SHAPE, 0, 0).is_err());
        // too small for two convolutions and two poolings
        assert!(mnist_cnn([4, 4, 1], 10, 0).is_err());
    }
}
