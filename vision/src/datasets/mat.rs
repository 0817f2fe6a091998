//! A reader for MATLAB Level 5 MAT-files (the format of MATLAB v5, v6 and
//! v7, the `-v7` default being v5 with zlib-compressed variables).
//!
//! It reads exactly what the published dataset annotations use: numeric
//! arrays of every class (and logical arrays), char arrays, cell arrays and
//! struct arrays, stored plainly or inside `miCOMPRESSED` elements, in
//! little- or big-endian files. It follows MathWorks' "MAT-File Format"
//! (R2014b), chapter 1: the 128-byte header, the 8-byte data-element tags
//! with their 4-byte "small data element" form, 8-byte padding of every
//! element but a compressed one, and the `miMATRIX` sub-elements (array
//! flags, dimensions, name, then the class's data). scipy.io.loadmat
//! (`scipy/io/matlab/_mio5.py`) reads the same way.
//!
//! Not read, each with an error naming the file: sparse arrays, objects,
//! function handles and opaque classes (none of the datasets uses them), and
//! v7.3 files, which are HDF5 ([`DatasetError::MatV73`]). The imaginary part
//! of a complex array is skipped. Numbers are returned as `f64`, which holds
//! every integer up to 2^53 exactly (labels, ids and sizes fit with room to
//! spare).
//!
//! Tests: `vision/tests/datasets.rs` reads files written by
//! `scipy.io.savemat` (compressed and not) and a big-endian file, comparing
//! with what `scipy.io.loadmat` returns.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::{parse_error, read_error, DatasetError, Result};

/// Length of the text header at the start of a v5 file.
const HEADER_LEN: usize = 128;
/// Version field value of a v5 file (read in the file's byte order).
const VERSION_5: u16 = 0x0100;
/// Version field value of a v7.3 (HDF5) file.
const VERSION_73: u16 = 0x0200;

// Data types of data elements (MAT-File Format, table 1-1).
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

// Array classes (MAT-File Format, table 1-3).
const MX_CELL: u8 = 1;
const MX_STRUCT: u8 = 2;
const MX_CHAR: u8 = 4;
const MX_DOUBLE: u8 = 6;
const MX_UINT64: u8 = 15;

/// The variables of one MAT-file, in file order.
#[derive(Debug, Clone)]
pub struct MatFile {
    /// The file they were read from (for error messages).
    pub path: PathBuf,
    /// `(name, value)` of every top-level variable.
    pub variables: Vec<(String, MatArray)>,
}

/// One MATLAB array: its dimensions and its data in column-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    /// Dimensions as MATLAB gives them (at least 2; `[1, n]` for a row).
    pub dims: Vec<usize>,
    /// The elements, column-major (MATLAB's order).
    pub data: MatData,
}

/// The data of a [`MatArray`], by array class.
#[derive(Debug, Clone, PartialEq)]
pub enum MatData {
    /// Any numeric or logical class, converted to `f64` (real part only).
    Numeric(Vec<f64>),
    /// A char array, one `char` per element (UTF-16 surrogates are replaced
    /// by U+FFFD).
    Char(Vec<char>),
    /// A cell array: one array per cell.
    Cell(Vec<MatArray>),
    /// A struct array: the field names, then for each element its fields'
    /// values in the order of `fields`.
    Struct {
        /// Field names, in file order.
        fields: Vec<String>,
        /// `elements[i][f]` is field `fields[f]` of element `i`.
        elements: Vec<Vec<MatArray>>,
    },
}

