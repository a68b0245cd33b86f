//! The [`MetricsReader`] port: what the API reads, from the day observations, the linked rows and the
//! delivery facts.

use em_core::ports::{DeliveryFacts, FactSources, MetricsReader, PortError, Store};
use em_core::rows::{Linked, Observations};
use em_core::time::Millis;

use crate::days;
use crate::delivery;
use crate::links;
use crate::store::EmbeddedStore;

impl MetricsReader for EmbeddedStore {
    async fn sources(&self) -> Result<FactSources, PortError> {
        Store::fact_sources(self).await
    }

    async fn observations(
        &self,
        services: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> Result<Observations, PortError> {
        self.read(move |c| days::observations(c, services.as_deref(), from, to))
            .await
    }

    async fn read_meta(&self, key: String) -> Result<Option<String>, PortError> {
        Store::get_meta(self, key).await
    }

    async fn rows(
        &self,
        services: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(String, Linked)>, PortError> {
        self.read(move |c| {
            let services = match services {
                Some(s) => s,
                None => c
                    .prepare_cached(
                        "SELECT service FROM o_deployments UNION SELECT service FROM o_incidents",
                    )?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
            };
            services
                .into_iter()
                .map(|s| Ok((s.clone(), links::rows_between(c, &s, from, to)?)))
                .collect()
        })
        .await
    }

    async fn delivery(
        &self,
        repos: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> Result<DeliveryFacts, PortError> {
        self.read(move |c| delivery::delivery(c, repos.as_deref(), from, to))
            .await
    }

    async fn shipped(
        &self,
        service: String,
        shas: Vec<String>,
    ) -> Result<Vec<(String, Millis)>, PortError> {
        self.read(move |c| delivery::shipped(c, &service, &shas))
            .await
    }
}
