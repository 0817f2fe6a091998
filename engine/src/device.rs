//! Device selection from the `--device` flag: `cpu`, `cuda` (GPU 0) or
//! `cuda:N`. Asking for CUDA from a build without the `cuda` feature is a
//! user error that says how to rebuild, not a crash deep inside candle.

use candle_core::Device;

use crate::{Error, Result};

/// A parsed `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

/// Parses `cpu`, `cuda` or `cuda:N` (case-sensitive, surrounding
/// whitespace ignored).
///
/// # Errors
/// [`Error::Device`] naming the value and the accepted forms.
pub fn parse_device_spec(s: &str) -> Result<DeviceSpec> {
    let s = s.trim();
    let bad = || {
        Error::Device(format!(
            "unknown device `{s}`: expected `cpu`, `cuda` or `cuda:N`"
        ))
    };
    match s {
        "cpu" => Ok(DeviceSpec::Cpu),
        "cuda" => Ok(DeviceSpec::Cuda(0)),
        _ => {
            let n = s.strip_prefix("cuda:").ok_or_else(bad)?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            n.parse().map(DeviceSpec::Cuda).map_err(|_| bad())
        }
    }
}

/// Opens the device a `--device` value names.
///
/// # Errors
/// [`Error::Device`] for a malformed value, for CUDA in a build without
/// the `cuda` feature, or when the GPU cannot be opened.
pub fn parse_device(s: &str) -> Result<Device> {
    match parse_device_spec(s)? {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => open_cuda(n),
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(n: usize) -> Result<Device> {
    Device::new_cuda(n).map_err(|e| Error::Device(format!("cannot open cuda:{n}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_n: usize) -> Result<Device> {
    Err(Error::Device(
        "this vitdet was built without CUDA; rebuild with `--features cuda`".into(),
    ))
}

#[cfg(test)]
mod tests {
    #![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(parse_device_spec("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(parse_device_spec("cuda").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(parse_device_spec(" cuda:3 ").unwrap(), DeviceSpec::Cuda(3));
        assert!(parse_device("cpu").unwrap().is_cpu());
    }

    #[test]
    fn malformed_values_are_device_errors_naming_them() {
        for s in [
            "gpu",
            "cuda:",
            "cuda:-1",
            "cuda:x",
            "cuda:+1",
            "CPU",
            "cuda0",
            "cuda:99999999999999999999999",
        ] {
            let e = parse_device(s).unwrap_err();
            assert!(
                matches!(e, Error::Device(_)) && e.is_user_error(),
                "{s}: {e}"
            );
            assert!(
                e.to_string().contains("expected `cpu`, `cuda` or `cuda:N`"),
                "{s}: {e}"
            );
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_rebuild() {
        for s in ["cuda", "cuda:1"] {
            let e = parse_device(s).unwrap_err();
            assert!(matches!(e, Error::Device(_)) && e.is_user_error());
            assert!(
                e.to_string().contains("rebuild with `--features cuda`"),
                "{e}"
            );
        }
    }
}
