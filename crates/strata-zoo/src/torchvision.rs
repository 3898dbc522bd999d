//! torchvision-named weights (a ResNet `state_dict` saved as safetensors)
//! for the zoo ResNets, whose layer names are torchvision's module paths.
//!
//! Per tensor: a Conv2d `weight` (O, I, kh, kw) becomes the `kernel`
//! (kh, kw, I, O); a BatchNorm2d's `weight`, `bias`, `running_mean`,
//! `running_var` become `gamma`, `beta`, `moving_mean`, `moving_variance`; a
//! Linear `weight` (out, in) becomes the Dense `kernel` (in, out);
//! `num_batches_tracked` is ignored. Every missing, unexpected or wrongly
//! shaped tensor is reported at once, in torchvision's names and layouts,
//! and nothing is changed unless everything matches.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use strata_nn::layers::{BatchNormalization, Conv2D, Dense};
use strata_nn::model::read_safetensors;
use strata_nn::{Layer, Model, NnError};

use crate::error::Result;

/// (name, shape, float32 values), as `strata_nn::model::read_safetensors` gives them.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// How a torchvision tensor becomes a strata weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Same values, same shape.
    Same,
    /// OIHW -> HWIO.
    ConvKernel,
    /// (out, in) -> (in, out).
    DenseKernel,
}

/// One expected torchvision tensor: the strata weight it fills, that
/// weight's shape, and the layout change.
struct Target {
    strata: String,
    shape: Vec<usize>,
    layout: Layout,
}

/// torchvision's shape for a strata weight shape.
fn torch_shape(shape: &[usize], layout: Layout) -> Vec<usize> {
    match (layout, shape) {
        (Layout::ConvKernel, [h, w, i, o]) => vec![*o, *i, *h, *w],
        (Layout::DenseKernel, [i, o]) => vec![*o, *i],
        _ => shape.to_vec(),
    }
}

/// torchvision's name of a weight, or None for a layer kind torchvision's
/// ResNets do not have.
fn torch_weight_name(layer: &dyn Layer, weight: &str) -> Option<(&'static str, Layout)> {
    let any = layer.as_any();
    if any.is::<Conv2D>() {
        match weight {
            "kernel" => Some(("weight", Layout::ConvKernel)),
            "bias" => Some(("bias", Layout::Same)),
            _ => None,
        }
    } else if any.is::<BatchNormalization>() {
        match weight {
            "gamma" => Some(("weight", Layout::Same)),
            "beta" => Some(("bias", Layout::Same)),
            "moving_mean" => Some(("running_mean", Layout::Same)),
            "moving_variance" => Some(("running_var", Layout::Same)),
            _ => None,
        }
    } else if any.is::<Dense>() {
        match weight {
            "kernel" => Some(("weight", Layout::DenseKernel)),
            "bias" => Some(("bias", Layout::Same)),
            _ => None,
        }
    } else {
        None
    }
}

/// Every torchvision tensor name the model expects, in layer order.
fn targets(model: &Model) -> Vec<(String, Target)> {
    let mut out = Vec::new();
    for layer in model.layers() {
        for w in layer.weights() {
            let strata = format!("{}.{}", layer.name(), w.name);
            let (torch, layout) = match torch_weight_name(layer.as_ref(), w.name) {
                Some((t, l)) => (format!("{}.{t}", layer.name()), l),
                None => (strata.clone(), Layout::Same),
            };
            out.push((
                torch,
                Target {
                    strata,
                    shape: w.shape().to_vec(),
                    layout,
                },
            ));
        }
    }
    out
}

/// Transposes a row-major tensor of `shape` by the axis permutation `perm`
/// (output axis k is input axis perm[k]).
fn permute(values: &[f32], shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<f32>) {
    let rank = shape.len();
    let mut strides = vec![1usize; rank];
    for k in (0..rank.saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let out_strides: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    let n = values.len();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; rank];
    let mut src = 0usize;
    for _ in 0..n {
        out.push(values[src]);
        // advance the output multi-index (last axis fastest)
        for k in (0..rank).rev() {
            idx[k] += 1;
            src += out_strides[k];
            if idx[k] < out_shape[k] {
                break;
            }
            src -= out_strides[k] * out_shape[k];
            idx[k] = 0;
        }
    }
    (out_shape, out)
}

/// OIHW -> HWIO.
pub fn oihw_to_hwio(values: &[f32], shape: &[usize]) -> Option<(Vec<usize>, Vec<f32>)> {
    (shape.len() == 4 && values.len() == shape.iter().product::<usize>())
        .then(|| permute(values, shape, &[2, 3, 1, 0]))
}

