//! `daemon.json`, edited the way a careful person would: only the value of
//! `registry-mirrors` changes (or the key is added before the closing
//! brace); every other byte of the file stays as it was: other keys' text
//! (numbers such as `1e2` or large integers included), their order,
//! comments-free whitespace, CRLF line ends, a UTF-8 BOM. A file we cannot
//! read unambiguously (bad syntax, not an object, a duplicated key) is
//! refused, not rewritten.

use serde_json::Value;

pub const KEY: &str = "registry-mirrors";
const BOM: &str = "\u{feff}";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DaemonJsonError {
    #[error(
        "is not valid JSON ({0}); fix or remove it, dmirror will not rewrite a file it cannot read"
    )]
    Syntax(String),
    #[error("holds {0}, not a JSON object; dockerd's configuration file must be an object")]
    NotObject(&'static str),
    #[error("has \"registry-mirrors\" = {0}, not a list of strings; fix it by hand first")]
    BadMirrors(String),
    #[error(
        "has the key {0:?} more than once; which one counts is ambiguous, so fix it by hand first"
    )]
    Duplicate(String),
}

/// A parsed daemon.json: its text, and where its top-level members are.
#[derive(Debug, Clone)]
pub struct DaemonJson {
    /// The text after any BOM.
    body: String,
    bom: bool,
    /// Byte span of `registry-mirrors`' value, when present.
    mirrors_span: Option<(usize, usize)>,
    /// Indentation of that key's line (or of the first member).
    member_indent: String,
    /// One level of indentation.
    indent: String,
    /// Where a new member goes: after the last member's value, or after `{`.
    insert_at: usize,
    /// The object has no member.
    empty: bool,
    newline: &'static str,
    /// The new value of `registry-mirrors`, once set.
    new_mirrors: Option<Vec<String>>,
}

impl DaemonJson {
    /// Parse a file's text; empty (or absent: pass `""`) means `{}`.
    pub fn parse(text: &str) -> Result<Self, DaemonJsonError> {
        let bom = text.starts_with(BOM);
        let body = text.strip_prefix(BOM).unwrap_or(text);
        let newline = if body.contains("\r\n") { "\r\n" } else { "\n" };
        if body.trim().is_empty() {
            return Ok(Self {
                body: String::new(),
                bom,
                mirrors_span: None,
                member_indent: "  ".into(),
                indent: "  ".into(),
                insert_at: 0,
                empty: true,
                newline,
                new_mirrors: None,
            });
        }
        let value: Value =
            serde_json::from_str(body).map_err(|e| DaemonJsonError::Syntax(e.to_string()))?;
        match value {
            Value::Object(_) => {}
            Value::Array(_) => return Err(DaemonJsonError::NotObject("a list")),
            Value::String(_) => return Err(DaemonJsonError::NotObject("a string")),
            Value::Number(_) => return Err(DaemonJsonError::NotObject("a number")),
            Value::Bool(_) => return Err(DaemonJsonError::NotObject("a boolean")),
            Value::Null => return Err(DaemonJsonError::NotObject("null")),
        }
        let members = members(body)?;
        let mut seen = std::collections::HashSet::new();
        for m in &members {
            if !seen.insert(m.key.as_str()) {
                return Err(DaemonJsonError::Duplicate(m.key.clone()));
            }
        }
        let open = body.find('{').unwrap_or(0);
        let mirrors = members.iter().find(|m| m.key == KEY);
        let line_indent = |at: usize| -> String {
            let start = body[..at].rfind('\n').map_or(0, |i| i + 1);
            body[start..at]
                .chars()
                .take_while(|c| *c == ' ' || *c == '\t')
                .collect()
        };
        let member_indent = match mirrors.or(members.first()) {
            Some(m) if body[..m.key_start].rfind('\n').is_some_and(|nl| nl > open) => {
                line_indent(m.key_start)
            }
            _ => "  ".to_owned(),
        };
        let parsed = Self {
            body: body.to_owned(),
            bom,
            mirrors_span: mirrors.map(|m| (m.value_start, m.value_end)),
            indent: detect_indent(body),
            member_indent,
            insert_at: members.last().map_or(open + 1, |m| m.value_end),
            empty: members.is_empty(),
            newline,
            new_mirrors: None,
        };
        parsed.mirrors()?;
        Ok(parsed)
    }

