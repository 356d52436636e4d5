//! Positions in JSON text, for error messages that point at a line and column.

use std::ops::Range;

use super::ModelError;

/// A JSON error from `serde_json` as a [`ModelError::Json`] in `path`, with `fix` as the advice.
pub(crate) fn json_error(path: &str, error: &serde_json::Error, fix: &str) -> ModelError {
    ModelError::Json {
        path: path.to_string(),
        line: error.line().max(1),
        column: error.column().max(1),
        message: message_without_position(error),
        fix: fix.to_string(),
    }
}

/// `serde_json` appends " at line L column C" to its messages; the position is reported separately.
pub(crate) fn message_without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_string(),
        None => text,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Where `error` (from parsing `text[span]` on its own) is in the whole `text`.
pub(crate) fn position_in(
    text: &str,
    span: &Range<usize>,
    error: &serde_json::Error,
) -> (usize, usize) {
    let (start_line, start_column) = line_column(text, span.start);
    let (line, column) = (error.line().max(1), error.column().max(1));
    if line == 1 {
        (start_line, start_column + column - 1)
    } else {
        (start_line + line - 1, column)
    }
}

/// The byte ranges of the elements of the top-level object's `items` array, in order. `None` when the
/// text is not an object with an `items` array. The text must be valid JSON.
pub(crate) fn item_spans(text: &str) -> Option<Vec<Range<usize>>> {
    let bytes = text.as_bytes();
    let mut i = skip_whitespace(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_whitespace(bytes, i);
        match bytes.get(i)? {
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = end_of_string(bytes, i)?;
        let key = &text[i + 1..key_end - 1];
        i = skip_whitespace(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        i = skip_whitespace(bytes, i + 1);
        if key == "items" && bytes.get(i) == Some(&b'[') {
            return array_elements(bytes, i);
        }
        i = end_of_value(bytes, i)?;
    }
}

fn array_elements(bytes: &[u8], open: usize) -> Option<Vec<Range<usize>>> {
    let mut spans = Vec::new();
    let mut i = open + 1;
    loop {
        i = skip_whitespace(bytes, i);
        match bytes.get(i)? {
            b']' => return Some(spans),
            b',' => i += 1,
            _ => {
                let end = end_of_value(bytes, i)?;
                spans.push(i..end);
                i = end;
            }
        }
    }
}

fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// `bytes[start]` is `"`; the index just past the closing quote.
fn end_of_string(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index just past the JSON value starting at `bytes[start]`.
fn end_of_value(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => end_of_string(bytes, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while let Some(&b) = bytes.get(i) {
                match b {
                    b'"' => {
                        i = end_of_string(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = start;
            while bytes
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                i += 1;
            }
            Some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_item() {
        let text = "{\"kind\": \"List\", \"x\": {\"items\": [1]},\n \"items\": [ {\"a\": \"]}\\\"\"}, 2 ,\n[3, {}] ], \"z\": 1}";
        let spans = item_spans(text).unwrap_or_default();
        let items: Vec<&str> = spans.iter().map(|s| &text[s.clone()]).collect();
        assert_eq!(items, ["{\"a\": \"]}\\\"\"}", "2", "[3, {}]"]);
        assert_eq!(line_column(text, spans[2].start), (3, 1));
    }

    #[test]
    fn no_items_no_spans() {
        assert_eq!(item_spans("[1, 2]"), None);
        assert_eq!(item_spans("{\"kind\": \"Service\"}"), None);
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_column("ab\ncé d", 7), (2, 4));
    }
}
