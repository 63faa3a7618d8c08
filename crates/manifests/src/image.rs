//! Container image references: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.

use std::sync::LazyLock;

use regex::Regex;

/// Words that mark an image repository as a vector database, matched anywhere in the
/// lower-cased repository path (the registry host is not part of it).
pub const VECTOR_DATABASE_IMAGES: [&str; 3] = ["ravelin", "chroma", "qdrant"];

/// A tag that names a release: at least MAJOR.MINOR, optionally after a `v`, then
/// optionally a suffix such as `.4`, `-alpine` or `+build`. Tags like `1` or `16`
/// follow every minor release, so they do not count.
static VERSION_TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^v?[0-9]+\.[0-9]+([.+_-][0-9A-Za-z.+_-]*)?$").expect("valid version tag regex")
});

/// The parts of an image reference.
#[derive(Debug, PartialEq, Eq)]
pub struct ImageReference<'a> {
    /// The registry host, such as `ghcr.io` or `localhost:5000`, when one is given.
    pub registry: Option<&'a str>,
    /// The repository path, such as `chromadb/chroma`.
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// The pinning of an image reference: whether it fixes the content that runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Pinning {
    /// A valid `sha256` or `sha512` digest: the content is fixed.
    Digest,
    /// A release version tag without a digest.
    VersionTag,
    /// No tag and no digest, which pulls `latest`.
    NoTag,
    Latest,
    /// A tag that is not a release version, such as `stable` or `main`.
    OtherTag,
    /// An `@` part that is not a valid digest.
    InvalidDigest,
}

impl<'a> ImageReference<'a> {
    pub fn parse(image: &'a str) -> ImageReference<'a> {
        let (name_and_tag, digest) = match image.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (image, None),
        };

        // A colon after the last slash starts the tag; one before it is a registry port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |index| index + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(colon) => (
                &name_and_tag[..last_slash + colon],
                Some(&name_and_tag[last_slash + colon + 1..]),
            ),
            None => (name_and_tag, None),
        };

        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first), rest)
            }
            _ => (None, name),
        };
        ImageReference {
            registry,
            repository,
            tag,
            digest,
        }
    }

    pub fn pinning(&self) -> Pinning {
        if let Some(digest) = self.digest {
            return if is_valid_digest(digest) {
                Pinning::Digest
            } else {
                Pinning::InvalidDigest
            };
        }
        match self.tag {
            None => Pinning::NoTag,
            Some("latest") => Pinning::Latest,
            Some(tag) if VERSION_TAG.is_match(tag) => Pinning::VersionTag,
            Some(_) => Pinning::OtherTag,
        }
    }

    /// Returns whether the repository path names a vector database image.
    pub fn is_vector_database(&self) -> bool {
        let repository = self.repository.to_ascii_lowercase();
        VECTOR_DATABASE_IMAGES
            .iter()
            .any(|word| repository.contains(word))
    }
}

fn is_valid_digest(digest: &str) -> bool {
    let hex_length = match digest.split_once(':') {
        Some(("sha256", hex)) => (hex.len() == 64).then_some(hex),
        Some(("sha512", hex)) => (hex.len() == 128).then_some(hex),
        _ => None,
    };
    hex_length.is_some_and(|hex| {
        hex.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn reference_parts() {
        let reference = ImageReference::parse("localhost:5000/team/ravelin:1.2.3");
        assert_eq!(reference.registry, Some("localhost:5000"));
        assert_eq!(reference.repository, "team/ravelin");
        assert_eq!(reference.tag, Some("1.2.3"));
        assert_eq!(reference.digest, None);

        let reference = ImageReference::parse("chromadb/chroma");
        assert_eq!(reference.registry, None);
        assert_eq!(reference.repository, "chromadb/chroma");
        assert_eq!(reference.tag, None);

        let with_digest = format!("ghcr.io/x/qdrant:v1.12.4@{DIGEST}");
        let reference = ImageReference::parse(&with_digest);
        assert_eq!(reference.registry, Some("ghcr.io"));
        assert_eq!(reference.repository, "x/qdrant");
        assert_eq!(reference.tag, Some("v1.12.4"));
        assert_eq!(reference.digest, Some(DIGEST));
    }

    #[test]
    fn pinning_of_tags_and_digests() {
        let cases = [
            ("chromadb/chroma:1.0.15", Pinning::VersionTag),
            ("qdrant/qdrant:v1.12.4", Pinning::VersionTag),
            ("ravelin:0.1.0-rc1", Pinning::VersionTag),
            ("chromadb/chroma", Pinning::NoTag),
            ("localhost:5000/chroma", Pinning::NoTag),
            ("chromadb/chroma:latest", Pinning::Latest),
            ("qdrant/qdrant:1", Pinning::OtherTag),
            ("qdrant/qdrant:stable", Pinning::OtherTag),
            ("qdrant/qdrant@sha256:abc", Pinning::InvalidDigest),
            ("qdrant/qdrant:latest@sha256:ABC", Pinning::InvalidDigest),
        ];
        for (image, expected) in cases {
            assert_eq!(ImageReference::parse(image).pinning(), expected, "{image}");
        }
        let pinned = format!("chromadb/chroma:latest@{DIGEST}");
        assert_eq!(ImageReference::parse(&pinned).pinning(), Pinning::Digest);
    }

    #[test]
    fn vector_database_repositories() {
        for image in [
            "chromadb/chroma:1.0.15",
            "docker.io/qdrant/qdrant",
            "registry.example/ops/Ravelin-server:1.0",
        ] {
            assert!(ImageReference::parse(image).is_vector_database(), "{image}");
        }
        for image in ["nginx:1.27", "chroma.example.com/nginx:1.27"] {
            assert!(
                !ImageReference::parse(image).is_vector_database(),
                "{image}"
            );
        }
    }
}
