//! Model spec files (JSON, see CONTRACT.md): Sequential (`input_shape` +
//! `layers`) or functional (`inputs` + `layers` with `inputs` + `outputs`).
//! Every argument is checked: unknown ones, bad values, duplicate names,
//! unknown inputs and cycles are errors naming the layer and the field.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::{Map, Value};

use super::{Model, Source};
use crate::activations::Activation;
use crate::error::{NnError, Result};
use crate::initializers::Initializer;
use crate::layers::*;
use strata_core::ops::Padding;

/// The largest size a spec may give one argument or input dimension (2^24):
/// sums and products of a few sizes then stay far from overflowing.
const MAX_SIZE: u64 = 1 << 24;
/// The most elements one input sample may have (2^31).
const MAX_INPUT_ELEMENTS: u128 = 1 << 31;
/// The most weight values a spec may ask for in all (2^28 floats, 1 GiB),
/// checked before a layer allocates: a model file cannot exhaust memory.
pub const MAX_SPEC_WEIGHTS: u128 = 1 << 28;

fn within_limit(p: &(usize, usize)) -> bool {
    p.0 as u64 <= MAX_SIZE && p.1 as u64 <= MAX_SIZE
}

/// The weight values `layer` will allocate for these input shapes, and the
/// arguments that decide it (for the error message).
fn planned_weights(layer: &dyn Layer, inputs: &[Vec<usize>]) -> (u128, &'static str) {
    let any = layer.as_any();
    let last = inputs.first().and_then(|s| s.last()).copied().unwrap_or(0) as u128;
    let prod = |xs: &[u128]| xs.iter().fold(1u128, |a, &x| a.saturating_mul(x));
    if let Some(d) = any.downcast_ref::<Dense>() {
        let u = d.units as u128;
        (prod(&[last, u]).saturating_add(u), "units")
    } else if let Some(c) = any.downcast_ref::<Conv2D>() {
        let (kh, kw) = (c.kernel_size.0 as u128, c.kernel_size.1 as u128);
        let per_group = last / (c.groups.max(1) as u128);
        let f = c.filters as u128;
        (
            prod(&[kh, kw, per_group, f]).saturating_add(f),
            "kernel_size/filters",
        )
    } else if let Some(c) = any.downcast_ref::<DepthwiseConv2D>() {
        let (kh, kw) = (c.kernel_size.0 as u128, c.kernel_size.1 as u128);
        let out = prod(&[last, c.depth_multiplier as u128]);
        (
            prod(&[kh, kw, out]).saturating_add(out),
            "kernel_size/depth_multiplier",
        )
    } else if any.is::<BatchNormalization>() {
        (prod(&[last, 4]), "input channels")
    } else {
        (0, "")
    }
}

/// Adds the weights `layer` will allocate to `total`; an error naming the
/// layer when the model would go over [`MAX_SPEC_WEIGHTS`].
fn check_weight_budget(
    m: &Model,
    layer: &dyn Layer,
    inputs: &[Source],
    total: &mut u128,
) -> Result<()> {
    let shapes = inputs
        .iter()
        .map(|s| m.shape_of(*s))
        .collect::<Result<Vec<_>>>()?;
    let (n, field) = planned_weights(layer, &shapes);
    *total = total.saturating_add(n);
    if *total > MAX_SPEC_WEIGHTS {
        return Err(NnError::config(
            layer.name(),
            field,
            format!(
                "the weights would hold {n} values ({} in the model so far), over the limit of {MAX_SPEC_WEIGHTS}",
                *total
            ),
        ));
    }
    Ok(())
}

/// The arguments of one layer, consumed one by one so leftovers are reported.
struct Args<'a> {
    layer: String,
    ty: &'a str,
    map: &'a Map<String, Value>,
    used: HashSet<&'static str>,
}

