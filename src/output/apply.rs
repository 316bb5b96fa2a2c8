//! Apply's report in every format. dockerd's keeps the shape it has always
//! had (one probe, one `apply` object naming `daemon_json`); containerd's and
//! podman's list every registry with its own probe.

use std::io::{self, Write};

use comfy_table::{Cell, CellAlignment};
use serde_json::json;

use super::plain::value;
use super::prometheus::{self, Applied, Group};
use super::{json as json_out, plain, table, Format};
use crate::apply::{RegistryReport, Report};

/// `report` in `format`; `width` fits a table to a terminal.
pub fn write<W: Write>(
    out: &mut W,
    report: &Report,
    hosts: Option<&Report>,
    format: Format,
    width: Option<u16>,
    route: &crate::net::Route,
) -> io::Result<()> {
    // dockerd with the containerd image store: its hosts files too.
    if let Some(h) = hosts {
        if format == Format::Json {
            let mut main = Vec::new();
            write(&mut main, report, None, format, width, route)?;
            let mut extra = Vec::new();
            write(&mut extra, h, None, format, width, route)?;
            let mut doc: serde_json::Value =
                serde_json::from_slice(&main).map_err(io::Error::other)?;
            doc["hosts_files"] = serde_json::from_slice(&extra).map_err(io::Error::other)?;
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            return writeln!(out);
        }
        if format != Format::Prometheus {
            write(out, h, None, format, width, route)?;
        }
    }
    let docker = report.target == "docker";
    match (format, report.registries.first()) {
        (Format::Prometheus, _) => out.write_all(metrics(report, hosts).as_bytes()),
        (Format::Json, Some(r)) if docker => {
            let doc = json!({
                "mirrors": json_out::probe_mirrors(&r.ranked.results),
                "apply": docker_json(r),
                "network": route.to_string(),
            });
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)
        }
        (Format::Json, _) => {
            let registries: Vec<_> = report
                .registries
                .iter()
                .map(|r| {
                    json!({
                        "registry": r.registry,
                        "image": r.image.as_ref().map(ToString::to_string),
                        "file": r.file,
                        "old": r.old,
                        "new": r.new,
                        "outcome": r.outcome.as_str(),
                        "message": r.message,
                        "mirrors": json_out::probe_mirrors(&r.ranked.results),
                    })
                })
                .collect();
            let doc = json!({
                "target": report.target,
                "registries": registries,
                "network": route.to_string(),
            });
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)
        }
        (Format::Table, Some(r)) if docker => {
            table::write_probe(out, &r.ranked.results, width)?;
            table::write_route(out, route)?;
            docker_table(out, r, width)
        }
        (Format::Table, _) => {
            for r in &report.registries {
                if let Some(image) = &r.image {
                    writeln!(out, "{}: probed with {image}", r.registry)?;
                }
                table::write_probe(out, &r.ranked.results, width)?;
            }
            table::write_route(out, route)?;
            runtime_table(out, report, width)
        }
        (Format::Plain, Some(r)) if docker => {
            plain::write_probe(out, &r.ranked.results)?;
            docker_plain(out, r)
        }
        (Format::Plain, _) => {
            for r in &report.registries {
                plain::write_probe_of(out, Some(&r.registry), &r.ranked.results)?;
            }
            for r in &report.registries {
                writeln!(
                    out,
                    "apply target={} registry={} outcome={} file={} old={} new={} message={}",
                    report.target,
                    value(&r.registry),
                    r.outcome,
                    value(&r.file.display().to_string()),
                    value(&r.old.join(",")),
                    value(&r.new.join(",")),
                    value(&r.message)
                )?;
            }
            Ok(())
        }
    }
}

/// The probes' metrics, then apply's.
/// With `hosts` (dockerd's hosts files too), one series set per registry's
/// probe — a registry probed for both is counted once — and one apply
/// outcome per target and registry.
pub fn metrics(report: &Report, hosts: Option<&Report>) -> String {
    let reports: Vec<&Report> = std::iter::once(report).chain(hosts).collect();
    let mut groups: Vec<Group<'_>> = Vec::new();
    for r in reports.iter().flat_map(|rep| &rep.registries) {
        if groups.iter().all(|g| g.registry != r.registry) {
            groups.push(Group {
                registry: &r.registry,
                results: &r.ranked.results,
                history: r.ranked.history.as_ref(),
            });
        }
    }
    let at = report
        .registries
        .first()
        .map_or_else(std::time::SystemTime::now, |r| r.ranked.at);
    let applied: Vec<Applied<'_>> = reports
        .iter()
        .flat_map(|rep| {
            rep.registries.iter().map(|r| Applied {
                target: rep.target,
                registry: &r.registry,
                outcome: r.outcome.as_str(),
                mirrors: r.mirrors_after(),
            })
        })
        .collect();
    prometheus::probes(&groups, at) + &prometheus::applied(&applied)
}

