//! `daemon.json`, edited the way a careful person would: only
//! `registry-mirrors` changes; every other key keeps its value and its
//! place (serde_json's `preserve_order`), the indentation is kept, a UTF-8
//! BOM stays, and anything we cannot read is refused, not rewritten.

use serde_json::{Map, Value};

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
}

/// A parsed daemon.json.
#[derive(Debug, Clone)]
pub struct DaemonJson {
    map: Map<String, Value>,
    indent: String,
    bom: bool,
    trailing_newline: bool,
}

impl DaemonJson {
    /// Parse a file's bytes; empty (or absent: pass `""`) means `{}`.
    pub fn parse(text: &str) -> Result<Self, DaemonJsonError> {
        let bom = text.starts_with(BOM);
        let body = text.strip_prefix(BOM).unwrap_or(text);
        let indent = detect_indent(body);
        let trailing_newline = body.ends_with('\n') || body.trim().is_empty();
        if body.trim().is_empty() {
            return Ok(Self {
                map: Map::new(),
                indent,
                bom,
                trailing_newline,
            });
        }
        let value: Value =
            serde_json::from_str(body).map_err(|e| DaemonJsonError::Syntax(e.to_string()))?;
        let map = match value {
            Value::Object(m) => m,
            Value::Array(_) => return Err(DaemonJsonError::NotObject("a list")),
            Value::String(_) => return Err(DaemonJsonError::NotObject("a string")),
            Value::Number(_) => return Err(DaemonJsonError::NotObject("a number")),
            Value::Bool(_) => return Err(DaemonJsonError::NotObject("a boolean")),
            Value::Null => return Err(DaemonJsonError::NotObject("null")),
        };
        let parsed = Self {
            map,
            indent,
            bom,
            trailing_newline,
        };
        parsed.mirrors()?;
        Ok(parsed)
    }

    /// The configured mirrors (empty when the key is absent).
    pub fn mirrors(&self) -> Result<Vec<String>, DaemonJsonError> {
        match self.map.get(KEY) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| DaemonJsonError::BadMirrors(v.to_string()))
                })
                .collect(),
            Some(other) => Err(DaemonJsonError::BadMirrors(other.to_string())),
        }
    }

    /// Set `registry-mirrors`, in place if present, appended if not. The
    /// key is always written, even empty: dockerd does not clear an absent
    /// key on reload.
    pub fn set_mirrors(&mut self, mirrors: &[String]) {
        let list = Value::Array(mirrors.iter().cloned().map(Value::String).collect());
        self.map.insert(KEY.to_owned(), list);
    }

    /// The file's new text, in the original's indentation.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(self.indent.as_bytes());
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serialising a Map of Values cannot fail.
        let _ = serde::Serialize::serialize(&self.map, &mut ser);
        let mut text = String::from_utf8(out).unwrap_or_default();
        if self.trailing_newline {
            text.push('\n');
        }
        if self.bom {
            text.insert_str(0, BOM);
        }
        text
    }
}

/// The indentation of the first indented line; two spaces by default.
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
        let keys: Vec<String> = serde_json::from_str::<Map<String, Value>>(&out)
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
