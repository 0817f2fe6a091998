//! Just enough of Python's unpickler to read the CIFAR python release.
//!
//! The published `cifar-10-batches-py` and `cifar-100-python` files were
//! written by Python 2's cPickle with protocol 2: a dict whose keys and
//! strings are py2 `str` (`SHORT_BINSTRING`/`BINSTRING`), whose labels are a
//! list of ints and whose `data` is a numpy `uint8` array pickled as
//! `numpy.core.multiarray._reconstruct(ndarray, (0,), 'b')` followed by a
//! `BUILD` with the state `(1, shape, dtype, is_fortran, raw_bytes)`.
//! Re-pickled copies written by Python 3 are read too, for every protocol
//! 0 to 5: py3 `str` (`UNICODE`, `BINUNICODE`, ...), `bytes` (`BINBYTES`,
//! or `_codecs.encode(text, 'latin1')` below protocol 3), frames and
//! `STACK_GLOBAL` (protocol 4), and protocol 5's
//! `numpy._core.numeric._frombuffer(buffer, dtype, shape, order)`.
//!
//! Opcode semantics follow CPython's `Lib/pickletools.py` descriptions. No
//! Python object is ever constructed or called: `GLOBAL`/`REDUCE`/`BUILD`
//! only record what was asked ([`Value::Object`]), and the one function
//! applied during loading is `_codecs.encode(text, 'latin1')`. Memoised
//! values are copies (a value changed after it was memoised is not seen
//! through the memo), which the pickles read here never rely on.
//! Out-of-band buffers, persistent ids, extension codes and old-style
//! instances (`INST`, `OBJ`) are rejected with an error naming the byte.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use super::error::{parse_error, DatasetError, Result};

/// A value rebuilt from a pickle, without running any Python.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// py2 `str`, py3 `bytes`/`bytearray`. Shared: memoising a 30 MB
    /// string must not copy it.
    Bytes(Rc<Vec<u8>>),
    /// py2 `unicode`, py3 `str`.
    Str(Rc<String>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// `module.name`, as `GLOBAL`/`STACK_GLOBAL` name it.
    Global { module: String, name: String },
    /// `callable(*args)` from `REDUCE`/`NEWOBJ`, with the `BUILD` state
    /// applied to it, if any.
    Object { callable: Box<Value>, args: Box<Value>, state: Option<Box<Value>> },
    /// A `MARK` on the stack (never returned).
    Mark,
}

/// Numpy's modules for `_reconstruct` (numpy 1.x and 2.x names).
const NUMPY_MULTIARRAY: [&str; 3] = ["numpy.core.multiarray", "numpy._core.multiarray", "numpy.core._multiarray_umath"];
/// Numpy's modules for protocol 5's `_frombuffer`.
const NUMPY_NUMERIC: [&str; 2] = ["numpy.core.numeric", "numpy._core.numeric"];

