//! Named access to a model's variables.

use candle_core::Var;
use candle_nn::VarMap;

use crate::{Error, Result};

/// The variables of `varmap` with their names, sorted by name (a stable
/// order for optimizers, checkpoints and reports).
///
/// # Errors
/// Fails only if the map's lock was poisoned by a panicking thread.
pub fn named_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap.data().lock().map_err(|_| Error::Msg("variable map lock poisoned".into()))?;
    let mut named: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(named)
}
