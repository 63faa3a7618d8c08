//! `ravelin token`: create, list and revoke bearer tokens in the token file.
//!
//! The file holds only each token's SHA-256, so `create` prints the token once and it
//! cannot be shown again. Writes replace the file atomically (a new file in the same
//! directory, synced, then renamed over the old one), with mode 0600 and the owner of
//! the file it replaces. A running server notices the change on its next token request.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use auth::token::{format_token, hex, token_hash, TokenFile, TokenRecord, ID_CHARS, SECRET_CHARS};

/// The maximum lifetime `--expires` accepts: ten years.
const MAX_LIFETIME_SECONDS: i64 = 3650 * 86_400;

/// Parses a lifetime such as `30d`, `12h` or `90m` into seconds.
pub fn parse_lifetime(text: &str) -> Result<i64> {
    let invalid = || {
        anyhow::anyhow!(
            "invalid lifetime [{text}]: expected a whole number followed by d (days), h (hours) or m (minutes), such as 30d"
        )
    };
    let split = text.len().checked_sub(1).ok_or_else(invalid)?;
    let (number, unit) = text.split_at_checked(split).ok_or_else(invalid)?;
    let count: i64 = number.parse().map_err(|_| invalid())?;
    let unit_seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        _ => return Err(invalid()),
    };
    let seconds = count.checked_mul(unit_seconds).ok_or_else(invalid)?;
    if seconds <= 0 || seconds > MAX_LIFETIME_SECONDS {
        bail!("invalid lifetime [{text}]: expected more than 0 and at most 3650d");
    }
    Ok(seconds)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

fn read_file(path: &Path) -> Result<TokenFile> {
    if !path.exists() {
        return Ok(TokenFile::default());
    }
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    TokenFile::parse(&text).with_context(|| format!("invalid token file {}", path.display()))
}

fn write_file(path: &Path, tokens: &TokenFile) -> Result<()> {
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut random = [0u8; 8];
    getrandom::fill(&mut random)
        .map_err(|error| anyhow::anyhow!("cannot get random bytes: {error}"))?;
    let staging: PathBuf = directory.join(format!(".tokens-{}.tmp", hex(&random)));
    let written = (|| -> Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
        keep_owner(&file, path, directory)
            .with_context(|| format!("cannot set the owner of {}", staging.display()))?;
        file.write_all(tokens.to_toml().as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", staging.display()))?;
        fs::rename(&staging, path)
            .with_context(|| format!("cannot replace the token file {}", path.display()))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&staging);
    }
    written
}

/// Gives a new token file, created by root, the owner of the file it replaces, or of
/// its directory when there is none. A server started as root serves as another user
/// and rereads the file as that user. It could not read a file owned by root with mode
/// 0600, so revocations would not take effect.
fn keep_owner(file: &fs::File, path: &Path, directory: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;

    if file.metadata()?.uid() != 0 {
        return Ok(());
    }
    let owner = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => fs::metadata(directory)?,
        Err(error) => return Err(error),
    };
    std::os::unix::fs::fchown(file, Some(owner.uid()), Some(owner.gid()))
}

/// Creates a token for `principal` valid for `lifetime_seconds`; returns the token.
pub fn create(path: &Path, principal: &str, lifetime_seconds: i64) -> Result<String> {
    if principal.is_empty() || principal.chars().any(char::is_control) {
        bail!(
            "invalid principal [{}]: expected a certificate identity",
            principal.escape_debug()
        );
    }
    let mut tokens = read_file(path)?;
    let mut random = [0u8; ID_CHARS / 2 + SECRET_CHARS / 2];
    getrandom::fill(&mut random)
        .map_err(|error| anyhow::anyhow!("cannot get random bytes: {error}"))?;
    let (id_bytes, secret_bytes) = random.split_at(ID_CHARS / 2);
    let id = hex(id_bytes);
    let token = format_token(&id, &hex(secret_bytes));
    let created = now_unix();
    tokens.token.push(TokenRecord {
        id,
        principal: principal.to_string(),
        sha256: token_hash(&token),
        created_unix: created,
        expires_unix: created + lifetime_seconds,
        revoked: false,
    });
    write_file(path, &tokens)?;
    Ok(token)
}

/// Returns a table of the tokens: id, principal, expiry and state.
pub fn list(path: &Path) -> Result<String> {
    let tokens = read_file(path)?;
    let now = now_unix();
    let mut text = format!(
        "{:<16}  {:<10}  {:<20}  principal\n",
        "id", "state", "expires (UTC)"
    );
    for record in &tokens.token {
        let state = if record.revoked {
            "revoked"
        } else if now >= record.expires_unix {
            "expired"
        } else {
            "active"
        };
        text.push_str(&format!(
            "{:<16}  {:<10}  {:<20}  {}\n",
            record.id,
            state,
            utc(record.expires_unix),
            record.principal
        ));
    }
    Ok(text)
}

/// Marks a token revoked. Revoking a revoked token is not an error.
pub fn revoke(path: &Path, id: &str) -> Result<()> {
    let mut tokens = read_file(path)?;
    let Some(record) = tokens.token.iter_mut().find(|record| record.id == id) else {
        bail!(
            "no token with id [{}] in {}",
            id.escape_debug(),
            path.display()
        );
    };
    record.revoked = true;
    write_file(path, &tokens)
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM:SS`.
fn utc(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(moment) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            moment.year(),
            u8::from(moment.month()),
            moment.day(),
            moment.hour(),
            moment.minute(),
            moment.second()
        ),
        Err(_) => unix.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse() {
        assert_eq!(parse_lifetime("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_lifetime("12h").unwrap(), 12 * 3_600);
        assert_eq!(parse_lifetime("90m").unwrap(), 90 * 60);
        for bad in [
            "",
            "d",
            "30",
            "30s",
            "-1d",
            "0d",
            "3651d",
            "1.5d",
            "99999999999999999d",
            "é",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_list_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let token = create(&path, "alice", 3600).unwrap();
        let tokens = read_file(&path).unwrap();
        assert_eq!(tokens.check(&token, now_unix()), Ok("alice"));
        let mode = fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(!fs::read_to_string(&path).unwrap().contains(&token));

        let id = &tokens.token[0].id;
        assert!(list(&path).unwrap().contains("active"));
        revoke(&path, id).unwrap();
        assert!(list(&path).unwrap().contains("revoked"));
        assert!(revoke(&path, "0000000000000000").is_err());
    }
}
