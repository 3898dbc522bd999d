//! Input mutation: bit flips, byte inserts and deletes, splices with another
//! seed, interesting integers written over length fields, and for spec JSON a
//! structure-aware mutation of one value of the document.

use serde_json::Value;

use crate::targets::Target;

/// A small seeded generator (xorshift64*), enough for mutation choices.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (`n` > 0; 0 gives 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Integers that tend to break length and size arithmetic.
pub const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    16,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    1_000_000,
    1_000_000_000_000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// Number spellings for JSON mutation.
const JSON_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "3",
    "7",
    "64",
    "1000000",
    "4294967296",
    "18446744073709551615",
    "-9223372036854775808",
    "1e309",
    "0.5",
    "-0.0",
    "1e-40",
    "true",
    "null",
    "\"3\"",
    "[]",
    "[0, 0]",
    "[3, 3, 3]",
    "{}",
];

/// Words for JSON string mutation: layer types and argument values.
const JSON_WORDS: &[&str] = &[
    "Dense",
    "Conv2D",
    "DepthwiseConv2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "BatchNormalization",
    "Dropout",
    "Flatten",
    "Reshape",
    "ZeroPadding2D",
    "Activation",
    "ReLU",
    "Softmax",
    "Concatenate",
    "Add",
    "Multiply",
    "Blend",
    "same",
    "valid",
    "relu",
    "softmax",
    "sigmoid",
    "he_normal",
    "x",
    "a",
    "b",
    "",
    "dense",
    "conv2d",
];

/// Argument names to add to a JSON object.
const JSON_KEYS: &[&str] = &[
    "units",
    "filters",
    "kernel_size",
    "strides",
    "padding",
    "dilation_rate",
    "groups",
    "activation",
    "use_bias",
    "pool_size",
    "rate",
    "axis",
    "target_shape",
    "depth_multiplier",
    "name",
    "inputs",
    "type",
    "trainable",
    "keepdims",
    "epsilon",
    "max_value",
];

/// One new input derived from `base` (and maybe `other`), at most `max_len` bytes.
pub fn mutate(
    target: Target,
    base: &[u8],
    other: &[u8],
    rng: &mut XorShift,
    max_len: usize,
) -> Vec<u8> {
    if target == Target::Spec && rng.below(3) != 0 {
        if let Some(v) = mutate_json(base, rng) {
            return v;
        }
    }
    let mut out = base.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        mutate_bytes(&mut out, other, rng);
    }
    out.truncate(max_len);
    out
}

fn mutate_bytes(v: &mut Vec<u8>, other: &[u8], rng: &mut XorShift) {
    match rng.below(9) {
        // flip one bit
        0 if !v.is_empty() => {
            let i = rng.below(v.len());
            v[i] ^= 1 << rng.below(8);
        }
        // random byte
        1 if !v.is_empty() => {
            let i = rng.below(v.len());
            v[i] = rng.next_u64() as u8;
        }
        // insert bytes
        2 => {
            let i = rng.below(v.len() + 1);
            let n = 1 + rng.below(16);
            let fill: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            v.splice(i..i, fill);
        }
        // delete a range
        3 if !v.is_empty() => {
            let i = rng.below(v.len());
            let n = 1 + rng.below((v.len() - i).min(64));
            v.drain(i..i + n);
        }
        // truncate
        4 if !v.is_empty() => {
            let n = rng.below(v.len());
            v.truncate(n);
        }
        // splice: our head, the other input's tail
        5 if !other.is_empty() => {
            let i = rng.below(v.len() + 1);
            let j = rng.below(other.len());
            v.truncate(i);
            v.extend_from_slice(&other[j..]);
        }
        // interesting integer over a (length) field, LE or BE, 1/2/4/8 bytes
        6 | 7 if !v.is_empty() => {
            let x = INTERESTING[rng.below(INTERESTING.len())];
            let width = [1usize, 2, 4, 8][rng.below(4)];
            // length fields live near the start: favour the first 64 bytes
            let span = if rng.below(2) == 0 {
                v.len().min(64)
            } else {
                v.len()
            };
            let i = rng.below(span);
            let bytes = if rng.below(2) == 0 {
                x.to_le_bytes()
            } else {
                x.to_be_bytes()
            };
            let src = if bytes[0] == 0 && width < 8 {
                // big-endian: take the low-order end
                &bytes[8 - width..]
            } else {
                &bytes[..width]
            };
            for (k, b) in src.iter().enumerate() {
                if i + k < v.len() {
                    v[i + k] = *b;
                }
            }
        }
        // duplicate a chunk
        _ if !v.is_empty() => {
            let i = rng.below(v.len());
            let n = 1 + rng.below((v.len() - i).min(32));
            let chunk = v[i..i + n].to_vec();
            let at = rng.below(v.len() + 1);
            v.splice(at..at, chunk);
        }
        _ => v.push(rng.next_u64() as u8),
    }
}