impl MatFile {
    /// Reads every variable of a v5 MAT-file.
    ///
    /// # Errors
    /// [`DatasetError::Missing`]/[`DatasetError::Read`] if the file cannot
    /// be read, [`DatasetError::MatV73`] for an HDF5-based v7.3 file, and
    /// [`DatasetError::Parse`] naming the byte offset for anything that is
    /// not a well-formed v5 file of the classes listed in the module docs.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(read_error(path))?;
        Self::parse(path, &bytes)
    }

    /// Parses the bytes of a v5 MAT-file; `path` only names it in errors.
    ///
    /// # Errors
    /// As [`MatFile::read`], less the I/O errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let order = header_byte_order(path, bytes)?;
        let mut variables = Vec::new();
        let mut offset = HEADER_LEN;
        while offset < bytes.len() {
            let reader = ElementReader { path, order, base: 0 };
            let element = reader.element(bytes, offset)?;
            offset = element.next;
            let (name, array) = match element.data_type {
                MI_COMPRESSED => {
                    let inflated = inflate(path, element.data, offset)?;
                    let inner = ElementReader { path, order, base: 0 };
                    let matrix = inner.element(&inflated, 0)?;
                    if matrix.data_type != MI_MATRIX {
                        return Err(parse_error(
                            path,
                            format!("compressed element ending at byte {offset}"),
                            format!("an miMATRIX element inside, found data type {}", matrix.data_type),
                        ));
                    }
                    inner.matrix(matrix.data, matrix.start)?
                }
                MI_MATRIX => reader.matrix(element.data, element.start)?,
                other => {
                    return Err(parse_error(
                        path,
                        format!("byte {}", element.start),
                        format!("a top-level miMATRIX (14) or miCOMPRESSED (15) element, found data type {other}"),
                    ))
                }
            };
            variables.push((name, array));
        }
        Ok(Self { path: path.to_path_buf(), variables })
    }

    /// The variable called `name`.
    ///
    /// # Errors
    /// [`DatasetError::Parse`] naming the file and the variables it has.
    pub fn get(&self, name: &str) -> Result<&MatArray> {
        self.variables.iter().find(|(n, _)| n == name).map(|(_, a)| a).ok_or_else(|| {
            let have: Vec<&str> = self.variables.iter().map(|(n, _)| n.as_str()).collect();
            parse_error(&self.path, format!("variable `{name}`"), format!("it to exist (the file has: {})", have.join(", ")))
        })
    }
}

impl MatArray {
    /// Number of elements (the product of the dimensions).
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// The values of a numeric array, column-major.
    pub fn numbers(&self) -> Option<&[f64]> {
        match &self.data {
            MatData::Numeric(values) => Some(values),
            _ => None,
        }
    }

    /// The text of a char array with at most one row (`1 x n`, `n x 1` or
    /// empty), as `scipy.io.loadmat` gives it.
    pub fn text(&self) -> Option<String> {
        match &self.data {
            MatData::Char(chars) if chars.is_empty() || self.dims.iter().filter(|&&d| d != 1).count() <= 1 => Some(chars.iter().collect()),
            _ => None,
        }
    }

    /// The cells of a cell array, column-major.
    pub fn cells(&self) -> Option<&[MatArray]> {
        match &self.data {
            MatData::Cell(cells) => Some(cells),
            _ => None,
        }
    }

    /// Field `name` of element `index` of a struct array; `None` if this is
    /// not a struct array, has no such field or no such element.
    pub fn field(&self, index: usize, name: &str) -> Option<&MatArray> {
        match &self.data {
            MatData::Struct { fields, elements } => {
                let f = fields.iter().position(|n| n == name)?;
                elements.get(index)?.get(f)
            }
            _ => None,
        }
    }

    /// The field names of a struct array.
    pub fn field_names(&self) -> Option<&[String]> {
        match &self.data {
            MatData::Struct { fields, .. } => Some(fields),
            _ => None,
        }
    }
}

/// Byte order of the file's numbers, from the header's endian indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteOrder {
    Little,
    Big,
}

/// Checks the 128-byte header and returns the file's byte order.
fn header_byte_order(path: &Path, bytes: &[u8]) -> Result<ByteOrder> {
    let not_mat = || parse_error(path, "header", "a MATLAB v5 MAT-file (128-byte header ending in version 0x0100 and `IM` or `MI`)");
    let header = bytes.get(..HEADER_LEN).ok_or_else(not_mat)?;
    // The writer stores 'M','I' as one 16-bit value: a little-endian writer
    // puts "IM" on disk, a big-endian one "MI".
    let order = match &header[126..128] {
        b"IM" => ByteOrder::Little,
        b"MI" => ByteOrder::Big,
        _ => return Err(not_mat()),
    };
    let version_bytes = [header[124], header[125]];
    let version = match order {
        ByteOrder::Little => u16::from_le_bytes(version_bytes),
        ByteOrder::Big => u16::from_be_bytes(version_bytes),
    };
    match version {
        VERSION_5 => Ok(order),
        VERSION_73 => Err(DatasetError::MatV73 { path: path.to_path_buf() }),
        _ => Err(not_mat()),
    }
}