/// HWIO -> OIHW.
pub fn hwio_to_oihw(values: &[f32], shape: &[usize]) -> Option<(Vec<usize>, Vec<f32>)> {
    (shape.len() == 4 && values.len() == shape.iter().product::<usize>())
        .then(|| permute(values, shape, &[3, 2, 0, 1]))
}

/// A matrix transposed: (r, c) -> (c, r).
pub fn transpose2(values: &[f32], shape: &[usize]) -> Option<(Vec<usize>, Vec<f32>)> {
    (shape.len() == 2 && values.len() == shape.iter().product::<usize>())
        .then(|| permute(values, shape, &[1, 0]))
}

/// Whether tensor names look like a torchvision `state_dict` rather than a
/// strata weights file (`<layer>.kernel`, `.gamma`, `.moving_mean`, ...).
pub fn is_torchvision_naming<'a>(names: impl IntoIterator<Item = &'a str>) -> bool {
    let strata = [
        ".kernel",
        ".gamma",
        ".beta",
        ".moving_mean",
        ".moving_variance",
        ".depthwise_kernel",
    ];
    let torch = [
        ".weight",
        ".running_mean",
        ".running_var",
        ".num_batches_tracked",
    ];
    let (mut s, mut t) = (0usize, 0usize);
    for n in names {
        if strata.iter().any(|e| n.ends_with(e)) {
            s += 1;
        }
        if torch.iter().any(|e| n.ends_with(e)) {
            t += 1;
        }
    }
    t > s
}

/// Maps torchvision-named tensors onto the model's strata weight names and
/// layouts. Every problem (missing, unexpected, wrong shape) is listed in one
/// One torchvision tensor in strata's layout (HWIO kernels, (in, out) Dense).
fn to_strata_layout(
    layout: Layout,
    shape: Vec<usize>,
    values: Vec<f32>,
) -> Option<(Vec<usize>, Vec<f32>)> {
    match layout {
        Layout::Same => Some((shape, values)),
        Layout::ConvKernel => oihw_to_hwio(&values, &shape),
        Layout::DenseKernel => transpose2(&values, &shape),
    }
}

/// error, in torchvision's names and shapes; `path` only names the source.
pub fn torchvision_to_strata(
    model: &Model,
    path: &Path,
    tensors: Vec<NamedTensor>,
) -> Result<Vec<NamedTensor>> {
    let expected = targets(model);
    let by_torch: HashMap<&str, &Target> = expected.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let given: HashSet<String> = tensors.iter().map(|(n, _, _)| n.clone()).collect();
    let mut problems = Vec::new();
    for (name, t) in &expected {
        if !given.contains(name) {
            problems.push(format!(
                "missing {name} {}",
                strata_core::fmt_shape(&torch_shape(&t.shape, t.layout))
            ));
        }
    }
    let mut out = Vec::with_capacity(tensors.len());
    let mut unexpected = Vec::new();
    for (name, shape, values) in tensors {
        if name.ends_with(".num_batches_tracked") {
            continue;
        }
        let Some(t) = by_torch.get(name.as_str()) else {
            unexpected.push(format!(
                "unexpected {name} {}",
                strata_core::fmt_shape(&shape)
            ));
            continue;
        };
        let want = torch_shape(&t.shape, t.layout);
        if shape != want || values.len() != want.iter().product::<usize>() {
            problems.push(format!(
                "{name}: expected shape {}, found {}",
                strata_core::fmt_shape(&want),
                strata_core::fmt_shape(&shape)
            ));
            continue;
        }
        let converted = to_strata_layout(t.layout, shape, values);
        match converted {
            Some((s, v)) => out.push((t.strata.clone(), s, v)),
            None => problems.push(format!(
                "{name}: cannot convert to the {:?} layout",
                t.layout
            )),
        }
    }
    unexpected.sort();
    problems.extend(unexpected);
    if !problems.is_empty() {
        return Err(NnError::Weights {
            path: path.display().to_string(),
            message: format!(
                "torchvision weights: {} mismatch(es): {}",
                problems.len(),
                problems.join("; ")
            ),
        }
        .into());
    }
    Ok(out)
}