impl<'a> Args<'a> {
    fn err(&self, field: &str, message: impl Into<String>) -> NnError {
        NnError::config(&self.layer, field, message)
    }
    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.insert(key);
        self.map.get(key).filter(|v| !v.is_null())
    }
    fn usize(&mut self, key: &'static str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0 && n <= MAX_SIZE)
                .map(|n| Some(n as usize))
                .ok_or_else(|| {
                    self.err(
                        key,
                        format!("expected a positive integer up to {MAX_SIZE}, found {v}"),
                    )
                }),
        }
    }
    fn required_usize(&mut self, key: &'static str) -> Result<usize> {
        self.usize(key)?.ok_or_else(|| self.err(key, "is required"))
    }
    fn f32(&mut self, key: &'static str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(|f| f as f32)
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| {
                    self.err(key, format!("expected a finite float32 number, found {v}"))
                }),
        }
    }
    fn int(&mut self, key: &'static str) -> Result<Option<isize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(|i| Some(i as isize))
                .ok_or_else(|| self.err(key, format!("expected an integer, found {v}"))),
        }
    }
    fn bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected true or false, found {v}"))),
        }
    }
    fn str(&mut self, key: &'static str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected a string, found {v}"))),
        }
    }
    fn pair(&mut self, key: &'static str) -> Result<Option<(usize, usize)>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => pair_from(v)
                .filter(|p| p.0 > 0 && p.1 > 0 && within_limit(p))
                .map(Some)
                .ok_or_else(|| {
                    self.err(
                        key,
                        format!("expected a positive int or [h, w] up to {MAX_SIZE}, found {v}"),
                    )
                }),
        }
    }
    /// Keras's "valid" / "same", or explicit pads as the writer emits them:
    /// an int, `[h, w]` (symmetric) or `[[top, bottom], [left, right]]`.
    fn padding(&mut self) -> Result<Option<Padding>> {
        let Some(v) = self.get("padding") else {
            return Ok(None);
        };
        if let Some(p) = v.as_str() {
            return match p {
                "valid" => Ok(Some(Padding::Valid)),
                "same" => Ok(Some(Padding::Same)),
                _ => Err(self.err(
                    "padding",
                    format!("expected \"valid\", \"same\" or explicit pads, found \"{p}\""),
                )),
            };
        }
        let pads = match pair_from(v) {
            Some((h, w)) => Some(((h, h), (w, w))),
            None => v
                .as_array()
                .filter(|x| x.len() == 2)
                .and_then(|x| Some((pair_from(&x[0])?, pair_from(&x[1])?))),
        };
        match pads {
            Some(((top, bottom), (left, right)))
                if within_limit(&(top, bottom)) && within_limit(&(left, right)) =>
            {
                Ok(Some(Padding::Explicit {
                    top,
                    bottom,
                    left,
                    right,
                }))
            }
            _ => Err(self.err(
                "padding",
                format!(
                    "expected \"valid\", \"same\", an int, [h, w] or [[top, bottom], [left, right]] up to {MAX_SIZE}, found {v}"
                ),
            )),
        }
    }
    fn activation(&mut self) -> Result<Option<Activation>> {
        match self.str("activation")? {
            None => Ok(None),
            Some(a) => Activation::from_name(a)
                .map(Some)
                .map_err(|_| self.err("activation", format!("unknown activation '{a}'"))),
        }
    }
    fn initializer(&mut self, key: &'static str) -> Result<Option<Initializer>> {
        match self.str(key)? {
            None => Ok(None),
            Some(a) => Initializer::from_name(a)
                .map(Some)
                .map_err(|_| self.err(key, format!("unknown initializer '{a}'"))),
        }
    }
    /// Reports the arguments nothing read (the table in [`known_arguments`]
    /// catches them first; this is the backstop).
    fn finish(self) -> Result<()> {
        let unknown: Vec<&str> = self
            .map
            .keys()
            .map(String::as_str)
            .filter(|k| !self.used.contains(k) && !COMMON_KEYS.contains(k))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let mut known: Vec<&str> = self.used.iter().copied().collect();
        known.sort_unstable();
        Err(unknown_arguments(&self.layer, self.ty, &unknown, &known))
    }
}

/// The keys every layer object may carry besides its arguments.
const COMMON_KEYS: [&str; 4] = ["type", "name", "inputs", "trainable"];

/// Every layer type a spec may name, with the arguments it reads (what
/// `read_layer` asks `Args` for), so a misspelt one is reported before any
/// value is checked.
const LAYER_ARGUMENTS: &[(&str, &[&str])] = &[
    (
        "Dense",
        &[
            "units",
            "activation",
            "use_bias",
            "kernel_initializer",
            "bias_initializer",
        ],
    ),
    (
        "Conv2D",
        &[
            "filters",
            "kernel_size",
            "strides",
            "padding",
            "dilation_rate",
            "groups",
            "activation",
            "use_bias",
            "kernel_initializer",
            "bias_initializer",
        ],
    ),
    (
        "DepthwiseConv2D",
        &[
            "kernel_size",
            "depth_multiplier",
            "strides",
            "padding",
            "dilation_rate",
            "activation",
            "use_bias",
        ],
    ),
    ("MaxPooling2D", &["pool_size", "strides", "padding"]),
    ("AveragePooling2D", &["pool_size", "strides", "padding"]),
    ("GlobalAveragePooling2D", &["keepdims"]),
    ("GlobalMaxPooling2D", &["keepdims"]),
    (
        "BatchNormalization",
        &["momentum", "epsilon", "axis", "center", "scale"],
    ),
    ("Dropout", &["rate"]),
    ("Flatten", &[]),
    ("Reshape", &["target_shape"]),
    ("ZeroPadding2D", &["padding"]),
    ("Activation", &["activation"]),
    ("ReLU", &["max_value", "negative_slope", "threshold"]),
    ("Softmax", &["axis"]),
    ("Concatenate", &["axis"]),
    ("Add", &[]),
    ("Multiply", &[]),
    ("Blend", &[]),
];

fn known_arguments(ty: &str) -> Option<&'static [&'static str]> {
    LAYER_ARGUMENTS
        .iter()
        .find(|(t, _)| *t == ty)
        .map(|(_, args)| *args)
}

