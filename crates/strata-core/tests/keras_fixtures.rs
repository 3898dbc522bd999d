//! The convolution-family ops against Keras 3 reference numbers
//! (`shared/fixtures/ops/*.safetensors`, see the README there): forward output
//! and the gradients of `sum(y * dy)` for every conv2d, depthwise, pooling and
//! batch-norm case. A missing fixtures folder fails them, unless
//! `STRATA_SKIP_FIXTURES=1` asks to skip (and they say they skipped).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use strata_core::ops::batch_norm::update_moving;
use strata_core::ops::{Conv2dConfig, Padding};
use strata_core::Tensor;

const RTOL: f32 = 1e-4;
const ATOL: f32 = 1e-5;

/// The shared Keras fixtures' ops folder (a missing folder fails the test).
fn fixtures_dir() -> Option<PathBuf> {
    strata_core::fixtures::shared_fixtures(env!("CARGO_MANIFEST_DIR")).map(|p| p.join("ops"))
}

/// One fixture file: its tensors (f32, with shapes) and its config JSON.
struct Case {
    name: String,
    tensors: HashMap<String, Tensor>,
    config: Value,
}

impl Case {
    fn load(path: &Path) -> Case {
        let bytes = std::fs::read(path).expect("reading fixture");
        let (_, meta) = SafeTensors::read_metadata(&bytes).expect("safetensors header");
        let config = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("config"))
            .map(|s| serde_json::from_str(s).expect("config JSON"))
            .expect("config metadata");
        let st = SafeTensors::deserialize(&bytes).expect("safetensors body");
        let mut tensors = HashMap::new();
        for name in st.names() {
            let view = st.tensor(name).unwrap();
            assert_eq!(view.dtype(), Dtype::F32, "{name}");
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(name.clone(), Tensor::from_vec(data, view.shape()).unwrap());
        }
        Case {
            name: path.file_stem().unwrap().to_string_lossy().into_owned(),
            tensors,
            config,
        }
    }

    fn t(&self, name: &str) -> Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("{}: no tensor {name}", self.name))
            .detach()
    }
    fn var(&self, name: &str) -> Tensor {
        self.t(name).requires_grad_(true)
    }
    fn arg(&self, key: &str) -> &Value {
        &self.config["args"][key]
    }
    fn pair(&self, key: &str) -> Option<(usize, usize)> {
        let v = self.arg(key).as_array()?;
        Some((v[0].as_u64()? as usize, v[1].as_u64()? as usize))
    }
    fn padding(&self) -> Padding {
        match self.arg("padding").as_str() {
            Some("same") => Padding::Same,
            Some("valid") => Padding::Valid,
            other => panic!("{}: unknown padding {other:?}", self.name),
        }
    }
    fn f32_arg(&self, key: &str) -> f32 {
        self.arg(key).as_f64().unwrap() as f32
    }

    /// Compares `got` with the stored tensor `name`; returns a failure line or None.
    fn check(&self, name: &str, got: &Tensor) -> Option<String> {
        let want = self.t(name);
        if got.shape() != want.shape() {
            return Some(format!(
                "{}: {name} shape {:?} vs Keras {:?}",
                self.name,
                got.shape(),
                want.shape()
            ));
        }
        let (g, w) = (got.data(), want.data());
        let mut worst = (0.0f32, 0usize);
        for (i, (a, b)) in g.iter().zip(w.iter()).enumerate() {
            let excess = (a - b).abs() - (ATOL + RTOL * b.abs());
            if excess > worst.0 {
                worst = (excess, i);
            }
        }
        (worst.0 > 0.0).then(|| {
            format!(
                "{}: {name} element {} = {} vs Keras {}",
                self.name, worst.1, g[worst.1], w[worst.1]
            )
        })
    }

    /// Runs backward of sum(y * dy) and checks each (leaf, stored gradient name).
    fn check_backward(&self, y: &Tensor, grads: &[(&Tensor, &str)]) -> Vec<String> {
        y.mul(&self.t("dy")).unwrap().sum_all().backward().unwrap();
        grads
            .iter()
            .filter_map(|(leaf, name)| {
                let g = leaf
                    .grad()
                    .unwrap_or_else(|| panic!("{}: no gradient for {name}", self.name));
                self.check(name, &g)
            })
            .collect()
    }
}

/// Every case whose name starts with one of `prefixes`, or None when skipping.
fn cases(prefixes: &[&str]) -> Option<Vec<Case>> {
    let dir = fixtures_dir()?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".safetensors") && prefixes.iter().any(|pre| name.starts_with(pre))
        })
        .collect();
    paths.sort();
    Some(paths.iter().map(|p| Case::load(p)).collect())
}

