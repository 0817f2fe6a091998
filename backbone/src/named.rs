//! Named backbones: the paper's released ViT checkpoints by short name, found
//! in a list of weight folders.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A released checkpoint of the MAE-Lite code release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedBackbone {
    /// The short name used on the command line.
    pub name: &'static str,
    /// The released file name.
    pub file: &'static str,
    /// The ViT config it fits (`tiny` is the paper's 12-head ViT-Tiny).
    pub arch: &'static str,
    /// Google Drive id under which the MAE-Lite README publishes it.
    pub drive_id: &'static str,
    /// What it is.
    pub about: &'static str,
}

/// The named backbones (maelite-recipes.md §9).
pub const NAMED_BACKBONES: &[NamedBackbone] = &[
    NamedBackbone { name: "deit_tiny", file: "deit_tiny_300e.pth.tar", arch: "tiny", drive_id: "1RvhE2HucdWYHhKmPfHQW2A4EPpCHSYN_", about: "supervised DeiT-Tiny (12 heads), 300 epochs" },
    NamedBackbone { name: "mae_tiny", file: "mae_tiny_400e.pth.tar", arch: "tiny", drive_id: "1ZQYlvCPLZrJDqn2lp4GCIVL246WPqgEf", about: "MAE-Tiny pre-trained 400 epochs" },
    NamedBackbone { name: "mocov3_tiny", file: "mocov3_tiny_400e.pth.tar", arch: "tiny", drive_id: "1RI0mU-PweAVIXs_hNOx-Xw3VRhN7w6un", about: "MoCo-v3-Tiny pre-trained 400 epochs" },
    NamedBackbone { name: "distilled_mae_tiny", file: "mae_tiny_distill_400e.pth.tar", arch: "tiny", drive_id: "1OCDMUEdcPhwoCPWGN0kahsHST7tbQmFe", about: "MAE-Tiny with attention distillation from MAE-Base, 400 epochs" },
    NamedBackbone { name: "mae_base", file: "mae_base_1600e.pth.tar", arch: "base", drive_id: "1SPTjHIvw-yTOmw2ll-9cCiVyqR8NdPrX", about: "MAE-Base pre-trained 1600 epochs (the distillation teacher)" },
];

/// Where a backbone's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackboneSource {
    /// Random initialisation (`scratch`).
    Scratch,
    /// A weights file and the arch it fits.
    File {
        /// The file.
        path: PathBuf,
        /// The arch name (`tiny`, `base`, ...).
        arch: String,
    },
}

/// The folders searched for named weights, in order. The CLI fills it from
/// `--weights-dir`, `$VITDET_WEIGHTS` and `~/.cache/vitdet/weights`.
#[derive(Debug, Clone, Default)]
pub struct WeightSearch {
    /// (label, folder) pairs, e.g. ("--weights-dir", "/data/w").
    pub dirs: Vec<(String, PathBuf)>,
}

/// Resolves `spec`: `scratch`, a named backbone, or a path to a weights file.
/// For a named backbone the converted `NAME.safetensors` (from `vitdet
/// import`) is preferred over the released `.pth.tar` in each folder.
///
/// # Errors
/// [`Error::WeightsNotFound`] naming the file, the folders searched, where
/// the file is published and how to provide one; an unknown name that is
/// not a file lists the valid names.
pub fn resolve_backbone(spec: &str, default_arch: &str, search: &WeightSearch) -> Result<BackboneSource> {
    if spec == "scratch" {
        return Ok(BackboneSource::Scratch);
    }
    let Some(named) = NAMED_BACKBONES.iter().find(|b| b.name == spec) else {
        let path = PathBuf::from(spec);
        if path.is_file() {
            return Ok(BackboneSource::File { path, arch: default_arch.to_string() });
        }
        let names: Vec<&str> = NAMED_BACKBONES.iter().map(|b| b.name).collect();
        return Err(Error::WeightsNotFound(format!(
            "`{spec}` is neither a weights file nor a named backbone (scratch, {})",
            names.join(", ")
        )));
    };
    let converted = named.file.replace(".pth.tar", ".safetensors");
    for (_, dir) in &search.dirs {
        for file in [converted.as_str(), named.file] {
            let path = dir.join(file);
            if path.is_file() {
                return Ok(BackboneSource::File { path, arch: named.arch.to_string() });
            }
        }
    }
    Err(Error::WeightsNotFound(not_found_message(named, &search.dirs)))
}

fn not_found_message(named: &NamedBackbone, dirs: &[(String, PathBuf)]) -> String {
    let searched: Vec<String> = dirs.iter().map(|(label, dir)| format!("{} ({label})", dir.display())).collect();
    let searched = if searched.is_empty() { "nowhere (no folder given)".to_string() } else { searched.join(", ") };
    format!(
        "backbone `{}` ({}) needs {}, not found in {searched}. It is published with the MAE-Lite code release \
         (github.com/wangsr126/MAE-Lite, README; Google Drive id {}): put it in one of those folders \
         (`vitdet import --from {} --out {}` converts it once for faster loading), or pass your own \
         pre-trained weights as a file path instead of a name",
        named.name,
        named.about,
        named.file,
        named.drive_id,
        named.file,
        named.file.replace(".pth.tar", ".safetensors"),
    )
}

/// The default cache folder, `~/.cache/vitdet/weights`, when a home folder is known.
pub fn default_cache_dir(home: Option<&Path>) -> Option<PathBuf> {
    home.map(|h| h.join(".cache").join("vitdet").join("weights"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn finds_the_converted_file_first_in_search_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("mae_tiny_400e.pth.tar"), b"x").unwrap();
        std::fs::write(b.path().join("mae_tiny_400e.safetensors"), b"x").unwrap();
        let search = WeightSearch { dirs: vec![("a".into(), a.path().into()), ("b".into(), b.path().into())] };
        let got = resolve_backbone("mae_tiny", "tiny", &search).unwrap();
        assert_eq!(got, BackboneSource::File { path: b.path().join("mae_tiny_400e.safetensors"), arch: "tiny".into() });
        assert_eq!(resolve_backbone("scratch", "tiny", &search).unwrap(), BackboneSource::Scratch);
    }

    #[test]
    fn a_missing_file_names_it_the_places_searched_and_the_source() {
        let a = tempfile::tempdir().unwrap();
        let search = WeightSearch { dirs: vec![("--weights-dir".into(), a.path().into())] };
        let msg = resolve_backbone("distilled_mae_tiny", "tiny", &search).unwrap_err().to_string();
        assert!(msg.contains("mae_tiny_distill_400e.pth.tar"), "{msg}");
        assert!(msg.contains(&a.path().display().to_string()) && msg.contains("--weights-dir"), "{msg}");
        assert!(msg.contains("1OCDMUEdcPhwoCPWGN0kahsHST7tbQmFe") && msg.contains("MAE-Lite"), "{msg}");
        let msg = resolve_backbone("mae_huge", "tiny", &search).unwrap_err().to_string();
        assert!(msg.contains("distilled_mae_tiny") && msg.contains("scratch"), "{msg}");
    }

    #[test]
    fn mae_base_is_a_base_arch() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("mae_base_1600e.pth.tar"), b"x").unwrap();
        let search = WeightSearch { dirs: vec![("d".into(), d.path().into())] };
        let got = resolve_backbone("mae_base", "tiny", &search).unwrap();
        assert_eq!(got, BackboneSource::File { path: d.path().join("mae_base_1600e.pth.tar"), arch: "base".into() });
    }
}
