//! The three recipe loaders (detection, classification, pre-training) on the
//! same text: each gives a checked recipe or a one-line error; a recipe that
//! loads plans a run with at least one step and periods of at least one.
#![no_main]

use std::path::Path;

use engine::recipe_file::RecipeFile as _;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let origin = Path::new("recipe.toml");
    let one_line = |e: String| assert!(!e.contains('\n'), "{e}");
    if let Err(e) = detector::recipe::Recipe::parse(text, origin) {
        one_line(e.to_string());
    }
    match classification::recipe::Recipe::parse(text, origin) {
        Ok(r) => {
            if let Ok(plan) = r.plan(1000, None) {
                assert!(plan.max_iter >= 1 && plan.eval_period >= 1 && plan.checkpoint_period >= 1, "{plan:?}");
            }
        }
        Err(e) => one_line(e.to_string()),
    }
    match pretrain::recipe::Recipe::parse(text, origin) {
        Ok(r) => {
            if let Ok(plan) = r.plan(1000, None) {
                assert!(plan.max_iter >= 1 && plan.checkpoint_period >= 1, "{plan:?}");
            }
        }
        Err(e) => one_line(e.to_string()),
    }
});
