//! LeNet-5 in the Keras style most tutorials use, on 28x28 MNIST digits.
//!
//! Variant (documented choice): LeCun et al. 1998's layer sizes with tanh
//! activations and average pooling, the first convolution padded "same" so a
//! 28x28 input plays the role of the paper's 32x32 one:
//! Conv2D(6, 5x5, tanh, same) -> AveragePooling2D(2) -> Conv2D(16, 5x5, tanh,
//! valid) -> AveragePooling2D(2) -> Flatten -> Dense(120, tanh) ->
//! Dense(84, tanh) -> Dense(classes, softmax). The paper's sparse C3
//! connection table and RBF output are replaced by a full convolution and a
//! softmax, as in the usual re-implementations. On (28, 28, 1) with 10
//! classes: 61,706 parameters. Layers carry Keras's default names.

use strata_core::ops::Padding;
use strata_nn::layers::{AveragePooling2D, Conv2D, Dense, Flatten};
use strata_nn::{Activation, Model};

use crate::error::{Result, ZooError};

/// Builds LeNet-5 for `input_shape` (H, W, C) and `classes` outputs.
pub fn lenet5(input_shape: [usize; 3], classes: usize, seed: u64) -> Result<Model> {
    if classes == 0 {
        return Err(ZooError::config("lenet5", "classes", "must be at least 1"));
    }
    let mut m = Model::sequential("lenet5", &input_shape, seed);
    m.add(
        Conv2D::new(6, (5, 5))
            .padding(Padding::Same)
            .activation(Activation::Tanh),
    )?;
    m.add(AveragePooling2D::new((2, 2), None, "valid"))?;
    m.add(Conv2D::new(16, (5, 5)).activation(Activation::Tanh))?;
    m.add(AveragePooling2D::new((2, 2), None, "valid"))?;
    m.add(Flatten::new())?;
    m.add(Dense::new(120).activation(Activation::Tanh))?;
    m.add(Dense::new(84).activation(Activation::Tanh))?;
    m.add(Dense::new(classes).activation(Activation::Softmax))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::Tensor;

    #[test]
    fn layer_sizes_and_param_count() {
        let mut m = lenet5([28, 28, 1], 10, 0).unwrap();
        // 156 + 2,416 + 48,120 + 10,164 + 850
        assert_eq!(m.count_params(), 61_706);
        let shapes: Vec<Vec<usize>> = m.nodes().iter().map(|n| n.output_shape.clone()).collect();
        assert_eq!(shapes[0], vec![28, 28, 6]);
        assert_eq!(shapes[3], vec![5, 5, 16]);
        assert_eq!(shapes[4], vec![400]);
        assert_eq!(m.layers()[7].name(), "dense_2");
        let y = m.forward(&[Tensor::zeros(&[3, 28, 28, 1])], false).unwrap();
        assert_eq!(y[0].shape(), &[3, 10]);
        let s: f32 = y[0].to_vec()[..10].iter().sum();
        assert!((s - 1.0).abs() < 1e-5);
        assert!(lenet5([28, 28, 1], 0, 0).is_err());
        assert!(lenet5([8, 8, 1], 10, 0).is_err());
    }
}
