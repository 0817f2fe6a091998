//! The process-wide precision switch: f32 everywhere, or bf16 matrix
//! products with everything else in f32 (what `torch.autocast(dtype=
//! torch.bfloat16)` does on a GPU).
//!
//! Under [`Precision::Bf16`] the matrix-product ops take f32 operands, cast
//! them to bf16, run the product and cast the result back to f32:
//! [`linear`](super::linear) (its bias is added in f32 after the cast),
//! both products of [`attention`](super::attention) and
//! [`self_attention`](super::self_attention) (QKᵀ, then probabilities @ V;
//! the scale, bias and softmax stay in f32), and the detector's
//! [`conv2d`](super::detection::conv2d) and
//! [`conv_transpose2d`](super::detection::conv_transpose2d) (convolutions
//! are on autocast's bf16 list too, and they are the detector's heaviest
//! products). Parameters (master weights), optimizer state, LayerNorm,
//! BatchNorm, GELU, softmax, losses and the max pool stay in f32. The casts
//! are candle ops with a backward, so the gradient of a product comes back
//! through them and reaches the f32 weights as f32 (rounded to bf16 on the
//! way, as under autocast). bf16 has f32's exponent range, so no loss
//! scaling is needed. Operands that are not f32 (f64 in the gradient
//! checks, data already in bf16) are left as they are.
//!
//! The fused CPU kernels are f32/f64-only, so a lowered matmul always runs
//! the composed path. candle 0.11.1's CPU backend computes a bf16 matmul in
//! f32 and rounds the result to bf16, as a GPU GEMM with f32 accumulation
//! does, so the CPU gives the numbers a GPU would, within rounding. It has
//! no bf16 convolution, so on the CPU a lowered convolution runs the f32
//! kernel on operands rounded to bf16 and rounds its result
//! ([`product_emulated_on_cpu`]): the same numbers again, at f32 speed.
//! bf16 is a GPU feature; on the CPU it is slower than f32 (the casts and
//! the composed path) and exists to prove the numbers.
//!
//! The choice is set from a training recipe's `precision` key
//! ([`set_precision`], by `vitdet finetune`, `pretrain` and `train`);
//! evaluation and prediction keep the default, f32. [`with_precision`]
//! overrides it for the calling thread only (tests compare both precisions
//! in one process without touching each other).

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

use candle_core::{DType, Result, Tensor};

/// The dtype of the matrix-product ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in f32 (the default).
    #[default]
    F32,
    /// bf16 inputs to linear layers, attention products and convolutions,
    /// f32 outputs; everything else in f32.
    Bf16,
}

/// The recipe key that selects the precision (in every training table).
pub const RECIPE_KEY: &str = "precision";

impl Precision {
    /// The name a recipe uses: `f32` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Parses `f32` or `bf16` (case-insensitive).
    ///
    /// # Errors
    /// Any other value, in a message that names the key and the accepted values.
    pub fn parse(value: &str) -> crate::Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(crate::Error::Config(format!("{RECIPE_KEY} = {value:?}: expected \"f32\" or \"bf16\""))),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        Precision::parse(&value).map_err(serde::de::Error::custom)
    }
}

const F32: u8 = 0;
const BF16: u8 = 1;

static CHOICE: AtomicU8 = AtomicU8::new(F32);

thread_local! {
    static OVERRIDE: Cell<Option<Precision>> = const { Cell::new(None) };
}

/// The precision in force on this thread: a [`with_precision`] around the
/// caller, else the last [`set_precision`], else f32.
pub fn precision() -> Precision {
    OVERRIDE.with(Cell::get).unwrap_or_else(|| match CHOICE.load(Ordering::Relaxed) {
        BF16 => Precision::Bf16,
        _ => Precision::F32,
    })
}

/// Sets the precision for the whole process from now on (a training
/// command, from its recipe, before it builds the model).
pub fn set_precision(p: Precision) {
    CHOICE.store(if p == Precision::Bf16 { BF16 } else { F32 }, Ordering::Relaxed);
}

/// Runs `f` with the precision `p` on the calling thread only, then restores
/// what was in force before (also when `f` panics).
pub fn with_precision<T>(p: Precision, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Precision>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(OVERRIDE.with(|o| o.replace(Some(p))));
    f()
}

/// Whether a product of these operands runs in bf16: the precision is bf16
/// and every operand is f32.
pub(crate) fn lowers(operands: &[&Tensor]) -> bool {
    precision() == Precision::Bf16 && operands.iter().all(|t| t.dtype() == DType::F32)
}

/// `product` of the operands, in bf16 with an f32 result when [`lowers`]
/// says so, else on the operands as they are. The product must not add an
/// f32 bias: biases are added by the caller after the cast back.
pub(crate) fn product<const N: usize>(operands: [&Tensor; N], product: impl FnOnce([&Tensor; N]) -> Result<Tensor>) -> Result<Tensor> {
    if !lowers(&operands) {
        return product(operands);
    }
    let low = map_operands(operands, |t| t.to_dtype(DType::BF16))?;
    product(low.each_ref())?.to_dtype(DType::F32)
}

