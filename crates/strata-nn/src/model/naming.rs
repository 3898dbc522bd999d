//! Keras default layer names: the snake_case of the class name, then `_1`,
//! `_2`, ... skipping names already taken (`conv2d`, `conv2d_1`, `re_lu`).

use std::collections::HashSet;

/// Keras's `to_snake_case`: `MaxPooling2D` -> `max_pooling2d`, `ReLU` -> `re_lu`.
pub fn snake_case(class: &str) -> String {
    let c: Vec<char> = class.chars().collect();
    // pass 1: "_" before an upper-case letter followed by lower-case ones
    let mut s1 = String::new();
    for i in 0..c.len() {
        if i > 0
            && c[i].is_ascii_uppercase()
            && c.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())
        {
            s1.push('_');
        }
        s1.push(c[i]);
    }
    // pass 2: "_" between a lower-case and an upper-case letter
    let c: Vec<char> = s1.chars().collect();
    let mut s2 = String::new();
    for i in 0..c.len() {
        if i > 0 && c[i].is_ascii_uppercase() && c[i - 1].is_ascii_lowercase() {
            s2.push('_');
        }
        s2.push(c[i]);
    }
    s2.to_lowercase()
}

/// Hands out default names, remembering every name in use.
#[derive(Debug, Default, Clone)]
pub struct Namer {
    taken: HashSet<String>,
}

impl Namer {
    /// Reserves an explicit name; false if it was taken already.
    pub fn reserve(&mut self, name: &str) -> bool {
        self.taken.insert(name.to_string())
    }
    /// The next free default name for a class.
    pub fn default_name(&mut self, class: &str) -> String {
        let base = snake_case(class);
        let mut name = base.clone();
        let mut i = 0;
        while self.taken.contains(&name) {
            i += 1;
            name = format!("{base}_{i}");
        }
        self.taken.insert(name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_names() {
        for (c, n) in [
            ("Conv2D", "conv2d"),
            ("MaxPooling2D", "max_pooling2d"),
            ("GlobalAveragePooling2D", "global_average_pooling2d"),
            ("BatchNormalization", "batch_normalization"),
            ("DepthwiseConv2D", "depthwise_conv2d"),
            ("ReLU", "re_lu"),
            ("Dense", "dense"),
            ("ZeroPadding2D", "zero_padding2d"),
        ] {
            assert_eq!(snake_case(c), n);
        }
        let mut n = Namer::default();
        n.reserve("dense_1");
        assert_eq!(n.default_name("Dense"), "dense");
        assert_eq!(n.default_name("Dense"), "dense_2");
        assert_eq!(n.default_name("Conv2D"), "conv2d");
    }
}
