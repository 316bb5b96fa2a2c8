//! `dmirror cache`: the cache's images, blobs, size and what a prune
//! removed, as a table, plain lines or JSON.

use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use comfy_table::{Cell, CellAlignment};
use serde::Serialize;

use super::plain::value;
use super::pull::format_bytes;
use super::table;
use crate::pull::inventory::{Inventory, Pruned, Reason};

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `3h ago`; `-` when never known.
fn ago(t: SystemTime) -> String {
    if t == UNIX_EPOCH {
        return "-".into();
    }
    super::ago(t)
}

fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

/// `1 blob`, `3 blobs`.
fn count(n: usize, what: &str) -> String {
    match (n, what.strip_suffix('y')) {
        (1, _) => format!("1 {what}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {what}s"),
    }
}

fn right(s: String) -> Cell {
    Cell::new(s).set_alignment(CellAlignment::Right)
}

#[derive(Serialize)]
struct ImageDoc<'a> {
    reference: &'a str,
    digest: &'a str,
    kind: &'a str,
    platforms: &'a [String],
    blobs: usize,
    cached_blobs: usize,
    bytes: u64,
    last_used: u64,
}

#[derive(Serialize)]
struct BlobDoc<'a> {
    digest: &'a str,
    bytes: u64,
    manifest: bool,
    last_used: u64,
    used_by: &'a [String],
}

#[derive(Serialize)]
struct PartialDoc<'a> {
    digest: &'a str,
    bytes: u64,
    modified: u64,
    in_use: bool,
}

#[derive(Serialize)]
struct SizeDoc {
    bytes: u64,
    blobs: usize,
    blob_bytes: u64,
    partials: usize,
    partial_bytes: u64,
    images: usize,
    free_bytes: Option<u64>,
}

fn size_doc(inv: &Inventory) -> SizeDoc {
    SizeDoc {
        bytes: inv.total(),
        blobs: inv.blobs.len(),
        blob_bytes: inv.blob_bytes(),
        partials: inv.partials.len(),
        partial_bytes: inv.partial_bytes(),
        images: inv.images.iter().filter(|i| i.cached > 0).count(),
        free_bytes: inv.free,
    }
}

fn empty_hint(out: &mut impl Write, root: &Path) -> io::Result<()> {
    writeln!(
        out,
        "the cache {} is empty (serve install keeps its cache in /var/cache/dmirror: --cache-dir)",
        root.display()
    )
}

/// The images, or with `blobs` every blob and partial.
pub fn write_list_table<W: Write>(
    out: &mut W,
    inv: &Inventory,
    blobs: bool,
    width: Option<u16>,
) -> io::Result<()> {
    if inv.blobs.is_empty() && inv.partials.is_empty() {
        return empty_hint(out, &inv.root);
    }
    if blobs {
        let mut t = table::new_table(&["blob", "size", "last used", "used by"], width);
        for b in &inv.blobs {
            let by = match (b.used_by.is_empty(), b.manifest) {
                (true, true) => "(a manifest)".to_owned(),
                (true, false) => "(no cached manifest)".to_owned(),
                _ => b.used_by.join("\n"),
            };
            t.add_row(vec![
                Cell::new(short(&b.digest)),
                right(format_bytes(b.size)),
                Cell::new(ago(b.last_used)),
                Cell::new(by),
            ]);
        }
        for p in &inv.partials {
            let state = if p.busy { "downloading" } else { "unfinished" };
            t.add_row(vec![
                Cell::new(short(&p.digest)),
                right(format_bytes(p.size)),
                Cell::new(ago(p.modified)),
                Cell::new(format!("({state})")),
            ]);
        }
        writeln!(out, "{t}")?;
    } else {
        let mut t = table::new_table(
            &["image", "digest", "platforms", "blobs", "size", "last used"],
            width,
        );
        for i in &inv.images {
            let blobs = if i.kind == "missing" {
                "manifest gone".to_owned()
            } else {
                format!("{} / {}", i.cached, i.blobs)
            };
            t.add_row(vec![
                Cell::new(&i.reference),
                Cell::new(short(&i.digest)),
                Cell::new(if i.platforms.is_empty() {
                    "-".to_owned()
                } else {
                    i.platforms.join(" ")
                }),
                right(blobs),
                right(format_bytes(i.size)),
                Cell::new(ago(i.last_used)),
            ]);
        }
        let loose = inv.blobs.iter().filter(|b| b.used_by.is_empty()).count();
        if !inv.images.is_empty() {
            writeln!(out, "{t}")?;
        }
        if loose > 0 {
            writeln!(
                out,
                "{} with no cached manifest (dmirror cache list --blobs)",
                count(loose, "blob")
            )?;
        }
    }
    write_size_line(out, inv)
}