/// [`product`] for ops that candle 0.11.1's CPU backend cannot run in bf16
/// (the convolutions: its im2col GEMM rejects bf16). On the CPU, when
/// [`lowers`] says so, the operands are rounded to bf16 and back, `product`
/// runs on them in f32 and its result is rounded through bf16: the numbers
/// of a bf16 product with f32 accumulation (the gradients are rounded the
/// same way by the casts' backward). On other devices this is [`product`].
pub(crate) fn product_emulated_on_cpu<const N: usize>(operands: [&Tensor; N], product: impl FnOnce([&Tensor; N]) -> Result<Tensor>) -> Result<Tensor> {
    if !lowers(&operands) || !operands.iter().all(|t| t.device().is_cpu()) {
        return self::product(operands, product);
    }
    let round = |t: &Tensor| t.to_dtype(DType::BF16)?.to_dtype(DType::F32);
    let rounded = map_operands(operands, round)?;
    round(&product(rounded.each_ref())?)
}

/// `f` of each operand, in order.
fn map_operands<const N: usize>(operands: [&Tensor; N], f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<[Tensor; N]> {
    let mapped = operands.iter().map(|t| f(t)).collect::<Result<Vec<_>>>()?;
    mapped.try_into().map_err(|_| candle_core::Error::Msg("precision: an operand went missing".into()))
}

/// `a @ b` under the precision in force (see [`product`]).
pub(crate) fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    product([a, b], |[a, b]| a.matmul(b))
}

/// Error bounds of a lowered product, and a check of an op's output and
/// gradients against them (the op tests of linear, attention and the
/// convolutions use it).
#[cfg(test)]
pub(crate) mod test_support {
    #![allow(clippy::unwrap_used)]
    use candle_core::{DType, Result, Tensor, Var};

    use super::{with_precision, Precision};
    use crate::testing::random_tensor;

    /// bf16's unit roundoff: 8 significant bits (7 stored), so rounding to
    /// nearest is off by at most 2^-8 of the value.
    pub(crate) const BF16_UNIT_ROUNDOFF: f64 = 1.0 / 256.0;
    /// f32's unit roundoff, 2^-24 (24 significant bits).
    pub(crate) const F32_UNIT_ROUNDOFF: f64 = 1.0 / 16_777_216.0;

    /// Bound on |lowered - exact| / Σ|a_k b_k| for one output of a product
    /// that sums `k` terms a_k b_k: each operand rounded to bf16 (2u + u²
    /// on the term), the sum accumulated in f32 (γ_k = k·2^-24 / (1 -
    /// k·2^-24) of the summed magnitudes), the result rounded to bf16 (u),
    /// plus u² terms of the cross-products. The operand and result roundings
    /// do not grow with `k`; only the f32 accumulation does.
    pub(crate) fn product_bound(k: usize) -> f64 {
        let u = BF16_UNIT_ROUNDOFF;
        let ku = k as f64 * F32_UNIT_ROUNDOFF;
        3.0 * u + 4.0 * u * u + ku / (1.0 - ku) * (1.0 + 3.0 * u)
    }

    /// The output and the gradients of `sum(f(inputs) * g)` with the
    /// inputs in `dtype` under precision `p` (g: fixed random, or its
    /// absolute value with `abs`; the inputs too).
    pub(crate) fn output_and_grads<F>(inputs: &[Tensor], dtype: DType, p: Precision, abs: bool, f: &F) -> Vec<Tensor>
    where
        F: Fn(&[Tensor]) -> Result<Tensor>,
    {
        let prep = |t: &Tensor| if abs { t.abs().unwrap() } else { t.clone() };
        let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(&prep(t).to_dtype(dtype).unwrap()).unwrap()).collect();
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        with_precision(p, || {
            let out = f(&tensors).unwrap();
            let g = prep(&random_tensor(out.dims(), 999)).to_dtype(dtype).unwrap();
            let grads = (&out * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let mut all = vec![out];
            all.extend(vars.iter().map(|v| grads.get(v).unwrap().clone()));
            all
        })
    }

    /// The values of `t` as f64.
    pub(crate) fn values(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
    }

