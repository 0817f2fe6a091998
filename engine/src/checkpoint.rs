//! Checkpoints and weight files: safetensors, written atomically.
//!
//! A training checkpoint is one safetensors file (`OUT/checkpoint/last.safetensors`):
//!
//! * `model.<name>`: the model's weights under their timm-style names;
//! * `optim.<param>.<slot>`: the optimizer state ([`crate::optim::Optimizer::state`]);
//! * `__metadata__["vitdet.train_state"]`: [`TrainState`] as JSON (iteration,
//!   optimizer step count, the [`TrainRng`] state, free-form user metadata),
//!   plus `__metadata__["format"] = "vitdet-checkpoint-1"`.
//!
//! One file means one rename makes the whole state visible at once: model,
//! optimizer and RNG can never come from different iterations.
//!
//! Every file here is written atomically through [`atomic_write`]:
//! to a temporary file in the same directory, fsynced, renamed over the
//! target, and the directory fsynced, so a crash leaves either the old file
//! or the new one, never a half-written one. Reading a truncated or corrupt
//! file fails with [`Error::BadFile`] naming it.
//!
//! The workspace pins safetensors 0.4 while candle uses 0.8, so tensors are
//! converted to and from raw little-endian bytes here rather than through
//! candle's `View` impl.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use candle_core::{CpuStorage, DType, Device, Storage, Tensor, Var};
use safetensors::tensor::{Dtype as StDtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::rng::TrainRng;
use crate::{Error, Result};

/// A safetensors header's free-form string metadata (`__metadata__`).
pub type Metadata = HashMap<String, String>;

/// `__metadata__` key holding [`TrainState`] as JSON.
pub const TRAIN_STATE_KEY: &str = "vitdet.train_state";
/// `__metadata__` key naming the checkpoint layout.
pub const FORMAT_KEY: &str = "format";
/// The checkpoint layout this module writes and reads.
pub const FORMAT: &str = "vitdet-checkpoint-1";
/// Prefix of model tensors in a checkpoint.
pub const MODEL_PREFIX: &str = "model.";
/// Prefix of optimizer-state tensors in a checkpoint.
pub const OPTIM_PREFIX: &str = "optim.";

/// Where a run stands, beyond its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// Completed iterations: the next iteration to run (0-based), which is
    /// also the schedule position (`schedule.lr_at(iter)` is the next lr).
    pub iter: usize,
    /// [`crate::optim::Optimizer::step_count`] at save time.
    pub optimizer_steps: u64,
    /// The run's random number generator, exactly as it stood.
    pub rng: TrainRng,
    /// Anything else the trainer wants back on resume (e.g. best metric).
    #[serde(default)]
    pub user: serde_json::Value,
}

/// A checkpoint read back from disk.
#[derive(Debug)]
pub struct Checkpoint {
    /// Model weights (prefix stripped), sorted by name.
    pub model: Vec<(String, Tensor)>,
    /// Optimizer state (prefix stripped), sorted by name.
    pub optim: Vec<(String, Tensor)>,
    /// Iteration, optimizer step count, RNG and user metadata.
    pub state: TrainState,
}

/// Writes a training checkpoint to `path` atomically.
///
/// # Errors
/// [`Error::Io`] naming the file when it cannot be written; [`Error::Msg`]
/// for a tensor dtype safetensors cannot hold.
pub fn save_checkpoint(
    path: &Path,
    model: &[(String, Tensor)],
    optim: &[(String, Tensor)],
    state: &TrainState,
) -> Result<()> {
    let mut tensors = Vec::with_capacity(model.len() + optim.len());
    for (n, t) in model {
        tensors.push((format!("{MODEL_PREFIX}{n}"), t.clone()));
    }
    for (n, t) in optim {
        tensors.push((format!("{OPTIM_PREFIX}{n}"), t.clone()));
    }
    let json = serde_json::to_string(state)
        .map_err(|e| Error::Msg(format!("cannot serialise the training state: {e}")))?;
    let meta = HashMap::from([
        (FORMAT_KEY.to_string(), FORMAT.to_string()),
        (TRAIN_STATE_KEY.to_string(), json),
    ]);
    write_tensors(path, &tensors, Some(meta))
}

