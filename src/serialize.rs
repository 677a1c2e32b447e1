//! Save and load named tensors in the [safetensors](https://github.com/huggingface/safetensors)
//! format, written by hand (no dependency), readable by PyTorch's `safetensors` package.
//!
//! Layout of a file:
//!
//! ```text
//! 8 bytes   N, the header length (u64, little-endian)
//! N bytes   a UTF-8 JSON object, padded with spaces so that 8 + N is a multiple of 8:
//!           {"__metadata__": {"key": "value", ...},
//!            "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}
//! rest      the tensors' bytes, little-endian, row-major; offsets are relative to here
//! ```
//!
//! The tensors' byte ranges must tile the data buffer exactly (sorted, contiguous, no overlap,
//! no holes), and each range must hold `product(shape) * dtype size` bytes. smallgrad reads
//! and writes `F32` and `F64`; other dtypes are reported as unsupported.
//!
//! Loading never trusts the file: a header length beyond the file or above
//! [`MAX_HEADER_LEN`], invalid UTF-8 or JSON, a missing or mistyped field, an unknown dtype,
//! overflowing shapes, offsets out of range, overlapping or leaving holes, and a shape that
//! disagrees with its byte count are all an [`Error::Io`] naming the file and the problem;
//! nothing is allocated beyond the file's own size. [`save`] writes a temporary file in the
//! target's directory, syncs it and renames it over the target, so a crash leaves either the
//! old file or the new one, never a torn mix.
//!
//! ```
//! use smallgrad::{serialize, Device, Tensor};
//! let w: Tensor = Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3], Device::Cpu)?;
//! let bytes = serialize::to_bytes(&[("w".to_string(), w)], &[("epoch".to_string(), "3".to_string())])?;
//! let (tensors, meta) = serialize::from_bytes::<f32>(&bytes)?;
//! assert_eq!(tensors[0].1.to_vec()?, vec![1.0, 2.0, 3.0]);
//! assert_eq!(meta, vec![("epoch".to_string(), "3".to_string())]);
//! # Ok::<(), smallgrad::Error>(())
//! ```

mod json;

use crate::{Error, Float, Result, Tensor};
use json::Json;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest header accepted when loading (100 MB, as in the reference implementation).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// The name under which a header keeps its string-to-string metadata.
const METADATA_KEY: &str = "__metadata__";

/// A loaded tensor of either supported dtype (see [`from_bytes_any`]).
#[derive(Clone)]
pub enum AnyTensor {
    /// A tensor stored as `F32`.
    F32(Tensor<f32>),
    /// A tensor stored as `F64`.
    F64(Tensor<f64>),
}

impl AnyTensor {
    /// The shape of the tensor.
    pub fn shape(&self) -> &[usize] {
        match self {
            AnyTensor::F32(t) => t.shape(),
            AnyTensor::F64(t) => t.shape(),
        }
    }

    /// The safetensors dtype name, `"F32"` or `"F64"`.
    pub fn dtype(&self) -> &'static str {
        match self {
            AnyTensor::F32(_) => "F32",
            AnyTensor::F64(_) => "F64",
        }
    }
}

/// Named tensors and string metadata, as loaded.
pub type Loaded<X> = (Vec<(String, X)>, Vec<(String, String)>);

fn io(path: &str, msg: impl Into<String>) -> Error {
    Error::Io {
        path: path.to_string(),
        msg: msg.into(),
    }
}

