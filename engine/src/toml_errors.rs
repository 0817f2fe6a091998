//! Where in a recipe file a TOML error is, for one-line messages that name
//! the line and column (every task's recipe loader uses it).

/// ` (line L, column C)` of `e` in `text` (both 1-based), or an empty
/// string when the error has no position.
pub fn position(e: &toml::de::Error, text: &str) -> String {
    let Some(span) = e.span() else { return String::new() };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" (line {line}, column {column})")
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
}