/// Reads a training checkpoint written by [`save_checkpoint`], placing the
/// tensors on `device`.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::BadFile`] naming the
/// file when it is truncated, corrupt, not a vitdet checkpoint, or holds a
/// tensor outside the `model.`/`optim.` prefixes.
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint> {
    let (tensors, meta) = read_tensors(path, device)?;
    let bad = |msg: String| Error::BadFile {
        path: path.to_path_buf(),
        msg,
    };
    let meta = meta.unwrap_or_default();
    if meta.get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
        return Err(bad(format!(
            "not a vitdet training checkpoint (metadata `{FORMAT_KEY}` is {:?}, expected {FORMAT:?})",
            meta.get(FORMAT_KEY)
        )));
    }
    let json = meta
        .get(TRAIN_STATE_KEY)
        .ok_or_else(|| bad(format!("metadata `{TRAIN_STATE_KEY}` is missing")))?;
    let state: TrainState = serde_json::from_str(json)
        .map_err(|e| bad(format!("metadata `{TRAIN_STATE_KEY}`: {e}")))?;
    let (mut model, mut optim) = (Vec::new(), Vec::new());
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix(MODEL_PREFIX) {
            model.push((n.to_string(), t));
        } else if let Some(n) = name.strip_prefix(OPTIM_PREFIX) {
            optim.push((n.to_string(), t));
        } else {
            return Err(bad(format!(
                "tensor {name} has neither the `model.` nor the `optim.` prefix"
            )));
        }
    }
    Ok(Checkpoint {
        model,
        optim,
        state,
    })
}

/// Writes plain named tensors (e.g. `OUT/model.safetensors`) atomically,
/// without metadata.
///
/// # Errors
/// As [`save_checkpoint`].
pub fn write_safetensors_atomic(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    write_tensors(path, tensors, None)
}

/// Reads all tensors of a safetensors file onto `device`, sorted by name.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::BadFile`] naming the
/// file when it is truncated or corrupt.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<Vec<(String, Tensor)>> {
    Ok(read_tensors(path, device)?.0)
}

/// Writes named tensors atomically with string metadata in the safetensors
/// header (e.g. the model configuration of an imported backbone).
///
/// # Errors
/// As [`save_checkpoint`].
pub fn write_safetensors_with_metadata(
    path: &Path,
    tensors: &[(String, Tensor)],
    meta: Metadata,
) -> Result<()> {
    write_tensors(path, tensors, Some(meta))
}

/// Reads all tensors of a safetensors file, sorted by name, and its header
/// metadata (empty when the file has none).
///
/// # Errors
/// As [`read_safetensors`].
pub fn read_safetensors_with_metadata(
    path: &Path,
    device: &Device,
) -> Result<(Vec<(String, Tensor)>, Metadata)> {
    let (tensors, meta) = read_tensors(path, device)?;
    Ok((tensors, meta.unwrap_or_default()))
}

/// The current values of `named` variables, as (name, tensor) pairs for
/// [`save_checkpoint`] or [`write_safetensors_atomic`].
///
/// The tensors share storage with the variables, which optimizer steps
/// update in place: write them out right away, or `copy()` them to keep a
/// snapshot.
pub fn var_tensors(named: &[(String, Var)]) -> Vec<(String, Tensor)> {
    named
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect()
}

