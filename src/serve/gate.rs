//! Who may use the server, and over what: `--allow` networks (this
//! machine always may) and TLS (`--tls-cert`, `--tls-key`) so that other
//! machines' engines trust it without `insecure-registries`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use tokio_rustls::rustls;

/// `--allow`: a network (`10.0.0.0/8`, `fd00::/8`) or one address.
pub fn parse_allow(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("--allow {s:?}: give a network or an address, e.g. 10.0.0.0/8, 192.168.1.20 or fd00::/8")
        })
}

/// Whether `peer` may use the server: from this machine, or from a
/// network `allow` names; everyone when `allow` is empty.
pub fn allowed(allow: &[IpNet], peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    allow.is_empty() || peer.is_loopback() || allow.iter().any(|n| n.contains(&peer))
}

/// The TLS acceptor for `cert` (PEM, the server's certificate first, then
/// its chain) and `key` (PEM, PKCS#8, PKCS#1 or SEC1).
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in it; give a PEM file (-----BEGIN CERTIFICATE-----)",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "--tls-key {}: {e}; give the certificate's private key as PEM",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "--tls-cert {} and its key do not go together: {e}",
                cert.display()
            )
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_this_machine_are_allowed() {
        let allow = vec![
            parse_allow("10.1.0.0/16").unwrap(),
            parse_allow("192.168.1.20").unwrap(),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(allowed(&allow, ip("10.1.2.3")));
        assert!(allowed(&allow, ip("192.168.1.20")));
        assert!(
            allowed(&allow, ip("::ffff:10.1.9.9")),
            "mapped v4 on a v6 socket"
        );
        assert!(allowed(&allow, ip("127.0.0.1")) && allowed(&allow, ip("::1")));
        assert!(!allowed(&allow, ip("10.2.0.1")));
        assert!(!allowed(&allow, ip("192.168.1.21")));
        assert!(allowed(&[], ip("8.8.8.8")), "no --allow: everyone");
        assert!(parse_allow("10.0.0.0/33").is_err());
        assert!(parse_allow("example").is_err());
    }
}
