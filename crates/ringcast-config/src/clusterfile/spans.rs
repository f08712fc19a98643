//! From byte offsets to what a person reads: 1-based lines, and the dotted
//! field path a TOML error is about.

/// Byte offsets of line starts, to turn spans into 1-based line numbers.
pub(super) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(super) fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    pub(super) fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset).max(1)
    }
}

/// Which field a TOML parse error is about, as a dotted path such as
/// `cluster.bus`. toml keeps its own key path private, so the path is read
/// from the document around the error's span: the table header above it and
/// the key on the nearest `key = ` line.
pub(super) fn parse_error_field(err: &toml::de::Error, text: &str) -> String {
    let span = err.span().unwrap_or(0..0);
    let offset = span.start.min(text.len());
    let header = header_path(line_at(text, offset));
    let message = err.message();
    let (table, leaf) = if let Some(name) = backticked_after(message, "missing field ") {
        // The span covers the table that lacks the field; an empty one at 0 is the document.
        let table = if span.is_empty() && offset == 0 {
            String::new()
        } else {
            header.unwrap_or_else(|| enclosing_table(text, offset))
        };
        (table, Some(name))
    } else if let Some(name) = backticked_after(message, "unknown field ") {
        // An unknown table is reported on its own header: its parent holds the field.
        let table = match header {
            Some(path) => path
                .rsplit_once('.')
                .map_or("", |(parent, _)| parent)
                .to_string(),
            None => enclosing_table(text, offset),
        };
        (table, Some(name))
    } else {
        let table = header.unwrap_or_else(|| enclosing_table(text, offset));
        (table, key_above(text, offset).map(str::to_string))
    };
    match (table.is_empty(), leaf) {
        (false, Some(leaf)) => format!("{table}.{leaf}"),
        (true, Some(leaf)) => leaf.to_string(),
        (false, None) => table,
        (true, None) => "toml".to_string(),
    }
}

/// The start of the line holding byte `offset`.
fn line_start(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .and_then(|before| before.rfind('\n'))
        .map_or(0, |i| i + 1)
}

/// The line holding byte `offset`.
fn line_at(text: &str, offset: usize) -> &str {
    let rest = text.get(line_start(text, offset)..).unwrap_or("");
    rest.lines().next().unwrap_or("")
}

/// The dotted path of a table header line (`[a.b]` or `[[a.b]]`), or `None`.
fn header_path(line: &str) -> Option<String> {
    let line = line.trim();
    let inner = match line.strip_prefix("[[") {
        Some(rest) => rest.split("]]").next()?,
        None => line.strip_prefix('[')?.split(']').next()?,
    };
    let keys: Vec<&str> = inner
        .split('.')
        .map(|k| k.trim().trim_matches('"'))
        .collect();
    Some(keys.join("."))
}

/// The path of the last table header before the line holding `offset`.
fn enclosing_table(text: &str, offset: usize) -> String {
    let before = text.get(..line_start(text, offset)).unwrap_or("");
    before
        .lines()
        .rev()
        .find_map(header_path)
        .unwrap_or_default()
}

/// The key of the nearest `key = ...` line at or above `offset` within its
/// table (a value may continue over several lines, as arrays do).
fn key_above(text: &str, offset: usize) -> Option<&str> {
    let end = text
        .get(offset..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |i| offset + i);
    text.get(..end)?
        .lines()
        .rev()
        .take_while(|line| header_path(line).is_none())
        .find_map(assigned_key)
}

/// `key` of a line `key = value`, for a bare key.
fn assigned_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    bare.then_some(key)
}

/// The text between backticks right after `prefix` in `message`.
fn backticked_after(message: &str, prefix: &str) -> Option<String> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    let rest = rest.strip_prefix('`')?;
    rest.split('`').next().map(str::to_string)
}
