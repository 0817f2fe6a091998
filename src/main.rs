//! `vitdet`: the command-line front end. This binary only parses arguments,
//! dispatches to a library crate and maps errors to exit codes; every loop over
//! tensors or annotations lives in `engine`, `backbone` or `coco`.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 user mistake (bad flag, missing
//! or malformed file, unknown key, wrong checkpoint shape).

mod commands;
mod exit;

use std::process::ExitCode;

use clap::Parser;

/// Keeps freed memory in the process instead of handing it back to the
/// kernel. candle allocates a fresh buffer for every op output, and glibc's
/// defaults unmap or trim the large ones on free, so a training step
/// page-faults its working set back in again and again (candle-notes.md §5).
/// With every allocation up to 32 MiB (the largest ViT-Tiny batch-32
/// activation is 19 MiB) served from the heap, and the heap neither trimmed
/// below 1 GiB nor grown by less than 256 MiB, the kernel time of a ViT-Tiny
/// training step drops by about two thirds (measured with `vitdet bench vit`
/// when this landed, commit c73b032; mimalloc measured worse).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn retain_freed_memory() {
    const MMAP_THRESHOLD: libc::c_int = 32 << 20;
    const TRIM_THRESHOLD: libc::c_int = 1 << 30;
    const TOP_PAD: libc::c_int = 256 << 20;
    // SAFETY: mallopt only changes glibc allocator parameters; it is called
    // first thing in main, before any other thread exists. A rejected value
    // leaves glibc's default in place, which is harmless.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn retain_freed_memory() {}

/// Runs candle's element-wise ops on the calling thread unless the user
/// chose otherwise. candle's CPU backend splits large element-wise ops over
/// its own spinning barrier pool, next to rayon's pool that the GEMMs, the
/// fused kernels and the data loader use; on a small machine the two pools
/// fight over the cores and the spinning wins (a ViTDet training step on 2
/// cores ran 1.5x faster with one thread for element-wise ops).
fn single_threaded_elementwise() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // Called first thing in main, before any other thread exists.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Stack of each compute thread: the main thread's 8 MiB, twice over, since
/// the command (and candle's recursive walk of the backward graph) now runs
/// on one of them.
const WORKER_STACK_BYTES: usize = 16 << 20;

/// Runs the command on a thread of its own rayon pool (RAYON_NUM_THREADS
/// threads, default one per core) instead of beside it. Every GEMM and fused
/// kernel is a parallel region; started from outside the pool, each one
/// hands its work to the pool and puts the calling thread to sleep until the
/// work is done, one more thread than cores waking and sleeping hundreds of
/// times a training step. From inside, the caller takes its share of the
/// work itself. A ViT-Tiny step at one image ran 1.3x faster
/// (`vitdet bench vit --batch 1`, commit 51ddce3). Runs the command directly if the
/// pool cannot start.
fn on_a_worker_thread<R: Send>(command: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new().stack_size(WORKER_STACK_BYTES).build() {
        Ok(pool) => pool.install(command),
        Err(_) => command(),
    }
}

fn main() -> ExitCode {
    retain_freed_memory();
    single_threaded_elementwise();
    let cli = match commands::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = err.print();
            return ExitCode::from(err.exit_code().clamp(0, 255) as u8);
        }
    };
    match on_a_worker_thread(|| commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => exit::report(&err),
    }
}
