//! Bearer tokens on requests: reading them from the headers, checking them against the
//! token file, and combining them with the client certificate.
//!
//! A request may carry a token in `Authorization: Bearer …` or `X-Chroma-Token`, the
//! two headers the stock Chroma clients send. A token never replaces a certificate
//! unless the operator allows tokens without one: when both are present they must name
//! the same principal. The token file is read again whenever its modification time or
//! size changes, so `ravelin token revoke` takes effect on the next request.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use api::error::{ApiError, ErrorKind};
use auth::token::{TokenFile, TOKEN_CHARS};
use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::listener::Client;

/// The header the Chroma clients use for a token without the `Bearer` scheme.
const CHROMA_TOKEN_HEADER: &str = "x-chroma-token";

/// Longer token headers are refused before any parsing; a real token has
/// [`TOKEN_CHARS`] characters.
const MAX_TOKEN_HEADER_CHARS: usize = 4 * TOKEN_CHARS;

/// Token settings of the server.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub file: PathBuf,
    /// Whether a connection without a client certificate may authenticate with a token
    /// alone. Off by default.
    pub without_certificate: bool,
}

/// The token file as last read.
pub struct TokenStore {
    settings: TokenSettings,
    loaded: RwLock<Loaded>,
}

struct Loaded {
    /// Modification time and size of the file when read; `None` while it is missing.
    stamp: Option<(SystemTime, u64)>,
    tokens: Arc<TokenFile>,
}

fn unauthenticated(reason: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorKind::Unauthenticated,
        format!("Unauthenticated: {reason}"),
    )
}

impl TokenStore {
    /// Reads the token file. A missing file means no tokens; an invalid one is an
    /// error.
    pub fn open(settings: TokenSettings) -> Result<TokenStore, String> {
        let (stamp, tokens) = read(&settings.file)?;
        Ok(TokenStore {
            settings,
            loaded: RwLock::new(Loaded {
                stamp,
                tokens: Arc::new(tokens),
            }),
        })
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Returns the tokens, reading the file again if it changed. A file that became
    /// invalid leaves the previous tokens in force, and the reason is logged.
    fn current(&self) -> Arc<TokenFile> {
        let stamp = stamp_of(&self.settings.file);
        {
            let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
            if loaded.stamp == stamp {
                return Arc::clone(&loaded.tokens);
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(PoisonError::into_inner);
        match read(&self.settings.file) {
            Ok((stamp, tokens)) => {
                tracing::info!(path = %self.settings.file.display(), tokens = tokens.token.len(), "reloaded the token file");
                loaded.stamp = stamp;
                loaded.tokens = Arc::new(tokens);
            }
            Err(error) => {
                tracing::error!(%error, "cannot reload the token file; the previous tokens stay in force");
                // Not read again until it changes once more.
                loaded.stamp = stamp;
            }
        }
        Arc::clone(&loaded.tokens)
    }
}

fn stamp_of(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

fn read(path: &std::path::Path) -> Result<(Option<(SystemTime, u64)>, TokenFile), String> {
    let stamp = stamp_of(path);
    if stamp.is_none() && !path.exists() {
        return Ok((None, TokenFile::default()));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read the token file {}: {error}", path.display()))?;
    let tokens = TokenFile::parse(&text)
        .map_err(|error| format!("invalid token file {}: {error}", path.display()))?;
    Ok((stamp, tokens))
}

/// Returns the token a request carries, or `None`. Fails for a malformed header, two
/// `Authorization` headers, or two headers that carry different tokens.
fn presented_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    fn take<'a>(found: &mut Option<&'a str>, token: &'a str) -> Result<(), ApiError> {
        if token.len() > MAX_TOKEN_HEADER_CHARS {
            return Err(unauthenticated("the token header is too long"));
        }
        match found {
            Some(previous) if *previous != token => {
                Err(unauthenticated("the request carries two different tokens"))
            }
            _ => {
                *found = Some(token);
                Ok(())
            }
        }
    }
    let mut found: Option<&str> = None;

    let mut authorization = headers.get_all(AUTHORIZATION).iter();
    if let Some(value) = authorization.next() {
        if authorization.next().is_some() {
            return Err(unauthenticated(
                "the request has more than one Authorization header",
            ));
        }
        let text = value
            .to_str()
            .map_err(|_| unauthenticated("the Authorization header is not ASCII text"))?;
        let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthenticated(
                "the Authorization header must use the Bearer scheme",
            ));
        }
        take(&mut found, token.trim())?;
    }
    for value in headers.get_all(CHROMA_TOKEN_HEADER) {
        let text = value
            .to_str()
            .map_err(|_| unauthenticated("the X-Chroma-Token header is not ASCII text"))?;
        take(&mut found, text.trim())?;
    }
    Ok(found)
}

/// Returns the principal of a request: the certificate's, or the token's when the
/// request carries one. Every failure is a 401 whose message never repeats the token.
pub(crate) fn authenticate(
    tokens: Option<&TokenStore>,
    client: &Client,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let token = presented_token(headers)?;
    let Some(token) = token else {
        return client.principal.clone().map_err(unauthenticated);
    };
    let Some(store) = tokens else {
        return Err(unauthenticated(
            "bearer tokens are not enabled on this server; authenticate with the client certificate alone",
        ));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0);
    let current = store.current();
    let token_principal = current.check(token, now).map_err(unauthenticated)?;
    match &client.principal {
        Ok(certificate_principal) if certificate_principal != token_principal => {
            Err(unauthenticated(
                "the token belongs to a different principal than the client certificate",
            ))
        }
        Ok(_) => Ok(token_principal.to_string()),
        Err(auth::IdentityError::NoCertificate) if store.settings.without_certificate => {
            Ok(token_principal.to_string())
        }
        Err(error) => Err(unauthenticated(error)),
    }
}