    /// The configured mirrors (empty when the key is absent).
    pub fn mirrors(&self) -> Result<Vec<String>, DaemonJsonError> {
        if let Some(m) = &self.new_mirrors {
            return Ok(m.clone());
        }
        let Some((s, e)) = self.mirrors_span else {
            return Ok(Vec::new());
        };
        let raw = &self.body[s..e];
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| DaemonJsonError::BadMirrors(v.to_string()))
                })
                .collect(),
            _ => Err(DaemonJsonError::BadMirrors(crate::text::clean(raw, 200))),
        }
    }

    /// Set `registry-mirrors`, in place if present, added if not. The key is
    /// always written, even empty: dockerd does not clear an absent key on
    /// reload.
    pub fn set_mirrors(&mut self, mirrors: &[String]) {
        self.new_mirrors = Some(mirrors.to_vec());
    }

    /// The list as JSON, one URL per line at `indent` below the key.
    fn render_list(&self, list: &[String]) -> String {
        if list.is_empty() {
            return "[]".to_owned();
        }
        let nl = self.newline;
        let inner = format!("{}{}", self.member_indent, self.indent);
        let items: Vec<String> = list
            .iter()
            .map(|u| format!("{inner}{}", Value::String(u.clone())))
            .collect();
        format!(
            "[{nl}{}{nl}{}]",
            items.join(&format!(",{nl}")),
            self.member_indent
        )
    }

    /// The file's new text: the old text with only `registry-mirrors`
    /// changed.
    pub fn render(&self) -> String {
        let Some(list) = &self.new_mirrors else {
            return self.original();
        };
        let value = self.render_list(list);
        let nl = self.newline;
        let mut text = if self.body.trim().is_empty() {
            format!("{{{nl}{}\"{KEY}\": {value}{nl}}}{nl}", self.member_indent)
        } else if let Some((s, e)) = self.mirrors_span {
            format!("{}{value}{}", &self.body[..s], &self.body[e..])
        } else if self.empty {
            // `{}` or `{ }`: the member on its own line between the braces.
            let close = self.insert_at + self.body[self.insert_at..].find('}').unwrap_or(0);
            format!(
                "{}{nl}{}\"{KEY}\": {value}{nl}{}",
                &self.body[..self.insert_at],
                self.member_indent,
                &self.body[close..]
            )
        } else {
            let at = self.insert_at;
            format!(
                "{},{nl}{}\"{KEY}\": {value}{}",
                &self.body[..at],
                self.member_indent,
                &self.body[at..]
            )
        };
        if self.bom {
            text.insert_str(0, BOM);
        }
        text
    }

    fn original(&self) -> String {
        if self.bom {
            format!("{BOM}{}", self.body)
        } else {
            self.body.clone()
        }
    }
}

/// One top-level member of the object: its key and where things are.
struct Member {
    key: String,
    key_start: usize,
    value_start: usize,
    value_end: usize,
}

/// The top-level members of a JSON object already known to be valid, in
/// one linear pass.
fn members(text: &str) -> Result<Vec<Member>, DaemonJsonError> {
    let b = text.as_bytes();
    let mut i = text
        .find('{')
        .ok_or(DaemonJsonError::NotObject("no object"))?
        + 1;
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    // The end of the string starting at the quote at `i` (past its closing quote).
    let string_end = |mut i: usize| {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        i
    };
    let mut out = Vec::new();
    loop {
        i = skip_ws(i);
        if i >= b.len() || b[i] == b'}' {
            return Ok(out);
        }
        if b[i] == b',' {
            i += 1;
            continue;
        }
        let key_start = i;
        let key_end = string_end(i);
        let key: String = serde_json::from_str(&text[key_start..key_end])
            .map_err(|e| DaemonJsonError::Syntax(e.to_string()))?;
        i = skip_ws(key_end);
        i = skip_ws(i + 1); // past ':'
        let value_start = i;
        let mut depth = 0usize;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i = string_end(i);
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => break,
                b'}' | b']' => depth -= 1,
                b',' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        let mut value_end = i;
        while value_end > value_start && b[value_end - 1].is_ascii_whitespace() {
            value_end -= 1;
        }
        out.push(Member {
            key,
            key_start,
            value_start,
            value_end,
        });
    }
}

