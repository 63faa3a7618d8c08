//! The principal named by a client certificate.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// An error deriving a principal from a certificate.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("the connection presented no client certificate")]
    NoCertificate,
    #[error("the client certificate cannot be parsed")]
    Unparsable,
    #[error("the client certificate names no identity: no SAN URI, SAN DNS name or subject CN")]
    NoIdentity,
    #[error(
        "the client certificate's identity is not valid UTF-8 text without control characters"
    )]
    InvalidText,
}

/// Returns the principal of a DER certificate: its first SAN URI, else its first SAN
/// DNS name, else its subject common name. The certificate must already be verified.
pub fn principal_from_certificate(der: &[u8]) -> Result<String, IdentityError> {
    let (_, certificate) = X509Certificate::from_der(der).map_err(|_| IdentityError::Unparsable)?;

    let mut first_dns = None;
    if let Ok(Some(san)) = certificate.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => return checked(uri),
                GeneralName::DNSName(dns) if first_dns.is_none() => first_dns = Some(*dns),
                _ => {}
            }
        }
    }
    if let Some(dns) = first_dns {
        return checked(dns);
    }

    let common_name = certificate
        .subject()
        .iter_common_name()
        .next()
        .ok_or(IdentityError::NoIdentity)?;
    let text = common_name
        .as_str()
        .map_err(|_| IdentityError::InvalidText)?;
    checked(text)
}

fn checked(text: &str) -> Result<String, IdentityError> {
    if text.is_empty() {
        return Err(IdentityError::NoIdentity);
    }
    if text.chars().any(char::is_control) {
        return Err(IdentityError::InvalidText);
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn certificate(common_name: Option<&str>, sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        if let Some(common_name) = common_name {
            name.push(DnType::CommonName, common_name);
        }
        params.distinguished_name = name;
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn uri_preferred_over_dns_and_cn() {
        let der = certificate(
            Some("cn-name"),
            vec![
                SanType::DnsName("svc.example".try_into().unwrap()),
                SanType::URI("spiffe://example.org/app".try_into().unwrap()),
            ],
        );
        assert_eq!(
            principal_from_certificate(&der).unwrap(),
            "spiffe://example.org/app"
        );
    }

    #[test]
    fn dns_preferred_over_cn() {
        let der = certificate(
            Some("cn-name"),
            vec![SanType::DnsName("svc.example".try_into().unwrap())],
        );
        assert_eq!(principal_from_certificate(&der).unwrap(), "svc.example");
    }

    #[test]
    fn common_name_used_last() {
        let der = certificate(Some("admin"), vec![]);
        assert_eq!(principal_from_certificate(&der).unwrap(), "admin");
    }

    #[test]
    fn certificate_without_identity_rejected() {
        let der = certificate(None, vec![]);
        assert_eq!(
            principal_from_certificate(&der),
            Err(IdentityError::NoIdentity)
        );
    }

    #[test]
    fn garbage_rejected() {
        assert_eq!(
            principal_from_certificate(b"not a certificate"),
            Err(IdentityError::Unparsable)
        );
    }
}