/// Edit distance with adjacent transpositions (`kernle` -> `kernel` is 1),
/// ignoring case and taking `-` for `_`.
fn edit_distance(a: &str, b: &str) -> usize {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    let (a, b) = (norm(a), norm(b));
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate a misspelt `key` most likely meant: within a third of its
/// length in edits (at least one), or one a prefix of the other. A key far
/// longer than every candidate costs no distance table (a hostile spec's key
/// may be megabytes).
fn closest<'k>(key: &str, candidates: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let lower = norm(key);
    let len = key.chars().count();
    candidates
        .into_iter()
        .filter_map(|c| {
            let limit = (c.len() / 3).max(1);
            let gap = len.abs_diff(c.len());
            let cl = norm(c);
            let prefix = len >= 3
                && c.len() >= 3
                && (cl.starts_with(lower.as_str()) || lower.starts_with(cl.as_str()));
            if gap <= limit {
                let d = edit_distance(key, c);
                (d <= limit || prefix).then_some((d, c))
            } else {
                // one a prefix of the other: the distance is the length gap
                prefix.then_some((gap, c))
            }
        })
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `unknown argument 'filter' (did you mean 'filters'?)`, or with the
/// arguments the type takes when no known one is near.
fn unknown_arguments(layer: &str, ty: &str, unknown: &[&str], known: &[&str]) -> NnError {
    let mut far = false;
    let named: Vec<String> = unknown
        .iter()
        .map(|k| {
            let near = closest(k, known.iter().copied().chain(COMMON_KEYS));
            far |= near.is_none();
            match near {
                Some(c) => format!("'{k}' (did you mean '{c}'?)"),
                None => format!("'{k}'"),
            }
        })
        .collect();
    let list = match named.as_slice() {
        [one] => format!("unknown argument {one}"),
        [rest @ .., last] => format!("unknown arguments {} and {last}", rest.join(", ")),
        [] => "unknown argument".into(),
    };
    let takes = match (far, known) {
        (false, _) => String::new(),
        (true, []) => format!(" ({ty} takes no arguments)"),
        (true, args) => format!(" ({ty} takes {})", args.join(", ")),
    };
    NnError::config(layer, &unknown.join("/"), format!("{list}{takes}"))
}

/// Builds one layer from its spec object (`type` plus Keras arguments).
pub fn layer_from_spec(obj: &Map<String, Value>, position: usize) -> Result<Box<dyn Layer>> {
    let ty = obj
        .get("type")
        .and_then(|v| v.as_str())
        .ok_or_else(|| NnError::Spec(format!("layer {position}: missing \"type\"")))?;
    let label = obj
        .get("name")
        .and_then(|v| v.as_str())
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("#{position} ({ty})"));
    if let Some(known) = known_arguments(ty) {
        // misspelt arguments first: a missing required one is often one of them
        let unknown: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| !known.contains(k) && !COMMON_KEYS.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(unknown_arguments(&label, ty, &unknown, known));
        }
    }
    let mut a = Args {
        layer: label.clone(),
        ty,
        map: obj,
        used: HashSet::new(),
    };
    let mut layer = read_layer(ty, &label, &mut a)?;
    let trainable = match obj.get("trainable") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(NnError::config(
                &label,
                "trainable",
                format!("expected true or false, found {v}"),
            ))
        }
    };
    a.finish()?;
    if let Some(n) = obj.get("name") {
        let n = n
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| NnError::config(&label, "name", "expected a non-empty string"))?;
        layer.set_name(n);
    }
    if !trainable {
        layer.base_mut().trainable = false;
    }
    Ok(layer)
}

