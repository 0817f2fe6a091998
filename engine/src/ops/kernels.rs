//! The process-wide kernel switch: fused CPU kernels or the device-generic
//! composed path.
//!
//! Every op in this layer (and every optimizer update) has two
//! implementations: a fused CPU kernel (`cpu/`, f32/f64 on the CPU only) and a
//! composed one built from candle primitives, which runs on any candle device
//! and any float dtype. [`Kernels::Auto`] takes the fused kernel wherever it
//! can run and the composed path elsewhere (CUDA, bf16); [`Kernels::Composed`]
//! forces the composed path everywhere, so that the code a GPU runs can be
//! tested on a machine without one.
//!
//! The choice is read once from `VITDET_KERNELS` (`auto`, the default, or
//! `composed`) and can be changed with [`set_kernels`] (test binaries,
//! `vitdet selftest`). It is a process-wide setting, like candle's own
//! thread count, because a model mixes ops from every crate.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::{Error, Result};

/// Which implementation the ops run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Fused CPU kernels where eligible (CPU, f32/f64), composed elsewhere.
    Auto,
    /// The composed candle-primitive path everywhere, as on a GPU.
    Composed,
}

impl Kernels {
    /// The name used by `VITDET_KERNELS` and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Auto => "auto",
            Kernels::Composed => "composed",
        }
    }

    /// Parses `auto` or `composed` (case-insensitive).
    ///
    /// # Errors
    /// Any other value, with the accepted ones named.
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Kernels::Auto),
            "composed" => Ok(Kernels::Composed),
            other => Err(Error::Config(format!(
                "{ENV_VAR}={other:?}: expected \"auto\" (fused CPU kernels where they run) or \"composed\" (the device-generic path)"
            ))),
        }
    }
}

/// The environment variable that selects the kernels.
pub const ENV_VAR: &str = "VITDET_KERNELS";

const UNSET: u8 = 0;
const AUTO: u8 = 1;
const COMPOSED: u8 = 2;

static CHOICE: AtomicU8 = AtomicU8::new(UNSET);

fn encode(k: Kernels) -> u8 {
    match k {
        Kernels::Auto => AUTO,
        Kernels::Composed => COMPOSED,
    }
}

/// The kernels `VITDET_KERNELS` asks for (`Auto` when unset).
///
/// # Errors
/// The variable holds something other than `auto` or `composed`; the CLI
/// calls this at start-up so that a typo is a one-line error, not a silent
/// fallback.
pub fn kernels_from_env() -> Result<Kernels> {
    match std::env::var(ENV_VAR) {
        Ok(v) => Kernels::parse(&v),
        Err(std::env::VarError::NotPresent) => Ok(Kernels::Auto),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::Config(format!("{ENV_VAR} is not valid UTF-8"))),
    }
}

/// The current choice: the last [`set_kernels`], else `VITDET_KERNELS`
/// (an unreadable value counts as `auto`; the CLI rejects it before any op runs).
pub fn kernels() -> Kernels {
    match CHOICE.load(Ordering::Relaxed) {
        AUTO => Kernels::Auto,
        COMPOSED => Kernels::Composed,
        _ => {
            let k = kernels_from_env().unwrap_or(Kernels::Auto);
            // Only the first reader stores; a concurrent set_kernels wins.
            let _ = CHOICE.compare_exchange(UNSET, encode(k), Ordering::Relaxed, Ordering::Relaxed);
            kernels()
        }
    }
}

/// Sets the kernels for the whole process from now on.
pub fn set_kernels(k: Kernels) {
    CHOICE.store(encode(k), Ordering::Relaxed);
}

/// Whether the fused CPU kernels may be used at all (the switch is `Auto`).
/// Each op still checks that its operands are eligible.
pub fn fused_allowed() -> bool {
    kernels() == Kernels::Auto
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_two_names_and_rejects_others() {
        assert_eq!(Kernels::parse("auto").unwrap(), Kernels::Auto);
        assert_eq!(Kernels::parse("Composed").unwrap(), Kernels::Composed);
        let err = Kernels::parse("gpu").unwrap_err().to_string();
        assert!(err.contains("VITDET_KERNELS") && err.contains("composed"), "{err}");
    }

    /// This binary runs with the switch as the environment leaves it
    /// (`auto` in CI: every probe must see its fused kernel); the composed
    /// test binaries (`engine/tests/composed.rs` and the other crates')
    /// run the same check under `composed`.
    #[test]
    fn every_op_follows_the_switch() {
        crate::testing::check_switch_probes().unwrap();
    }
}
