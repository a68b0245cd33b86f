//! What git hosts' push events share: the commits they list, and the rule that only a push to the default
//! branch carries changes (a tag, another branch or a deletion does not).

use em_core::domain::{is_null_sha, Commit, Fact, Push};
use em_core::time::Timestamp;
use serde::Deserialize;

#[derive(Deserialize)]
pub(crate) struct PushCommit {
    id: String,
    timestamp: Timestamp,
    #[serde(default)]
    message: String,
}

/// A push as a git host reports it.
pub(crate) struct PushEvent<'a> {
    pub provider: &'static str,
    pub repo: String,
    pub git_ref: &'a str,
    /// `None` when the payload does not say: then no push is known to reach it.
    pub default_branch: Option<&'a str>,
    pub before: String,
    pub after: String,
    /// The host's own deletion flag, where it sends one; an all-zero `after` is a deletion too.
    pub deleted: bool,
    pub commits: Vec<PushCommit>,
    /// Commits the push carried beyond those listed, where the host says how many it carried.
    pub unlisted: u32,
}

impl PushEvent<'_> {
    /// The push fact, or nothing when the push does not reach the default branch.
    pub(crate) fn into_facts(self) -> Vec<Fact> {
        let on_default = match (
            self.git_ref.strip_prefix("refs/heads/"),
            self.default_branch,
        ) {
            (Some(branch), Some(default)) => branch == default,
            _ => false,
        };
        if !on_default || self.deleted || is_null_sha(&self.after) {
            return Vec::new();
        }
        vec![Fact::Push(Push {
            provider: self.provider.into(),
            repo: self.repo,
            before: self.before,
            after: self.after,
            commits: self
                .commits
                .into_iter()
                .map(|c| Commit {
                    sha: c.id,
                    time: c.timestamp.0,
                    message: c.message,
                })
                .collect(),
            unlisted: self.unlisted,
        })]
    }
}

/// `owner/name` (or `group/sub/name` on GitLab) from a repository URL, without its host or `.git`.
pub(crate) fn repo_of_url(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
    // `host/owner/name` or `host:owner/name` (scp-like).
    let (_, path) = rest.split_once(['/', ':'])?;
    let path = path.trim_matches('/').trim_end_matches(".git");
    path.contains('/').then(|| path.to_string())
}

/// Whether `s` can name a git commit: hexadecimal, from the shortest abbreviation git accepts to a full
/// SHA-256 object name.
pub(crate) fn is_sha(s: &str) -> bool {
    (em_core::domain::MIN_SHA_LEN..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::repo_of_url;

    #[test]
    fn repositories_come_from_any_vcs_url() {
        for (url, want) in [
            (
                "https://github.com/circleci/webhook-service",
                Some("circleci/webhook-service"),
            ),
            ("https://bitbucket.org/acme/shop.git", Some("acme/shop")),
            (
                "https://gitlab.com/group/sub/project",
                Some("group/sub/project"),
            ),
            ("git@github.com:acme/shop.git", Some("acme/shop")),
            ("https://github.com/", None),
            ("not a url", None),
        ] {
            assert_eq!(repo_of_url(url).as_deref(), want, "{url}");
        }
    }
}