/// Reads the arguments of a `ty` layer into a new layer.
fn read_layer(ty: &str, label: &str, a: &mut Args<'_>) -> Result<Box<dyn Layer>> {
    Ok(match ty {
        "Dense" => {
            let mut d = Dense::new(a.required_usize("units")?);
            if let Some(x) = a.activation()? {
                d.activation = x;
            }
            if let Some(x) = a.bool("use_bias")? {
                d.use_bias = x;
            }
            if let Some(x) = a.initializer("kernel_initializer")? {
                d.kernel_initializer = x;
            }
            if let Some(x) = a.initializer("bias_initializer")? {
                d.bias_initializer = x;
            }
            Box::new(d)
        }
        "Conv2D" => {
            let mut c = Conv2D::new(
                a.required_usize("filters")?,
                a.pair("kernel_size")?
                    .ok_or_else(|| a.err("kernel_size", "is required"))?,
            );
            if let Some(x) = a.pair("strides")? {
                c.strides = x;
            }
            if let Some(x) = a.padding()? {
                c.padding = x;
            }
            if let Some(x) = a.pair("dilation_rate")? {
                c.dilation_rate = x;
            }
            if let Some(x) = a.usize("groups")? {
                c.groups = x;
            }
            if let Some(x) = a.activation()? {
                c.activation = x;
            }
            if let Some(x) = a.bool("use_bias")? {
                c.use_bias = x;
            }
            if let Some(x) = a.initializer("kernel_initializer")? {
                c.kernel_initializer = x;
            }
            if let Some(x) = a.initializer("bias_initializer")? {
                c.bias_initializer = x;
            }
            Box::new(c)
        }
        "DepthwiseConv2D" => {
            let mut c = DepthwiseConv2D::new(
                a.pair("kernel_size")?
                    .ok_or_else(|| a.err("kernel_size", "is required"))?,
            );
            if let Some(x) = a.usize("depth_multiplier")? {
                c.depth_multiplier = x;
            }
            if let Some(x) = a.pair("strides")? {
                c.strides = x;
            }
            if let Some(x) = a.padding()? {
                c.padding = x;
            }
            if let Some(x) = a.pair("dilation_rate")? {
                c.dilation_rate = x;
            }
            if let Some(x) = a.activation()? {
                c.activation = x;
            }
            if let Some(x) = a.bool("use_bias")? {
                c.use_bias = x;
            }
            Box::new(c)
        }
        "MaxPooling2D" | "AveragePooling2D" => {
            let pool = a.pair("pool_size")?.unwrap_or((2, 2));
            let strides = a.pair("strides")?;
            let padding = a.padding()?.unwrap_or(Padding::Valid);
            if ty == "MaxPooling2D" {
                Box::new(MaxPooling2D::new(pool, strides, "valid").with_padding(padding))
            } else {
                Box::new(AveragePooling2D::new(pool, strides, "valid").with_padding(padding))
            }
        }
        "GlobalAveragePooling2D" => Box::new(GlobalAveragePooling2D::new(
            a.bool("keepdims")?.unwrap_or(false),
        )),
        "GlobalMaxPooling2D" => Box::new(GlobalMaxPooling2D::new(
            a.bool("keepdims")?.unwrap_or(false),
        )),
        "BatchNormalization" => {
            let mut b = BatchNormalization::new();
            if let Some(x) = a.f32("momentum")? {
                b.momentum = x;
            }
            if let Some(x) = a.f32("epsilon")? {
                if x <= 0.0 {
                    return Err(a.err("epsilon", "must be positive"));
                }
                b.epsilon = x;
            }
            if let Some(x) = a.int("axis")? {
                if x != -1 {
                    return Err(a.err("axis", "only the channel axis (-1) is supported"));
                }
            }
            if let Some(x) = a.bool("center")? {
                b.center = x;
            }
            if let Some(x) = a.bool("scale")? {
                b.scale = x;
            }
            Box::new(b)
        }
        "Dropout" => {
            let rate = a.f32("rate")?.ok_or_else(|| a.err("rate", "is required"))?;
            if !(0.0..1.0).contains(&rate) {
                return Err(a.err("rate", format!("must be in [0, 1), found {rate}")));
            }
            Box::new(Dropout::new(rate))
        }
        "Flatten" => Box::new(Flatten::new()),
        "Reshape" => {
            let v = a
                .get("target_shape")
                .ok_or_else(|| a.err("target_shape", "is required"))?;
            let shape: Option<Vec<isize>> = v.as_array().and_then(|arr| {
                arr.iter()
                    .map(|x| {
                        x.as_i64()
                            .filter(|i| i.unsigned_abs() <= MAX_SIZE)
                            .map(|i| i as isize)
                    })
                    .collect()
            });
            Box::new(Reshape::new(&shape.ok_or_else(|| {
                a.err(
                    "target_shape",
                    format!("expected a list of integers up to {MAX_SIZE}, found {v}"),
                )
            })?))
        }
        "ZeroPadding2D" => {
            let v = a.get("padding");
            let p = match v {
                None => ((1, 1), (1, 1)),
                Some(v) => match pair_from(v) {
                    Some((h, w)) => ((h, h), (w, w)),
                    None => {
                        let nested = v
                            .as_array()
                            .filter(|x| x.len() == 2)
                            .and_then(|x| Some((pair_from(&x[0])?, pair_from(&x[1])?)));
                        nested.ok_or_else(|| a.err("padding", format!("expected an int, [h, w] or [[top, bottom], [left, right]], found {v}")))?
                    }
                },
            };
            if !within_limit(&p.0) || !within_limit(&p.1) {
                return Err(a.err("padding", format!("sizes over the limit of {MAX_SIZE}")));
            }
            Box::new(ZeroPadding2D::new(p))
        }
        "Activation" => Box::new(ActivationLayer::new(
            a.activation()?
                .ok_or_else(|| a.err("activation", "is required"))?,
        )),
        "ReLU" => {
            let mut r = ReLU::new();
            r.max_value = a.f32("max_value")?;
            r.negative_slope = a.f32("negative_slope")?.unwrap_or(0.0);
            r.threshold = a.f32("threshold")?.unwrap_or(0.0);
            Box::new(r)
        }
        "Softmax" => Box::new(Softmax::new(a.int("axis")?.unwrap_or(-1))),
        "Concatenate" => Box::new(Concatenate::new(a.int("axis")?.unwrap_or(-1))),
        "Add" => Box::new(Add::new()),
        "Multiply" => Box::new(Multiply::new()),
        "Blend" => Box::new(Blend::new()),
        other => {
            let hint = closest(other, LAYER_ARGUMENTS.iter().map(|(t, _)| *t))
                .map(|t| format!(" (did you mean '{t}'?)"))
                .unwrap_or_default();
            return Err(NnError::config(
                label,
                "type",
                format!("unknown layer type '{other}'{hint}"),
            ));
        }
    })
}