/// Sets every variable in `named` from the tensor of the same name (the
/// strict restore a resume needs: nothing missing, nothing left over).
///
/// # Errors
/// [`Error::Config`] naming the missing and unexpected keys; [`Error::ShapeMismatch`] for a tensor of the wrong shape.
pub fn restore_vars(named: &[(String, Var)], tensors: &[(String, Tensor)]) -> Result<()> {
    let by_name: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let missing: Vec<&str> = named
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !by_name.contains_key(n))
        .collect();
    let wanted: std::collections::HashSet<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
    let unexpected: Vec<&str> = tensors
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !wanted.contains(n))
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(Error::Config(format!(
            "checkpoint does not match the model: missing {missing:?}, unexpected {unexpected:?}"
        )));
    }
    for (name, var) in named {
        let t = by_name[name.as_str()];
        if t.dims() != var.dims() {
            return Err(Error::ShapeMismatch {
                key: name.clone(),
                expected: var.dims().to_vec(),
                found: t.dims().to_vec(),
            });
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (the workspace's one protocol,
/// [`atomic_write`]: unique temporary, fsync, rename, fsync of the folder).
///
/// # Errors
/// [`Error::Io`] naming `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write::write(path, bytes).map_err(Error::from)
}

/// The kill tests' fault injection, owned by [`atomic_write`].
pub use atomic_write::FAULT_ABORT_WRITE_ENV;

fn st_dtype(dtype: DType) -> Result<StDtype> {
    Ok(match dtype {
        DType::U8 => StDtype::U8,
        DType::U32 => StDtype::U32,
        DType::I16 => StDtype::I16,
        DType::I32 => StDtype::I32,
        DType::I64 => StDtype::I64,
        DType::BF16 => StDtype::BF16,
        DType::F16 => StDtype::F16,
        DType::F32 => StDtype::F32,
        DType::F64 => StDtype::F64,
        other => {
            return Err(Error::Msg(format!(
                "safetensors 0.4 cannot store dtype {other:?}"
            )))
        }
    })
}

fn candle_dtype(dtype: StDtype) -> Option<DType> {
    Some(match dtype {
        StDtype::U8 => DType::U8,
        StDtype::U32 => DType::U32,
        StDtype::I16 => DType::I16,
        StDtype::I32 => DType::I32,
        StDtype::I64 => DType::I64,
        StDtype::BF16 => DType::BF16,
        StDtype::F16 => DType::F16,
        StDtype::F32 => DType::F32,
        StDtype::F64 => DType::F64,
        _ => return None,
    })
}

/// A tensor's elements as little-endian bytes (row-major), copied to the CPU.
fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    fn le<T, const N: usize>(v: &[T], f: impl Fn(&T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(f).collect()
    }
    let t = t.to_device(&Device::Cpu)?.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| Error::Msg("tensor_bytes: tensor is not contiguous".into()))?;
    let Storage::Cpu(cpu) = &*storage else {
        return Err(Error::Msg("tensor_bytes: tensor is not on the CPU".into()));
    };
    Ok(match cpu {
        CpuStorage::U8(v) => v[start..end].to_vec(),
        CpuStorage::U32(v) => le(&v[start..end], |x| x.to_le_bytes()),
        CpuStorage::I16(v) => le(&v[start..end], |x| x.to_le_bytes()),
        CpuStorage::I32(v) => le(&v[start..end], |x| x.to_le_bytes()),
        CpuStorage::I64(v) => le(&v[start..end], |x| x.to_le_bytes()),
        CpuStorage::BF16(v) => le(&v[start..end], |x| x.to_le_bytes()),
        CpuStorage::F16(v) => le(&v[start..end], |x| x.to_le_bytes()),
        CpuStorage::F32(v) => le(&v[start..end], |x| x.to_le_bytes()),
        CpuStorage::F64(v) => le(&v[start..end], |x| x.to_le_bytes()),
        other => {
            return Err(Error::Msg(format!(
                "safetensors 0.4 cannot store dtype {:?}",
                candle_core::backend::BackendStorage::dtype(other)
            )))
        }
    })
}

fn write_tensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    meta: Option<HashMap<String, String>>,
) -> Result<()> {
    let mut raw = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        raw.push((
            name.as_str(),
            st_dtype(t.dtype())?,
            t.dims().to_vec(),
            tensor_bytes(t)?,
        ));
    }
    let mut views = Vec::with_capacity(raw.len());
    for (name, dtype, shape, bytes) in &raw {
        let view = TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| Error::Msg(format!("{name}: {e:?}")))?;
        views.push((*name, view));
    }
    atomic_write::write_with(path, |tmp| {
        safetensors::serialize_to_file(views, &meta, tmp).map_err(|e| std::io::Error::other(e.to_string()))
    })
    .map_err(Error::from)
}

type Tensors = (Vec<(String, Tensor)>, Option<HashMap<String, String>>);

