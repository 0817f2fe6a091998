//! The paper's analysis tools (section 4; Figs. 1, 3, 5, 6) on the shared
//! ViT and image pipeline: minibatch linear CKA between the layers of two
//! checkpoints ([`cka`]), attention distance and entropy per head
//! ([`attention`]), and Fourier spectra of the residual stream ([`fourier`]),
//! each a pure computation over plain data, run over images batch by batch
//! through [`backbone::Vit::forward_with_taps`] ([`passes`]) and drawn as PNGs
//! ([`plots`]).

pub mod attention;
pub mod cka;
mod error;
pub mod fourier;
pub mod images;
pub mod passes;
pub mod plots;
pub mod report;

pub use error::{Error, Result};