/// Builds a layer from a Keras `{"class_name": ..., "args"/"config": {...}}`
/// object (as `layer.get_config()` gives it). Arguments strata has no use for
/// (`dtype`, `data_format`, serialized initializer objects) are skipped.
pub fn layer_from_keras_config(config: &Value) -> Result<Box<dyn Layer>> {
    let class = config
        .get("class_name")
        .and_then(|v| v.as_str())
        .ok_or_else(|| NnError::Spec("a Keras config needs \"class_name\"".into()))?;
    let args = config
        .get("args")
        .or_else(|| config.get("config"))
        .and_then(|v| v.as_object())
        .cloned()
        .unwrap_or_default();
    let mut spec = Map::new();
    spec.insert("type".into(), class.into());
    for (k, v) in args {
        let skip = v.is_object() || ["dtype", "data_format", "name"].contains(&k.as_str());
        if !skip {
            spec.insert(k, v);
        }
    }
    layer_from_spec(&spec, 0)
}

fn shape_list(v: &Value, what: &str) -> Result<Vec<usize>> {
    let arr = v.as_array().ok_or_else(|| {
        NnError::Spec(format!(
            "{what}: expected a list of positive integers, found {v}"
        ))
    })?;
    let dims = arr
        .iter()
        .map(|x| {
            x.as_u64()
                .filter(|&n| n > 0 && n <= MAX_SIZE)
                .map(|n| n as usize)
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            NnError::Spec(format!(
                "{what}: expected a list of positive integers up to {MAX_SIZE}, found {v}"
            ))
        })?;
    let n = dims.iter().fold(1u128, |a, &d| a.saturating_mul(d as u128));
    if n > MAX_INPUT_ELEMENTS {
        return Err(NnError::Spec(format!(
            "{what}: {v} has {n} elements per sample, over the limit of {MAX_INPUT_ELEMENTS}"
        )));
    }
    Ok(dims)
}

