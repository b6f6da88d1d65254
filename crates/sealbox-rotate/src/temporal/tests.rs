//! The scan's unit tests.

use super::*;
use temporalio_common::protos::temporal::api::common::v1::{
    Header, Memo, Payloads, SearchAttributes,
};
use temporalio_common::protos::temporal::api::failure::v1::{
    ApplicationFailureInfo, Failure, failure::FailureInfo,
};
use temporalio_common::protos::temporal::api::history::v1::{
    MarkerRecordedEventAttributes, WorkflowExecutionStartedEventAttributes,
    WorkflowExecutionUpdateCompletedEventAttributes, history_event::Attributes,
};
use temporalio_common::protos::temporal::api::update::v1::{Outcome, outcome};

fn payload(tag: &str) -> Payload {
    Payload {
        metadata: HashMap::from([("encoding".to_owned(), b"binary/plain".to_vec())]),
        data: tag.as_bytes().to_vec(),
        ..Payload::default()
    }
}

/// Event `event_id`, of the kind and with the payloads of `attributes`.
fn event(event_id: i64, attributes: Attributes) -> HistoryEvent {
    HistoryEvent {
        event_id,
        attributes: Some(attributes),
        ..HistoryEvent::default()
    }
}

async fn tags(event: HistoryEvent) -> Vec<String> {
    let mut t: Vec<String> = event_payloads(event)
        .await
        .expect("walk")
        .into_iter()
        .map(|p| {
            assert_eq!(p.metadata["encoding"], b"binary/plain");
            String::from_utf8(p.data).expect("utf8")
        })
        .collect();
    t.sort();
    t
}

fn failure(tag: &str, cause: Option<Failure>) -> Failure {
    Failure {
        message: "Encoded failure".into(),
        encoded_attributes: Some(payload(&format!("{tag}-attrs"))),
        cause: cause.map(Box::new),
        failure_info: Some(FailureInfo::ApplicationFailureInfo(
            ApplicationFailureInfo {
                details: Some(Payloads {
                    payloads: vec![payload(&format!("{tag}-details"))],
                }),
                ..ApplicationFailureInfo::default()
            },
        )),
        ..Failure::default()
    }
}

#[tokio::test]
async fn every_payload_of_a_started_event_is_found_and_search_attributes_are_not() {
    let started = event(
        1,
        Attributes::WorkflowExecutionStartedEventAttributes(
            WorkflowExecutionStartedEventAttributes {
                input: Some(Payloads {
                    payloads: vec![payload("input-0"), payload("input-1")],
                }),
                header: Some(Header {
                    fields: HashMap::from([("h".to_owned(), payload("header"))]),
                }),
                memo: Some(Memo {
                    fields: HashMap::from([("m".to_owned(), payload("memo"))]),
                }),
                search_attributes: Some(SearchAttributes {
                    indexed_fields: HashMap::from([("s".to_owned(), payload("search"))]),
                }),
                continued_failure: Some(failure("continued", Some(failure("cause", None)))),
                last_completion_result: Some(Payloads {
                    payloads: vec![payload("last-result")],
                }),
                ..WorkflowExecutionStartedEventAttributes::default()
            },
        ),
    );
    assert_eq!(
        tags(started).await,
        [
            "cause-attrs",
            "cause-details",
            "continued-attrs",
            "continued-details",
            "header",
            "input-0",
            "input-1",
            "last-result",
            "memo"
        ]
    );
}

#[tokio::test]
async fn marker_details_and_update_outcomes_are_found() {
    let marker = event(
        7,
        Attributes::MarkerRecordedEventAttributes(MarkerRecordedEventAttributes {
            details: HashMap::from([
                (
                    "a".to_owned(),
                    Payloads {
                        payloads: vec![payload("marker-a")],
                    },
                ),
                (
                    "b".to_owned(),
                    Payloads {
                        payloads: vec![payload("marker-b")],
                    },
                ),
            ]),
            failure: Some(failure("marker", None)),
            ..MarkerRecordedEventAttributes::default()
        }),
    );
    assert_eq!(
        tags(marker).await,
        ["marker-a", "marker-attrs", "marker-b", "marker-details"]
    );
    let update = event(
        9,
        Attributes::WorkflowExecutionUpdateCompletedEventAttributes(
            WorkflowExecutionUpdateCompletedEventAttributes {
                outcome: Some(Outcome {
                    value: Some(outcome::Value::Success(Payloads {
                        payloads: vec![payload("update-result")],
                    })),
                }),
                ..WorkflowExecutionUpdateCompletedEventAttributes::default()
            },
        ),
    );
    assert_eq!(tags(update).await, ["update-result"]);
    assert!(tags(HistoryEvent::default()).await.is_empty());
}

