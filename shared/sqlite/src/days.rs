//! The observations the API reads: one blob per service-day, decoded and cut to the window asked for.

use rusqlite::{params, params_from_iter, Connection};

use em_core::rows::{blob, day_of, Observations};
use em_core::time::Millis;

/// The observations of `services` (all when `None`) in `[from, to)`: one blob per service-day.
pub(crate) fn observations(
    c: &Connection,
    services: Option<&[String]>,
    from: Millis,
    to: Millis,
) -> rusqlite::Result<Observations> {
    let mut out = Observations::default();
    if from >= to {
        return Ok(out);
    }
    let (first, last) = (day_of(from), day_of(to - 1));
    let mut add = |service: String, day: i64, bytes: Vec<u8>| -> rusqlite::Result<()> {
        if let Some(obs) = blob::decode_stored(&bytes, &service, &day.to_string()) {
            out.extend_within(obs, from, to);
        }
        Ok(())
    };
    match services {
        Some(list) => {
            let mut s = c.prepare_cached(
                "SELECT day, rows FROM o_days WHERE service = ?1 AND day >= ?2 AND day <= ?3",
            )?;
            for service in list {
                let blobs: Vec<(i64, Vec<u8>)> = s
                    .query_map(params![service, first, last], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                for (day, b) in blobs {
                    add(service.clone(), day, b)?;
                }
            }
        }
        None => {
            let rows: Vec<(String, i64, Vec<u8>)> = c
                .prepare_cached(
                    "SELECT service, day, rows FROM o_days WHERE day >= ?1 AND day <= ?2",
                )?
                .query_map(params_from_iter([first, last]), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            for (service, day, b) in rows {
                add(service, day, b)?;
            }
        }
    }
    Ok(out)
}