/// Builds a model from a parsed spec; `seed` drives weight initialisation.
pub fn model_from_spec(spec: &Value, seed: u64) -> Result<Model> {
    let obj = spec
        .as_object()
        .ok_or_else(|| NnError::Spec("the spec must be a JSON object".into()))?;
    for k in obj.keys() {
        if !["name", "input_shape", "inputs", "layers", "outputs"].contains(&k.as_str()) {
            return Err(NnError::Spec(format!("unknown top-level field '{k}'")));
        }
    }
    let name = obj.get("name").and_then(|v| v.as_str()).unwrap_or("model");
    let layers = obj
        .get("layers")
        .and_then(|v| v.as_array())
        .ok_or_else(|| NnError::Spec("\"layers\" must be a list".into()))?;
    let objs: Vec<&Map<String, Value>> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.as_object()
                .ok_or_else(|| NnError::Spec(format!("layer {i}: expected an object")))
        })
        .collect::<Result<_>>()?;
    // weight values planned so far (checked against MAX_SPEC_WEIGHTS)
    let mut weights: u128 = 0;
    // explicit names are reserved first so default names skip them
    let mut explicit = HashSet::new();
    for (i, o) in objs.iter().enumerate() {
        if let Some(n) = o.get("name").and_then(|v| v.as_str()) {
            if !explicit.insert(n.to_string()) {
                return Err(NnError::config(
                    n,
                    "name",
                    format!("duplicate layer name (layer {i})"),
                ));
            }
        }
    }
    if let Some(shape) = obj.get("input_shape") {
        if obj.contains_key("inputs") || obj.contains_key("outputs") {
            return Err(NnError::Spec(
                "use either input_shape (Sequential) or inputs/outputs (functional), not both"
                    .into(),
            ));
        }
        let shape = shape_list(shape, "input_shape")?;
        let mut m = Model::sequential(name, &shape, seed);
        for n in &explicit {
            m.namer.reserve(n);
        }
        for (i, o) in objs.iter().enumerate() {
            if o.contains_key("inputs") {
                return Err(NnError::config(
                    &label_of(o, i),
                    "inputs",
                    "a Sequential spec takes no per-layer inputs",
                ));
            }
            let mut layer = layer_from_spec(o, i)?;
            if layer.name().is_empty() {
                let n = m.namer.default_name(layer.class_name());
                layer.set_name(&n);
            }
            let trainable = layer.trainable();
            let prev = m.outputs[0];
            check_weight_budget(&m, layer.as_ref(), &[prev], &mut weights)?;
            m.layers.push(layer);
            let out = m.reuse(m.layers.len() - 1, &[prev])?;
            m.outputs = vec![out];
            if !trainable {
                if let Some(l) = m.layers.last_mut() {
                    l.set_trainable(false)
                }
            }
        }
        return Ok(m);
    }
    let inputs = obj
        .get("inputs")
        .and_then(|v| v.as_object())
        .ok_or_else(|| {
            NnError::Spec(
                "a spec needs \"input_shape\" (Sequential) or \"inputs\" (functional)".into(),
            )
        })?;
    let mut m = Model::functional(name, seed);
    let mut sources: HashMap<String, Source> = HashMap::new();
    for (n, s) in inputs {
        if explicit.contains(n) {
            return Err(NnError::config(
                n,
                "name",
                "a layer has the same name as an input",
            ));
        }
        let src = m.input(n, &shape_list(s, &format!("input '{n}'"))?)?;
        sources.insert(n.clone(), src);
    }
    for n in &explicit {
        m.namer.reserve(n);
    }
    // layers may be listed in any order: place each once all its inputs exist
    let mut pending: Vec<usize> = (0..objs.len()).collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for i in pending {
            let o = objs[i];
            let label = label_of(o, i);
            let ins = o.get("inputs").and_then(|v| v.as_array()).ok_or_else(|| {
                NnError::config(
                    &label,
                    "inputs",
                    "a functional layer needs a list of input names",
                )
            })?;
            let names: Vec<&str> = ins
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        NnError::config(&label, "inputs", format!("expected names, found {v}"))
                    })
                })
                .collect::<Result<_>>()?;
            for n in &names {
                if !sources.contains_key(*n) && !explicit.contains(*n) {
                    return Err(NnError::config(
                        &label,
                        "inputs",
                        format!("unknown input '{n}'"),
                    ));
                }
            }
            if names.iter().all(|n| sources.contains_key(*n)) {
                let srcs: Vec<Source> = names.iter().map(|n| sources[*n]).collect();
                let mut layer = layer_from_spec(o, i)?;
                if layer.name().is_empty() {
                    let n = m.namer.default_name(layer.class_name());
                    layer.set_name(&n);
                }
                let trainable = layer.trainable();
                let lname = layer.name().to_string();
                check_weight_budget(&m, layer.as_ref(), &srcs, &mut weights)?;
                m.layers.push(layer);
                let out = m.reuse(m.layers.len() - 1, &srcs)?;
                if !trainable {
                    if let Some(l) = m.layers.last_mut() {
                        l.set_trainable(false)
                    }
                }
                sources.insert(lname, out);
            } else {
                rest.push(i);
            }
        }
        if rest.len() == before {
            let names: Vec<String> = rest.iter().map(|&i| label_of(objs[i], i)).collect();
            return Err(NnError::Spec(format!(
                "the graph has a cycle through {}",
                names.join(", ")
            )));
        }
        pending = rest;
    }
    let outs = obj
        .get("outputs")
        .and_then(|v| v.as_array())
        .ok_or_else(|| {
            NnError::Spec("a functional spec needs \"outputs\": a list of layer names".into())
        })?;
    let outs: Vec<Source> = outs
        .iter()
        .map(|v| {
            let n = v.as_str().ok_or_else(|| {
                NnError::Spec(format!("outputs: expected layer names, found {v}"))
            })?;
            sources
                .get(n)
                .copied()
                .ok_or_else(|| NnError::Spec(format!("outputs: unknown layer '{n}'")))
        })
        .collect::<Result<_>>()?;
    m.set_outputs(&outs)?;
    Ok(m)
}

fn label_of(o: &Map<String, Value>, i: usize) -> String {
    o.get("name")
        .and_then(|v| v.as_str())
        .map(|s| s.to_string())
        .unwrap_or_else(|| {
            format!(
                "#{i} ({})",
                o.get("type").and_then(|v| v.as_str()).unwrap_or("?")
            )
        })
}

