//! Each layer type's arguments, and a "did you mean" for an unknown one.

use super::*;

/// The keys every layer object may carry besides its arguments.
pub(super) const COMMON_KEYS: [&str; 4] = ["type", "name", "inputs", "trainable"];

/// Every layer type a spec may name, with the arguments it reads (what
/// `read_layer` asks `Args` for), so a misspelt one is reported before any
/// value is checked.
pub(super) const LAYER_ARGUMENTS: &[(&str, &[&str])] = &[
    (
        "Dense",
        &[
            "units",
            "activation",
            "use_bias",
            "kernel_initializer",
            "bias_initializer",
            "dtype",
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
            "dtype",
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

pub(super) fn known_arguments(ty: &str) -> Option<&'static [&'static str]> {
    LAYER_ARGUMENTS
        .iter()
        .find(|(t, _)| *t == ty)
        .map(|(_, args)| *args)
}

/// Edit distance with adjacent transpositions (`kernle` -> `kernel` is 1),
/// ignoring case and taking `-` for `_`.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
pub(super) fn closest<'k>(
    key: &str,
    candidates: impl IntoIterator<Item = &'k str>,
) -> Option<&'k str> {
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
pub(super) fn unknown_arguments(
    layer: &str,
    ty: &str,
    unknown: &[&str],
    known: &[&str],
) -> NnError {
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
