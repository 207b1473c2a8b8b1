//! TLS material from PEM files, shared by the syslog and HTTP outputs: CA bundles and client identities
//! (a certificate chain with its private key, checked to belong together), read with `rustls-pki-types`.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};

/// The certificates of a PEM file (a CA bundle, or a chain leaf first); an error names the file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not PEM ({e:?})", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A client certificate chain (leaf first) and its private key.
pub type ClientIdentity = (
    Vec<CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
);

/// Reads a client certificate chain and its key (PEM) and checks that the key is the leaf's: the pair is
/// ready for rustls. Each error names the key (`client_cert` or `client_key`) at fault; both files are
/// read before any error is returned, so a config check reports both at once.
pub fn load_client_identity(
    cert: &Path,
    key: &Path,
) -> Result<ClientIdentity, Vec<(&'static str, String)>> {
    let chain = read_certs(cert).map_err(|e| ("client_cert", e));
    let private = std::fs::read(key)
        .map_err(|e| format!("cannot read {}: {e}", key.display()))
        .and_then(|bytes| {
            rustls_pki_types::PrivateKeyDer::from_pem_slice(&bytes)
                .map_err(|e| format!("{} holds no usable PEM private key ({e:?})", key.display()))
        })
        .map_err(|e| ("client_key", e));
    let (chain, private) = match (chain, private) {
        (Ok(c), Ok(p)) => (c, p),
        (c, p) => return Err(c.err().into_iter().chain(p.err()).collect()),
    };
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(private.clone_key())
        .map_err(|e| vec![("client_key", format!("{}: {e}", key.display()))])?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    if let Err(e) = certified.keys_match() {
        return Err(vec![(
            "client_key",
            format!(
                "{} is not the key of the first certificate in {} ({e})",
                key.display(),
                cert.display()
            ),
        )]);
    }
    Ok((chain, private))
}

/// What an output's TLS setup will read at start, read now (the preflight): each problem with the key at
/// fault (`ca_file`, `client_cert`, `client_key`).
pub fn check_files(
    ca_file: Option<&Path>,
    client_cert: Option<&(PathBuf, PathBuf)>,
) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if let Some(ca_file) = ca_file {
        if let Err(reason) = read_certs(ca_file) {
            problems.push(("ca_file", reason));
        }
    }
    if let Some((cert, key)) = client_cert {
        if let Err(errs) = load_client_identity(cert, key) {
            problems.extend(errs);
        }
    }
    problems
}

/// [`load_client_identity`] for the outputs' TLS setup at start: every error in one message.
pub fn client_identity(cert: &Path, key: &Path) -> Result<ClientIdentity, String> {
    load_client_identity(cert, key).map_err(|errs| {
        let all: Vec<String> = errs
            .into_iter()
            .map(|(field, reason)| format!("{field}: {reason}"))
            .collect();
        all.join("; ")
    })
}
