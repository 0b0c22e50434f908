//! A strict reader of Universal Binary JSON (the format XGBoost saves by default since 2.1) into
//! `serde_json::Value`. Counts are checked against the bytes left before anything is allocated, nesting is
//! bounded, and every error names the byte offset, so a hostile file cannot make the reader allocate or recurse
//! without bound.

use serde_json::{Map, Number, Value};

const MAX_DEPTH: usize = 64;

pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

type R<T> = Result<T, String>;

/// Parses one UBJSON value that must fill `bytes` exactly.
pub fn parse(bytes: &[u8]) -> R<Value> {
    let mut r = Reader { bytes, at: 0 };
    let v = r.value(0)?;
    if r.at != bytes.len() {
        return Err(format!(
            "{} bytes after the value at byte {}",
            bytes.len() - r.at,
            r.at
        ));
    }
    Ok(v)
}

impl Reader<'_> {
    fn byte(&mut self) -> R<u8> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| format!("the file ends at byte {} inside a value", self.at))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> R<&[u8]> {
        if self.bytes.len() - self.at < n {
            return Err(format!(
                "{n} bytes wanted at byte {} but only {} left",
                self.at,
                self.bytes.len() - self.at
            ));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn int(&mut self, marker: u8) -> R<i64> {
        Ok(match marker {
            b'i' => i64::from(self.take(1)?[0] as i8),
            b'U' => i64::from(self.take(1)?[0]),
            b'I' => i64::from(i16::from_be_bytes(self.take(2)?.try_into().expect("2"))),
            b'l' => i64::from(i32::from_be_bytes(self.take(4)?.try_into().expect("4"))),
            b'L' => i64::from_be_bytes(self.take(8)?.try_into().expect("8")),
            m => {
                return Err(format!(
                    "byte {}: expected an integer, found marker {:?}",
                    self.at - 1,
                    m as char
                ));
            }
        })
    }

    /// A length: a non-negative integer no larger than the bytes left (each element takes at least one).
    fn count(&mut self) -> R<usize> {
        let at = self.at;
        let m = self.byte()?;
        let n = self.int(m)?;
        let left = self.bytes.len() - self.at;
        if n < 0 || n as u64 > left as u64 {
            return Err(format!("byte {at}: a count of {n} with {left} bytes left"));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> R<String> {
        let n = self.count()?;
        let at = self.at;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| format!("byte {at}: a string that is not UTF-8"))
    }

    fn value(&mut self, depth: usize) -> R<Value> {
        let m = self.byte()?;
        self.typed(m, depth)
    }

    fn typed(&mut self, m: u8, depth: usize) -> R<Value> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "byte {}: nested more than {MAX_DEPTH} deep",
                self.at
            ));
        }
        Ok(match m {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' | b'U' | b'I' | b'l' | b'L' => Value::from(self.int(m)?),
            b'd' => {
                let x = f32::from_be_bytes(self.take(4)?.try_into().expect("4"));
                number(f64::from(x), self.at)?
            }
            b'D' => {
                let x = f64::from_be_bytes(self.take(8)?.try_into().expect("8"));
                number(x, self.at)?
            }
            b'C' => Value::String((self.take(1)?[0] as char).to_string()),
            b'S' | b'H' => Value::String(self.string()?),
            b'[' => Value::Array(
                self.container(depth, false)?
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect(),
            ),
            b'{' => Value::Object(
                self.container(depth, true)?
                    .into_iter()
                    .collect::<Map<_, _>>(),
            ),
            b'N' => return self.value(depth),
            other => {
                return Err(format!(
                    "byte {}: unknown marker {:?}",
                    self.at - 1,
                    other as char
                ));
            }
        })
    }

    /// An array or object, optimised (`$` type, `#` count) or not (ended by `]` / `}`).
    fn container(&mut self, depth: usize, object: bool) -> R<Vec<(String, Value)>> {
        let mut ty = None;
        let mut n = None;
        if self.bytes.get(self.at) == Some(&b'$') {
            self.at += 1;
            ty = Some(self.byte()?);
            if self.byte()? != b'#' {
                return Err(format!(
                    "byte {}: a typed container without a count",
                    self.at - 1
                ));
            }
            n = Some(self.count()?);
        } else if self.bytes.get(self.at) == Some(&b'#') {
            self.at += 1;
            n = Some(self.count()?);
        }
        let end = if object { b'}' } else { b']' };
        let mut out = Vec::with_capacity(n.unwrap_or(0).min(1 << 16));
        let mut i = 0usize;
        loop {
            match n {
                Some(n) if i == n => break,
                None if self.bytes.get(self.at) == Some(&end) => {
                    self.at += 1;
                    break;
                }
                _ => {}
            }
            let key = if object {
                self.string()?
            } else {
                String::new()
            };
            let v = match ty {
                Some(t) => self.typed(t, depth + 1)?,
                None => self.value(depth + 1)?,
            };
            out.push((key, v));
            i += 1;
        }
        Ok(out)
    }
}

/// JSON has no NaN or infinity: such a number reads as `null` (a threshold that is null is refused later,
/// naming the tree and node).
fn number(x: f64, _at: usize) -> R<Value> {
    Ok(Number::from_f64(x).map_or(Value::Null, Value::Number))
}