/// The header metadata of a safetensors file, reading only its header (a
/// file's kind can be told without loading its tensors).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::BadFile`] when its
/// header is not a safetensors header.
pub fn read_safetensors_metadata(path: &Path) -> Result<Metadata> {
    use std::io::Read as _;
    let bad = |msg: String| Error::BadFile { path: path.to_path_buf(), msg };
    let mut file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| Error::io(path, e))?;
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| bad("header length does not fit in memory".into()))?;
    if len > 100_000_000 {
        return Err(bad(format!("header of {len} bytes: not a safetensors file")));
    }
    let mut header = vec![0u8; len];
    file.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let json: serde_json::Value = serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let meta = json.get("__metadata__").and_then(|m| m.as_object()).map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()).unwrap_or_default();
    Ok(meta)
}

fn read_tensors(path: &Path, device: &Device) -> Result<Tensors> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |msg: String| Error::BadFile {
        path: path.to_path_buf(),
        msg,
    };
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| {
        bad(format!(
            "not a readable safetensors file (truncated or corrupt?): {e:?}"
        ))
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        bad(format!(
            "not a readable safetensors file (truncated or corrupt?): {e:?}"
        ))
    })?;
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        let dtype = candle_dtype(view.dtype()).ok_or_else(|| {
            bad(format!(
                "tensor {name}: unsupported dtype {:?}",
                view.dtype()
            ))
        })?;
        let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), device)?;
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, metadata.metadata().clone()))
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;

    fn sample() -> Vec<(String, Tensor)> {
        let d = Device::Cpu;
        vec![
            (
                "a.f32".into(),
                Tensor::new(&[[1.5f32, -2.0], [3.0, 4.25]], &d).unwrap(),
            ),
            ("b.f64".into(), Tensor::new(&[1e-300f64, 2.0], &d).unwrap()),
            ("c.i64".into(), Tensor::new(7i64, &d).unwrap()),
            ("d.u32".into(), Tensor::new(&[1u32, 2, 3], &d).unwrap()),
            (
                "e.bf16".into(),
                Tensor::new(&[0.5f32, 2.0], &d)
                    .unwrap()
                    .to_dtype(DType::BF16)
                    .unwrap(),
            ),
            (
                "f.view".into(),
                Tensor::new(&[[1f32, 2.], [3., 4.]], &d)
                    .unwrap()
                    .t()
                    .unwrap(),
            ),
        ]
    }

    fn assert_same(a: &[(String, Tensor)], b: &[(String, Tensor)]) {
        assert_eq!(a.len(), b.len());
        for ((na, ta), (nb, tb)) in a.iter().zip(b) {
            assert_eq!(na, nb);
            assert_eq!(ta.dtype(), tb.dtype(), "{na}");
            assert_eq!(ta.dims(), tb.dims(), "{na}");
            assert_eq!(tensor_bytes(ta).unwrap(), tensor_bytes(tb).unwrap(), "{na}");
        }
    }

    #[test]
    fn weights_round_trip_bit_exactly_across_dtypes_and_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.safetensors");
        let t = sample();
        write_safetensors_atomic(&p, &t).unwrap();
        let back = read_safetensors(&p, &Device::Cpu).unwrap();
        assert_same(&t, &back);
        // The transposed view is stored in logical (row-major) order.
        assert_eq!(
            back[5].1.to_vec2::<f32>().unwrap(),
            vec![vec![1., 3.], vec![2., 4.]]
        );
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("model.safetensors")]);
    }

    #[test]
    fn checkpoint_round_trip_keeps_prefixes_apart_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("last.safetensors");
        let mut rng = TrainRng::seed_from_u64(9);
        rand::RngCore::next_u32(&mut rng);
        let state = TrainState {
            iter: 12,
            optimizer_steps: 12,
            rng,
            user: serde_json::json!({"best": 0.5}),
        };
        let model = sample();
        // An optimizer slot may share its parameter's name: the prefixes keep them apart.
        let optim = vec![(
            "a.f32".to_string(),
            Tensor::new(&[9f32], &Device::Cpu).unwrap(),
        )];
        save_checkpoint(&p, &model, &optim, &state).unwrap();
        let ck = load_checkpoint(&p, &Device::Cpu).unwrap();
        assert_eq!(ck.state, state);
        assert_same(&ck.model, &model);
        assert_same(&ck.optim, &optim);
    }

    #[test]
    fn truncated_or_garbage_files_are_bad_file_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("last.safetensors");
        let state = TrainState {
            iter: 1,
            optimizer_steps: 1,
            rng: TrainRng::seed_from_u64(0),
            user: Default::default(),
        };
        save_checkpoint(&p, &sample(), &[], &state).unwrap();
        let full = fs::read(&p).unwrap();
        for cut in [full.len() - 3, full.len() / 2, 12, 4, 0] {
            fs::write(&p, &full[..cut]).unwrap();
            let e = load_checkpoint(&p, &Device::Cpu).unwrap_err();
            assert!(matches!(e, Error::BadFile { .. }), "cut {cut}: {e}");
            assert!(e.to_string().contains("last.safetensors"), "{e}");
            assert!(e.is_user_error());
        }
        let e = load_checkpoint(&dir.path().join("missing.safetensors"), &Device::Cpu).unwrap_err();
        assert!(
            matches!(e, Error::Io { .. }) && e.to_string().contains("missing.safetensors"),
            "{e}"
        );
    }

    #[test]
    fn a_plain_weights_file_is_not_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.safetensors");
        write_safetensors_atomic(&p, &sample()).unwrap();
        let e = load_checkpoint(&p, &Device::Cpu).unwrap_err();
        assert!(
            e.to_string().contains("not a vitdet training checkpoint"),
            "{e}"
        );
    }

    #[test]
    fn overwriting_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        write_safetensors_atomic(&p, &sample()).unwrap();
        let one = vec![("x".to_string(), Tensor::new(&[1f32], &Device::Cpu).unwrap())];
        write_safetensors_atomic(&p, &one).unwrap();
        assert_same(&read_safetensors(&p, &Device::Cpu).unwrap(), &one);
    }

    #[test]
    fn a_missing_folder_is_named_with_the_file_not_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/w.safetensors");
        let msg = write_safetensors_atomic(&p, &sample()).unwrap_err().to_string();
        assert_eq!(msg, format!("{}: the folder {} does not exist", p.display(), dir.path().join("no/such").display()));
        let msg = write_atomic(&dir.path().join("no/x.json"), b"{}").unwrap_err().to_string();
        assert!(!msg.contains("x.json.tmp") && msg.contains("does not exist"), "{msg}");
    }

    #[test]
    fn metadata_round_trips_and_defaults_to_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let meta = Metadata::from([("config".to_string(), "{\"depth\":12}".to_string())]);
        write_safetensors_with_metadata(&p, &sample(), meta.clone()).unwrap();
        let (t, m) = read_safetensors_with_metadata(&p, &Device::Cpu).unwrap();
        assert_same(&t, &sample());
        assert_eq!(m, meta);
        assert_eq!(read_safetensors_metadata(&p).unwrap(), meta);
        write_safetensors_atomic(&p, &sample()).unwrap();
        assert!(read_safetensors_metadata(&p).unwrap().is_empty());
        assert!(read_safetensors_with_metadata(&p, &Device::Cpu)
            .unwrap()
            .1
            .is_empty());
    }

    #[test]
    fn restore_vars_is_strict() {
        let v = Var::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        let named = vec![("a.f32".to_string(), v.clone())];
        restore_vars(&named, &sample()[..1]).unwrap();
        assert_eq!(
            v.as_tensor().to_vec2::<f32>().unwrap(),
            vec![vec![1.5, -2.0], vec![3.0, 4.25]]
        );
        let e = restore_vars(&named, &sample()[..2]).unwrap_err();
        assert!(e.to_string().contains("unexpected [\"b.f64\"]"), "{e}");
        let e = restore_vars(&named, &[]).unwrap_err();
        assert!(e.to_string().contains("missing [\"a.f32\"]"), "{e}");
        let wrong = vec![(
            "a.f32".to_string(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        )];
        assert!(matches!(
            restore_vars(&named, &wrong).unwrap_err(),
            Error::ShapeMismatch { .. }
        ));
    }
}