    /// Checks a product-like op (linear, convolution: sums of products of
    /// its operands) in bf16 against the exact f64 values, element by
    /// element, output and gradients: |lowered - exact| <=
    /// `product_bound(k)` times the same quantity computed from |inputs|
    /// and |g| (for a product, Σ|a_k b_k|), where `reductions[i]` is the
    /// number of terms k behind tensor i (0: the output, i > 0: the
    /// gradient of input i - 1). Also checks that everything comes back in
    /// f32 (gradients reach f32 inputs in f32) and that the output's error
    /// exceeds what f32 products could make (the op did run in bf16).
    pub(crate) fn assert_within_product_bound<F>(inputs: &[Tensor], f: F, reductions: &[usize])
    where
        F: Fn(&[Tensor]) -> Result<Tensor>,
    {
        let lowered = output_and_grads(inputs, DType::F32, Precision::Bf16, false, &f);
        let exact = output_and_grads(inputs, DType::F64, Precision::Bf16, false, &f);
        let magnitude = output_and_grads(inputs, DType::F64, Precision::Bf16, true, &f);
        assert_eq!(lowered.len(), reductions.len());
        let mut worst_output_ratio = 0f64;
        for (i, ((low, ex), (mag, &k))) in lowered.iter().zip(&exact).zip(magnitude.iter().zip(reductions)).enumerate() {
            assert_eq!(low.dtype(), DType::F32, "tensor {i}");
            assert_eq!(low.dims(), ex.dims(), "tensor {i}");
            let bound = product_bound(k);
            for (j, ((l, e), m)) in values(low).iter().zip(values(ex)).zip(values(mag)).enumerate() {
                let err = (l - e).abs();
                assert!(err <= bound * m + f64::MIN_POSITIVE, "tensor {i} element {j}: |{l} - {e}| = {err} > {bound} x {m}");
                if i == 0 && m > 0.0 {
                    worst_output_ratio = worst_output_ratio.max(err / m);
                }
            }
        }
        let f32_bound = (reductions[0] + 1) as f64 * F32_UNIT_ROUNDOFF;
        assert!(worst_output_ratio > f32_bound, "output error {worst_output_ratio} is within f32's {f32_bound}: the product did not run in bf16");
    }

    /// ‖a - b‖₂ / ‖b‖₂.
    pub(crate) fn relative_l2(a: &Tensor, b: &Tensor) -> f64 {
        let (a, b) = (values(a), values(b));
        let diff: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        let norm: f64 = b.iter().map(|y| y * y).sum();
        (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_two_names_and_rejects_others_naming_the_key() {
        assert_eq!(Precision::parse("f32").unwrap(), Precision::F32);
        assert_eq!(Precision::parse("BF16").unwrap(), Precision::Bf16);
        let err = Precision::parse("fp16").unwrap_err().to_string();
        assert!(err.contains("precision") && err.contains("\"f32\"") && err.contains("\"bf16\"") && err.contains("fp16"), "{err}");
    }

    #[test]
    fn round_trips_through_toml() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct T {
            precision: Precision,
        }
        let t: T = toml::from_str("precision = \"bf16\"").unwrap();
        assert_eq!(t.precision, Precision::Bf16);
        assert_eq!(toml::to_string(&t).unwrap().trim(), "precision = \"bf16\"");
        let err = toml::from_str::<T>("precision = \"half\"").unwrap_err().to_string();
        assert!(err.contains("expected \"f32\" or \"bf16\""), "{err}");
    }

    #[test]
    fn with_precision_is_scoped_to_the_thread_and_restored() {
        assert_eq!(precision(), Precision::F32);
        with_precision(Precision::Bf16, || {
            assert_eq!(precision(), Precision::Bf16);
            assert_eq!(std::thread::spawn(precision).join().unwrap(), Precision::F32, "another thread keeps the process setting");
            with_precision(Precision::F32, || assert_eq!(precision(), Precision::F32));
            assert_eq!(precision(), Precision::Bf16);
        });
        assert_eq!(precision(), Precision::F32);
    }

    #[test]
    fn a_lowered_product_returns_f32_rounded_through_bf16() {
        let dev = candle_core::Device::Cpu;
        // 1 + 2^-10 is not a bf16 (8-bit mantissa): it rounds to 1.
        let a = Tensor::new(&[[1.0f32 + 1.0 / 1024.0]], &dev).unwrap();
        let b = Tensor::new(&[[1.0f32]], &dev).unwrap();
        let f32_result = matmul(&a, &b).unwrap();
        assert_eq!(f32_result.to_vec2::<f32>().unwrap(), vec![vec![1.0 + 1.0 / 1024.0]]);
        let low = with_precision(Precision::Bf16, || matmul(&a, &b)).unwrap();
        assert_eq!(low.dtype(), DType::F32);
        assert_eq!(low.to_vec2::<f32>().unwrap(), vec![vec![1.0]]);
        // f64 operands are never lowered.
        let a64 = a.to_dtype(DType::F64).unwrap();
        let b64 = b.to_dtype(DType::F64).unwrap();
        let kept = with_precision(Precision::Bf16, || matmul(&a64, &b64)).unwrap();
        assert_eq!(kept.to_vec2::<f64>().unwrap(), vec![vec![f64::from(1.0f32 + 1.0 / 1024.0)]]);
    }
}
