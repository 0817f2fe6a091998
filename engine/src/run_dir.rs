//! The output directory every training command writes, and its metrics log.
//!
//! ```text
//! OUT/config.toml                  the fully resolved recipe (detectron2 writes config.yaml)
//! OUT/metrics.jsonl                one JSON object per logged iteration (detectron2 JSONWriter)
//! OUT/model.safetensors            the latest weights, timm-style names
//! OUT/model_best.safetensors       the weights of the best evaluation (crate::trainer)
//! OUT/checkpoint/last.safetensors  what --resume needs (see crate::checkpoint)
//! ```
//!
//! Starting a run where a checkpoint already exists without `--resume`, or
//! resuming where none exists, is a user error ([`Error::RunDir`]). On resume,
//! metrics lines at or past the checkpoint's iteration are dropped, so an
//! interrupted-and-resumed run's log equals an uninterrupted one's
//! (`tests/resume.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::checkpoint::{self, Checkpoint, TrainState};
use crate::{Error, Result};

/// The resolved recipe.
pub const CONFIG_FILE: &str = "config.toml";
/// The metrics log.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The latest weights.
pub const MODEL_FILE: &str = "model.safetensors";
/// Directory of the resume checkpoint.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The resume checkpoint inside [`CHECKPOINT_DIR`].
pub const CHECKPOINT_FILE: &str = "last.safetensors";

/// An output directory opened for a training command.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens (creating it if needed) the output directory `out`.
    ///
    /// `resume = false` refuses a directory that already holds a checkpoint;
    /// `resume = true` requires one. Neither touches existing files; the
    /// metrics log is only rewritten by [`RunDir::metrics_writer`].
    ///
    /// # Errors
    /// [`Error::RunDir`] with a one-line instruction when the checkpoint's
    /// presence contradicts `resume`; [`Error::Io`] when the directory
    /// cannot be created.
    pub fn open(out: &Path, resume: bool) -> Result<Self> {
        let run = Self {
            root: out.to_path_buf(),
        };
        let ckpt = run.checkpoint_path();
        match (resume, ckpt.is_file()) {
            (false, true) => {
                return Err(Error::RunDir {
                    path: out.to_path_buf(),
                    msg: format!(
                        "already holds a checkpoint ({}); pass --resume to continue that run, or choose another --out",
                        ckpt.display()
                    ),
                })
            }
            (true, false) => {
                return Err(Error::RunDir {
                    path: ckpt,
                    msg: "no checkpoint to resume from; drop --resume to start a new run here".into(),
                })
            }
            _ => {}
        }
        let dir = run.checkpoint_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(run)
    }

    /// The output directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `OUT/config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    /// `OUT/metrics.jsonl`.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join(METRICS_FILE)
    }

    /// `OUT/model.safetensors`.
    pub fn model_path(&self) -> PathBuf {
        self.root.join(MODEL_FILE)
    }

    /// `OUT/checkpoint/`.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.root.join(CHECKPOINT_DIR)
    }

    /// `OUT/checkpoint/last.safetensors`.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.checkpoint_dir().join(CHECKPOINT_FILE)
    }

    /// Writes the resolved recipe to `OUT/config.toml` (atomically).
    ///
    /// # Errors
    /// [`Error::Msg`] when `cfg` is not representable as a TOML table;
    /// [`Error::Io`] when the file cannot be written.
    pub fn write_config<T: Serialize>(&self, cfg: &T) -> Result<()> {
        let text = toml::to_string(cfg)
            .map_err(|e| Error::Msg(format!("cannot write the recipe as TOML: {e}")))?;
        checkpoint::write_atomic(&self.config_path(), text.as_bytes())
    }

    /// Writes the latest weights to `OUT/model.safetensors` (atomically).
    ///
    /// # Errors
    /// See [`checkpoint::write_safetensors_atomic`].
    pub fn write_model(&self, tensors: &[(String, Tensor)]) -> Result<()> {
        checkpoint::write_safetensors_atomic(&self.model_path(), tensors)
    }

    /// Writes the resume checkpoint (atomically).
    ///
    /// # Errors
    /// See [`checkpoint::save_checkpoint`].
    pub fn save_checkpoint(
        &self,
        model: &[(String, Tensor)],
        optim: &[(String, Tensor)],
        state: &TrainState,
    ) -> Result<()> {
        checkpoint::save_checkpoint(&self.checkpoint_path(), model, optim, state)
    }

    /// Reads the resume checkpoint onto `device`.
    ///
    /// # Errors
    /// See [`checkpoint::load_checkpoint`].
    pub fn load_checkpoint(&self, device: &Device) -> Result<Checkpoint> {
        checkpoint::load_checkpoint(&self.checkpoint_path(), device)
    }

    /// Opens `OUT/metrics.jsonl` for appending. `resume_iter = None` (a new
    /// run) starts an empty log; `Some(i)` (resuming a checkpoint whose
    /// [`TrainState::iter`] is `i`) keeps only lines with `iter < i`, and
    /// drops any line that does not parse (a line cut short by a crash).
    ///
    /// # Errors
    /// [`Error::Io`] when the log cannot be read or written.
    pub fn metrics_writer(&self, resume_iter: Option<usize>) -> Result<MetricsWriter> {
        MetricsWriter::open(&self.metrics_path(), resume_iter)
    }
}