/// Parses `base` as JSON, changes one value, prints it back.
fn mutate_json(base: &[u8], rng: &mut XorShift) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(base).ok()?;
    let n = count_nodes(&v);
    let target = rng.below(n);
    let mut k = 0;
    mutate_node(&mut v, target, &mut k, rng);
    serde_json::to_vec(&v).ok().map(|mut s| {
        // sometimes replace a token by a raw spelling serde would not write
        if rng.below(4) == 0 {
            let text = String::from_utf8_lossy(&s).into_owned();
            let digits: Vec<usize> = text
                .char_indices()
                .filter(|(_, c)| c.is_ascii_digit())
                .map(|(i, _)| i)
                .collect();
            if !digits.is_empty() {
                let i = digits[rng.below(digits.len())];
                let mut end = i;
                let b = text.as_bytes();
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                let rep = JSON_NUMBERS[rng.below(JSON_NUMBERS.len())];
                s = format!("{}{}{}", &text[..i], rep, &text[end..]).into_bytes();
            }
        }
        s
    })
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

fn random_scalar(rng: &mut XorShift) -> Value {
    match rng.below(4) {
        0 => {
            serde_json::from_str(JSON_NUMBERS[rng.below(JSON_NUMBERS.len())]).unwrap_or(Value::Null)
        }
        1 => Value::from(JSON_WORDS[rng.below(JSON_WORDS.len())]),
        2 => Value::from(INTERESTING[rng.below(INTERESTING.len())]),
        _ => Value::from(rng.below(9) as u64),
    }
}

/// Mutates the `target`-th node (pre-order); returns true once done.
fn mutate_node(v: &mut Value, target: usize, k: &mut usize, rng: &mut XorShift) -> bool {
    if *k == target {
        match v {
            Value::Array(a) => match rng.below(4) {
                0 if !a.is_empty() => {
                    let i = rng.below(a.len());
                    a.remove(i);
                }
                1 if !a.is_empty() => {
                    let i = rng.below(a.len());
                    let dup = a[i].clone();
                    a.insert(rng.below(a.len() + 1), dup);
                }
                2 if a.len() > 1 => {
                    let (i, j) = (rng.below(a.len()), rng.below(a.len()));
                    a.swap(i, j);
                }
                _ => a.push(random_scalar(rng)),
            },
            Value::Object(o) => match rng.below(3) {
                0 if !o.is_empty() => {
                    let keys: Vec<String> = o.keys().cloned().collect();
                    o.remove(&keys[rng.below(keys.len())]);
                }
                _ => {
                    let key = JSON_KEYS[rng.below(JSON_KEYS.len())];
                    o.insert(key.to_string(), random_scalar(rng));
                }
            },
            Value::String(_) => {
                *v = if rng.below(4) == 0 {
                    random_scalar(rng)
                } else {
                    Value::from(JSON_WORDS[rng.below(JSON_WORDS.len())])
                }
            }
            _ => *v = random_scalar(rng),
        }
        return true;
    }
    *k += 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|c| mutate_node(c, target, k, rng)),
        Value::Object(o) => o.values_mut().any(|c| mutate_node(c, target, k, rng)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_bounded_and_vary() {
        let mut rng = XorShift::new(1);
        let base = b"{\"input_shape\": [4], \"layers\": [{\"type\": \"Dense\", \"units\": 3}]}";
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..200 {
            let m = mutate(Target::Spec, base, b"xyz", &mut rng, 100);
            assert!(m.len() <= 100);
            distinct.insert(m);
        }
        assert!(distinct.len() > 100, "{}", distinct.len());
    }
}