/// Reads and builds a spec file.
pub fn model_from_spec_file(path: impl AsRef<Path>, seed: u64) -> Result<Model> {
    let path = path.as_ref();
    let text = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    let text = String::from_utf8(text)
        .map_err(|_| NnError::Spec(format!("{}: not UTF-8 text", path.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| NnError::Spec(format!("{}: invalid JSON: {e}", path.display())))?;
    model_from_spec(&v, seed).map_err(|e| match e {
        NnError::Spec(m) => NnError::Spec(format!("{}: {m}", path.display())),
        other => other,
    })
}

impl Model {
    /// The model as spec JSON (what `model_from_spec` reads back).
    pub fn to_spec(&self) -> Value {
        let mut root = Map::new();
        root.insert("name".into(), self.name().into());
        let layer_json = |l: &dyn Layer| {
            let mut o = Map::new();
            o.insert("type".into(), l.class_name().into());
            o.insert("name".into(), l.name().into());
            o.extend(l.config());
            if !l.trainable() {
                o.insert("trainable".into(), false.into());
            }
            o
        };
        let src_name = |s: &Source| match s {
            Source::Input(i) => self.inputs[*i].0.clone(),
            Source::Node(i) => self.layers[self.nodes[*i].layer].name().to_string(),
        };
        if self.sequential {
            root.insert("input_shape".into(), Value::from(self.inputs[0].1.clone()));
            root.insert(
                "layers".into(),
                Value::Array(
                    self.layers
                        .iter()
                        .map(|l| Value::Object(layer_json(l.as_ref())))
                        .collect(),
                ),
            );
        } else {
            let mut ins = Map::new();
            for (n, s) in &self.inputs {
                ins.insert(n.clone(), Value::from(s.clone()));
            }
            root.insert("inputs".into(), Value::Object(ins));
            let layers = self
                .nodes
                .iter()
                .map(|n| {
                    let mut o = layer_json(self.layers[n.layer].as_ref());
                    o.insert(
                        "inputs".into(),
                        Value::from(n.inputs.iter().map(src_name).collect::<Vec<_>>()),
                    );
                    Value::Object(o)
                })
                .collect();
            root.insert("layers".into(), Value::Array(layers));
            root.insert(
                "outputs".into(),
                Value::from(self.outputs.iter().map(src_name).collect::<Vec<_>>()),
            );
        }
        Value::Object(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_name_the_layer_and_field() {
        let bad = |spec: Value| model_from_spec(&spec, 0).unwrap_err().to_string();
        let e = bad(
            json!({"input_shape": [4], "layers": [{"type": "Dense", "units": 3, "colour": 1}]}),
        );
        assert_eq!(
            e,
            "layer '#0 (Dense)': invalid colour: unknown argument 'colour' (Dense takes units, activation, use_bias, kernel_initializer, bias_initializer)"
        );
        let e = bad(json!({"input_shape": [4], "layers": [{"type": "Dense"}]}));
        assert!(e.contains("invalid units: is required"), "{e}");
        let e = bad(json!({"input_shape": [4], "layers": [{"type": "Nope"}]}));
        assert!(e.contains("unknown layer type 'Nope'"), "{e}");
        let e = bad(
            json!({"input_shape": [4], "layers": [{"type": "Dense", "units": 2, "name": "a"}, {"type": "Dense", "units": 2, "name": "a"}]}),
        );
        assert!(e.contains("duplicate layer name"), "{e}");
        let e = bad(json!({"inputs": {"x": [3]}, "layers": [
            {"name": "a", "type": "Dense", "units": 3, "inputs": ["b"]},
            {"name": "b", "type": "Dense", "units": 3, "inputs": ["a"]}], "outputs": ["b"]}));
        assert!(e.contains("cycle"), "{e}");
        let e = bad(
            json!({"inputs": {"x": [3]}, "layers": [{"name": "a", "type": "Dense", "units": 3, "inputs": ["y"]}], "outputs": ["a"]}),
        );
        assert!(e.contains("unknown input 'y'"), "{e}");
        let e = bad(json!({"input_shape": [4], "layers": [{"type": "Dense", "units": -2}]}));
        assert!(e.contains("invalid units"), "{e}");
    }

    #[test]
    fn unknown_arguments_come_first_with_the_closest_known_one() {
        let bad = |spec: Value| model_from_spec(&spec, 0).unwrap_err().to_string();
        let seq = |layer: Value| json!({"input_shape": [8, 8, 1], "layers": [layer]});
        let e = bad(seq(
            json!({"type": "Conv2D", "filter": 8, "kernel_size": 3}),
        ));
        assert_eq!(
            e,
            "layer '#0 (Conv2D)': invalid filter: unknown argument 'filter' (did you mean 'filters'?)"
        );
        // before the values of the known ones are checked
        let e = bad(seq(
            json!({"type": "Conv2D", "name": "c", "Filters": 8, "kernel": 3, "padding": "nope"}),
        ));
        assert_eq!(
            e,
            "layer 'c': invalid Filters/kernel: unknown arguments 'Filters' (did you mean 'filters'?) and 'kernel' (did you mean 'kernel_size'?)"
        );
        let e = bad(seq(json!({"type": "MaxPooling2D", "stride": 2})));
        assert!(
            e.ends_with("unknown argument 'stride' (did you mean 'strides'?)"),
            "{e}"
        );
        let e = bad(seq(json!({"type": "Dropout", "rate": 0.5, "seed": 1})));
        assert_eq!(
            e,
            "layer '#0 (Dropout)': invalid seed: unknown argument 'seed' (Dropout takes rate)"
        );
        let e = bad(seq(json!({"type": "Flatten", "units": 3})));
        assert!(
            e.ends_with("unknown argument 'units' (Flatten takes no arguments)"),
            "{e}"
        );
        let e = bad(seq(json!({"type": "Dense", "units": 3, "nmae": "x"})));
        assert!(
            e.ends_with("unknown argument 'nmae' (did you mean 'name'?)"),
            "{e}"
        );
        let e = bad(seq(
            json!({"type": "Conv2d", "filters": 2, "kernel_size": 3}),
        ));
        assert_eq!(
            e,
            "layer '#0 (Conv2d)': invalid type: unknown layer type 'Conv2d' (did you mean 'Conv2D'?)"
        );
        let e = bad(seq(json!({"type": "Transformer"})));
        assert!(e.ends_with("unknown layer type 'Transformer'"), "{e}");
        // a required argument still reads as before once no key is unknown
        let e = bad(seq(json!({"type": "Conv2D", "kernel_size": 3})));
        assert_eq!(e, "layer '#0 (Conv2D)': invalid filters: is required");
    }

    #[test]
    fn unknown_outputs_are_quoted_once() {
        let graph = |outputs: Value| {
            json!({"inputs": {"x": [4]}, "layers": [
                {"name": "a", "type": "Dense", "units": 4, "inputs": ["x"]}], "outputs": outputs})
        };
        let e = model_from_spec(&graph(json!(["z"])), 0)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "spec: outputs: unknown layer 'z'");
        let e = model_from_spec(&graph(json!([3])), 0)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "spec: outputs: expected layer names, found 3");
    }

    #[test]
    fn the_argument_table_is_what_each_type_reads() {
        let required = |ty: &str| match ty {
            "Dense" => json!({"units": 1}),
            "Conv2D" => json!({"filters": 1, "kernel_size": 1}),
            "DepthwiseConv2D" => json!({"kernel_size": 1}),
            "Dropout" => json!({"rate": 0.5}),
            "Reshape" => json!({"target_shape": [1]}),
            "Activation" => json!({"activation": "relu"}),
            _ => json!({}),
        };
        for (ty, known) in LAYER_ARGUMENTS {
            let map = required(ty).as_object().unwrap().clone();
            let mut a = Args {
                layer: ty.to_string(),
                ty,
                map: &map,
                used: HashSet::new(),
            };
            read_layer(ty, ty, &mut a).unwrap();
            let mut used: Vec<&str> = a.used.into_iter().collect();
            let mut known = known.to_vec();
            used.sort_unstable();
            known.sort_unstable();
            assert_eq!(used, known, "{ty}");
        }
        assert!(known_arguments("Nope").is_none());
        assert_eq!(edit_distance("kernle_size", "kernel_size"), 1);
        assert_eq!(
            closest("act", ["activation", "use_bias"]),
            Some("activation")
        );
        assert_eq!(closest("colour", ["units", "activation"]), None);
        assert_eq!(closest("conv", ["Dense", "Conv2D"]), Some("Conv2D"));
        let huge = "x".repeat(1 << 20);
        assert_eq!(closest(&huge, ["units", "activation"]), None);
    }

    #[test]
    fn sizes_that_cannot_be_served_are_refused_before_allocating() {
        let bad = |spec: Value| model_from_spec(&spec, 0).unwrap_err().to_string();
        let e = bad(
            json!({"input_shape": [1000000], "layers": [{"type": "Dense", "name": "wide", "units": 1000000}]}),
        );
        assert!(
            e.contains("layer 'wide': invalid units") && e.contains("over the limit"),
            "{e}"
        );
        let e = bad(json!({"input_shape": [5, 5, 256], "layers": [
            {"type": "DepthwiseConv2D", "name": "dw", "kernel_size": 127, "depth_multiplier": 255, "padding": "same"}]}));
        assert!(
            e.contains("layer 'dw': invalid kernel_size/depth_multiplier"),
            "{e}"
        );
        let e = bad(json!({"input_shape": [65536, 65536, 3], "layers": []}));
        assert!(
            e.contains("input_shape") && e.contains("elements per sample"),
            "{e}"
        );
        let e =
            bad(json!({"input_shape": [4], "layers": [{"type": "Dense", "units": 4294967296u64}]}));
        assert!(
            e.contains("invalid units") && e.contains("up to 16777216"),
            "{e}"
        );
        let e = bad(json!({"input_shape": [4, 4, 1], "layers": [
            {"type": "ZeroPadding2D", "name": "zp", "padding": [[1, 1], [1, 9007199254740993u64]]}]}));
        assert!(e.contains("layer 'zp': invalid padding"), "{e}");
        // 1e308 is a fine f64 but infinite as the f32 a layer keeps
        let e = bad(serde_json::from_str(
            r#"{"input_shape": [4], "layers": [{"type": "BatchNormalization", "name": "bn", "epsilon": 1e308}]}"#,
        ).unwrap());
        assert!(
            e.contains("layer 'bn': invalid epsilon: expected a finite"),
            "{e}"
        );
    }

    #[test]
    fn default_names_skip_explicit_ones_and_round_trip() {
        let spec = json!({"name": "s", "input_shape": [4], "layers": [
            {"type": "Dense", "units": 3},
            {"type": "Dense", "units": 3, "name": "dense_1"},
            {"type": "Dense", "units": 2}]});
        let m = model_from_spec(&spec, 0).unwrap();
        let names: Vec<&str> = m.layers().iter().map(|l| l.name()).collect();
        assert_eq!(names, vec!["dense", "dense_1", "dense_2"]);
        let again = model_from_spec(&m.to_spec(), 0).unwrap();
        assert_eq!(again.count_params(), m.count_params());
        assert_eq!(again.to_spec(), m.to_spec());
    }
}