/// The model's weights under torchvision's names and layouts (BatchNorm
/// layers also get `num_batches_tracked` = 0), ready for
/// `write_safetensors_atomic`: the inverse of [`torchvision_to_strata`].
pub fn strata_to_torchvision(model: &Model) -> Vec<NamedTensor> {
    let mut out = Vec::new();
    for layer in model.layers() {
        let is_bn = layer.as_any().is::<BatchNormalization>();
        for w in layer.weights() {
            let values = w.value.to_vec();
            let shape = w.shape().to_vec();
            let (torch, layout) = match torch_weight_name(layer.as_ref(), w.name) {
                Some((t, l)) => (format!("{}.{t}", layer.name()), l),
                None => (format!("{}.{}", layer.name(), w.name), Layout::Same),
            };
            let converted = match layout {
                Layout::Same => None,
                Layout::ConvKernel => hwio_to_oihw(&values, &shape),
                Layout::DenseKernel => transpose2(&values, &shape),
            };
            let (shape, values) = converted.unwrap_or((shape, values));
            out.push((torch, shape, values));
        }
        if is_bn {
            out.push((
                format!("{}.num_batches_tracked", layer.name()),
                vec![],
                vec![0.0],
            ));
        }
    }
    out
}

/// Loads a safetensors weights file into `model`, detecting from the tensor
/// names whether it is torchvision-named (a ResNet `state_dict`) or a strata
/// file (`<layer>.<weight>`). All or nothing; returns warnings (non-finite values).
pub fn load_weights_auto(model: &mut Model, path: impl AsRef<Path>) -> Result<Vec<String>> {
    let path = path.as_ref();
    let (tensors, meta) = read_safetensors(path)?;
    let strata_format = meta.get("format").is_some_and(|f| f == "strata");
    let tensors =
        if !strata_format && is_torchvision_naming(tensors.iter().map(|(n, _, _)| n.as_str())) {
            torchvision_to_strata(model, path, tensors)?
        } else {
            tensors
        };
    Ok(model.set_weight_tensors(path, tensors)?)
}

