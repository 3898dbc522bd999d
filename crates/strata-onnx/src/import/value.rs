//! How an ONNX value is held in the strata model being built.
//!
//! strata keeps images NHWC; ONNX graphs from PyTorch keep them NCHW. The
//! importer never moves data to follow ONNX's layout: each ONNX value is a
//! strata tensor plus a map from ONNX axes to strata axes. A Transpose only
//! changes the map, and a convolution asks for the NCHW view of an NHWC
//! tensor. Where the layouts meet in a flat vector (Flatten of NCHW feature
//! maps), the value records which strata feature each ONNX feature is, and
//! the next Dense layer takes its weight rows in that order.

/// An ONNX value as a strata tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Val {
    /// The strata input or layer whose output this is.
    pub src: String,
    /// strata's per-sample shape (batch excluded).
    pub shape: Vec<usize>,
    /// For each ONNX axis (batch first), the strata axis it is (0 = batch),
    /// or `None` for a size-1 axis strata does not have.
    pub axes: Vec<Option<usize>>,
    /// Rank-2 values made by flattening a permuted view: ONNX feature `j`
    /// is strata feature `flat_order[j]`.
    pub flat_order: Option<Vec<usize>>,
    /// A constant factor ONNX applies that strata has not yet (a `Mul` by a
    /// scalar, waiting to meet its partner in a Blend).
    pub scale: Option<f32>,
}

/// The map of an NHWC strata image seen as ONNX's NCHW.
pub const NCHW: [usize; 4] = [0, 3, 1, 2];

impl Val {
    /// A strata tensor seen in its own order.
    pub fn plain(src: impl Into<String>, shape: Vec<usize>) -> Val {
        let axes = (0..=shape.len()).map(Some).collect();
        Val {
            src: src.into(),
            shape,
            axes,
            flat_order: None,
            scale: None,
        }
    }

    /// An (H, W, C) strata image seen as ONNX's (N, C, H, W).
    pub fn nchw(src: impl Into<String>, shape: Vec<usize>) -> Val {
        Val {
            src: src.into(),
            shape,
            axes: NCHW.iter().map(|&a| Some(a)).collect(),
            flat_order: None,
            scale: None,
        }
    }

    /// ONNX's per-sample dims (batch excluded).
    pub fn onnx_dims(&self) -> Vec<usize> {
        self.axes[1..]
            .iter()
            .map(|a| a.map_or(1, |a| self.shape[a - 1]))
            .collect()
    }

    /// ONNX's rank, batch included.
    pub fn rank(&self) -> usize {
        self.axes.len()
    }

    /// True for an (H, W, C) strata image seen as NCHW.
    pub fn is_nchw_image(&self) -> bool {
        self.shape.len() == 3 && self.axes == NCHW.map(Some) && self.flat_order.is_none()
    }

    /// True when ONNX sees the strata tensor in strata's own order.
    pub fn is_plain(&self) -> bool {
        self.axes.len() == self.shape.len() + 1
            && self.axes.iter().enumerate().all(|(i, a)| *a == Some(i))
            && self.flat_order.is_none()
    }

    /// The strata axis (batch = 0) of ONNX axis `axis` (negative counts
    /// from the end).
    pub fn strata_axis(&self, axis: i64) -> Option<usize> {
        let r = self.rank() as i64;
        let a = if axis < 0 { axis + r } else { axis };
        if !(0..r).contains(&a) {
            return None;
        }
        self.axes[a as usize]
    }

    /// The order of ONNX's flattened features in strata's flat order, `None`
    /// where they agree.
    pub fn flat_order_of_view(&self) -> Option<Vec<usize>> {
        if let Some(o) = &self.flat_order {
            return Some(o.clone());
        }
        let dims = self.onnx_dims();
        let n: usize = dims.iter().product();
        // strides of strata's axes 1.. in its row-major order
        let mut stride = vec![1usize; self.shape.len() + 1];
        for a in (1..self.shape.len()).rev() {
            stride[a] = stride[a + 1] * self.shape[a];
        }
        let mut order = Vec::with_capacity(n);
        let mut idx = vec![0usize; dims.len()];
        for _ in 0..n {
            let flat: usize = idx
                .iter()
                .zip(&self.axes[1..])
                .map(|(&i, a)| a.map_or(0, |a| i * stride[a]))
                .sum();
            order.push(flat);
            for k in (0..dims.len()).rev() {
                idx[k] += 1;
                if idx[k] < dims[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        let identity = order.iter().enumerate().all(|(i, &j)| i == j);
        (!identity).then_some(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nchw_view_of_an_image_flattens_channel_first() {
        let v = Val::nchw("x", vec![2, 2, 3]);
        assert_eq!(v.onnx_dims(), vec![3, 2, 2]);
        // ONNX feature (c, h, w) is strata feature (h, w, c).
        let order = v.flat_order_of_view().unwrap();
        assert_eq!(order[0], 0);
        assert_eq!(order[1], 3); // c0 h0 w1 -> strata (0, 1, 0)
        assert_eq!(order[4], 1); // c1 h0 w0
        assert_eq!(order.len(), 12);
    }

    #[test]
    fn one_by_one_maps_and_plain_values_flatten_in_order() {
        let pooled = Val {
            src: "gap".into(),
            shape: vec![5],
            axes: vec![Some(0), Some(1), None, None],
            flat_order: None,
            scale: None,
        };
        assert_eq!(pooled.onnx_dims(), vec![5, 1, 1]);
        assert_eq!(pooled.flat_order_of_view(), None);
        assert_eq!(Val::plain("x", vec![4, 4, 3]).flat_order_of_view(), None);
        assert_eq!(Val::nchw("x", vec![1, 1, 7]).flat_order_of_view(), None);
    }
}