#[test]
fn payloads_are_classified_by_marker_and_header() {
    let plain = classify_payload(&payload("x"));
    assert!(matches!(plain.seen, Seen::NotEnvelope) && !plain.reference);
    let mut marked = payload("not an envelope");
    marked
        .metadata
        .insert(METADATA_FORMAT.into(), FORMAT_ENVELOPE_V1.into());
    assert!(matches!(classify_payload(&marked).seen, Seen::Damaged));
    let reference = Payload {
        metadata: HashMap::from([
            ("encoding".to_owned(), b"json/protobuf".to_vec()),
            (
                "messageType".to_owned(),
                sealbox_temporal::EXTERNAL_STORAGE_REFERENCE_TYPE
                    .as_bytes()
                    .to_vec(),
            ),
        ]),
        data: br#"{"driverName":"aws.s3driver","claimData":{}}"#.to_vec(),
        ..Payload::default()
    };
    let r = classify_payload(&reference);
    assert!(matches!(r.seen, Seen::NotEnvelope) && r.reference);
    let mut legacy = payload("{}");
    legacy.metadata.insert(
        "encoding".into(),
        ENCODING_LEGACY_REFERENCE.as_bytes().to_vec(),
    );
    assert!(classify_payload(&legacy).reference);
}

#[test]
fn urls_parse_or_fail_clearly() {
    let s = TemporalSource::parse("temporal://127.0.0.1:7244/payments").expect("parse");
    assert_eq!(s.address(), "127.0.0.1:7244");
    assert_eq!(s.namespace(), "payments");
    assert!(!s.tls());
    assert_eq!(s.describe(), "temporal://127.0.0.1:7244/payments");
    let s = TemporalSource::parse("temporal://temporal.example/ns%2Dx/").expect("parse");
    assert_eq!(s.address(), "temporal.example:7233");
    assert_eq!(s.namespace(), "ns-x");
    let s = TemporalSource::parse("temporal://[::1]:7233/ns").expect("v6");
    assert_eq!(s.address(), "[::1]:7233");

    for (url, needle) in [
        ("temporal://", "no host"),
        ("temporal://h:7233", "no namespace"),
        ("temporal://h:7233/", "no namespace"),
        ("temporal://h/a/b", "exactly one namespace"),
        ("temporal://h/ns?colour=red", "unknown parameter `colour`"),
        ("temporal://h/ns?tls=maybe", "tls must be true or false"),
        ("temporal://h/ns?tls=false&server_name=x", "conflicts"),
        ("temporal://h/ns?cert=/nonexistent", "go together"),
        ("temporal://h/ns?ca=/nonexistent/ca.pem", "CA certificate"),
        ("temporal://h:99999/ns", "invalid Temporal URL"),
        ("http://h/ns", "not temporal://"),
        (
            "temporal://user:pw@h/ns",
            "credentials do not go in the URL",
        ),
        ("temporal://h/ns?api_key=sekrit", "TEMPORAL_API_KEY"),
    ] {
        let e = TemporalSource::parse(url).expect_err(url).to_string();
        assert!(e.contains(needle), "{url}: {e}");
        assert!(!e.contains("sekrit") && !e.contains(":pw"), "{url}: {e}");
    }
}

#[test]
fn env_settings_apply_and_the_api_key_never_shows() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let s = TemporalSource::from_url_with_env(
        "temporal://cloud.example:7233/ns",
        env(&[("TEMPORAL_API_KEY", "sekrit-key")]),
    )
    .expect("parse");
    assert!(s.tls(), "an API key turns TLS on");
    let shown = format!("{s:?} {}", s.describe());
    assert!(!shown.contains("sekrit"), "{shown}");
    let e = TemporalSource::from_url_with_env(
        "temporal://cloud.example:7233/ns?tls=false",
        env(&[("TEMPORAL_API_KEY", "sekrit-key")]),
    )
    .expect_err("plain text key");
    assert!(e.to_string().contains("only over TLS"), "{e}");
    let tls = |url: &str, vars: &'static [(&'static str, &'static str)]| {
        TemporalSource::from_url_with_env(url, env(vars))
            .expect(url)
            .tls()
    };
    // Loopback may opt out (a local proxy that terminates TLS).
    let loopback = "temporal://127.0.0.1:7233/ns?tls=false";
    assert!(!tls(loopback, &[("TEMPORAL_API_KEY", "k")]));
    // The URL wins over the environment.
    assert!(!tls(
        "temporal://h/ns?tls=false",
        &[("TEMPORAL_TLS", "true")]
    ));
    assert!(tls("temporal://h/ns", &[("TEMPORAL_TLS", "1")]));
}

#[test]
fn temporal_urls_are_told_apart() {
    assert!(is_temporal_url("temporal://h/ns"));
    assert!(is_temporal_url("TEMPORAL://h/ns"));
    assert!(!is_temporal_url("s3://b/p"));
    assert!(!is_temporal_url("/var/lib/temporal"));
}