/// One logged iteration: a line of `metrics.jsonl`.
///
/// Serialised as one flat JSON object with keys `iter`, `loss`, each term,
/// `lr`, `img_s` and each extra (sorted by key). A non-finite number is
/// written as `null` (JSON has no NaN).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// 0-based index of the iteration just completed.
    pub iter: usize,
    /// Total loss.
    pub loss: f64,
    /// Named loss terms (e.g. `loss_cls`, `loss_box_reg`).
    pub terms: Vec<(String, f64)>,
    /// Base learning rate of the iteration.
    pub lr: f64,
    /// Training throughput in images per second.
    pub img_s: f64,
    /// Anything else worth logging (grad norm, memory, ...).
    pub extras: Vec<(String, Value)>,
}

impl Record {
    /// A record with no terms or extras.
    pub fn new(iter: usize, loss: f64, lr: f64, img_s: f64) -> Self {
        Self {
            iter,
            loss,
            terms: Vec::new(),
            lr,
            img_s,
            extras: Vec::new(),
        }
    }

    /// Adds a named loss term.
    pub fn term(mut self, name: impl Into<String>, value: f64) -> Self {
        self.terms.push((name.into(), value));
        self
    }

    /// Adds an extra field.
    pub fn extra(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extras.push((name.into(), value.into()));
        self
    }

    /// The record as a JSON object.
    ///
    /// # Errors
    /// [`Error::Msg`] when two fields share a key.
    pub fn to_json(&self) -> Result<Map<String, Value>> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            if m.insert(k.to_string(), v).is_some() {
                Err(Error::Msg(format!(
                    "metrics record for iter {}: key {k} appears twice",
                    self.iter
                )))
            } else {
                Ok(())
            }
        };
        put("iter", Value::from(self.iter))?;
        put("loss", Value::from(self.loss))?;
        put("lr", Value::from(self.lr))?;
        put("img_s", Value::from(self.img_s))?;
        for (k, v) in &self.terms {
            put(k, Value::from(*v))?;
        }
        for (k, v) in &self.extras {
            put(k, v.clone())?;
        }
        Ok(m)
    }
}