/// One tensor's raw little-endian bytes ready for writing.
struct Raw {
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn raw_of<T: Float>(t: &Tensor<T>) -> Result<Raw> {
    let v = t.to_vec()?;
    let bytes = if T::DTYPE == "f32" {
        v.iter().flat_map(|x| (x.to_f64() as f32).to_le_bytes()).collect()
    } else {
        v.iter().flat_map(|x| x.to_f64().to_le_bytes()).collect()
    };
    let dtype = if T::DTYPE == "f32" { "F32" } else { "F64" };
    Ok(Raw {
        dtype,
        shape: t.shape().to_vec(),
        bytes,
    })
}

fn encode(name: &str, tensors: Vec<(&str, Raw)>, metadata: &[(String, String)]) -> Result<Vec<u8>> {
    let mut header = String::from("{");
    if !metadata.is_empty() {
        json::write_str(&mut header, METADATA_KEY);
        header.push_str(":{");
        for (i, (k, v)) in metadata.iter().enumerate() {
            if metadata[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(io(name, format!("duplicate metadata key {k:?}")));
            }
            if i > 0 {
                header.push(',');
            }
            json::write_str(&mut header, k);
            header.push(':');
            json::write_str(&mut header, v);
        }
        header.push('}');
    }
    let mut offset = 0usize;
    for (i, (n, raw)) in tensors.iter().enumerate() {
        if *n == METADATA_KEY {
            return Err(io(name, format!("a tensor may not be called {METADATA_KEY:?}")));
        }
        if tensors[..i].iter().any(|(n2, _)| n2 == n) {
            return Err(io(name, format!("duplicate tensor name {n:?}")));
        }
        if header.len() > 1 {
            header.push(',');
        }
        json::write_str(&mut header, n);
        let shape: Vec<String> = raw.shape.iter().map(|d| d.to_string()).collect();
        let end = offset + raw.bytes.len();
        header.push_str(&format!(
            ":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
            raw.dtype,
            shape.join(",")
        ));
        offset = end;
    }
    header.push('}');
    while (8 + header.len()) % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for (_, raw) in &tensors {
        out.extend_from_slice(&raw.bytes);
    }
    Ok(out)
}

/// Encodes named tensors (in the given order) and metadata as safetensors bytes.
/// `Err` on a duplicate tensor name or metadata key, a tensor named `__metadata__`, or a
/// tensor not on the CPU.
pub fn to_bytes<T: Float>(tensors: &[(String, Tensor<T>)], metadata: &[(String, String)]) -> Result<Vec<u8>> {
    let raws = tensors
        .iter()
        .map(|(n, t)| Ok((n.as_str(), raw_of(t)?)))
        .collect::<Result<Vec<_>>>()?;
    encode("<memory>", raws, metadata)
}

/// Like [`to_bytes`] for tensors of mixed dtypes.
pub fn to_bytes_any(tensors: &[(String, AnyTensor)], metadata: &[(String, String)]) -> Result<Vec<u8>> {
    let raws = tensors
        .iter()
        .map(|(n, t)| {
            let raw = match t {
                AnyTensor::F32(t) => raw_of(t)?,
                AnyTensor::F64(t) => raw_of(t)?,
            };
            Ok((n.as_str(), raw))
        })
        .collect::<Result<Vec<_>>>()?;
    encode("<memory>", raws, metadata)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// then (on Unix) fsync of the directory. The temporary file is removed on failure.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let shown = path.display().to_string();
    let file_name = path.file_name().ok_or_else(|| io(&shown, "not a file path"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    // Unique per process and call, so concurrent saves never share a temporary file.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let tmp = dir.join(format!(".{}.tmp{pid}-{k}", file_name.to_string_lossy()));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io(&shown, format!("cannot write: {e}"))
    })
}

/// Saves named tensors and metadata to `path` in the safetensors format, atomically.
/// ```no_run
/// # use smallgrad::{serialize, Tensor, Device};
/// # let w: Tensor = Tensor::zeros(&[2], Device::Cpu)?;
/// serialize::save("model.safetensors", &[("fc.weight".into(), w)], &[])?;
/// # Ok::<(), smallgrad::Error>(())
/// ```
pub fn save<T: Float>(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor<T>)],
    metadata: &[(String, String)],
) -> Result<()> {
    let bytes = to_bytes(tensors, metadata)?;
    write_atomic(path.as_ref(), &bytes)
}

/// Saves tensors of mixed dtypes; see [`save`].
pub fn save_any(path: impl AsRef<Path>, tensors: &[(String, AnyTensor)], metadata: &[(String, String)]) -> Result<()> {
    let bytes = to_bytes_any(tensors, metadata)?;
    write_atomic(path.as_ref(), &bytes)
}

