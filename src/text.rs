//! Text from outside (a server's error body or header, a file's contents)
//! made safe to show: control characters escaped, so that no mirror can
//! move the cursor, retitle the terminal or forge a log line, and the
//! length capped, so that no mirror can flood a table or a journal.

/// Longest server text kept in a message.
pub const MAX_FOREIGN: usize = 200;

/// `s` with control characters escaped (`\x1b`, `\r`, `\n`, `\t`) and at
/// most `max` characters kept, the rest counted.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 16));
    for (kept, (i, c)) in s.char_indices().enumerate() {
        if kept >= max {
            out.push_str(&format!("… ({} more bytes)", s.len() - i));
            break;
        }
        escape_into(&mut out, c);
    }
    out
}

/// `s` with control characters escaped, whatever its length.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        escape_into(&mut out, c);
    }
    out
}

fn escape_into(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_length_capped() {
        assert_eq!(clean("a\u{1b}[2Jb\u{7}\r\n", 100), "a\\x1b[2Jb\\x07\\r\\n");
        assert_eq!(clean("abcdef", 3), "abc… (3 more bytes)");
        assert_eq!(clean("日本語", 10), "日本語");
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(escape_controls("\u{9b}x"), "\\x9bx");
    }
}
