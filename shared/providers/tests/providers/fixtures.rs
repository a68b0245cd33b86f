//! Every fixture of every registered provider becomes exactly the facts written beside it by hand, and the
//! registry's declarations hold together. Adding a provider or a fixture adds files, not test code.

use em_core::domain::Fact;
use em_providers::Provider;

use crate::common::{fixture_dir, Case};

fn docs_page(p: &Provider) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/providers")
        .join(format!("{}.md", p.name))
}

#[test]
fn every_fixture_becomes_the_facts_written_beside_it() {
    for p in em_providers::all() {
        let cases = Case::all(p);
        assert!(
            !cases.is_empty(),
            "{}: no fixtures in {}",
            p.name,
            fixture_dir(p).display()
        );
        let mut with_facts = 0;
        for case in &cases {
            let want = case.facts.as_ref().unwrap_or_else(|| {
                panic!(
                    "{}/{}: no {}.facts.jsonl beside it",
                    p.name, case.name, case.name
                )
            });
            let inspection = p
                .inspect(&case.headers, &case.body)
                .unwrap_or_else(|e| panic!("{}/{}: {e}", p.name, case.name));
            assert!(
                !inspection.delivery_id.is_empty(),
                "{}/{}",
                p.name,
                case.name
            );
            let got = p
                .parse(inspection.event.as_deref(), &case.body)
                .unwrap_or_else(|e| panic!("{}/{}: {e}", p.name, case.name));
            assert_eq!(&got, want, "{}/{}", p.name, case.name);
            with_facts += usize::from(!want.is_empty());
        }
        assert!(with_facts > 0, "{}: no fixture yields a fact", p.name);
    }
}

#[test]
fn facts_print_in_the_format_they_are_read_in() {
    for p in em_providers::all() {
        for case in Case::all(p) {
            for fact in case.facts.unwrap_or_default() {
                let line = serde_json::to_string(&fact).expect("a fact prints");
                let back: Fact = serde_json::from_str(&line).expect("a printed fact reads back");
                assert_eq!(back, fact, "{}/{}", p.name, case.name);
                let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
                assert!(v["kind"].is_string(), "{line}");
                if let Some(t) = v.get("time") {
                    let t = t.as_str().expect("times are text");
                    assert!(t.ends_with('Z'), "{line}");
                }
            }
        }
    }
    // A typo in an expected-facts file is an error, not a fact that silently differs.
    let typo = r#"{"kind":"incident","provider":"x","incident_id":"1","event_id":"1","action":"opened","time":"2025-01-01T00:00:00Z","service_name":"s","titel":""}"#;
    assert!(serde_json::from_str::<Fact>(typo).is_err());
    let local = r#"{"kind":"pull_request","provider":"x","repo":"r","number":1,"action":"opened","time":"2025-01-01 00:00:00","title":""}"#;
    assert!(serde_json::from_str::<Fact>(local).is_err());
}

#[test]
fn the_registry_holds_together() {
    let mut names = std::collections::BTreeSet::new();
    for p in em_providers::all() {
        assert!(names.insert(p.name), "{} is registered twice", p.name);
        assert!(
            !p.name.is_empty()
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{}: a name is lower-case letters, digits and dashes",
            p.name
        );
        assert!(
            !p.title.is_empty() && p.title.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{}: a title is letters and digits (it names the stack's resources)",
            p.name
        );
        assert!(!p.events.is_empty(), "{}: no events listed", p.name);
        let sample = Case::load(p, p.sample);
        assert!(
            sample.facts.is_some_and(|f| !f.is_empty()),
            "{}: the sample {} must yield a fact",
            p.name,
            p.sample
        );
        assert!(
            docs_page(p).is_file(),
            "{}: no docs page {}",
            p.name,
            docs_page(p).display()
        );
    }
    assert_eq!(
        em_providers::by_name("github").map(|p| p.name),
        Some("github")
    );
    assert!(em_providers::by_name("GitHub").is_none());
}
