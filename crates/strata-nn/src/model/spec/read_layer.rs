//! One layer from its spec or its Keras config: the type's constructor with
//! its arguments.

use super::*;

/// Reads the arguments of a `ty` layer into a new layer.
pub(super) fn read_layer(ty: &str, label: &str, a: &mut Args<'_>) -> Result<Box<dyn Layer>> {
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
            d.dtype = a.precision()?;
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
            c.dtype = a.precision()?;
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

pub(super) fn shape_list(v: &Value, what: &str) -> Result<Vec<usize>> {
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
