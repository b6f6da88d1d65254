//! Authorization per namespace and operation: the policy's `access`, permission claims and
//! static tokens, as one table.

use super::*;

/// Who asks, what, where, and what they get.
struct Case {
    who: &'static str,
    credential: String,
    op: &'static str,
    namespace: &'static str,
    want: StatusCode,
}

fn case(
    who: &'static str,
    credential: &str,
    op: &'static str,
    namespace: &'static str,
    want: StatusCode,
) -> Case {
    Case {
        who,
        credential: credential.to_owned(),
        op,
        namespace,
        want,
    }
}

#[tokio::test]
async fn permissions_are_per_namespace_and_per_operation() {
    // The fixture's policy: alice may encode and decode `payments` (subjects); the `support`
    // role may decode the default's namespaces; the static CLI token decodes `team-*`.
    // Temporal's permission claims count here because the fixture turns them on.
    let fx = fixture_with("", "use_permissions_claim = true").await;
    let sam = jwt_as("sam", json!({"roles": ["support"]}));
    let reader = jwt_as("r", json!({"permissions": ["orders:read"]}));
    let writer = jwt_as("w", json!({"permissions": {"orders": "write"}}));
    let sneaky = jwt_as("s", json!({"permissions": ["*:admin"]}));
    use StatusCode as S;
    let table = [
        case(
            "alice (policy subject)",
            &alice(),
            "encode",
            "payments",
            S::OK,
        ),
        case(
            "alice elsewhere",
            &alice(),
            "decode",
            "orders",
            S::FORBIDDEN,
        ),
        case("support role", &sam, "decode", "orders", S::OK),
        case(
            "support role, other rule",
            &sam,
            "decode",
            "payments",
            S::FORBIDDEN,
        ),
        case(
            "support role encoding",
            &sam,
            "encode",
            "orders",
            S::FORBIDDEN,
        ),
        case("orders:read claim", &reader, "decode", "orders", S::OK),
        case(
            "orders:read claim encoding",
            &reader,
            "encode",
            "orders",
            S::FORBIDDEN,
        ),
        case(
            "orders:read claim elsewhere",
            &reader,
            "decode",
            "payments",
            S::FORBIDDEN,
        ),
        case("Cloud map form, write", &writer, "encode", "orders", S::OK),
        case(
            "Cloud map form, write decodes",
            &writer,
            "decode",
            "orders",
            S::OK,
        ),
        // A glob-looking namespace in a claim is a literal name, not a pattern.
        case("`*:admin` claim", &sneaky, "decode", "orders", S::FORBIDDEN),
        case("CLI token", CLI_TOKEN, "decode", "team-a", S::OK),
        case(
            "CLI token encoding",
            CLI_TOKEN,
            "encode",
            "team-a",
            S::FORBIDDEN,
        ),
        case(
            "CLI token elsewhere",
            CLI_TOKEN,
            "decode",
            "payments",
            S::FORBIDDEN,
        ),
        case(
            "wrong token",
            "wrong-token-0123456789",
            "decode",
            "team-a",
            S::UNAUTHORIZED,
        ),
    ];
    let body = json!({"payloads": [plain("\"x\"")]}).to_string();
    for c in table {
        let auth = bearer(&c.credential);
        let r = post(
            &fx.app,
            &format!("/{}", c.op),
            &auth_in(&auth, c.namespace),
            &body,
        )
        .await;
        assert_eq!(
            r.status, c.want,
            "{}: {} in {}: {}",
            c.who, c.op, c.namespace, r.body
        );
    }
}

#[tokio::test]
async fn temporal_permission_claims_grant_nothing_unless_enabled() {
    // `orders:read` lets a developer read histories in Temporal; by default it must not
    // also decrypt their payloads.
    let reader = bearer(&jwt_as("dev", json!({"permissions": ["orders:read"]})));
    let h = [("authorization", reader.as_str())];
    let off = fixture_app("", false).await;
    assert_eq!(
        decode_status(&off.app, &h, "orders").await.status,
        StatusCode::FORBIDDEN
    );
    let on = fixture_with("", "use_permissions_claim = true").await;
    assert_eq!(
        decode_status(&on.app, &h, "orders").await.status,
        StatusCode::OK
    );
}
