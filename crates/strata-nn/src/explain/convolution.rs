//! Conv2D and DepthwiseConv2D: the window, the weights and the output size.

use super::*;

pub(crate) fn describe_conv2d(
    c: &crate::layers::Conv2D,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let input = inputs.first().cloned().unwrap_or_default();
    let cin = input.get(2).copied().unwrap_or(0);
    let (kh, kw) = c.kernel_size;
    let f = c.filters;
    let g = c.groups.max(1);
    let cg = cin / g;
    let fan = kh * kw * cg;
    let total = fan * f + if c.use_bias { f } else { 0 };
    let window = Window {
        kernel: c.kernel_size,
        strides: c.strides,
        padding: c.padding,
        dilation: c.dilation_rate,
    };
    let act = match c.activation {
        Activation::Linear => String::new(),
        a => format!(", then {}", a.name()),
    };
    let kernels = if f == 1 {
        format!("1 kernel, {kh}x{kw}x{cg}")
    } else {
        format!("{f} kernels, each {kh}x{kw}x{cg}")
    };
    let operation = format!(
        "{kernels} (a kernel spans {}{}), slide{} over the image with {}{act}",
        all_of(cg, "input channel", "input channels"),
        if g > 1 {
            format!(" of its group; {g} groups")
        } else {
            String::new()
        },
        if f == 1 { "s" } else { "" },
        window.stride_words(&input, "kernel"),
    );
    let shapes = format!(
        "x {} * W ({kh}, {kw}, {cg}, {f}){} -> {}",
        batch_shape(&input),
        if c.use_bias {
            format!(" + b ({f},)")
        } else {
            String::new()
        },
        batch_shape(output)
    );
    let params = if c.use_bias {
        format!("{kh}*{kw}*{cg}*{f} + {f} = {}", thousands(total))
    } else {
        format!("{kh}*{kw}*{cg}*{f} = {}", thousands(total))
    };
    let mut notes = vec![format!(
        "stored as ({kh}, {kw}, {cg}, {f}); each output value sees {kh}*{kw}*{cg} = {}",
        count(fan, "input", "inputs")
    )];
    notes.extend(window.output_size_note(&input));
    if kh == 1 && kw == 1 && g == 1 {
        let positions = output.first().copied().unwrap_or(0) * output.get(1).copied().unwrap_or(0);
        notes.push(format!(
            "a 1x1 convolution is a Dense layer applied to the {cin}-channel vector of every pixel (cross-channel parametric pooling): the same ({cin}, {f}) matrix at {}",
            if positions == 1 { "the 1 position".to_string() } else { format!("each of the {positions} positions") }
        ));
    }
    if output.len() == 3 && input.len() == 3 {
        notes.push(format!(
            "multiply-adds per image: {} * {} = {}",
            thousands(output[0] * output[1] * f),
            fan,
            thousands(output[0] * output[1] * f * fan)
        ));
    }
    Description {
        operation,
        shapes,
        params,
        notes,
    }
}

pub(crate) fn describe_depthwise(
    d: &crate::layers::DepthwiseConv2D,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let input = inputs.first().cloned().unwrap_or_default();
    let c = input.get(2).copied().unwrap_or(0);
    let (kh, kw) = d.kernel_size;
    let m = d.depth_multiplier;
    let total = kh * kw * c * m + if d.use_bias { c * m } else { 0 };
    let window = Window {
        kernel: d.kernel_size,
        strides: d.strides,
        padding: d.padding,
        dilation: d.dilation_rate,
    };
    let own = if m == 1 {
        format!("its own {kh}x{kw} kernel")
    } else {
        format!("its own {m} {kh}x{kw} kernels (depth_multiplier {m})")
    };
    let act = match d.activation {
        Activation::Linear => String::new(),
        a => format!(", then {}", a.name()),
    };
    let mut notes = vec![format!(
        "{} comes from input channel c alone; each output value sees {kh}*{kw} = {}",
        if m == 1 {
            "output channel c".to_string()
        } else {
            format!("output channel c*{m} + k (k < {m})")
        },
        count(kh * kw, "input", "inputs")
    )];
    notes.extend(window.output_size_note(&input));
    Description {
        operation: format!(
            "per-channel convolution: {} gets {own} and channels are not mixed; the kernels slide with {}{act}",
            each_of(c, "input channel", "input channels"),
            window.stride_words(&input, "kernel"),
        ),
        shapes: format!(
            "x {} * W ({kh}, {kw}, {c}, {m}){} -> {}",
            batch_shape(&input),
            if d.use_bias {
                format!(" + b ({},)", c * m)
            } else {
                String::new()
            },
            batch_shape(output)
        ),
        params: if d.use_bias {
            format!("{kh}*{kw}*{c}*{m} + {} = {}", c * m, thousands(total))
        } else {
            format!("{kh}*{kw}*{c}*{m} = {}", thousands(total))
        },
        notes,
    }
}