/// One header entry after validation.
struct Entry {
    name: String,
    f64: bool,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

fn field<'a>(obj: &'a [(String, Json)], key: &str) -> Option<&'a Json> {
    obj.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn parse_entry(path: &str, name: &str, v: &Json) -> Result<Entry> {
    let bad = |msg: String| io(path, format!("tensor {name:?}: {msg}"));
    let Json::Obj(obj) = v else {
        return Err(bad(format!("expected an object, found {}", v.kind())));
    };
    if let Some((k, _)) = obj
        .iter()
        .find(|(k, _)| !matches!(k.as_str(), "dtype" | "shape" | "data_offsets"))
    {
        return Err(bad(format!("unknown field {k:?}")));
    }
    let f64 = match field(obj, "dtype") {
        Some(Json::Str(d)) if d == "F32" => false,
        Some(Json::Str(d)) if d == "F64" => true,
        Some(Json::Str(d)) => {
            let known = [
                "BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "I64", "U64", "F8_E4M3", "F8_E5M2",
            ];
            let why = if known.contains(&d.as_str()) {
                "unsupported"
            } else {
                "unknown"
            };
            return Err(bad(format!("{why} dtype {d:?} (smallgrad reads F32 and F64)")));
        }
        _ => return Err(bad("missing or non-string \"dtype\"".into())),
    };
    let Some(Json::Arr(dims)) = field(obj, "shape") else {
        return Err(bad("missing or non-array \"shape\"".into()));
    };
    let shape = dims
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| bad(format!("shape {dims:?} is not a list of non-negative integers")))?;
    let offs: Option<Vec<usize>> = match field(obj, "data_offsets") {
        Some(Json::Arr(o)) if o.len() == 2 => o
            .iter()
            .map(|x| x.as_u64().and_then(|x| usize::try_from(x).ok()))
            .collect(),
        _ => None,
    };
    let Some([begin, end]) = offs.as_deref().map(|o| [o[0], o[1]]) else {
        return Err(bad(
            "\"data_offsets\" must be [begin, end] of non-negative integers".into()
        ));
    };
    if begin > end {
        return Err(bad(format!("data_offsets [{begin}, {end}] run backwards")));
    }
    let size = if f64 { 8 } else { 4 };
    let nbytes = shape.iter().try_fold(size, |a: usize, &d| a.checked_mul(d));
    match nbytes {
        Some(nb) if nb == end - begin => {}
        _ => {
            return Err(bad(format!(
                "shape {shape:?} of {} needs {} bytes but data_offsets [{begin}, {end}] give {}",
                if f64 { "F64" } else { "F32" },
                nbytes.map_or("more than usize::MAX".to_string(), |n| n.to_string()),
                end - begin
            )));
        }
    }
    Ok(Entry {
        name: name.to_string(),
        f64,
        shape,
        begin,
        end,
    })
}

/// A validated header: entries (in data order), metadata, and the data buffer.
type Decoded<'a> = (Vec<Entry>, Vec<(String, String)>, &'a [u8]);

/// Parses and validates the header and returns the entries (in data order), the metadata,
/// and the data buffer.
fn decode<'a>(path: &str, bytes: &'a [u8]) -> Result<Decoded<'a>> {
    let len_bytes: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| {
        io(
            path,
            format!("{} bytes: too short for the 8-byte header length", bytes.len()),
        )
    })?;
    let n = u64::from_le_bytes(len_bytes);
    if n > MAX_HEADER_LEN {
        return Err(io(
            path,
            format!("header length {n} exceeds the limit of {MAX_HEADER_LEN} bytes"),
        ));
    }
    let n = n as usize;
    if n > bytes.len() - 8 {
        return Err(io(
            path,
            format!("truncated: header length {n} but only {} bytes follow", bytes.len() - 8),
        ));
    }
    let text = std::str::from_utf8(&bytes[8..8 + n]).map_err(|e| io(path, format!("header is not UTF-8: {e}")))?;
    let header = json::parse(text).map_err(|e| io(path, format!("header is not valid JSON: {e}")))?;
    let Json::Obj(items) = header else {
        return Err(io(
            path,
            format!("header must be a JSON object, found {}", header.kind()),
        ));
    };
    let data = &bytes[8 + n..];
    let mut entries = Vec::new();
    let mut metadata = Vec::new();
    for (i, (k, v)) in items.iter().enumerate() {
        if items[..i].iter().any(|(k2, _)| k2 == k) {
            return Err(io(path, format!("duplicate key {k:?} in header")));
        }
        if k == METADATA_KEY {
            let Json::Obj(m) = v else {
                return Err(io(path, format!("{METADATA_KEY} must be an object")));
            };
            for (mk, mv) in m {
                let Json::Str(s) = mv else {
                    return Err(io(
                        path,
                        format!("metadata {mk:?} must be a string, found {}", mv.kind()),
                    ));
                };
                if metadata.iter().any(|(k2, _): &(String, String)| k2 == mk) {
                    return Err(io(path, format!("duplicate metadata key {mk:?}")));
                }
                metadata.push((mk.clone(), s.clone()));
            }
        } else {
            entries.push(parse_entry(path, k, v)?);
        }
    }
    entries.sort_by_key(|e| (e.begin, e.end));
    let mut pos = 0;
    for e in &entries {
        if e.begin != pos {
            let what = if e.begin < pos {
                "overlaps the previous tensor"
            } else {
                "leaves a hole before it"
            };
            return Err(io(
                path,
                format!(
                    "tensor {:?} at data_offsets [{}, {}] {what} (expected begin {pos})",
                    e.name, e.begin, e.end
                ),
            ));
        }
        pos = e.end;
    }
    if pos != data.len() {
        return Err(io(
            path,
            format!(
                "tensors cover {pos} data bytes but the file holds {} after the header",
                data.len()
            ),
        ));
    }
    Ok((entries, metadata, data))
}

