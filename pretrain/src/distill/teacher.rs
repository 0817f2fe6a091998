//! The frozen distillation teacher: a ViT encoder read from a checkpoint
//! and built from plain tensors, so that no operation on it is recorded
//! for backpropagation and no optimizer can reach it.
//!
//! Reads what `vitdet import` reads (`backbone::import::read_checkpoint`):
//! the released `mae_base_1600e.pth.tar` (`{"model": state dict}` with
//! official MAE keys), any PyTorch or safetensors ViT checkpoint, a model
//! written by `vitdet pretrain`. As MAE-Lite deletes the teacher's
//! `mask_token` and `decoder_*` before loading, the decoder keys are
//! dropped (counted in [`TeacherReport::ignored`]); tensors the encoder
//! does not use (a classifier head) are listed in
//! [`TeacherReport::unused`]. Unlike the released `strict=False` load, a
//! missing encoder tensor is an error: a teacher left at random values
//! would silently teach noise.
//!
//! The teacher must cut the images into the student's patches (same patch
//! size and channels); a position table of another grid is resized once,
//! at load, to the student's grid (bicubic, as `vitdet import` does).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use backbone::import::{backbone_tensors, infer_config, read_checkpoint};
use backbone::pos_embed::resize_pos_embed;
use backbone::{PosEmbedKind, Vit, VitConfig};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// A frozen ViT encoder (no head) over the student's visible patches.
#[derive(Debug, Clone)]
pub struct Teacher {
    vit: Vit,
    tensors: Vec<(String, Tensor)>,
}

impl Teacher {
    /// The encoder (run it with [`crate::encoder::encode_visible`], `train = false`).
    pub fn vit(&self) -> &Vit {
        &self.vit
    }

    /// The encoder's configuration.
    pub fn config(&self) -> &VitConfig {
        self.vit.config()
    }

    /// Every tensor the encoder uses, by name (to check it stays unchanged).
    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.tensors
    }

    /// The teacher of config `cfg` (no head: `num_classes` must be 0) from
    /// plain tensors under timm names, and the names it did not use.
    ///
    /// # Errors
    /// A missing tensor or one of the wrong shape, named.
    pub fn from_tensors(cfg: &VitConfig, map: HashMap<String, Tensor>, device: &Device) -> Result<(Self, Vec<String>)> {
        let used = Arc::new(Mutex::new(BTreeSet::new()));
        let all = map.clone();
        let backend = UsedTensors { map, used: Arc::clone(&used) };
        let vit = Vit::new(cfg, VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone()))?;
        let used: BTreeSet<String> = used.lock().map_err(|_| Error::config("distill.teacher", "teacher tensor record poisoned"))?.clone();
        let tensors: Vec<(String, Tensor)> = used.iter().filter_map(|n| all.get(n).map(|t| (n.clone(), t.clone()))).collect();
        let mut unused: Vec<String> = all.into_keys().filter(|n| !used.contains(n)).collect();
        unused.sort();
        Ok((Self { vit, tensors }, unused))
    }
}

/// What loading a teacher did.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherReport {
    /// The file read.
    pub path: PathBuf,
    /// The teacher's configuration (width, depth, heads).
    pub config: VitConfig,
    /// Tensors the encoder uses.
    pub loaded: usize,
    /// Non-encoder tensors dropped (MAE decoder and mask token, ...).
    pub ignored: usize,
    /// Checkpoint tensors the encoder does not use (e.g. `head.weight`).
    pub unused: Vec<String>,
    /// The position table's token grid, resized from -> to, if it was.
    pub resized: Option<(usize, usize)>,
}

impl std::fmt::Display for TeacherReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        write!(f, "teacher {}: ViT width {}, depth {}, {} heads; loaded {} tensors", self.path.display(), c.embed_dim, c.depth, c.num_heads, self.loaded)?;
        if self.ignored > 0 {
            write!(f, ", ignored {} decoder / non-encoder tensors", self.ignored)?;
        }
        if let Some((from, to)) = self.resized {
            write!(f, ", resized pos_embed grid {from}x{from} -> {to}x{to}")?;
        }
        if !self.unused.is_empty() {
            write!(f, "; unused {}: {}", self.unused.len(), self.unused.join(", "))?;
        }
        Ok(())
    }
}

