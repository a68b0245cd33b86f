//! `em-agent providers`: every provider this build knows, from the registry.

use serde_json::{json, Value};

pub fn to_json() -> Value {
    Value::Array(
        em_providers::all()
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "title": p.title,
                    "route": format!("POST {}", p.route()),
                    "authentication": {
                        "scheme": p.auth.kind(),
                        "description": p.auth.describe(),
                    },
                    "secret_variables": p.secret_vars(),
                    "events": p.events,
                })
            })
            .collect(),
    )
}

pub fn table() -> String {
    let mut out = String::new();
    for p in em_providers::all() {
        out.push_str(&format!(
            "{}\n  route:          POST {}\n  authentication: {}\n  secrets:        {}\n  events:         {}\n",
            p.name,
            p.route(),
            p.auth.describe(),
            p.secret_vars().join(", "),
            p.events.join(", "),
        ));
    }
    out
}