fn write_size_line<W: Write>(out: &mut W, inv: &Inventory) -> io::Result<()> {
    write!(
        out,
        "{} in {}",
        format_bytes(inv.blob_bytes()),
        count(inv.blobs.len(), "blob")
    )?;
    if !inv.partials.is_empty() {
        write!(
            out,
            ", {} in {}",
            format_bytes(inv.partial_bytes()),
            count(inv.partials.len(), "unfinished download")
        )?;
    }
    if let Some(f) = inv.free {
        write!(out, "; {} free on its disk", format_bytes(f))?;
    }
    writeln!(out, " ({})", inv.root.display())
}

pub fn write_list_plain<W: Write>(out: &mut W, inv: &Inventory, blobs: bool) -> io::Result<()> {
    if blobs {
        for b in &inv.blobs {
            writeln!(
                out,
                "blob={} bytes={} manifest={} last_used={} used_by={}",
                b.digest,
                b.size,
                b.manifest,
                unix(b.last_used),
                value(&b.used_by.join(","))
            )?;
        }
        for p in &inv.partials {
            writeln!(
                out,
                "partial={} bytes={} modified={} in_use={}",
                p.digest,
                p.size,
                unix(p.modified),
                p.busy
            )?;
        }
        return Ok(());
    }
    for i in &inv.images {
        writeln!(
            out,
            "image={} digest={} kind={} platforms={} blobs={} cached_blobs={} bytes={} last_used={}",
            value(&i.reference),
            i.digest,
            i.kind,
            value(&i.platforms.join(",")),
            i.blobs,
            i.cached,
            i.size,
            unix(i.last_used)
        )?;
    }
    Ok(())
}

pub fn write_list_json<W: Write>(out: &mut W, inv: &Inventory, blobs: bool) -> io::Result<()> {
    #[derive(Serialize)]
    struct Doc<'a> {
        cache_dir: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        images: Option<Vec<ImageDoc<'a>>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        blobs: Option<Vec<BlobDoc<'a>>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        partials: Option<Vec<PartialDoc<'a>>>,
        size: SizeDoc,
    }
    let images = inv
        .images
        .iter()
        .map(|i| ImageDoc {
            reference: &i.reference,
            digest: &i.digest,
            kind: i.kind,
            platforms: &i.platforms,
            blobs: i.blobs,
            cached_blobs: i.cached,
            bytes: i.size,
            last_used: unix(i.last_used),
        })
        .collect();
    let blob_docs = inv
        .blobs
        .iter()
        .map(|b| BlobDoc {
            digest: &b.digest,
            bytes: b.size,
            manifest: b.manifest,
            last_used: unix(b.last_used),
            used_by: &b.used_by,
        })
        .collect();
    let partials = inv
        .partials
        .iter()
        .map(|p| PartialDoc {
            digest: &p.digest,
            bytes: p.size,
            modified: unix(p.modified),
            in_use: p.busy,
        })
        .collect();
    let doc = Doc {
        cache_dir: inv.root.display().to_string(),
        images: (!blobs).then_some(images),
        blobs: blobs.then_some(blob_docs),
        partials: blobs.then_some(partials),
        size: size_doc(inv),
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

pub fn write_size<W: Write>(out: &mut W, inv: &Inventory, format: super::Format) -> io::Result<()> {
    let d = size_doc(inv);
    match format {
        super::Format::Json => {
            #[derive(Serialize)]
            struct Doc {
                cache_dir: String,
                #[serde(flatten)]
                size: SizeDoc,
            }
            let doc = Doc {
                cache_dir: inv.root.display().to_string(),
                size: d,
            };
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)
        }
        super::Format::Plain => {
            write!(
                out,
                "cache_dir={} bytes={} blobs={} blob_bytes={} partials={} partial_bytes={} images={}",
                value(&inv.root.display().to_string()),
                d.bytes,
                d.blobs,
                d.blob_bytes,
                d.partials,
                d.partial_bytes,
                d.images
            )?;
            if let Some(f) = d.free_bytes {
                write!(out, " free_bytes={f}")?;
            }
            writeln!(out)
        }
        _ => {
            if inv.blobs.is_empty() && inv.partials.is_empty() {
                return empty_hint(out, &inv.root);
            }
            writeln!(out, "{} images, {}", d.images, format_bytes(d.bytes))?;
            write_size_line(out, inv)
        }
    }
}

