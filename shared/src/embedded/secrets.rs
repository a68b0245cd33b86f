//! Secrets for the local server, from the environment: `EM_AGENT_<PROVIDER>_SECRET`, and during a rotation
//! `EM_AGENT_<PROVIDER>_SECRET_PREVIOUS` beside it.

use std::collections::HashMap;

use crate::ports::{PortError, SecretSource};
use crate::providers::{all, secret_env_var};

/// Read once at start-up: a secret changed in the environment needs a restart, like any process setting.
#[derive(Debug, Clone, Default)]
pub struct EnvSecrets {
    by_provider: HashMap<String, Vec<Vec<u8>>>,
}

impl EnvSecrets {
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut by_provider = HashMap::new();
        for p in all() {
            let var = secret_env_var(p.name());
            let mut secrets = Vec::new();
            for v in [var.clone(), format!("{var}_PREVIOUS")] {
                if let Some(s) = get(&v).filter(|s| !s.is_empty()) {
                    secrets.push(s.into_bytes());
                }
            }
            if !secrets.is_empty() {
                by_provider.insert(p.name().to_string(), secrets);
            }
        }
        EnvSecrets { by_provider }
    }

    pub fn with(mut self, provider: &str, secret: &str) -> Self {
        self.by_provider
            .entry(provider.to_string())
            .or_default()
            .push(secret.as_bytes().to_vec());
        self
    }

    pub fn enabled(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_provider.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

impl SecretSource for EnvSecrets {
    async fn secrets(&self, provider: &str) -> Result<Option<Vec<Vec<u8>>>, PortError> {
        Ok(self.by_provider.get(provider).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_provider_without_a_secret_is_disabled() {
        let s = EnvSecrets::from_lookup(|k| match k {
            "EM_AGENT_GITHUB_SECRET" => Some("new".into()),
            "EM_AGENT_GITHUB_SECRET_PREVIOUS" => Some("old".into()),
            "EM_AGENT_GITLAB_SECRET" => Some(String::new()),
            _ => None,
        });
        assert_eq!(
            s.secrets("github").await.unwrap(),
            Some(vec![b"new".to_vec(), b"old".to_vec()])
        );
        assert_eq!(s.secrets("gitlab").await.unwrap(), None);
        assert_eq!(s.secrets("pagerduty").await.unwrap(), None);
        assert_eq!(s.enabled(), vec!["github"]);
    }
}