fn floats<T: Float, const N: usize>(b: &[u8], f: impl Fn([u8; N]) -> f64) -> Vec<T> {
    b.chunks_exact(N)
        .map(|c| T::from_f64(f(c.try_into().unwrap_or([0; N]))))
        .collect()
}

fn tensor_of<T: Float>(e: &Entry, data: &[u8]) -> Tensor<T> {
    let b = &data[e.begin..e.end];
    let v: Vec<T> = if e.f64 {
        floats(b, f64::from_le_bytes)
    } else {
        floats(b, |c: [u8; 4]| f32::from_le_bytes(c) as f64)
    };
    Tensor::from_cpu(v, e.shape.clone())
}

/// Decodes safetensors bytes whose tensors all have dtype `T` (`F32` for `f32`, `F64` for
/// `f64`), in data order, plus the metadata. `name` labels error messages. A tensor of the
/// other dtype is an `Err` (use [`from_bytes_any`] for mixed files).
pub fn from_bytes_named<T: Float>(bytes: &[u8], name: &str) -> Result<Loaded<Tensor<T>>> {
    let (entries, meta, data) = decode(name, bytes)?;
    let want64 = T::DTYPE == "f64";
    let mut out = Vec::with_capacity(entries.len());
    for e in &entries {
        if e.f64 != want64 {
            return Err(io(
                name,
                format!(
                    "tensor {:?} is {}, expected {} (load it with from_bytes_any / load_any)",
                    e.name,
                    if e.f64 { "F64" } else { "F32" },
                    if want64 { "F64" } else { "F32" }
                ),
            ));
        }
        out.push((e.name.clone(), tensor_of(e, data)));
    }
    Ok((out, meta))
}

/// [`from_bytes_named`] with the name `<memory>`.
pub fn from_bytes<T: Float>(bytes: &[u8]) -> Result<Loaded<Tensor<T>>> {
    from_bytes_named(bytes, "<memory>")
}

/// Decodes safetensors bytes with `F32` and `F64` tensors mixed; `name` labels errors.
pub fn from_bytes_any(bytes: &[u8], name: &str) -> Result<Loaded<AnyTensor>> {
    let (entries, meta, data) = decode(name, bytes)?;
    let out = entries
        .iter()
        .map(|e| {
            let t = if e.f64 {
                AnyTensor::F64(tensor_of(e, data))
            } else {
                AnyTensor::F32(tensor_of(e, data))
            };
            (e.name.clone(), t)
        })
        .collect();
    Ok((out, meta))
}

fn read(path: &Path) -> Result<(Vec<u8>, String)> {
    let shown = path.display().to_string();
    let bytes = fs::read(path).map_err(|e| io(&shown, format!("cannot read: {e}")))?;
    Ok((bytes, shown))
}

/// Loads a safetensors file whose tensors all have dtype `T`; see [`from_bytes_named`].
pub fn load<T: Float>(path: impl AsRef<Path>) -> Result<Loaded<Tensor<T>>> {
    let (bytes, shown) = read(path.as_ref())?;
    from_bytes_named(&bytes, &shown)
}

/// Loads a safetensors file with `F32` and `F64` tensors mixed; see [`from_bytes_any`].
pub fn load_any(path: impl AsRef<Path>) -> Result<Loaded<AnyTensor>> {
    let (bytes, shown) = read(path.as_ref())?;
    from_bytes_any(&bytes, &shown)
}
