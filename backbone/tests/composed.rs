//! The backbone's reference tests (timm ViT and the ViTDet backbone against
//! PyTorch) again, with every op on the composed path
//! (`engine::ops::Kernels::Composed`): the candle-primitive code a GPU runs,
//! checked on the CPU against the same references and tolerances as the fused
//! kernels.
//!
//! How: the kernel switch is process-wide, so this test binary is composed
//! as a whole. [`composed_kernels`] is a constructor (the `ctor` crate: a
//! function the loader runs before `main`, as C's
//! `__attribute__((constructor))`) that sets the switch before libtest
//! starts any test thread; the test files are included unchanged as modules
//! (`#[path]`), so their tests run twice in `cargo test`: once with the
//! switch as the environment leaves it (their own binaries) and once here.
//! [`every_op_runs_composed`] fails if the constructor did not run or if an
//! op took a fused kernel anyway (`engine::testing::check_switch_probes`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Each included file declares `mod common;` for its own binary; here each
// gets its own copy, which is what the standalone binaries compile too.
#![allow(clippy::duplicate_mod)]

/// Sets the kernel switch to composed before any test runs.
#[ctor::ctor(unsafe)]
fn composed_kernels() {
    engine::ops::set_kernels(engine::ops::Kernels::Composed);
}

#[test]
fn every_op_runs_composed() {
    assert_eq!(engine::ops::kernels(), engine::ops::Kernels::Composed, "the constructor did not run");
    engine::testing::check_switch_probes().unwrap();
}

#[path = "timm_reference.rs"]
mod timm_reference;

#[path = "vitdet_reference.rs"]
mod vitdet_reference;