/// Like [`load_weights_auto`], but loads only the tensors that fit the model
/// (Keras's `skip_mismatch`): ImageNet weights into a ResNet with a new
/// 3-class head load the backbone and keep the head's initial values. What
/// was skipped comes back as warnings.
pub fn load_matching_weights(model: &mut Model, path: impl AsRef<Path>) -> Result<Vec<String>> {
    let path = path.as_ref();
    let (tensors, meta) = read_safetensors(path)?;
    let strata_format = meta.get("format").is_some_and(|f| f == "strata");
    let mut warnings = Vec::new();
    let tensors =
        if !strata_format && is_torchvision_naming(tensors.iter().map(|(n, _, _)| n.as_str())) {
            let expected = targets(model);
            let fits: HashMap<String, Vec<usize>> = expected
                .iter()
                .map(|(n, t)| (n.clone(), torch_shape(&t.shape, t.layout)))
                .collect();
            let (keep, drop): (Vec<_>, Vec<_>) = tensors
                .into_iter()
                .filter(|(n, _, _)| !n.ends_with(".num_batches_tracked"))
                .partition(|(n, s, _)| fits.get(n) == Some(s));
            warnings.extend(drop.iter().map(|(n, s, _)| {
                format!(
                    "skipped {n} {}: it does not fit the model",
                    strata_core::fmt_shape(s)
                )
            }));
            // convert only what fits; what is missing keeps its initial values
            let mut out = Vec::new();
            for (name, shape, values) in keep {
                let Some(t) = expected.iter().find(|(n, _)| *n == name).map(|(_, t)| t) else {
                    continue;
                };
                let converted = to_strata_layout(t.layout, shape, values);
                if let Some((s, v)) = converted {
                    out.push((t.strata.clone(), s, v));
                }
            }
            out
        } else {
            tensors
        };
    warnings.extend(model.set_matching_weight_tensors(path, tensors)?);
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resnet::{resnet, ResNetConfig};
    use strata_nn::model::write_safetensors_atomic;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("strata-zoo-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("w.safetensors")
    }

    fn small_resnet18(seed: u64) -> Model {
        resnet(
            &ResNetConfig::new(18)
                .classes(5)
                .input_shape([32, 32, 3])
                .seed(seed),
        )
        .unwrap()
    }

    #[test]
    fn layouts_transpose_and_invert() {
        // OIHW (2, 3, 1, 2): value = 1000*o + 100*i + 10*h + w
        let shape = [2, 3, 1, 2];
        let mut v = Vec::new();
        for o in 0..2 {
            for i in 0..3 {
                for w in 0..2 {
                    v.push((1000 * o + 100 * i + w) as f32);
                }
            }
        }
        let (s, hwio) = oihw_to_hwio(&v, &shape).unwrap();
        assert_eq!(s, vec![1, 2, 3, 2]);
        // HWIO (h, w, i, o) = (0, 1, 2, 1) sits at ((h * 2 + w) * 3 + i) * 2 + o
        let (h, w, i, o) = (0, 1, 2, 1);
        assert_eq!(hwio[((h * 2 + w) * 3 + i) * 2 + o], 1201.0);
        let (s2, back) = hwio_to_oihw(&hwio, &s).unwrap();
        assert_eq!((s2.as_slice(), back), (&shape[..], v));
        let (s, t) = transpose2(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        assert_eq!((s, t), (vec![3, 2], vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]));
        assert!(oihw_to_hwio(&[1.0], &[2, 2]).is_none());
    }

    #[test]
    fn detects_naming() {
        assert!(is_torchvision_naming([
            "conv1.weight",
            "bn1.running_mean",
            "fc.bias"
        ]));
        assert!(!is_torchvision_naming([
            "conv1.kernel",
            "bn1.moving_mean",
            "fc.bias"
        ]));
    }

    #[test]
    fn loads_a_torchvision_file_into_resnet18() {
        let source = small_resnet18(11);
        let torch = strata_to_torchvision(&source);
        let conv = torch
            .iter()
            .find(|(n, _, _)| n == "layer2.0.conv1.weight")
            .unwrap();
        assert_eq!(conv.1, vec![128, 64, 3, 3]);
        assert_eq!(
            torch.iter().find(|(n, _, _)| n == "fc.weight").unwrap().1,
            vec![5, 512]
        );
        assert!(torch.iter().any(|(n, _, _)| n == "bn1.num_batches_tracked"));
        assert!(torch
            .iter()
            .any(|(n, _, _)| n == "layer1.0.bn2.running_var"));
        let p = tmp("tv");
        write_safetensors_atomic(&p, &torch, None).unwrap();

        let mut target = small_resnet18(12);
        assert_ne!(source.weight_tensors(), target.weight_tensors());
        let warnings = load_weights_auto(&mut target, &p).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(source.weight_tensors(), target.weight_tensors());

        // a strata-named file goes through the plain loader
        let mut third = small_resnet18(13);
        let q = tmp("strata");
        source.save_weights(&q).unwrap();
        load_weights_auto(&mut third, &q).unwrap();
        assert_eq!(source.weight_tensors(), third.weight_tensors());
    }

    #[test]
    fn mismatches_are_listed_in_one_error() {
        let mut model = small_resnet18(1);
        let mut torch = strata_to_torchvision(&model);
        torch.retain(|(n, _, _)| n != "layer3.1.bn2.running_mean");
        for t in torch.iter_mut() {
            if t.0 == "layer1.0.conv2.weight" {
                t.1 = vec![64, 64, 1, 9];
            }
        }
        torch.push(("extra.weight".into(), vec![2], vec![0.0, 1.0]));
        let e = torchvision_to_strata(&model, Path::new("bad.safetensors"), torch)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("weights bad.safetensors: torchvision weights: 3 mismatch(es)"),
            "{e}"
        );
        assert!(
            e.contains("missing layer3.1.bn2.running_mean (256,)"),
            "{e}"
        );
        assert!(
            e.contains(
                "layer1.0.conv2.weight: expected shape (64, 64, 3, 3), found (64, 64, 1, 9)"
            ),
            "{e}"
        );
        assert!(e.contains("unexpected extra.weight (2,)"), "{e}");

        // an ImageNet head into a 5-class model, through a file: every
        // problem named, nothing changed
        let before = model.weight_tensors();
        let imagenet: Vec<NamedTensor> = vec![
            (
                "conv1.weight".into(),
                vec![64, 3, 7, 7],
                vec![0.5; 64 * 3 * 49],
            ),
            ("fc.weight".into(), vec![1000, 512], vec![0.0; 512_000]),
            ("fc.bias".into(), vec![1000], vec![0.0; 1000]),
            ("bn1.running_var".into(), vec![64], vec![1.0; 64]),
        ];
        let p = tmp("bad");
        write_safetensors_atomic(&p, &imagenet, None).unwrap();
        let e = load_weights_auto(&mut model, &p).unwrap_err().to_string();
        assert!(
            e.contains("fc.weight: expected shape (5, 512), found (1000, 512)"),
            "{e}"
        );
        assert!(
            e.contains("fc.bias: expected shape (5,), found (1000,)"),
            "{e}"
        );
        assert!(e.contains("missing layer4.1.bn2.weight (512,)"), "{e}");
        assert!(
            !e.contains("conv1.weight:") && !e.contains("missing bn1.running_var"),
            "{e}"
        );
        assert_eq!(before, model.weight_tensors());
    }
}
