//! Plain lines for logs (journald, cron mail): one `key=value` line per
//! mirror, logfmt style, so they read well and grep well.

use std::io::{self, Write};

use crate::probe::MirrorResult;

/// A logfmt value: bare when it can be, else quoted with `\"`, `\\`, `\n`.
pub fn value(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\')
    {
        return v.to_owned();
    }
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if c.is_control() => s.push_str(&crate::text::escape_controls(&c.to_string())),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// One line per ranked mirror.
pub fn write_probe<W: Write>(out: &mut W, results: &[MirrorResult]) -> io::Result<()> {
    write_probe_of(out, None, results)
}

/// One line per ranked mirror, each opening with `registry=` when given
/// (apply over several registries).
pub fn write_probe_of<W: Write>(
    out: &mut W,
    registry: Option<&str>,
    results: &[MirrorResult],
) -> io::Result<()> {
    for (i, r) in results.iter().enumerate() {
        if let Some(registry) = registry {
            write!(out, "registry={} ", value(registry))?;
        }
        write!(
            out,
            "rank={} mirror={} status={} url={}",
            i + 1,
            value(&r.mirror.name),
            r.status,
            value(r.mirror.url.as_str())
        )?;
        if let Some(l) = r.latency {
            write!(out, " latency_ms={}", l.as_millis())?;
        }
        if let Some(b) = r.throughput_bps {
            write!(out, " throughput_bps={}", b.round() as u64)?;
        }
        if let Some(e) = &r.error {
            write!(out, " error={}", value(e))?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// One line per mirror of the list.
pub fn write_list<W: Write>(out: &mut W, mirrors: &[crate::config::Mirror]) -> io::Result<()> {
    for m in mirrors {
        let mut serves: Vec<String> = Vec::new();
        if !m.registry.is_empty() {
            serves.push(m.registry.clone());
        }
        serves.extend(m.prefix_for.iter().map(|p| format!("{p}/")));
        write!(
            out,
            "mirror={} url={} serves={} enabled={}",
            value(&m.name),
            value(m.url.as_str()),
            value(&serves.join(",")),
            m.enabled
        )?;
        if m.upstream {
            write!(out, " upstream=true")?;
        }
        if let Some(c) = &m.checked {
            write!(out, " checked={c}")?;
        }
        if let Some(n) = &m.notes {
            write!(out, " notes={}", value(n))?;
        }
        writeln!(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_only_when_needed() {
        assert_eq!(value("ok"), "ok");
        assert_eq!(value("http://a:5000"), "http://a:5000");
        assert_eq!(value(""), "\"\"");
        assert_eq!(value("HTTP 403: \"no\""), "\"HTTP 403: \\\"no\\\"\"");
        assert_eq!(value("a\nb"), "\"a\\nb\"");
    }
}
