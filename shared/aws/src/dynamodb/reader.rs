//! The metric queries: `impl MetricsReader`, a service's observations read from the day items of a window.

use tokio::task::JoinSet;

use super::codec::get_s;
use super::keys::{day_text, metric_pk};
use super::store::DynamoStore;
use em_core::ports::{DeliveryFacts, FactSources, MetricsReader, PortError, Store};
use em_core::rows::{blob, Linked, Observations};
use em_core::time::Millis;

/// Services whose observations one query reads at once.
const READ_CONCURRENCY: usize = 16;

impl DynamoStore {
    async fn service_observations(
        &self,
        service: String,
        from: Millis,
        to: Millis,
    ) -> Result<Observations, PortError> {
        let mut out = Observations::default();
        let Some(head) = self.head(&service).await? else {
            return Ok(out);
        };
        let g = &head.generation;
        let items = self
            .query_all(
                metric_pk(&service),
                Some((
                    format!("d#{g}#{}", day_text(from)),
                    format!("d#{g}#{}#~", day_text(to - 1)),
                )),
                true,
            )
            .await?;
        for item in items {
            let bytes = item
                .get("rows")
                .and_then(|v| v.as_b().ok())
                .ok_or_else(|| PortError::invalid("day item without binary rows"))?;
            if let Some(obs) = blob::decode_stored(
                bytes.as_ref(),
                &service,
                &get_s(&item, "sk").unwrap_or_default(),
            ) {
                out.extend_within(obs, from, to);
            }
        }
        Ok(out)
    }
}

impl MetricsReader for DynamoStore {
    async fn sources(&self) -> Result<FactSources, PortError> {
        Store::fact_sources(self).await
    }

    async fn observations(
        &self,
        services: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> Result<Observations, PortError> {
        if from >= to {
            return Ok(Observations::default());
        }
        let services = match services {
            Some(s) => s,
            None => self.services().await?,
        };
        // Services are read a bounded number at a time, however many a team or the whole table has.
        let mut tasks = JoinSet::new();
        let mut parts = Vec::new();
        for (i, service) in services.into_iter().enumerate() {
            if tasks.len() >= READ_CONCURRENCY {
                if let Some(r) = tasks.join_next().await {
                    let (i, rows) = r.map_err(PortError::transient)?;
                    parts.push((i, rows?));
                }
            }
            let store = self.clone();
            tasks.spawn(async move { (i, store.service_observations(service, from, to).await) });
        }
        while let Some(r) = tasks.join_next().await {
            let (i, rows) = r.map_err(PortError::transient)?;
            parts.push((i, rows?));
        }
        parts.sort_by_key(|p| p.0);
        let mut out = Observations::default();
        for (_, p) in parts {
            out.extend_within(p, from, to);
        }
        Ok(out)
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
        let services = match services {
            Some(s) => s,
            None => self.services().await?,
        };
        let mut out = Vec::with_capacity(services.len());
        for service in services {
            let rows = self.rows_between(&service, from, Some(to)).await?;
            out.push((service, rows));
        }
        Ok(out)
    }

    async fn delivery(
        &self,
        repos: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> Result<DeliveryFacts, PortError> {
        self.delivery_facts(repos, from, to).await
    }

    async fn shipped(
        &self,
        service: String,
        shas: Vec<String>,
    ) -> Result<Vec<(String, Millis)>, PortError> {
        self.shipped_shas(&service, shas).await
    }
}
