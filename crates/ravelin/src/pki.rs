//! The development PKI: a CA, a server certificate for the local host, and client
//! certificates whose subject common name is the principal.
//!
//! Keys are ECDSA P-256. The CA key stays in the data directory with mode 0600, which
//! suits development. Production deployments bring certificates from their own CA and
//! point the configuration at them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// File names inside the PKI directory.
pub const CA_CERTIFICATE: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERTIFICATE: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
pub const CLIENTS_DIR: &str = "clients";

/// Validity of the development CA and of the certificates it issues by default.
const CA_DAYS: i64 = 3650;
pub const DEFAULT_LEAF_DAYS: i64 = 365;

/// Names the development server certificate is valid for.
const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Creates the CA, the server certificate and the `admin` client certificate in `dir`.
pub fn create_development_pki(dir: &Path) -> Result<()> {
    create_private_dir(dir)?;
    create_private_dir(&dir.join(CLIENTS_DIR))?;

    let ca_key = KeyPair::generate().context("cannot generate the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = common_name("Ravelin development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca_params, CA_DAYS);
    let ca_certificate = ca_params.self_signed(&ca_key)?;
    write_new(&dir.join(CA_KEY), ca_key.serialize_pem().as_bytes(), 0o600)?;
    write_new(
        &dir.join(CA_CERTIFICATE),
        ca_certificate.pem().as_bytes(),
        0o644,
    )?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let mut server_params = CertificateParams::new(SERVER_NAMES.map(String::from).to_vec())?;
    server_params.distinguished_name = common_name("localhost");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut server_params, DEFAULT_LEAF_DAYS);
    let server_certificate = server_params.signed_by(&server_key, &issuer)?;
    write_new(
        &dir.join(SERVER_KEY),
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_new(
        &dir.join(SERVER_CERTIFICATE),
        server_certificate.pem().as_bytes(),
        0o644,
    )?;

    issue_client_with(&issuer, "admin", &dir.join(CLIENTS_DIR), DEFAULT_LEAF_DAYS)?;
    Ok(())
}

/// Issues a client certificate for `name` from the CA in `pki_dir` into `out_dir`.
/// Returns the certificate and key paths.
pub fn issue_client(
    pki_dir: &Path,
    name: &str,
    out_dir: &Path,
    days: i64,
) -> Result<(PathBuf, PathBuf)> {
    let ca_pem = fs::read_to_string(pki_dir.join(CA_CERTIFICATE)).with_context(|| {
        format!(
            "cannot read the CA certificate {}",
            pki_dir.join(CA_CERTIFICATE).display()
        )
    })?;
    let ca_key_pem = fs::read_to_string(pki_dir.join(CA_KEY))
        .with_context(|| format!("cannot read the CA key {}", pki_dir.join(CA_KEY).display()))?;
    let ca_key =
        KeyPair::from_pem(&ca_key_pem).context("the CA key is not a valid PEM private key")?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("the CA certificate cannot be parsed")?;
    create_private_dir(out_dir)?;
    issue_client_with(&issuer, name, out_dir, days)
}

fn issue_client_with(
    issuer: &Issuer<'_, KeyPair>,
    name: &str,
    out_dir: &Path,
    days: i64,
) -> Result<(PathBuf, PathBuf)> {
    validate_principal_name(name)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = common_name(name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, days);
    let certificate = params.signed_by(&key, issuer)?;

    let certificate_path = out_dir.join(format!("{name}.pem"));
    let key_path = out_dir.join(format!("{name}.key"));
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&certificate_path, certificate.pem().as_bytes(), 0o644)?;
    Ok((certificate_path, key_path))
}

/// Client names become file names, so they are restricted to a safe alphabet.
fn validate_principal_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if !valid {
        bail!("invalid client name {name:?}: use 1-64 characters from [A-Za-z0-9._-], not starting with '.'");
    }
    Ok(())
}

fn common_name(name: &str) -> DistinguishedName {
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, name);
    distinguished_name
}

fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // Backdated by an hour so a client whose clock is slightly behind accepts it.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

/// Creates a directory with mode 0700 if it does not exist.
pub fn create_private_dir(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create directory {}", path.display()))
}

use std::os::unix::fs::DirBuilderExt;

/// Writes a new file with `mode`; fails if it exists, so nothing is overwritten.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_restricted() {
        for name in ["admin", "svc-a.b_c", "A1"] {
            assert!(validate_principal_name(name).is_ok(), "{name}");
        }
        for name in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(65)] {
            assert!(validate_principal_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn issued_client_has_principal() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        create_development_pki(&pki).unwrap();
        let (certificate, key) = issue_client(&pki, "reader", &pki.join(CLIENTS_DIR), 30).unwrap();
        assert!(key.exists());

        let pem = fs::read(certificate).unwrap();
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(auth::principal_from_certificate(&der).unwrap(), "reader");
        assert!(issue_client(&pki, "reader", &pki.join(CLIENTS_DIR), 30).is_err());
    }
}