/// The indentation unit: the first indented line's, two spaces by default.
fn detect_indent(text: &str) -> String {
    text.lines()
        .skip(1)
        .find_map(|l| {
            let ws: String = l.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
            (!ws.is_empty() && l.len() > ws.len()).then_some(ws)
        })
        .unwrap_or_else(|| "  ".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_every_other_key_in_place() {
        let text = "{\n    \"log-driver\": \"json-file\",\n    \"registry-mirrors\": [\"https://old\"],\n    \"log-opts\": {\"max-size\": \"10m\", \"max-file\": \"3\"},\n    \"data-root\": \"/srv/docker\",\n    \"runtimes\": {\"nvidia\": {\"path\": \"nvidia-container-runtime\", \"runtimeArgs\": []}},\n    \"default-ulimits\": {\"nofile\": {\"Name\": \"nofile\", \"Hard\": 64000, \"Soft\": 64000}}\n}\n";
        let mut d = DaemonJson::parse(text).unwrap();
        assert_eq!(d.mirrors().unwrap(), ["https://old"]);
        d.set_mirrors(&["https://a".into(), "http://b:5000".into()]);
        let out = d.render();
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&out)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "log-driver",
                "registry-mirrors",
                "log-opts",
                "data-root",
                "runtimes",
                "default-ulimits"
            ]
        );
        assert!(out.contains("\n    \"log-driver\""), "indent kept:\n{out}");
        assert!(out.ends_with("}\n"));
        let before: Value = serde_json::from_str(text).unwrap();
        let after: Value = serde_json::from_str(&out).unwrap();
        for k in keys.iter().filter(|k| *k != KEY) {
            assert_eq!(before[k], after[k], "{k}");
        }
        assert_eq!(
            after[KEY],
            serde_json::json!(["https://a", "http://b:5000"])
        );
    }

    #[test]
    fn empty_or_absent_is_an_empty_object_and_the_key_is_always_written() {
        let mut d = DaemonJson::parse("").unwrap();
        d.set_mirrors(&[]);
        assert_eq!(d.render(), "{\n  \"registry-mirrors\": []\n}\n");
    }

    #[test]
    fn a_bom_is_kept() {
        let mut d = DaemonJson::parse("\u{feff}{\"debug\": true}").unwrap();
        d.set_mirrors(&["https://a".into()]);
        let out = d.render();
        assert!(out.starts_with('\u{feff}'));
        assert!(!out.ends_with('\n'));
    }

    #[test]
    fn other_keys_keep_their_text_byte_for_byte() {
        let text = "{\r\n  \"max-concurrent-downloads\": 1e2,\r\n  \"big\": 123456789012345678901234567890,\r\n  \"registry-mirrors\": [\"https://old\"],\r\n  \"s\": \"a\\u00e9\"\r\n}\r\n";
        let mut d = DaemonJson::parse(text).unwrap();
        d.set_mirrors(&["https://a".into()]);
        let out = d.render();
        assert_eq!(
            out,
            "{\r\n  \"max-concurrent-downloads\": 1e2,\r\n  \"big\": 123456789012345678901234567890,\r\n  \"registry-mirrors\": [\r\n    \"https://a\"\r\n  ],\r\n  \"s\": \"a\\u00e9\"\r\n}\r\n"
        );
        let mut d = DaemonJson::parse("{\"debug\": true}\n").unwrap();
        d.set_mirrors(&[]);
        assert_eq!(
            d.render(),
            "{\"debug\": true,\n  \"registry-mirrors\": []}\n"
        );
        let mut d = DaemonJson::parse("{ }").unwrap();
        d.set_mirrors(&["https://a".into()]);
        let out = d.render();
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            serde_json::json!({"registry-mirrors": ["https://a"]})
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert_eq!(
            DaemonJson::parse("{\"debug\": true, \"debug\": false}").unwrap_err(),
            DaemonJsonError::Duplicate("debug".into())
        );
        assert!(matches!(
            DaemonJson::parse("{\"registry-mirrors\": [], \"registry\\u002dmirrors\": []}"),
            Err(DaemonJsonError::Duplicate(_))
        ));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(matches!(
            DaemonJson::parse("{\"debug\": true,}"),
            Err(DaemonJsonError::Syntax(_))
        ));
        assert!(matches!(
            DaemonJson::parse("[1]"),
            Err(DaemonJsonError::NotObject("a list"))
        ));
        assert!(matches!(
            DaemonJson::parse("{\"registry-mirrors\": \"https://a\"}"),
            Err(DaemonJsonError::BadMirrors(_))
        ));
        assert!(matches!(
            DaemonJson::parse("{\"registry-mirrors\": [\"https://a\", 3]}"),
            Err(DaemonJsonError::BadMirrors(_))
        ));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A JSON value's text, in one of several spellings.
    fn value_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("1e2".to_owned()),
            Just("123456789012345678901234567890".to_owned()),
            Just("-0.50".to_owned()),
            Just("true".to_owned()),
            Just("null".to_owned()),
            "[a-z]{0,6}".prop_map(|s| format!("\"{s}\\u00e9\"")),
            Just("{ \"a\" : [1 , {\"b\":\"]}\"}] }".to_owned()),
            Just("[ ]".to_owned()),
        ]
    }

    fn document() -> impl Strategy<Value = (String, bool)> {
        (
            proptest::collection::btree_map("[a-z-]{1,8}", value_text(), 0..6),
            prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\r\n\t")],
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(members, ws, with_mirrors, crlf)| {
                let nl = if crlf { "\r\n" } else { "\n" };
                let mut parts: Vec<String> = members
                    .into_iter()
                    .filter(|(k, _)| k != KEY)
                    .map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}"))
                    .collect();
                if with_mirrors {
                    let at = parts.len() / 2;
                    parts.insert(at, format!("{ws}\"{KEY}\": [\"https://old\"]"));
                }
                (format!("{{{}{nl}}}{nl}", parts.join(",")), with_mirrors)
            })
    }

    proptest! {
        /// Every byte outside the value of registry-mirrors survives a merge.
        #[test]
        fn other_keys_are_byte_identical_after_any_merge(
            (text, had) in document(),
            list in proptest::collection::vec("https://[a-z]{1,8}", 0..4),
        ) {
            let mut d = DaemonJson::parse(&text).unwrap();
            let span = d.mirrors_span;
            let insert_at = d.insert_at;
            d.set_mirrors(&list);
            let out = d.render();
            let reparsed = DaemonJson::parse(&out).unwrap();
            prop_assert_eq!(reparsed.mirrors().unwrap(), list.clone());
            let (s, e) = reparsed.mirrors_span.unwrap();
            match span {
                Some((os, oe)) => {
                    prop_assert!(had);
                    prop_assert_eq!(&out[..s], &text[..os]);
                    prop_assert_eq!(&out[e..], &text[oe..]);
                }
                None => {
                    prop_assert!(out.starts_with(&text[..insert_at]));
                    prop_assert!(out.ends_with(&text[insert_at..]));
                }
            }
            let before: Value = serde_json::from_str(&text).unwrap();
            let after: Value = serde_json::from_str(&out).unwrap();
            for (k, v) in before.as_object().unwrap() {
                if k != KEY {
                    prop_assert_eq!(&after[k], v);
                }
            }
        }
    }
}