fn report(family: &str, ran: usize, failures: Vec<String>) {
    println!("{family}: {ran} Keras cases checked");
    assert!(ran > 0, "{family}: no fixture cases found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn run_conv2d(c: &Case) -> Vec<String> {
    assert_eq!(c.config["class_name"], "Conv2D");
    let (x, k) = (c.var("x"), c.var("kernel"));
    let use_bias = c.arg("use_bias").as_bool().unwrap_or(true);
    let b = use_bias.then(|| c.var("bias"));
    let ks = c.pair("kernel_size").unwrap();
    assert_eq!((k.shape()[0], k.shape()[1]), ks, "{}", c.name);
    assert_eq!(k.shape()[3] as u64, c.arg("filters").as_u64().unwrap());
    let cfg = Conv2dConfig {
        strides: c.pair("strides").unwrap(),
        padding: c.padding(),
        dilation: c.pair("dilation_rate").unwrap(),
        groups: c.arg("groups").as_u64().unwrap_or(1) as usize,
        ..Default::default()
    };
    let mut y = x.conv2d(&k, b.as_ref(), cfg).unwrap();
    match c.arg("activation").as_str() {
        Some("linear") | None => {}
        Some("relu") => y = y.relu(),
        Some(a) => panic!("{}: activation {a} not handled", c.name),
    }
    let mut fails: Vec<String> = c.check("y", &y).into_iter().collect();
    let mut grads = vec![(&x, "dx"), (&k, "d_kernel")];
    if let Some(b) = b.as_ref() {
        grads.push((b, "d_bias"));
    }
    fails.extend(c.check_backward(&y, &grads));
    fails
}

#[test]
fn conv2d_matches_keras() {
    let Some(cases) = cases(&["conv2d_"]) else {
        return;
    };
    let fails = cases.iter().flat_map(run_conv2d).collect();
    report("conv2d", cases.len(), fails);
}

#[test]
fn depthwise_conv2d_matches_keras() {
    let Some(cases) = cases(&["depthwise_"]) else {
        return;
    };
    let mut fails = Vec::new();
    for c in &cases {
        assert_eq!(c.config["class_name"], "DepthwiseConv2D");
        let (x, k) = (c.var("x"), c.var("depthwise_kernel"));
        let b = c
            .arg("use_bias")
            .as_bool()
            .unwrap_or(true)
            .then(|| c.var("bias"));
        assert_eq!(
            k.shape()[3] as u64,
            c.arg("depth_multiplier").as_u64().unwrap()
        );
        let y = x
            .depthwise_conv2d(
                &k,
                b.as_ref(),
                c.pair("strides").unwrap(),
                c.padding(),
                c.pair("dilation_rate").unwrap(),
            )
            .unwrap();
        fails.extend(c.check("y", &y));
        let mut grads = vec![(&x, "dx"), (&k, "d_depthwise_kernel")];
        if let Some(b) = b.as_ref() {
            grads.push((b, "d_bias"));
        }
        fails.extend(c.check_backward(&y, &grads));
    }
    report("depthwise_conv2d", cases.len(), fails);
}

#[test]
fn pooling_matches_keras() {
    let Some(cases) = cases(&["maxpool_", "avgpool_", "global_avgpool"]) else {
        return;
    };
    let mut fails = Vec::new();
    for c in &cases {
        let x = c.var("x");
        let y = match c.config["class_name"].as_str().unwrap() {
            "GlobalAveragePooling2D" => {
                let keep = c.arg("keepdims").as_bool().unwrap_or(false);
                x.global_avg_pool2d(keep).unwrap()
            }
            class => {
                let pool = c.pair("pool_size").unwrap();
                let strides = c.pair("strides").unwrap_or(pool);
                match class {
                    "MaxPooling2D" => x.max_pool2d(pool, strides, c.padding()).unwrap(),
                    "AveragePooling2D" => x.avg_pool2d(pool, strides, c.padding()).unwrap(),
                    other => panic!("{}: unexpected class {other}", c.name),
                }
            }
        };
        fails.extend(c.check("y", &y));
        fails.extend(c.check_backward(&y, &[(&x, "dx")]));
    }
    report("pooling", cases.len(), fails);
}

#[test]
fn batch_norm_matches_keras() {
    let Some(cases) = cases(&["batchnorm_"]) else {
        return;
    };
    let mut fails = Vec::new();
    for c in &cases {
        assert_eq!(c.config["class_name"], "BatchNormalization");
        assert_eq!(c.arg("axis").as_i64(), Some(-1));
        let eps = c.f32_arg("epsilon");
        let (x, gamma, beta) = (c.var("x"), c.var("gamma"), c.var("beta"));
        let (mm, mv) = (c.t("moving_mean").to_vec(), c.t("moving_variance").to_vec());
        let y = if c.config["training"].as_bool().unwrap() {
            let (y, mean, var) = x.batch_norm_train(Some(&gamma), Some(&beta), eps).unwrap();
            let momentum = c.f32_arg("momentum");
            let (mut mm, mut mv) = (mm, mv);
            update_moving(&mut mm, &mean, momentum);
            update_moving(&mut mv, &var, momentum);
            let n = mm.len();
            fails.extend(c.check("moving_mean_after", &Tensor::from_vec(mm, &[n]).unwrap()));
            fails.extend(c.check(
                "moving_variance_after",
                &Tensor::from_vec(mv, &[n]).unwrap(),
            ));
            y
        } else {
            x.batch_norm_infer(&mm, &mv, Some(&gamma), Some(&beta), eps)
                .unwrap()
        };
        fails.extend(c.check("y", &y));
        fails.extend(c.check_backward(&y, &[(&x, "dx"), (&gamma, "d_gamma"), (&beta, "d_beta")]));
    }
    report("batch_norm", cases.len(), fails);
}