/// Appends [`Record`]s to a JSON-lines file, one flushed line each.
#[derive(Debug)]
pub struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsWriter {
    /// Opens `path` as described in [`RunDir::metrics_writer`].
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn open(path: &Path, keep_before: Option<usize>) -> Result<Self> {
        let kept = match keep_before {
            None => String::new(),
            Some(limit) => match fs::read_to_string(path) {
                Ok(text) => text
                    .lines()
                    .filter(|line| line_iter(line).is_some_and(|i| i < limit as u64))
                    .flat_map(|line| [line, "\n"])
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(Error::io(path, e)),
            },
        };
        checkpoint::write_atomic(path, kept.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Appends one record as a line and flushes it.
    ///
    /// # Errors
    /// [`Error::Msg`] for duplicate keys; [`Error::Io`] naming the file.
    pub fn log(&mut self, record: &Record) -> Result<()> {
        let line = Value::Object(record.to_json()?).to_string();
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// The `iter` of a metrics line, if it is a well-formed record.
fn line_iter(line: &str) -> Option<u64> {
    serde_json::from_str::<Value>(line)
        .ok()?
        .get("iter")?
        .as_u64()
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;
    use crate::rng::TrainRng;

    fn state(iter: usize) -> TrainState {
        TrainState {
            iter,
            optimizer_steps: iter as u64,
            rng: TrainRng::seed_from_u64(0),
            user: Value::Null,
        }
    }

    #[test]
    fn fresh_run_creates_layout_and_refuses_existing_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let run = RunDir::open(&out, false).unwrap();
        assert!(run.checkpoint_dir().is_dir());
        run.save_checkpoint(&[], &[], &state(3)).unwrap();

        let e = RunDir::open(&out, false).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::RunDir { .. }) && e.is_user_error());
        assert!(
            msg.contains("--resume") && msg.contains("--out") && !msg.contains('\n'),
            "{msg}"
        );
        assert!(msg.starts_with(&out.display().to_string()), "{msg}");

        let resumed = RunDir::open(&out, true).unwrap();
        assert_eq!(resumed.load_checkpoint(&Device::Cpu).unwrap().state.iter, 3);
    }

    #[test]
    fn resume_without_checkpoint_names_the_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let e = RunDir::open(tmp.path(), true).unwrap_err();
        assert!(e.is_user_error());
        assert!(e.to_string().contains("checkpoint/last.safetensors"), "{e}");
    }

    #[test]
    fn config_is_written_as_toml() {
        #[derive(Serialize)]
        struct Cfg {
            lr: f64,
            train: Train,
        }
        #[derive(Serialize)]
        struct Train {
            max_iter: usize,
        }
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::open(tmp.path(), false).unwrap();
        run.write_config(&Cfg {
            lr: 0.5,
            train: Train { max_iter: 10 },
        })
        .unwrap();
        let text = fs::read_to_string(run.config_path()).unwrap();
        assert_eq!(text, "lr = 0.5\n\n[train]\nmax_iter = 10\n");
    }

    #[test]
    fn records_are_flat_json_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::open(tmp.path(), false).unwrap();
        let mut w = run.metrics_writer(None).unwrap();
        w.log(
            &Record::new(0, 1.5, 1e-3, 42.0)
                .term("loss_cls", 1.0)
                .term("loss_box", 0.5)
                .extra("grad_norm", 2.0),
        )
        .unwrap();
        w.log(&Record::new(1, f64::NAN, 1e-3, 40.0)).unwrap();
        let text = fs::read_to_string(run.metrics_path()).unwrap();
        assert_eq!(
            text,
            "{\"grad_norm\":2.0,\"img_s\":42.0,\"iter\":0,\"loss\":1.5,\"loss_box\":0.5,\"loss_cls\":1.0,\"lr\":0.001}\n\
             {\"img_s\":40.0,\"iter\":1,\"loss\":null,\"lr\":0.001}\n"
        );
        let dup = Record::new(2, 1.0, 1.0, 1.0).term("lr", 3.0);
        assert!(w
            .log(&dup)
            .unwrap_err()
            .to_string()
            .contains("key lr appears twice"));
    }

    #[test]
    fn resume_drops_lines_at_or_past_the_checkpoint_and_torn_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::open(tmp.path(), false).unwrap();
        let mut w = run.metrics_writer(None).unwrap();
        for i in 0..6 {
            w.log(&Record::new(i, i as f64, 0.1, 1.0)).unwrap();
        }
        drop(w);
        // A crash mid-write leaves a torn last line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(run.metrics_path())
            .unwrap();
        f.write_all(b"{\"iter\":6,\"lo").unwrap();
        drop(f);

        let mut w = run.metrics_writer(Some(4)).unwrap();
        w.log(&Record::new(4, 40.0, 0.1, 1.0)).unwrap();
        let iters: Vec<u64> = fs::read_to_string(run.metrics_path())
            .unwrap()
            .lines()
            .map(|l| line_iter(l).unwrap())
            .collect();
        assert_eq!(iters, vec![0, 1, 2, 3, 4]);

        // A new run (no resume) starts an empty log.
        let w = run.metrics_writer(None).unwrap();
        drop(w);
        assert_eq!(fs::read_to_string(run.metrics_path()).unwrap(), "");
    }
}
