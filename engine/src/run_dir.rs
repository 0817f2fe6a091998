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
//! Starting a run where results already exist without `--resume` (a
//! finished run is never overwritten), resuming where no checkpoint exists,
//! and resuming with a recipe other than the recorded `config.toml` are user
//! errors ([`Error::RunDir`]). On resume, metrics lines at or past the
//! checkpoint's iteration are dropped, so an interrupted-and-resumed run's
//! log equals an uninterrupted one's (`tests/resume.rs`).

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
    /// `resume = false` refuses a directory that already holds a result (a
    /// checkpoint, a model file or a metrics log: a finished run is never
    /// overwritten); `resume = true` requires a checkpoint and removes the
    /// temporary files a killed write left behind. Nothing else is touched:
    /// the metrics log is only rewritten by [`RunDir::metrics_writer`], and
    /// `checkpoint/` is created by the first checkpoint, so a run that fails
    /// to start leaves no empty folder.
    ///
    /// # Errors
    /// [`Error::RunDir`] with a one-line instruction when the directory's
    /// contents contradict `resume`; [`Error::Io`] when it cannot be created.
    pub fn open(out: &Path, resume: bool) -> Result<Self> {
        let run = Self {
            root: out.to_path_buf(),
        };
        let ckpt = run.checkpoint_path();
        if resume {
            if !ckpt.is_file() {
                return Err(Error::RunDir {
                    path: ckpt,
                    msg: "no checkpoint to resume from; drop --resume to start a new run here".into(),
                });
            }
            run.remove_temporaries();
        } else if let Some(result) = run.results().into_iter().next() {
            return Err(Error::RunDir {
                path: out.to_path_buf(),
                msg: format!(
                    "already holds a run ({}); pass --resume to continue it, or choose another --out \
                     (delete the folder to start over)",
                    result.display()
                ),
            });
        }
        fs::create_dir_all(&run.root).map_err(|e| Error::io(&run.root, e))?;
        Ok(run)
    }

    /// The files of a run that a fresh start would overwrite: the
    /// checkpoint, any `*.safetensors` model file and a non-empty metrics log.
    fn results(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = [self.checkpoint_path(), self.metrics_path()]
            .into_iter()
            .filter(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0))
            .collect();
        if let Ok(entries) = fs::read_dir(&self.root) {
            let mut models: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            models.sort();
            found.extend(models);
        }
        found
    }

    /// Removes the temporary files of atomic writes cut short by a kill
    /// ([`atomic_write::is_temporary`]) in the run's folder and its `checkpoint/`.
    fn remove_temporaries(&self) {
        for dir in [self.root.clone(), self.checkpoint_dir()] {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if atomic_write::is_temporary(&name) && path.is_file() {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }

    /// Records the resolved recipe `cfg` in `OUT/config.toml` on a fresh
    /// run. On resume, checks it against the recorded one, so a resumed run
    /// follows the run and not a changed command line: only the run's length
    /// ([`RUN_LENGTH_KEYS`], what `--max-iter` and `--epochs` set) may
    /// change, on purpose; it is then recorded here, and the training loop
    /// reports the new length when it resumes.
    ///
    /// # Errors
    /// [`Error::RunDir`] naming the first other setting that differs from
    /// the recorded recipe; as [`RunDir::write_config`].
    pub fn record_config<T: Serialize>(&self, cfg: &T, resume: bool) -> Result<()> {
        let path = self.config_path();
        if !resume || !path.is_file() {
            return self.write_config(cfg);
        }
        let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let recorded: toml::Table = toml::from_str(&text)
            .map_err(|e| Error::BadFile { path: path.clone(), msg: format!("not a recipe: {e}") })?;
        let now = toml::Table::try_from(cfg).map_err(|e| Error::Msg(format!("cannot write the recipe as TOML: {e}")))?;
        let mut changed = Vec::new();
        differences("", &recorded, &now, &mut changed);
        if let Some((key, was, is)) = changed.iter().find(|(key, _, _)| !RUN_LENGTH_KEYS.contains(&key.as_str())) {
            return Err(Error::RunDir {
                path,
                msg: format!(
                    "--resume continues the recorded run, but this command sets {key} = {is} (recorded: {was}); \
                     drop the flag or recipe that changes it, or start a new run with another --out"
                ),
            });
        }
        if changed.is_empty() {
            return Ok(());
        }
        self.write_config(cfg)
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
        let dir = self.checkpoint_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
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

/// Recipe keys a resume may change on purpose: the run's length.
pub const RUN_LENGTH_KEYS: [&str; 2] = ["train.max_iter", "train.epochs"];

/// Every key (dotted path, sorted) whose value differs between two recipes,
/// with both values as TOML text (`<absent>` when one lacks it).
fn differences(prefix: &str, was: &toml::Table, is: &toml::Table, out: &mut Vec<(String, String, String)>) {
    let mut keys: Vec<&String> = was.keys().chain(is.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&toml::Value>| v.map_or_else(|| "<absent>".to_string(), |v| v.to_string());
    for key in keys {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match (was.get(key), is.get(key)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => differences(&path, a, b, out),
            (a, b) if a != b => out.push((path, show(a), show(b))),
            _ => {}
        }
    }
}

/// One logged iteration: a line of `metrics.jsonl`.
///
/// Serialised as one flat JSON object with keys `iter`, `loss`, each term,
/// `lr`, `img_s` and each extra (sorted by key). A non-finite number is
/// written as `null` (JSON has no NaN).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    last_iter: Option<u64>,
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
        let last_iter = kept.lines().filter_map(line_iter).max();
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            last_iter,
        })
    }

    /// The highest `iter` in the log (kept or appended), if any.
    pub fn last_iter(&self) -> Option<u64> {
        self.last_iter
    }

    /// Appends one record as a line and flushes it.
    ///
    /// # Errors
    /// [`Error::Msg`] for duplicate keys; [`Error::Io`] naming the file.
    pub fn log(&mut self, record: &Record) -> Result<()> {
        let line = Value::Object(record.to_json()?).to_string();
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|e| Error::io(&self.path, e))?;
        self.last_iter = self.last_iter.max(Some(record.iter as u64));
        Ok(())
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
        assert!(out.is_dir() && !run.checkpoint_dir().exists(), "checkpoint/ waits for the first checkpoint");
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
    fn a_finished_run_without_its_checkpoint_is_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let run = RunDir::open(&out, false).unwrap();
        run.write_config(&serde_json::json!({"a": 1})).unwrap();
        RunDir::open(&out, false).unwrap(); // a recipe alone is no result
        for file in [METRICS_FILE, MODEL_FILE, "model_best.safetensors"] {
            let path = out.join(file);
            fs::write(&path, b"x").unwrap();
            let msg = RunDir::open(&out, false).unwrap_err().to_string();
            assert!(msg.contains(file) && msg.contains("--resume") && msg.contains("another --out"), "{msg}");
            fs::remove_file(&path).unwrap();
        }
        fs::write(out.join(METRICS_FILE), b"").unwrap();
        RunDir::open(&out, false).unwrap(); // an empty log is no result
    }

    #[test]
    fn resume_removes_temporaries_of_killed_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let run = RunDir::open(&out, false).unwrap();
        run.save_checkpoint(&[], &[], &state(2)).unwrap();
        let stale = [out.join(".model.safetensors.tmp-123-0"), run.checkpoint_dir().join(".last.safetensors.tmp-123-4")];
        for p in &stale {
            fs::write(p, b"partial").unwrap();
        }
        let keep = out.join(".hidden");
        fs::write(&keep, b"mine").unwrap();
        RunDir::open(&out, true).unwrap();
        assert!(stale.iter().all(|p| !p.exists()) && keep.exists());
    }

    #[test]
    fn resume_refuses_a_recipe_other_than_the_recorded_one() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let run = RunDir::open(&out, false).unwrap();
        let recipe = |lr: f64, steps: u64| serde_json::json!({"model": {"arch": "tiny"}, "train": {"lr": lr, "max_iter": steps}});
        run.record_config(&recipe(1e-3, 30), false).unwrap();
        run.record_config(&recipe(1e-3, 30), true).unwrap();
        let msg = run.record_config(&recipe(2e-3, 50), true).unwrap_err().to_string();
        assert!(msg.contains("train.lr = 0.002 (recorded: 0.001)"), "{msg}");
        assert_eq!(fs::read_to_string(run.config_path()).unwrap(), toml::to_string(&recipe(1e-3, 30)).unwrap());
        // The run's length may change on purpose, and is recorded.
        run.record_config(&recipe(1e-3, 50), true).unwrap();
        assert_eq!(fs::read_to_string(run.config_path()).unwrap(), toml::to_string(&recipe(1e-3, 50)).unwrap());
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
