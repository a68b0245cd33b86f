//! Grafana alerting's webhook contact point (unified alerting, Grafana 8 and later). Grafana 12 signs when the
//! contact point has an HMAC secret: `X-Grafana-Alerting-Signature: <hex HMAC-SHA256>` of the body, or of
//! `{timestamp}:{body}` with the timestamp (Unix seconds) in the header the contact point names, which EM
//! Agent reads as `X-Grafana-Alerting-Timestamp` and holds to the replay window. Earlier versions, and a contact
//! point without that secret, authenticate with a bearer token or basic auth instead. The body is
//! Alertmanager's: each alert one incident per firing episode (docs/providers/grafana.md).

use em_core::domain::Fact;

use crate::alertmanager::alert_facts;
use crate::auth::{
    Algorithm, Auth, Encoding, Hmac, Key, SignedContent, TimeUnit, Timestamp, TimestampSource,
};
use crate::{ParseError, Provider};

const NAME: &str = "grafana";

const SIGNATURE: &str = "X-Grafana-Alerting-Signature";

/// The signature over the body alone, for a contact point with no timestamp header.
const SIGNED_BODY: Hmac = Hmac {
    header: SIGNATURE,
    algorithm: Algorithm::Sha256,
    encoding: Encoding::Hex,
    prefix: "",
    separator: None,
    message: SignedContent::Body,
    timestamp: None,
    key: Key::Raw,
};

pub const PROVIDER: Provider = Provider {
    name: NAME,
    title: "Grafana",
    auth: Auth::FirstOf(&[
        Auth::Hmac(Hmac {
            message: SignedContent::TimestampAndBody {
                before: "",
                between: ":",
            },
            timestamp: Some(Timestamp {
                source: TimestampSource::Header("X-Grafana-Alerting-Timestamp"),
                unit: TimeUnit::Seconds,
            }),
            ..SIGNED_BODY
        }),
        Auth::Hmac(SIGNED_BODY),
        Auth::BearerOrBasic,
    ]),
    delivery_id: &[],
    event_header: None,
    events: &["firing", "resolved"],
    parse,
    sample: "alert-resolved",
    validate: false,
};

fn parse(_event: Option<&str>, body: &[u8]) -> Result<Vec<Fact>, ParseError> {
    alert_facts(NAME, body)
}