/// Decompresses an `miCOMPRESSED` element's zlib stream.
fn inflate(path: &Path, data: &[u8], end: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data).read_to_end(&mut out).map_err(|e| {
        parse_error(path, format!("compressed element ending at byte {end}"), format!("a valid zlib stream ({e})"))
    })?;
    Ok(out)
}

/// One data element: its type, its data and where the next one starts.
#[derive(Clone, Copy)]
struct Element<'a> {
    data_type: u32,
    data: &'a [u8],
    /// Offset of the data within the buffer (for error messages).
    start: usize,
    /// Offset of the next element (after padding).
    next: usize,
}

/// Reads data elements of one buffer in the file's byte order.
#[derive(Clone, Copy)]
struct ElementReader<'p> {
    path: &'p Path,
    order: ByteOrder,
    /// Offset of this buffer's first byte within its parent (for messages).
    base: usize,
}

impl ElementReader<'_> {
    fn error(&self, offset: usize, expected: impl Into<String>) -> DatasetError {
        parse_error(self.path, format!("byte {}", self.base + offset), expected)
    }

    fn u32_at(&self, bytes: &[u8], offset: usize) -> Result<u32> {
        let raw: [u8; 4] = bytes
            .get(offset..offset + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| self.error(offset, "4 more bytes (the file is truncated)"))?;
        Ok(match self.order {
            ByteOrder::Little => u32::from_le_bytes(raw),
            ByteOrder::Big => u32::from_be_bytes(raw),
        })
    }

    /// The data element starting at `offset` of `bytes`.
    fn element<'a>(&self, bytes: &'a [u8], offset: usize) -> Result<Element<'a>> {
        let first = self.u32_at(bytes, offset)?;
        if first >> 16 != 0 {
            // Small data element: 2 bytes of length, 2 of type, 4 of data.
            let len = (first >> 16) as usize;
            if len > 4 {
                return Err(self.error(offset, format!("a small data element of at most 4 bytes, found {len}")));
            }
            let start = offset + 4;
            let data = bytes.get(start..start + len).ok_or_else(|| self.error(start, "4 more bytes (the file is truncated)"))?;
            return Ok(Element { data_type: first & 0xffff, data, start, next: offset + 8 });
        }
        let len = self.u32_at(bytes, offset + 4)? as usize;
        let start = offset + 8;
        let data = bytes
            .get(start..start.saturating_add(len))
            .ok_or_else(|| self.error(start, format!("{len} bytes of element data (the file is truncated)")))?;
        // Every element but a compressed one is padded to 8 bytes.
        let padded = if first == MI_COMPRESSED { len } else { len.div_ceil(8) * 8 };
        // The last element of a buffer may lack its padding.
        Ok(Element { data_type: first, data, start, next: (start + padded).min(bytes.len()) })
    }

    /// Parses the contents of an `miMATRIX` element: returns its name and value.
    fn matrix(&self, bytes: &[u8], start: usize) -> Result<(String, MatArray)> {
        let sub = ElementReader { base: self.base + start, ..*self };
        if bytes.is_empty() {
            // An empty miMATRIX stands for `[]` (a 0x0 double).
            return Ok((String::new(), MatArray { dims: vec![0, 0], data: MatData::Numeric(Vec::new()) }));
        }
        let flags = sub.element(bytes, 0)?;
        if flags.data_type != MI_UINT32 || flags.data.len() != 8 {
            return Err(sub.error(flags.start, "the array-flags sub-element (miUINT32, 8 bytes)"));
        }
        let class = (sub.u32_at(flags.data, 0)? & 0xff) as u8;
        let dims_el = sub.element(bytes, flags.next)?;
        let dims: Vec<usize> = sub
            .integers(&dims_el)?
            .into_iter()
            .map(|d| usize::try_from(d).map_err(|_| sub.error(dims_el.start, format!("non-negative dimensions, found {d}"))))
            .collect::<Result<_>>()?;
        if dims.len() < 2 {
            return Err(sub.error(dims_el.start, "at least 2 dimensions"));
        }
        let numel = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| sub.error(dims_el.start, "dimensions whose product fits in memory"))?;
        let name_el = sub.element(bytes, dims_el.next)?;
        let name = String::from_utf8_lossy(name_el.data).into_owned();
        let rest = name_el.next;
        let data = match class {
            MX_CELL => MatData::Cell(sub.arrays(bytes, rest, numel)?.0),
            MX_STRUCT => sub.structure(bytes, rest, numel)?,
            MX_CHAR => {
                let el = sub.element(bytes, rest)?;
                let chars = sub.chars(&el)?;
                if chars.len() != numel {
                    return Err(sub.error(el.start, format!("{numel} characters for dimensions {dims:?}, found {}", chars.len())));
                }
                MatData::Char(chars)
            }
            MX_DOUBLE..=MX_UINT64 => {
                let el = sub.element(bytes, rest)?;
                let values = sub.numbers(&el)?;
                if values.len() != numel {
                    return Err(sub.error(el.start, format!("{numel} values for dimensions {dims:?}, found {}", values.len())));
                }
                MatData::Numeric(values)
            }
            other => {
                return Err(sub.error(
                    flags.start,
                    format!("a numeric, char, cell or struct array, found array class {other} (sparse, object and opaque arrays are not read)"),
                ))
            }
        };
        Ok((name, MatArray { dims, data }))
    }

    /// `count` consecutive `miMATRIX` elements from `offset`; returns them
    /// and the offset after the last.
    fn arrays(&self, bytes: &[u8], mut offset: usize, count: usize) -> Result<(Vec<MatArray>, usize)> {
        // Each element takes at least a tag: cap the reservation by what the
        // buffer can hold so a corrupt count cannot exhaust memory.
        let mut out = Vec::with_capacity(count.min(bytes.len() / 8));
        for _ in 0..count {
            let el = self.element(bytes, offset)?;
            if el.data_type != MI_MATRIX {
                return Err(self.error(offset, format!("an miMATRIX element, found data type {}", el.data_type)));
            }
            out.push(self.matrix(el.data, el.start)?.1);
            offset = el.next;
        }
        Ok((out, offset))
    }

    /// The rest of a struct array: field-name length, names, then values.
    fn structure(&self, bytes: &[u8], offset: usize, numel: usize) -> Result<MatData> {
        let len_el = self.element(bytes, offset)?;
        let name_len = match self.integers(&len_el)?.as_slice() {
            [n] if *n > 0 => *n as usize,
            _ => return Err(self.error(len_el.start, "the field-name length (one positive miINT32)")),
        };
        let names_el = self.element(bytes, len_el.next)?;
        if names_el.data.len() % name_len != 0 {
            return Err(self.error(names_el.start, format!("field names of {name_len} bytes each")));
        }
        let fields: Vec<String> = names_el
            .data
            .chunks(name_len)
            .map(|raw| {
                let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                String::from_utf8_lossy(&raw[..end]).into_owned()
            })
            .collect();
        let mut offset = names_el.next;
        let mut elements = Vec::with_capacity(numel.min(bytes.len() / 8));
        for _ in 0..numel {
            let (values, next) = self.arrays(bytes, offset, fields.len())?;
            elements.push(values);
            offset = next;
        }
        Ok(MatData::Struct { fields, elements })
    }

    /// Integer values of an integer-typed element (dimensions, lengths).
    fn integers(&self, el: &Element) -> Result<Vec<i64>> {
        self.numbers(el)?
            .into_iter()
            .map(|v| if v.fract() == 0.0 { Ok(v as i64) } else { Err(self.error(el.start, "integer values")) })
            .collect()
    }

    /// The values of a numeric element, whatever its storage type.
    fn numbers(&self, el: &Element) -> Result<Vec<f64>> {
        let d = el.data;
        let big = self.order == ByteOrder::Big;
        macro_rules! decode {
            ($t:ty, $n:expr) => {{
                if !d.len().is_multiple_of($n) {
                    return Err(self.error(el.start, format!("a multiple of {} bytes, found {}", $n, d.len())));
                }
                d.chunks_exact($n)
                    .map(|c| {
                        let mut raw = [0u8; $n];
                        raw.copy_from_slice(c);
                        (if big { <$t>::from_be_bytes(raw) } else { <$t>::from_le_bytes(raw) }) as f64
                    })
                    .collect()
            }};
        }
        Ok(match el.data_type {
            MI_INT8 => decode!(i8, 1),
            MI_UINT8 => decode!(u8, 1),
            MI_INT16 => decode!(i16, 2),
            MI_UINT16 => decode!(u16, 2),
            MI_INT32 => decode!(i32, 4),
            MI_UINT32 => decode!(u32, 4),
            MI_SINGLE => decode!(f32, 4),
            MI_DOUBLE => decode!(f64, 8),
            MI_INT64 => decode!(i64, 8),
            MI_UINT64 => decode!(u64, 8),
            other => return Err(self.error(el.start, format!("a numeric data type, found {other}"))),
        })
    }

    /// The characters of a char array's data element.
    fn chars(&self, el: &Element) -> Result<Vec<char>> {
        let d = el.data;
        match el.data_type {
            MI_UTF8 => {
                let text = std::str::from_utf8(d).map_err(|_| self.error(el.start, "UTF-8 text"))?;
                Ok(text.chars().collect())
            }
            // 8-bit chars: MATLAB's and scipy's writers use them for ASCII.
            MI_INT8 | MI_UINT8 => Ok(d.iter().map(|&b| char::from(b)).collect()),
            MI_UTF16 | MI_UINT16 | MI_INT16 | MI_UTF32 | MI_UINT32 | MI_INT32 => {
                let codes = self.numbers(&Element { data_type: match el.data_type {
                    MI_UTF16 => MI_UINT16,
                    MI_UTF32 => MI_UINT32,
                    t => t,
                }, ..*el })?;
                Ok(codes.into_iter().map(|c| char::from_u32(c as u32).unwrap_or(char::REPLACEMENT_CHARACTER)).collect())
            }
            other => Err(self.error(el.start, format!("character data (miUTF8, miUTF16 or miUINT16), found data type {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Hand-assembles a little-endian file holding one uncompressed variable.
    fn file_with(matrix_body: &[u8]) -> Vec<u8> {
        let mut out = vec![b' '; 116];
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&VERSION_5.to_le_bytes());
        out.extend_from_slice(b"IM");
        out.extend_from_slice(&MI_MATRIX.to_le_bytes());
        out.extend_from_slice(&(matrix_body.len() as u32).to_le_bytes());
        out.extend_from_slice(matrix_body);
        out
    }

    fn tag(t: u32, data: &[u8]) -> Vec<u8> {
        let mut out = t.to_le_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(8) * 8, 0);
        out
    }

    fn small(t: u32, data: &[u8]) -> Vec<u8> {
        let mut out = ((data.len() as u32) << 16 | t).to_le_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(8, 0);
        out
    }

    #[test]
    fn reads_a_hand_made_uint8_row_with_small_elements() {
        let mut body = tag(MI_UINT32, &[9, 0, 0, 0, 0, 0, 0, 0]); // class mxUINT8
        body.extend(tag(MI_INT32, &[1, 0, 0, 0, 3, 0, 0, 0]));
        body.extend(small(MI_INT8, b"v"));
        body.extend(small(MI_UINT8, &[7, 8, 9]));
        let file = MatFile::parse(Path::new("t.mat"), &file_with(&body)).unwrap();
        let v = file.get("v").unwrap();
        assert_eq!(v.dims, vec![1, 3]);
        assert_eq!(v.numbers().unwrap(), &[7.0, 8.0, 9.0]);
    }

    #[test]
    fn a_value_count_that_disagrees_with_the_dimensions_is_an_error() {
        let mut body = tag(MI_UINT32, &[9, 0, 0, 0, 0, 0, 0, 0]);
        body.extend(tag(MI_INT32, &[1, 0, 0, 0, 4, 0, 0, 0]));
        body.extend(small(MI_INT8, b"v"));
        body.extend(small(MI_UINT8, &[7, 8, 9]));
        let err = MatFile::parse(Path::new("t.mat"), &file_with(&body)).unwrap_err().to_string();
        assert!(err.contains("t.mat") && err.contains("4 values"), "{err}");
    }

    #[test]
    fn a_truncated_file_names_the_offset() {
        let mut body = tag(MI_UINT32, &[9, 0, 0, 0, 0, 0, 0, 0]);
        body.extend(tag(MI_INT32, &[1, 0, 0, 0, 3, 0, 0, 0]));
        let mut bytes = file_with(&body);
        bytes.truncate(bytes.len() - 4);
        let err = MatFile::parse(Path::new("t.mat"), &bytes).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn a_file_without_the_header_is_rejected() {
        let err = MatFile::parse(Path::new("t.mat"), b"MATLAB 5.0").unwrap_err().to_string();
        assert!(err.contains("MATLAB v5 MAT-file"), "{err}");
    }
}
