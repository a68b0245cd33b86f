//! Secrets for the local server, from the environment: each provider's current secret, and during a rotation
//! its previous one, in the variables the provider names (`EM_AGENT_<PROVIDER>_SECRET` and `..._PREVIOUS`).

use std::collections::HashMap;

use crate::ports::{PortError, SecretSource};

/// Read once at start-up: a secret changed in the environment needs a restart, like any process setting.
#[derive(Debug, Clone, Default)]
pub struct EnvSecrets {
    by_provider: HashMap<String, Vec<Vec<u8>>>,
    /// The variable that enables each known provider, for the error that says it is off.
    vars: HashMap<String, String>,
}

impl EnvSecrets {
    /// `providers`: each provider's name and the variables its secrets are read from, current first.
    pub fn from_env<'a>(providers: impl IntoIterator<Item = (&'a str, [String; 2])>) -> Self {
        Self::from_lookup(providers, |k| std::env::var(k).ok())
    }

    pub fn from_lookup<'a>(
        providers: impl IntoIterator<Item = (&'a str, [String; 2])>,
        get: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let mut s = EnvSecrets::default();
        for (name, vars) in providers {
            let secrets: Vec<Vec<u8>> = vars
                .iter()
                .filter_map(|v| get(v).filter(|s| !s.is_empty()))
                .map(String::into_bytes)
                .collect();
            if !secrets.is_empty() {
                s.by_provider.insert(name.to_string(), secrets);
            }
            let [current, _] = vars;
            s.vars.insert(name.to_string(), current);
        }
        s
    }

    pub fn with(mut self, provider: &str, secret: &str) -> Self {
        self.by_provider
            .entry(provider.to_string())
            .or_default()
            .push(secret.as_bytes().to_vec());
        self
    }

    /// The providers that have a secret, by name.
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

    fn enable_hint(&self, provider: &str) -> String {
        match self.vars.get(provider) {
            Some(var) => format!("set {var} to enable it"),
            None => format!("configure a secret for {provider} to enable it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> (&str, [String; 2]) {
        let v = format!("EM_AGENT_{}_SECRET", name.to_uppercase());
        (name, [v.clone(), format!("{v}_PREVIOUS")])
    }

    #[tokio::test]
    async fn a_provider_without_a_secret_is_disabled() {
        let s =
            EnvSecrets::from_lookup(
                [vars("github"), vars("gitlab"), vars("pagerduty")],
                |k| match k {
                    "EM_AGENT_GITHUB_SECRET" => Some("new".into()),
                    "EM_AGENT_GITHUB_SECRET_PREVIOUS" => Some("old".into()),
                    "EM_AGENT_GITLAB_SECRET" => Some(String::new()),
                    _ => None,
                },
            );
        assert_eq!(
            s.secrets("github").await.unwrap(),
            Some(vec![b"new".to_vec(), b"old".to_vec()])
        );
        assert_eq!(s.secrets("gitlab").await.unwrap(), None);
        assert_eq!(s.secrets("pagerduty").await.unwrap(), None);
        assert_eq!(s.enabled(), vec!["github"]);
        assert_eq!(
            s.enable_hint("gitlab"),
            "set EM_AGENT_GITLAB_SECRET to enable it"
        );
    }
}