impl Value {
    /// The value under `key` in a dict whose keys are py2 or py3 strings.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find(|(k, _)| k.text().as_deref() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A py2 `str` (decoded as latin-1, as torchvision's `encoding="latin1"`
    /// does) or a py3 `str`.
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Value::Bytes(b) => Some(b.iter().map(|&c| char::from(c)).collect()),
            Value::Str(s) => Some(s.as_str().to_owned()),
            _ => None,
        }
    }

    /// An int (or bool, which Python treats as one).
    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The items of a list or tuple.
    pub(crate) fn items(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    fn is_global(&self, modules: &[&str], wanted: &str) -> bool {
        matches!(self, Value::Global { module, name } if name == wanted && modules.contains(&module.as_str()))
    }

    /// A numpy `uint8` array: its shape and its bytes in C (row-major)
    /// order. The error says what was found instead.
    pub(crate) fn u8_array(&self) -> std::result::Result<(Vec<usize>, Rc<Vec<u8>>), String> {
        let Value::Object { callable, args, state } = self else {
            return Err("a numpy array".into());
        };
        let (shape, dtype, fortran, raw) = if callable.is_global(&NUMPY_MULTIARRAY, "_reconstruct") {
            // ndarray.__setstate__ takes (version, shape, dtype, is_fortran,
            // raw) or, from old numpy, the same without the version.
            let state = state.as_deref().and_then(Value::items).ok_or("a numpy array with its BUILD state")?;
            match state {
                [_, shape, dtype, fortran, raw] | [shape, dtype, fortran, raw] => (shape, dtype, fortran.int() == Some(1), raw),
                _ => return Err(format!("a numpy array state of 4 or 5 items, found {}", state.len())),
            }
        } else if callable.is_global(&NUMPY_NUMERIC, "_frombuffer") {
            match args.items() {
                Some([raw, dtype, shape, order]) => (shape, dtype, order.text().as_deref() == Some("F"), raw),
                _ => return Err("_frombuffer(buffer, dtype, shape, order)".into()),
            }
        } else {
            return Err(format!("a numpy array, found a call to {callable:?}"));
        };
        let shape: Vec<usize> = shape
            .items()
            .ok_or("a shape tuple")?
            .iter()
            .map(|d| d.int().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or("a shape of non-negative ints")?;
        let type_code = match dtype {
            Value::Object { callable, args, .. } if callable.is_global(&["numpy"], "dtype") => {
                args.items().and_then(|a| a.first()).and_then(Value::text)
            }
            _ => None,
        };
        if type_code.as_deref() != Some("u1") {
            return Err(format!("dtype uint8 ('u1'), found {}", type_code.unwrap_or_else(|| format!("{dtype:?}"))));
        }
        let raw = match raw {
            Value::Bytes(b) => b.clone(),
            _ => return Err("the array's raw bytes".into()),
        };
        let count: usize = shape.iter().product();
        if raw.len() != count {
            return Err(format!("{count} bytes for shape {shape:?}, found {}", raw.len()));
        }
        if fortran && shape.len() == 2 {
            let (rows, cols) = (shape[0], shape[1]);
            let mut c_order = vec![0u8; count];
            for (i, &v) in raw.iter().enumerate() {
                c_order[(i % rows) * cols + i / rows] = v;
            }
            return Ok((shape, Rc::new(c_order)));
        }
        if fortran && shape.iter().filter(|&&d| d > 1).count() > 1 {
            return Err("a C-ordered array (or a 2-D Fortran-ordered one)".into());
        }
        Ok((shape, raw))
    }
}

/// Unpickles `bytes`; `path` only names the file in errors.
///
/// # Errors
/// [`DatasetError::Parse`] naming the byte offset and opcode of the first
/// thing that is not a well-formed pickle of the kinds listed in the module
/// docs.
pub(crate) fn load(path: &Path, bytes: &[u8]) -> Result<Value> {
    let mut machine = Machine { path, bytes, pos: 0, op_pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
    machine.run()
}

struct Machine<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed (for messages).
    op_pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl<'a> Machine<'a> {
    fn error(&self, expected: impl Into<String>) -> DatasetError {
        let op = self.bytes.get(self.op_pos).copied().unwrap_or(0);
        parse_error(self.path, format!("byte {} (pickle opcode 0x{op:02x})", self.op_pos), expected)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| self.error(format!("{n} more bytes (the file is truncated)")))?;
        let bytes: &'a [u8] = self.bytes;
        let out = &bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len_u32(&mut self) -> Result<usize> {
        Ok(u32::from_le_bytes(self.le()?) as usize)
    }

    fn len_u64(&mut self) -> Result<usize> {
        usize::try_from(u64::from_le_bytes(self.le()?)).map_err(|_| self.error("a length that fits in memory"))
    }

    /// A text argument up to the newline (protocol 0).
    fn line(&mut self) -> Result<&'a [u8]> {
        let bytes: &'a [u8] = self.bytes;
        let rest = &bytes[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.error("a newline-terminated argument"))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    fn line_text(&mut self) -> Result<String> {
        let line = self.line()?;
        let text = String::from_utf8_lossy(line).trim().to_owned();
        Ok(text)
    }

    fn pop(&mut self) -> Result<Value> {
        match self.stack.pop() {
            Some(Value::Mark) | None => Err(self.error("a value on the stack")),
            Some(v) => Ok(v),
        }
    }

    fn top(&mut self) -> Result<&mut Value> {
        match self.stack.last_mut() {
            Some(Value::Mark) | None => Err(parse_error(self.path, format!("byte {}", self.op_pos), "a value on the stack")),
            Some(v) => Ok(v),
        }
    }

    /// Pops everything above the last mark, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self.marks.pop().ok_or_else(|| self.error("a MARK before this opcode"))?;
        if mark > self.stack.len() {
            return Err(self.error("a MARK before this opcode"));
        }
        let items = self.stack.split_off(mark);
        // Drop the Mark itself.
        self.stack.pop();
        Ok(items)
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn memo_put(&mut self, id: u64) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(id, v);
        Ok(())
    }

    fn memo_get(&mut self, id: u64) -> Result<()> {
        let v = self.memo.get(&id).cloned().ok_or_else(|| self.error(format!("memo entry {id} to have been stored")))?;
        self.push(v);
        Ok(())
    }

    fn parse_int(&self, text: &str) -> Result<i64> {
        text.parse().map_err(|_| self.error(format!("an integer, found `{text}`")))
    }

    /// Little-endian two's-complement integer of `LONG1`/`LONG4`.
    fn long(&mut self, n: usize) -> Result<Value> {
        if n > 8 {
            return Err(self.error("an integer of at most 8 bytes"));
        }
        let raw = self.take(n)?;
        let mut buf = if raw.last().is_some_and(|&b| b & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
        buf[..n].copy_from_slice(raw);
        Ok(Value::Int(i64::from_le_bytes(buf)))
    }

    fn bytes_value(&mut self, n: usize) -> Result<Value> {
        Ok(Value::Bytes(Rc::new(self.take(n)?.to_vec())))
    }

    fn utf8_value(&mut self, n: usize) -> Result<Value> {
        let raw = self.take(n)?;
        let text = std::str::from_utf8(raw).map_err(|_| self.error("UTF-8 text"))?.to_owned();
        Ok(Value::Str(Rc::new(text)))
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            self.op_pos = self.pos;
            let op = *self.bytes.get(self.pos).ok_or_else(|| self.error("the STOP opcode before the end of the file (the file is truncated)"))?;
            self.pos += 1;
            match op {
                b'.' => return self.pop(),
                // PROTO: the protocol number; FRAME: a length (framing only).
                0x80 => {
                    self.take(1)?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'(' => {
                    self.marks.push(self.stack.len() + 1);
                    self.push(Value::Mark);
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v);
                }
                // Numbers.
                b'I' => {
                    let text = self.line_text()?;
                    let v = match text.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        t => Value::Int(self.parse_int(t)?),
                    };
                    self.push(v);
                }
                b'L' => {
                    let text = self.line_text()?;
                    let v = self.parse_int(text.trim_end_matches('L'))?;
                    self.push(Value::Int(v));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Value::Int(v.into()));
                }
                b'K' => {
                    let v = self.le::<1>()?[0];
                    self.push(Value::Int(v.into()));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Value::Int(v.into()));
                }
                0x8a => {
                    let n = self.le::<1>()?[0] as usize;
                    let v = self.long(n)?;
                    self.push(v);
                }
                0x8b => {
                    let n = i32::from_le_bytes(self.le()?);
                    let n = usize::try_from(n).map_err(|_| self.error("a non-negative length"))?;
                    let v = self.long(n)?;
                    self.push(v);
                }
                b'F' => {
                    let text = self.line_text()?;
                    let v = text.parse().map_err(|_| self.error(format!("a float, found `{text}`")))?;
                    self.push(Value::Float(v));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Value::Float(v));
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                // py2 str / py3 bytes.
                b'S' => {
                    let line = self.line()?;
                    let v = unquote_string(line).ok_or_else(|| self.error("a quoted, escaped py2 string"))?;
                    self.push(Value::Bytes(Rc::new(v)));
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.le()?);
                    let n = usize::try_from(n).map_err(|_| self.error("a non-negative string length"))?;
                    let v = self.bytes_value(n)?;
                    self.push(v);
                }
                b'U' | b'C' => {
                    let n = self.le::<1>()?[0] as usize;
                    let v = self.bytes_value(n)?;
                    self.push(v);
                }
                b'B' => {
                    let n = self.len_u32()?;
                    let v = self.bytes_value(n)?;
                    self.push(v);
                }
                0x8e | 0x96 => {
                    let n = self.len_u64()?;
                    let v = self.bytes_value(n)?;
                    self.push(v);
                }
                // py2 unicode / py3 str.
                b'V' => {
                    let line = self.line()?;
                    let text = raw_unicode_escape(line).ok_or_else(|| self.error("raw-unicode-escape text"))?;
                    self.push(Value::Str(Rc::new(text)));
                }
                b'X' => {
                    let n = self.len_u32()?;
                    let v = self.utf8_value(n)?;
                    self.push(v);
                }
                0x8c => {
                    let n = self.le::<1>()?[0] as usize;
                    let v = self.utf8_value(n)?;
                    self.push(v);
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let v = self.utf8_value(n)?;
                    self.push(v);
                }
                // Containers.
                b')' => self.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n || self.stack[self.stack.len() - n..].contains(&Value::Mark) {
                        return Err(self.error(format!("{n} values on the stack")));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Value::Tuple(items));
                }
                b']' | 0x8f => self.push(Value::List(Vec::new())),
                b'l' | 0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(items) => items.push(v),
                        _ => return Err(self.error("a list to append to")),
                    }
                }
                b'e' | 0x90 => {
                    let values = self.pop_mark()?;
                    match self.top()? {
                        Value::List(items) => items.extend(values),
                        _ => return Err(self.error("a list to append to")),
                    }
                }
                b'}' => self.push(Value::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push(Value::Dict(pairs));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(items) => items.push((k, v)),
                        _ => return Err(self.error("a dict to set an item in")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    match self.top()? {
                        Value::Dict(items) => items.extend(pairs),
                        _ => return Err(self.error("a dict to set items in")),
                    }
                }
                // Memo.
                b'p' => {
                    let text = self.line_text()?;
                    let id = self.parse_int(&text)?;
                    self.memo_put(id as u64)?;
                }
                b'q' => {
                    let id = self.le::<1>()?[0];
                    self.memo_put(id.into())?;
                }
                b'r' => {
                    let id = self.len_u32()?;
                    self.memo_put(id as u64)?;
                }
                0x94 => {
                    let id = self.memo.len() as u64;
                    self.memo_put(id)?;
                }
                b'g' => {
                    let text = self.line_text()?;
                    let id = self.parse_int(&text)?;
                    self.memo_get(id as u64)?;
                }
                b'h' => {
                    let id = self.le::<1>()?[0];
                    self.memo_get(id.into())?;
                }
                b'j' => {
                    let id = self.len_u32()?;
                    self.memo_get(id as u64)?;
                }
                // Objects: recorded, never constructed.
                b'c' => {
                    let module = self.line_text()?;
                    let name = self.line_text()?;
                    self.push(Value::Global { module, name });
                }
                0x93 => {
                    let name = self.pop()?.text().ok_or_else(|| self.error("a global's name"))?;
                    let module = self.pop()?.text().ok_or_else(|| self.error("a global's module"))?;
                    self.push(Value::Global { module, name });
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.push(v);
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.push(Value::Object { callable: Box::new(callable), args: Box::new(args), state: None });
                }
                b'b' => {
                    let new_state = self.pop()?;
                    match self.top()? {
                        Value::Object { state, .. } => *state = Some(Box::new(new_state)),
                        _ => return Err(self.error("an object to BUILD")),
                    }
                }
                // PickleBuffer marker on an in-band buffer: nothing to do.
                0x98 => {
                    self.top()?;
                }
                other => {
                    return Err(self.error(format!(
                        "an opcode of plain data (found 0x{other:02x}: persistent ids, extension codes, old-style instances and out-of-band buffers are not read)"
                    )))
                }
            }
        }
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
        if !items.len().is_multiple_of(2) {
            return Err(self.error("an even number of items (keys and values)"));
        }
        let mut it = items.into_iter();
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    /// `REDUCE`: records the call, except `_codecs.encode(text, 'latin1')`,
    /// which is how Python 3 pickles `bytes` below protocol 3.
    fn call(&self, callable: Value, args: Value) -> Result<Value> {
        if callable.is_global(&["_codecs"], "encode") {
            if let Some([Value::Str(text), encoding]) = args.items() {
                if matches!(encoding.text().as_deref(), Some("latin1" | "latin-1")) {
                    let bytes: Option<Vec<u8>> = text.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
                    let bytes = bytes.ok_or_else(|| self.error("latin-1 text for _codecs.encode"))?;
                    return Ok(Value::Bytes(Rc::new(bytes)));
                }
            }
            return Err(self.error("_codecs.encode(text, 'latin1')"));
        }
        Ok(Value::Object { callable: Box::new(callable), args: Box::new(args), state: None })
    }
}

