//! Which registries an apply configures, and the image each one's mirrors
//! are probed with.

use std::collections::BTreeSet;

use super::ApplyError;
use crate::config::MirrorList;
use crate::reference::{Reference, DOCKER_HUB};

/// The registries to configure, each with its probe image: `named`
/// (`--registry`) if any, else every registry an enabled mirror serves;
/// `images` (`--image`, at most one per registry) where given, else a small
/// well-known image of the registry. Registries without either are skipped
/// with a note, or refused when named. Docker Hub first, the rest by name.
pub fn registries(
    list: &MirrorList,
    named: &[String],
    images: &[Reference],
    note: &dyn Fn(String),
) -> Result<Vec<(String, Reference)>, ApplyError> {
    let refuse = |m: String| Err(ApplyError::Refused(m));
    for (i, image) in images.iter().enumerate() {
        if images[..i].iter().any(|o| o.registry == image.registry) {
            return refuse(format!(
                "--image: two images of {}; give one per registry",
                image.registry
            ));
        }
    }
    let served = served(list);
    let explicit = !named.is_empty();
    let mut registries: Vec<String> = if explicit {
        checked(named, false)?
    } else {
        served.iter().map(|r| (*r).to_owned()).collect()
    };
    registries.sort_by_key(|r| (r != DOCKER_HUB, r.clone()));
    if let Some(i) = images.iter().find(|i| !registries.contains(&i.registry)) {
        return refuse(format!(
            "--image {i}: no enabled mirror serves {} (or it is not among --registry)",
            i.registry
        ));
    }
    let mut plans = Vec::new();
    for r in registries {
        if !served.contains(r.as_str()) {
            return refuse(format!(
                "--registry {r}: no enabled mirror serves it; add one to your mirrors.toml with registry = \"{r}\" or prefix_for = [\"{r}\"]"
            ));
        }
        let image = match images.iter().find(|i| i.registry == r) {
            Some(i) => i.clone(),
            None => match crate::probe::default_image(&r).map(str::parse::<Reference>) {
                Some(Ok(d)) => d,
                Some(Err(e)) => return refuse(format!("the built-in image of {r}: {e}")),
                None if explicit => {
                    return refuse(format!(
                        "no image to probe the mirrors of {r} with; pass --image {r}/<repository>:<tag>"
                    ))
                }
                None => {
                    note(format!(
                        "{r}: skipped, no image to probe its mirrors with; pass --image {r}/<repository>:<tag> to configure it"
                    ));
                    continue;
                }
            },
        };
        plans.push((r, image));
    }
    if plans.is_empty() {
        return refuse(
            "no registry to configure; pass --image <registry>/<repository>:<tag> for one the mirror list serves".into(),
        );
    }
    Ok(plans)
}
/// containerd's hosts directory for every registry without its own.
pub const DEFAULT_HOSTS: &str = "_default";

/// The registries `apply --via` configures: `named`, or every registry an
/// enabled mirror serves. Nothing is probed, so any registry may be named
/// (the server goes upstream for one no mirror serves), and with
/// `default_hosts` (containerd) `_default` too: every other registry.
pub fn via_registries(
    list: &MirrorList,
    named: &[String],
    default_hosts: bool,
) -> Result<Vec<String>, ApplyError> {
    let mut out = if named.is_empty() {
        served(list).into_iter().map(str::to_owned).collect()
    } else {
        checked(named, default_hosts)?
    };
    out.sort_by_key(|r| (r != DOCKER_HUB, r.clone()));
    Ok(out)
}

/// The registries the enabled mirrors serve (upstream rows aside).
fn served(list: &MirrorList) -> BTreeSet<&str> {
    list.enabled()
        .filter(|m| !m.upstream)
        .flat_map(|m| {
            std::iter::once(m.registry.as_str())
                .filter(|r| !r.is_empty())
                .chain(m.prefix_for.iter().map(String::as_str))
        })
        .collect()
}

/// `--registry` names, checked, each once; `_default` only with
/// `default_hosts`.
fn checked(named: &[String], default_hosts: bool) -> Result<Vec<String>, ApplyError> {
    let mut out: Vec<String> = Vec::new();
    for r in named {
        let r = match r.as_str() {
            DEFAULT_HOSTS if default_hosts => r.clone(),
            DEFAULT_HOSTS => {
                return Err(ApplyError::Refused(
                    "--registry _default (containerd's hosts directory for every other registry) goes with --target containerd --via URL".into(),
                ))
            }
            _ => crate::config::validate_registry(r)
                .map_err(|e| ApplyError::Refused(format!("--registry: {e}")))?,
        };
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_takes_any_registry_and_default_for_containerd_only() {
        let list = MirrorList::load(&[], None).unwrap();
        let all = via_registries(&list, &[], true).unwrap();
        assert_eq!(all[0], DOCKER_HUB);
        let named = ["quay.io", "_default", "quay.io"].map(String::from);
        assert_eq!(
            via_registries(&list, &named, true).unwrap(),
            ["_default", "quay.io"]
        );
        assert!(via_registries(&list, &named, false).is_err());
        assert!(via_registries(&list, &["Bad/Name".to_owned()], true).is_err());
    }
}