fn docker_json(r: &RegistryReport) -> serde_json::Value {
    json!({
        "daemon_json": r.file,
        "old": r.old,
        "new": r.new,
        "outcome": r.outcome.as_str(),
        "action": r.action,
        "engine_mirrors": r.running,
        "message": r.message,
    })
}

fn docker_plain<W: Write>(out: &mut W, r: &RegistryReport) -> io::Result<()> {
    write!(
        out,
        "apply outcome={} daemon_json={} old={} new={}",
        r.outcome,
        value(&r.file.display().to_string()),
        value(&r.old.join(",")),
        value(&r.new.join(","))
    )?;
    if let Some(a) = &r.action {
        write!(out, " action={}", value(a))?;
    }
    writeln!(out, " message={}", value(&r.message))
}

/// What apply changed in daemon.json: the old list beside the new one.
/// Below this many columns, before/after lists are printed one URL a line
/// instead of side by side: a URL is never broken.
const SIDE_BY_SIDE: u16 = 110;

/// `before` and `after` of one configuration, one URL a line.
fn before_after<W: Write>(out: &mut W, old: &[String], new: &[String]) -> io::Result<()> {
    for (label, list) in [("before", old), ("after", new)] {
        if list.is_empty() {
            writeln!(out, "  {label}: -")?;
        } else {
            writeln!(out, "  {label}:")?;
            for (i, u) in list.iter().enumerate() {
                writeln!(out, "    {}. {u}", i + 1)?;
            }
        }
    }
    Ok(())
}

fn docker_table<W: Write>(out: &mut W, r: &RegistryReport, width: Option<u16>) -> io::Result<()> {
    let title = format!("registry-mirrors in {}", r.file.display());
    if width.is_some_and(|w| w < SIDE_BY_SIDE) {
        writeln!(out, "\n{title}")?;
        before_after(out, &r.old, &r.new)?;
        if let Some(a) = &r.action {
            writeln!(out, "dockerd: {a}")?;
        }
        return writeln!(out, "{}: {}", r.outcome, r.message);
    }
    let mut t = table::new_table(&["#", "before", "after"], width);
    for i in 0..r.old.len().max(r.new.len()) {
        t.add_row(vec![
            Cell::new(i + 1).set_alignment(CellAlignment::Right),
            Cell::new(r.old.get(i).map(String::as_str).unwrap_or("-")),
            Cell::new(r.new.get(i).map(String::as_str).unwrap_or("-")),
        ]);
    }
    writeln!(out, "\n{title}\n{t}")?;
    if let Some(a) = &r.action {
        writeln!(out, "dockerd: {a}")?;
    }
    writeln!(out, "{}: {}", r.outcome, r.message)
}

/// What apply did to each registry's configuration (containerd, podman).
fn runtime_table<W: Write>(out: &mut W, report: &Report, width: Option<u16>) -> io::Result<()> {
    if width.is_some_and(|w| w < SIDE_BY_SIDE) {
        writeln!(out, "\n{} mirrors", report.target)?;
        for r in &report.registries {
            writeln!(out, "{} ({}):", r.registry, r.outcome)?;
            before_after(out, &r.old, &r.new)?;
        }
        for r in &report.registries {
            writeln!(out, "{}: {}: {}", r.registry, r.outcome, r.message)?;
        }
        return Ok(());
    }
    let mut t = table::new_table(&["registry", "before", "after", "outcome"], width);
    let list = |l: &[String]| {
        if l.is_empty() {
            "-".to_owned()
        } else {
            l.join("\n")
        }
    };
    for r in &report.registries {
        t.add_row(vec![
            Cell::new(&r.registry),
            Cell::new(list(&r.old)),
            Cell::new(list(&r.new)),
            Cell::new(r.outcome),
        ]);
    }
    writeln!(out, "\n{} mirrors\n{t}", report.target)?;
    for r in &report.registries {
        writeln!(out, "{}: {}: {}", r.registry, r.outcome, r.message)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{Outcome, RegistryReport};
    use crate::ranked::Ranked;

    /// Issue 15: at 80 columns the before/after lists keep every URL whole.
    #[test]
    fn narrow_terminals_get_one_url_a_line() {
        let url = "https://a-rather-long-mirror-host-name.example.internal:8443/v2/ghcr.io";
        let report = Report {
            target: "containerd",
            registries: vec![RegistryReport {
                registry: "ghcr.io".into(),
                image: Some("ghcr.io/containerd/busybox:1.36".parse().unwrap()),
                ranked: Ranked {
                    results: Vec::new(),
                    history: None,
                    at: std::time::SystemTime::now(),
                },
                file: "/etc/containerd/certs.d/ghcr.io/hosts.toml".into(),
                old: vec![url.into()],
                new: vec![url.into(), "https://ghcr.m.example".into()],
                outcome: Outcome::Written,
                message: "written".into(),
                action: None,
                running: None,
            }],
        };
        let mut out = Vec::new();
        runtime_table(&mut out, &report, Some(80)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches(url).count(), 2, "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    }
}