/// The argument of protocol 0's `STRING`: a quoted literal with Python 2's
/// escapes (CPython unquotes it, then applies `codecs.escape_decode`).
fn unquote_string(line: &[u8]) -> Option<Vec<u8>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let quote = *line.first()?;
    if line.len() < 2 || !(quote == b'\'' || quote == b'"') || *line.last()? != quote {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'x' => {
                let hex = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Decodes protocol 0's `UNICODE` argument (`raw-unicode-escape`: latin-1
/// bytes, with `\uXXXX` and `\UXXXXXXXX` escapes).
fn raw_unicode_escape(line: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        let width = match (c, line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if width == 0 {
            out.push(char::from(c));
            i += 1;
            continue;
        }
        let hex = std::str::from_utf8(line.get(i + 2..i + 2 + width)?).ok()?;
        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
        i += 2 + width;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn load_bytes(bytes: &[u8]) -> Result<Value> {
        load(Path::new("t.pkl"), bytes)
    }

    #[test]
    fn py2_protocol_0_string_escapes_are_decoded() {
        assert_eq!(unquote_string(br"'a\x00\n\\\'b\101'").unwrap(), b"a\x00\n\\'bA");
        assert_eq!(unquote_string(br#""it's""#).unwrap(), b"it's");
        assert!(unquote_string(b"unquoted").is_none());
    }

    #[test]
    fn raw_unicode_escape_keeps_latin1_bytes_and_decodes_escapes() {
        assert_eq!(raw_unicode_escape(b"a\xe9\\u005c\\U0001F600").unwrap(), "a\u{e9}\\\u{1F600}");
    }

    #[test]
    fn a_protocol_2_dict_of_py2_strings_and_ints_loads() {
        // {'k': [1, 300, -5], 'n': 'ab'} as cPickle protocol 2 writes it.
        let bytes = b"\x80\x02}q\x01(U\x01kq\x02]q\x03(K\x01M,\x01J\xfb\xff\xff\xffeU\x01nU\x02abu.";
        let v = load_bytes(bytes).unwrap();
        let list: Vec<i64> = v.get("k").unwrap().items().unwrap().iter().map(|x| x.int().unwrap()).collect();
        assert_eq!(list, vec![1, 300, -5]);
        assert_eq!(v.get("n").unwrap().text().unwrap(), "ab");
    }

    #[test]
    fn truncation_and_unknown_opcodes_name_the_byte() {
        let err = load_bytes(b"\x80\x02}q\x01(U\x05ab").unwrap_err().to_string();
        assert!(err.contains("byte 6") && err.contains("truncated"), "{err}");
        let err = load_bytes(b"\x80\x02P1\n.").unwrap_err().to_string();
        assert!(err.contains("byte 2") && err.contains("0x50"), "{err}");
    }

    #[test]
    fn long1_is_twos_complement() {
        let v = load_bytes(b"\x8a\x02\x00\xff.").unwrap();
        assert_eq!(v, Value::Int(-256));
    }
}
