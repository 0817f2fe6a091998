//! A TOML error as one line: where in a recipe file it is (line and
//! column) and its message (every task's recipe loader uses both).

/// ` (line L, column C)` of `e` in `text` (both 1-based), or an empty
/// string when the error has no position.
pub fn position(e: &toml::de::Error, text: &str) -> String {
    let Some(span) = e.span() else { return String::new() };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" (line {line}, column {column})")
}

/// The message of `e` on one line: the toml crate puts what it expected on
/// lines of their own (`invalid string` / ``expected `"`, `'` ``), which
/// the CLI's one-line error would cut off. Found by `tests/recipe_properties.rs`.
/// Some errors have no message at all; they read "not valid TOML".
pub fn message(e: &toml::de::Error) -> String {
    let lines: Vec<&str> = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return "not valid TOML".into();
    }
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_the_line_and_column_of_the_bad_key() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let text = "a = 1\n  b = 2\n";
        let e = toml::from_str::<T>(text).unwrap_err();
        assert_eq!(position(&e, text), " (line 2, column 3)");
    }

    #[test]
    fn messages_fit_on_one_line() {
        let errors: Vec<toml::de::Error> =
            ["a = \"x", "a = 'x", "a = \"\\q\"", "= 1", "a =", "a = [1,", "a.", "\"\u{1}"].iter().map(|t| toml::from_str::<toml::Table>(t).unwrap_err()).collect();
        assert!(errors.iter().any(|e| e.message().contains('\n')), "some message of the toml crate spans lines");
        for e in &errors {
            let one = message(e);
            assert!(!one.contains('\n') && !one.is_empty(), "{one}");
        }
    }
}