/// Reads the teacher in `path` onto `device` for a student of config
/// `student`. `arch` gives what the file's shapes cannot (the number of
/// heads, LayerNorm eps) when the file records no config; its width must
/// match the file's.
///
/// # Errors
/// [`Error::BadWeights`] naming the file: it cannot be read, its width
/// does not match `arch`, its patches are not the student's, or an
/// encoder tensor is missing or of the wrong shape (named).
pub fn load_teacher(path: &Path, arch: &VitConfig, student: &VitConfig, device: &Device) -> Result<(Teacher, TeacherReport)> {
    let bad = |msg: String| Error::BadWeights { path: path.to_path_buf(), msg };
    let raw = read_checkpoint(path)?;
    let (tensors, ignored) = backbone_tensors(raw.tensors);
    let mut cfg = match raw.config {
        Some(c) => c,
        None => {
            let width = tensors.iter().find(|(n, _)| n == "patch_embed.proj.weight").and_then(|(_, t)| t.dims().first().copied());
            if let Some(w) = width.filter(|&w| w != arch.embed_dim) {
                return Err(bad(format!(
                    "the teacher is {w} wide but distill.teacher_arch has width {}; set distill.teacher_arch to the teacher's arch (tiny, small, base)",
                    arch.embed_dim
                )));
            }
            infer_config(&tensors, arch, "distill.teacher_arch", path).map_err(|e| bad(format!("not a ViT teacher: {e}")))?
        }
    };
    if cfg.patch_size != student.patch_size || cfg.in_chans != student.in_chans {
        return Err(bad(format!(
            "the teacher cuts {}-channel images into {}-px patches, the student {}-channel into {}-px: the teacher must see the student's patches",
            cfg.in_chans, cfg.patch_size, student.in_chans, student.patch_size
        )));
    }
    let mut map: HashMap<String, Tensor> = HashMap::with_capacity(tensors.len());
    for (name, t) in tensors {
        map.insert(name, t.to_dtype(DType::F32)?.to_device(device)?);
    }
    let resized = resize_to_student(&mut map, &cfg, student).map_err(|e| bad(format!("pos_embed: {e}")))?;
    cfg = VitConfig { img_size: student.img_size, num_classes: 0, drop_path_rate: 0.0, pos_embed: PosEmbedKind::SinCos, ..cfg };
    let (teacher, unused) = Teacher::from_tensors(&cfg, map, device).map_err(|e| {
        let c = &cfg;
        bad(format!("not a usable teacher (ViT width {}, depth {}, {} heads): {e}", c.embed_dim, c.depth, c.num_heads))
    })?;
    let report = TeacherReport { path: path.to_path_buf(), config: cfg, loaded: teacher.tensors.len(), ignored, unused, resized };
    Ok((teacher, report))
}

/// Resizes the teacher's `pos_embed` to the student's token grid when they
/// differ; returns (from, to) grid sides when it did.
fn resize_to_student(map: &mut HashMap<String, Tensor>, cfg: &VitConfig, student: &VitConfig) -> candle_core::Result<Option<(usize, usize)>> {
    let (from, to) = (cfg.grid_size(), student.grid_size());
    if from == to {
        return Ok(None);
    }
    let Some(pos) = map.get("pos_embed") else { return Ok(None) };
    let resized = resize_pos_embed(pos, (from, from), 1, (to, to), false)?;
    map.insert("pos_embed".into(), resized);
    Ok(Some((from, to)))
}

/// A tensor map that records which names the model asked for (to report
/// the unused ones) and names missing or misshapen tensors in its errors.
struct UsedTensors {
    map: HashMap<String, Tensor>,
    used: Arc<Mutex<BTreeSet<String>>>,
}

impl UsedTensors {
    fn fetch(&self, name: &str) -> candle_core::Result<Tensor> {
        let t = self.map.get(name).ok_or_else(|| candle_core::Error::Msg(format!("missing tensor `{name}`")))?;
        if let Ok(mut used) = self.used.lock() {
            used.insert(name.to_string());
        }
        Ok(t.clone())
    }
}

impl SimpleBackend for UsedTensors {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.fetch(name)?;
        if t.shape() != &s {
            return Err(candle_core::Error::Msg(format!("tensor `{name}` has shape {:?}, expected {:?}", t.dims(), s.dims())));
        }
        t.to_device(dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.fetch(name)?.to_device(dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }
}
