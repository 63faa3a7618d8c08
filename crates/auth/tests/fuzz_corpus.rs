//! Replays the committed fuzz corpora in `fuzz/corpus/` through the checks that the
//! cargo-fuzz targets run, so that plain `cargo test` on stable re-runs every seed and
//! every crash input that fuzzing found.
//!
//! The certificates in `fuzz/corpus/certificate_identity/` come from
//! `write_certificate_seeds` below, which is ignored because it rewrites those files:
//! `cargo test -p ravelin-auth --test fuzz_corpus -- --ignored`.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rcgen::{
    string::BmpString, CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, SanType,
    SignatureAlgorithm,
};

use ravelin_auth::fuzzing;

fn corpus_directory(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Returns the files of one target's corpus, sorted, and fails when there are none.
fn corpus_files(target: &str) -> Vec<PathBuf> {
    let directory = corpus_directory(target);
    let entries = std::fs::read_dir(&directory).unwrap_or_else(|error| {
        panic!(
            "cannot read the corpus directory {}: {error}",
            directory.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a corpus directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the corpus directory {} has no files",
        directory.display()
    );
    files
}

/// Runs `check` on every corpus file of `target` and fails naming each file that
/// panics. The panic messages appear in the test output above the failure.
fn replay(target: &str, check: fn(&[u8])) {
    let mut failures = Vec::new();
    for path in corpus_files(target) {
        let input = std::fs::read(&path).expect("a readable corpus file");
        if panic::catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            failures.push(path.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "corpus files that fail the {target} checks: {failures:#?}"
    );
}

#[test]
fn certificate_identity_corpus() {
    replay("certificate_identity", fuzzing::check_certificate_identity);
}

#[test]
fn policy_parse_corpus() {
    replay("policy_parse", fuzzing::check_policy_parse);
}

/// The generated certificates keep their principals: the seeds exercise each branch of
/// `principal_from_certificate`, and a regenerated seed must still do so.
#[test]
fn certificate_seeds_name_expected_principals() {
    let directory = corpus_directory("certificate_identity");
    for (file, expected) in [
        ("san_uri.der", Ok("spiffe://example.org/app")),
        ("san_dns.der", Ok("svc.example")),
        ("cn_only.der", Ok("admin")),
        (
            "no_identity.der",
            Err(ravelin_auth::IdentityError::NoIdentity),
        ),
        (
            "cn_control.der",
            Err(ravelin_auth::IdentityError::InvalidText),
        ),
        ("cn_bmp.der", Err(ravelin_auth::IdentityError::InvalidText)),
    ] {
        let der = std::fs::read(directory.join(file)).expect("a certificate seed");
        let principal = ravelin_auth::principal_from_certificate(&der);
        assert_eq!(
            principal.as_deref().map_err(Clone::clone),
            expected,
            "{file}"
        );
    }
}

/// Builds a self-signed certificate with a fresh key, which is then dropped.
fn self_signed(
    algorithm: &'static SignatureAlgorithm,
    common_name: Option<DnValue>,
    subject_alt_names: Vec<SanType>,
) -> Vec<u8> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    if let Some(common_name) = common_name {
        name.push(DnType::CommonName, common_name);
    }
    params.distinguished_name = name;
    params.subject_alt_names = subject_alt_names;
    let key = KeyPair::generate_for(algorithm).expect("a fresh key pair");
    params
        .self_signed(&key)
        .expect("a self-signed certificate")
        .der()
        .to_vec()
}

/// Writes the DER certificate seeds of the `certificate_identity` corpus, each signed
/// by a fresh key that is never stored.
#[test]
#[ignore = "rewrites the committed certificate seeds"]
fn write_certificate_seeds() {
    let uri = |text: &str| SanType::URI(text.try_into().expect("an IA5 URI"));
    let dns = |text: &str| SanType::DnsName(text.try_into().expect("an IA5 DNS name"));
    let text = |text: &str| Some(DnValue::from(text));
    let seeds = [
        (
            "san_uri.der",
            self_signed(
                &rcgen::PKCS_ECDSA_P256_SHA256,
                text("cn-name"),
                vec![dns("svc.example"), uri("spiffe://example.org/app")],
            ),
        ),
        (
            "san_dns.der",
            self_signed(
                &rcgen::PKCS_ED25519,
                text("cn-name"),
                vec![dns("svc.example"), dns("second.example")],
            ),
        ),
        (
            "cn_only.der",
            self_signed(&rcgen::PKCS_ECDSA_P384_SHA384, text("admin"), vec![]),
        ),
        (
            "no_identity.der",
            self_signed(&rcgen::PKCS_ECDSA_P256_SHA256, None, vec![]),
        ),
        (
            "cn_control.der",
            self_signed(&rcgen::PKCS_ECDSA_P256_SHA256, text("admin\nroot"), vec![]),
        ),
        (
            "cn_bmp.der",
            self_signed(
                &rcgen::PKCS_ECDSA_P256_SHA256,
                Some(DnValue::BmpString(
                    BmpString::try_from("bmp-name").expect("a BMP string"),
                )),
                vec![],
            ),
        ),
        (
            "san_ip_email.der",
            self_signed(
                &rcgen::PKCS_ED25519,
                text("fallback-cn"),
                vec![
                    SanType::IpAddress([127, 0, 0, 1].into()),
                    SanType::Rfc822Name("ops@example.org".try_into().expect("an IA5 address")),
                ],
            ),
        ),
        (
            "san_many_uris.der",
            self_signed(
                &rcgen::PKCS_ECDSA_P256_SHA256,
                None,
                vec![
                    uri("spiffe://example.org/first"),
                    uri("spiffe://example.org/second"),
                    dns("svc.example"),
                ],
            ),
        ),
    ];

    let directory = corpus_directory("certificate_identity");
    std::fs::create_dir_all(&directory).expect("the corpus directory");
    for (file, der) in seeds {
        std::fs::write(directory.join(file), der).expect("a written certificate seed");
    }
}
