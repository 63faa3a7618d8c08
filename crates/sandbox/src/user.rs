//! The unprivileged user that a start as root switches to.
//!
//! Names are looked up in `/etc/passwd` directly, without NSS: the lookup runs once,
//! before any confinement, and must not load NSS modules or talk to a name service
//! daemon. A numeric `UID:GID` needs no entry at all, which suits container images
//! without a passwd file.

use std::fmt;
use std::str::FromStr;

use crate::SandboxError;

/// The user `ravelin serve` switches to when it starts as root, unless configured otherwise.
pub const DEFAULT_USER: &str = "nobody";

/// The file user names are looked up in.
const PASSWD: &str = "/etc/passwd";

/// The user a process started as root switches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetUser {
    /// A user name from `/etc/passwd`; the process takes the uid and primary gid of
    /// its entry.
    Name(String),
    /// A numeric uid and gid.
    Ids { uid: u32, gid: u32 },
}

impl Default for TargetUser {
    fn default() -> Self {
        TargetUser::Name(DEFAULT_USER.to_string())
    }
}

impl FromStr for TargetUser {
    type Err = SandboxError;

    /// Parses `NAME` or `UID:GID`. A name has 1-32 characters from `[A-Za-z0-9._-]`
    /// and does not start with `-`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some((uid, gid)) = text.split_once(':') {
            return match (uid.parse(), gid.parse()) {
                (Ok(uid), Ok(gid)) => Ok(TargetUser::Ids { uid, gid }),
                _ => Err(SandboxError::InvalidUser(text.to_string())),
            };
        }
        let valid = (1..=32).contains(&text.len())
            && !text.starts_with('-')
            && text
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte));
        if valid {
            Ok(TargetUser::Name(text.to_string()))
        } else {
            Err(SandboxError::InvalidUser(text.to_string()))
        }
    }
}

impl fmt::Display for TargetUser {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetUser::Name(name) => formatter.write_str(name),
            TargetUser::Ids { uid, gid } => write!(formatter, "{uid}:{gid}"),
        }
    }
}

/// A target user with its ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    /// The name for messages: the user name, or `UID:GID`.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TargetUser {
    /// Looks up the uid and gid, reading `/etc/passwd` for a name.
    pub(crate) fn resolve(&self) -> Result<ResolvedUser, SandboxError> {
        match self {
            TargetUser::Ids { uid, gid } => Ok(ResolvedUser {
                name: self.to_string(),
                uid: *uid,
                gid: *gid,
            }),
            TargetUser::Name(name) => {
                let text =
                    std::fs::read_to_string(PASSWD).map_err(|source| SandboxError::Passwd {
                        name: name.clone(),
                        source,
                    })?;
                let (uid, gid) = find_in_passwd(&text, name)
                    .ok_or_else(|| SandboxError::UnknownUser(name.clone()))?;
                Ok(ResolvedUser {
                    name: name.clone(),
                    uid,
                    gid,
                })
            }
        }
    }
}

/// Returns the uid and primary gid of `name` in passwd(5) text
/// (`name:password:uid:gid:gecos:home:shell`). Lines that do not parse are skipped.
fn find_in_passwd(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # a comment line\n\
        broken:x:notanumber:1::/:/bin/false\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        ravelin:x:10001:10002::/var/lib/ravelin:/usr/sbin/nologin\n";

    #[test]
    fn passwd_lookup_by_name() {
        assert_eq!(find_in_passwd(PASSWD_TEXT, "nobody"), Some((65534, 65534)));
        assert_eq!(find_in_passwd(PASSWD_TEXT, "ravelin"), Some((10001, 10002)));
        assert_eq!(find_in_passwd(PASSWD_TEXT, "root"), Some((0, 0)));
    }

    #[test]
    fn passwd_lookup_misses() {
        assert_eq!(find_in_passwd(PASSWD_TEXT, "absent"), None);
        assert_eq!(find_in_passwd(PASSWD_TEXT, "broken"), None);
        assert_eq!(find_in_passwd(PASSWD_TEXT, "nobod"), None);
        assert_eq!(find_in_passwd(PASSWD_TEXT, ""), None);
    }

    #[test]
    fn user_parses_name_or_ids() {
        assert_eq!(
            "nobody".parse::<TargetUser>().unwrap(),
            TargetUser::Name("nobody".into())
        );
        assert_eq!(
            "10001:10002".parse::<TargetUser>().unwrap(),
            TargetUser::Ids {
                uid: 10001,
                gid: 10002
            }
        );
        assert_eq!(TargetUser::default().to_string(), DEFAULT_USER);
    }

    #[test]
    fn user_rejects_invalid_text() {
        for bad in [
            "",
            "-rf",
            "a b",
            "x:y",
            "1:",
            ":1",
            "1:2:3",
            "../etc",
            "name/with/slash",
            &"n".repeat(33),
        ] {
            assert!(bad.parse::<TargetUser>().is_err(), "{bad:?}");
        }
    }
}
