//! A layer's arguments read from its spec object, each bad value an error
//! that names the layer and the field.

use super::*;

/// The arguments of one layer, consumed one by one so leftovers are reported.
pub(super) struct Args<'a> {
    pub(super) layer: String,
    pub(super) ty: &'a str,
    pub(super) map: &'a Map<String, Value>,
    pub(super) used: HashSet<&'static str>,
}

impl<'a> Args<'a> {
    pub(super) fn err(&self, field: &str, message: impl Into<String>) -> NnError {
        NnError::config(&self.layer, field, message)
    }
    pub(super) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.insert(key);
        self.map.get(key).filter(|v| !v.is_null())
    }
    pub(super) fn usize(&mut self, key: &'static str) -> Result<Option<usize>> {
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
    pub(super) fn required_usize(&mut self, key: &'static str) -> Result<usize> {
        self.usize(key)?.ok_or_else(|| self.err(key, "is required"))
    }
    pub(super) fn f32(&mut self, key: &'static str) -> Result<Option<f32>> {
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
    pub(super) fn int(&mut self, key: &'static str) -> Result<Option<isize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(|i| Some(i as isize))
                .ok_or_else(|| self.err(key, format!("expected an integer, found {v}"))),
        }
    }
    pub(super) fn bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected true or false, found {v}"))),
        }
    }
    pub(super) fn str(&mut self, key: &'static str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected a string, found {v}"))),
        }
    }
    pub(super) fn pair(&mut self, key: &'static str) -> Result<Option<(usize, usize)>> {
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
    pub(super) fn padding(&mut self) -> Result<Option<Padding>> {
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
    pub(super) fn activation(&mut self) -> Result<Option<Activation>> {
        match self.str("activation")? {
            None => Ok(None),
            Some(a) => Activation::from_name(a)
                .map(Some)
                .map_err(|_| self.err("activation", format!("unknown activation '{a}'"))),
        }
    }
    /// A layer's own dtype policy, by Keras's name (`float32`, `mixed_bfloat16`).
    pub(super) fn precision(&mut self) -> Result<Option<strata_core::Precision>> {
        match self.str("dtype")? {
            None => Ok(None),
            Some(p) => p
                .parse()
                .map(Some)
                .map_err(|e: String| self.err("dtype", e)),
        }
    }
    pub(super) fn initializer(&mut self, key: &'static str) -> Result<Option<Initializer>> {
        match self.str(key)? {
            None => Ok(None),
            Some(a) => Initializer::from_name(a)
                .map(Some)
                .map_err(|_| self.err(key, format!("unknown initializer '{a}'"))),
        }
    }
    /// Reports the arguments nothing read (the table in [`known_arguments`]
    /// catches them first; this is the backstop).
    pub(super) fn finish(self) -> Result<()> {
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
