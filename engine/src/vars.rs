//! Named access to a model's variables.

use candle_core::Var;
use candle_nn::VarMap;

use crate::{Error, Result};

/// The variables of `varmap` with their names, sorted by name (a stable
/// order for optimizers, checkpoints and reports).
///
/// # Errors
/// [`Error::Internal`] only, if the map's lock was poisoned by a panicking thread.
pub fn named_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap.data().lock().map_err(|_| Error::Internal("the variable map's lock was poisoned by a panicking thread".into()))?;
    let mut named: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(named)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_poisoned_lock_is_an_internal_error_not_a_user_error() {
        let varmap = VarMap::new();
        let shared = varmap.clone();
        let _ = std::thread::spawn(move || {
            let _guard = shared.data().lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        let err = named_vars(&varmap).unwrap_err();
        assert!(matches!(err, Error::Internal(_)) && !err.is_user_error(), "{err}");
        assert!(err.to_string().starts_with("internal error:"), "{err}");
    }
}