fn reason(r: Reason) -> &'static str {
    match r {
        Reason::All => "all",
        Reason::Unused => "unused",
        Reason::OverLimit => "over-limit",
    }
}

pub fn write_pruned<W: Write>(
    out: &mut W,
    root: &Path,
    p: &Pruned,
    format: super::Format,
    width: Option<u16>,
) -> io::Result<()> {
    let verb = if p.dry_run { "would remove" } else { "removed" };
    match format {
        super::Format::Json => {
            #[derive(Serialize)]
            struct Entry<'a> {
                digest: &'a str,
                bytes: u64,
                partial: bool,
                last_used: u64,
                reason: &'a str,
                used_by: &'a [String],
            }
            #[derive(Serialize)]
            struct Doc<'a> {
                cache_dir: String,
                dry_run: bool,
                removed: Vec<Entry<'a>>,
                freed_bytes: u64,
                left_bytes: u64,
                in_use: usize,
            }
            let doc = Doc {
                cache_dir: root.display().to_string(),
                dry_run: p.dry_run,
                removed: p
                    .removed
                    .iter()
                    .map(|r| Entry {
                        digest: &r.digest,
                        bytes: r.size,
                        partial: r.partial,
                        last_used: unix(r.last_used),
                        reason: reason(r.reason),
                        used_by: &r.used_by,
                    })
                    .collect(),
                freed_bytes: p.freed(),
                left_bytes: p.left,
                in_use: p.busy,
            };
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            return writeln!(out);
        }
        super::Format::Plain => {
            for r in &p.removed {
                writeln!(
                    out,
                    "{}={} bytes={} partial={} reason={} used_by={}",
                    verb.replace(' ', "_"),
                    r.digest,
                    r.size,
                    r.partial,
                    reason(r.reason),
                    value(&r.used_by.join(","))
                )?;
            }
        }
        _ if !p.removed.is_empty() => {
            let mut t = table::new_table(&["blob", "size", "last used", "why", "used by"], width);
            for r in &p.removed {
                let by = if r.partial {
                    "(unfinished download)".to_owned()
                } else {
                    r.used_by.join("\n")
                };
                t.add_row(vec![
                    Cell::new(short(&r.digest)),
                    right(format_bytes(r.size)),
                    Cell::new(ago(r.last_used)),
                    Cell::new(reason(r.reason)),
                    Cell::new(by),
                ]);
            }
            writeln!(out, "{t}")?;
        }
        _ => {}
    }
    if format == super::Format::Plain {
        return writeln!(
            out,
            "freed_bytes={} left_bytes={} in_use={} dry_run={}",
            p.freed(),
            p.left,
            p.busy,
            p.dry_run
        );
    }
    write!(
        out,
        "{verb} {} ({}); {} left in {}",
        format_bytes(p.freed()),
        count(p.removed.len(), "entry"),
        format_bytes(p.left),
        root.display()
    )?;
    if p.busy > 0 {
        write!(out, "; {} under way left alone", count(p.busy, "download"))?;
    }
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count(1, "entry"), "1 entry");
        assert_eq!(count(3, "entry"), "3 entries");
        assert_eq!(count(0, "blob"), "0 blobs");
        assert_eq!(ago(UNIX_EPOCH), "-");
        assert_eq!(ago(SystemTime::now()), "just now");
    }
}
