//! Hostile input: a table of bad requests sent to a real listener (`sealbox_server::start`,
//! as `sealbox serve` runs it), each with its expected status and error. Across the whole
//! run, nothing panics and no plaintext, key, token or credential appears in any response,
//! in the server's logs (captured at trace level for Sealbox's crates) or in the audit log.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// The plaintext every sealed payload of this test carries.
const SECRET: &str = "card 4111 1111 1111 1111";

/// A request of the table: HTTP through a client, or raw bytes on a socket (malformed HTTP).
enum Req {
    Http {
        method: Method,
        path: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Raw bytes written at once; the status line of the answer (0: closed without one).
    Raw(Vec<u8>),
    /// Raw bytes written in `chunks`, one per `gap` (a slow client).
    Slow { chunks: Vec<Vec<u8>>, gap: Duration },
}

struct Case {
    name: &'static str,
    req: Req,
    /// Expected status (0: the server closes the connection without an answer).
    status: u16,
    /// A fragment the answer's body must contain ("" for none).
    says: &'static str,
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Sends raw bytes (in chunks, `gap` apart) and reads the answer until the server closes
/// the connection or 20 s pass (a hang guard, not a measurement): the status code, 0 if the
/// connection closed without a status line, and the raw answer.
async fn raw(addr: std::net::SocketAddr, chunks: &[Vec<u8>], gap: Duration) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        if s.write_all(c).await.is_err() {
            break; // the server hung up on us: read what it said
        }
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    // One answer is enough; keep-alive would hold the socket open.
                    if out.windows(4).any(|w| w == b"\r\n\r\n") {
                        let text = String::from_utf8_lossy(&out);
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        let head = text.find("\r\n\r\n").map_or(0, |i| i + 4);
                        if out.len() >= head + len {
                            break;
                        }
                    }
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server neither answered nor closed within 20 s"
    );
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn http(
    method: Method,
    path: &'static str,
    headers: &[(&'static str, &str)],
    body: impl Into<Vec<u8>>,
) -> Req {
    Req::Http {
        method,
        path,
        headers: headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        body: body.into(),
    }
}

fn payloads_of(data: &[u8], encoding: &str) -> String {
    json!({"payloads": [{"metadata": {"encoding": B64.encode(encoding)}, "data": B64.encode(data)}]})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_of_hostile_requests_gets_clear_errors_and_leaks_nothing() {
    let logs = sealbox_testkit::fixtures::Logs::capture_globally(
        "info,sealbox_server=trace,sealbox_keyring=trace,sealbox_policy=trace,\
         sealbox_temporal=trace,sealbox_core=trace,sealbox_local=trace",
    );
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));

    let fx = fixture_with(
        "request_timeout = \"2s\"\nheader_timeout = \"1s\"",
        "use_id_token = false",
    )
    .await;
    let server = sealbox_server::start(
        fx._dir.path().join("policy.toml"),
        Some("127.0.0.1:0".parse().expect("addr")),
    )
    .await
    .expect("server");
    let addr = server.addr;
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();

    // Credentials and an authentic envelope to mangle.
    let alice = bearer(&alice());
    let cli = bearer(CLI_TOKEN);
    let kek_b64 = B64.encode([5u8; 32]);
    let enc = client
        .post(format!("{base}/encode"))
        .header("authorization", &alice)
        .header("x-namespace", "payments")
        .body(json!({"payloads": [plain(&format!("\"{SECRET}\""))]}).to_string())
        .send()
        .await
        .expect("encode");
    assert_eq!(enc.status(), 200);
    let sealed: Value = enc.json().await.expect("json");
    let encoding = String::from_utf8(
        B64.decode(
            sealed["payloads"][0]["metadata"]["encoding"]
                .as_str()
                .expect("enc"),
        )
        .expect("b64"),
    )
    .expect("utf8");
    let envelope = B64
        .decode(sealed["payloads"][0]["data"].as_str().expect("data"))
        .expect("b64");
    let with_data = |data: &[u8]| {
        let mut p = sealed.clone();
        p["payloads"][0]["data"] = Value::String(B64.encode(data));
        p.to_string()
    };
    let mangled = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut e = envelope.clone();
        f(&mut e);
        with_data(&e)
    };
    let jwt = |claims_: Value| bearer(&token(&rsa("rsa1.pem"), Algorithm::RS256, "rsa1", claims_));
    let alice_without = |claim: &str| {
        let mut c = claims("alice", json!({}));
        c.as_object_mut().expect("obj").remove(claim);
        jwt(c)
    };
    let as_in = |auth: &str, namespace: &str| {
        vec![
            ("authorization", auth.to_owned()),
            ("x-namespace", namespace.to_owned()),
        ]
    };
    let pay = |auth: &str| as_in(auth, "payments");
    let ok_body = json!({"payloads": [plain("\"x\"")]}).to_string();
    let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let deep_in_payload = format!(
        r#"{{"payloads":[{{"metadata":{}1{}}}]}}"#,
        "{\"a\":".repeat(5_000),
        "}".repeat(5_000)
    );
    let h = |auth: &str| -> Vec<(&'static str, String)> { pay(auth) };
    let post = |path: &'static str, headers: Vec<(&'static str, String)>, body: String| Req::Http {
        method: Method::POST,
        path,
        headers,
        body: body.into_bytes(),
    };
    // A request alice may make, with a body that must be refused with 400 saying `says`.
    let bad = |name: &'static str, body: String, says: &'static str| Case {
        name,
        req: post("/decode", h(&alice), body),
        status: 400,
        says,
    };
    // A well-formed /decode request with `headers`, answered with `status` saying `says`.
    let decode = |name: &'static str,
                  headers: Vec<(&'static str, String)>,
                  status: u16,
                  says: &'static str| Case {
        name,
        req: post("/decode", headers, ok_body.clone()),
        status,
        says,
    };
    let request_head = |extra: &str| {
        format!(
            "POST /decode HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {alice}\r\nx-namespace: payments\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{ok_body}",
            ok_body.len()
        )
        .into_bytes()
    };

    let cases: Vec<Case> = vec![
        // --- JSON and the Payloads shape ---
        bad("malformed JSON", "{not json".into(), "invalid JSON"),
        bad("empty body", String::new(), "invalid JSON"),
        Case {
            name: "not UTF-8",
            req: Req::Http {
                method: Method::POST,
                path: "/decode",
                headers: h(&alice),
                body: vec![0xff, 0xfe, b'{', 0x80],
            },
            status: 400,
            says: "invalid JSON",
        },
        bad("30k-deep JSON arrays", deep, "invalid JSON"),
        bad(
            "5k-deep objects in metadata",
            deep_in_payload,
            "invalid JSON",
        ),
        bad(
            "top level is an array",
            "[]".into(),
            "expected a JSON object",
        ),
        bad(
            "payloads is a number",
            r#"{"payloads":5}"#.into(),
            "payloads: expected an array",
        ),
        bad(
            "a payload is a string",
            r#"{"payloads":["x"]}"#.into(),
            "payloads[0]: expected an object",
        ),
        bad(
            "metadata is an array",
            r#"{"payloads":[{"metadata":[]}]}"#.into(),
            "payloads[0].metadata: expected an object",
        ),
        bad(
            "metadata value is a number",
            r#"{"payloads":[{"metadata":{"encoding":7}}]}"#.into(),
            "payloads[0].metadata.encoding: expected a base64 string",
        ),
        bad(
            "data is an object",
            r#"{"payloads":[{"data":{}}]}"#.into(),
            "payloads[0].data: expected a base64 string",
        ),
        bad(
            "bad base64 data",
            r#"{"payloads":[{"data":"!!!!"}]}"#.into(),
            "payloads[0].data: invalid base64",
        ),
        bad(
            "bad base64 metadata",
            r#"{"payloads":[{"metadata":{"encoding":"@@"}}]}"#.into(),
            "payloads[0].metadata.encoding: invalid base64",
        ),
        bad(
            "externalPayloads is a string",
            r#"{"payloads":[{"externalPayloads":"x"}]}"#.into(),
            "externalPayloads: expected an array",
        ),
        bad(
            "sizeBytes not an int64",
            r#"{"payloads":[{"externalPayloads":[{"sizeBytes":"9223372036854775808"}]}]}"#.into(),
            "is not an int64",
        ),
        bad(
            "sizeBytes a fraction",
            r#"{"payloads":[{"externalPayloads":[{"sizeBytes":1.5}]}]}"#.into(),
            "is not an int64",
        ),
        Case {
            name: "body over max_body",
            req: post(
                "/decode",
                h(&alice),
                format!(r#"{{"payloads":[{{"data":"{}"}}]}}"#, "A".repeat(80 * 1024)),
            ),
            status: 413,
            says: "limit",
        },
        bad(
            "a 45 KiB garbage envelope",
            payloads_of(&vec![0x5a; 45 * 1024], &encoding),
            "",
        ),
        // --- envelopes: truncated, extended, re-versioned, flipped, swapped ---
        bad("empty envelope", with_data(&[]), ""),
        bad("envelope cut to 1 byte", mangled(&|e| e.truncate(1)), ""),
        bad("envelope cut to 16 bytes", mangled(&|e| e.truncate(16)), ""),
        bad(
            "envelope cut in half",
            mangled(&|e| {
                let n = e.len() / 2;
                e.truncate(n)
            }),
            "",
        ),
        bad(
            "envelope missing its last byte",
            mangled(&|e| {
                e.pop();
            }),
            "",
        ),
        bad("envelope with a byte appended", mangled(&|e| e.push(0)), ""),
        bad(
            "envelope with 40 KiB appended",
            mangled(&|e| e.extend(std::iter::repeat_n(0u8, 40 * 1024))),
            "",
        ),
        bad(
            "version byte bumped",
            mangled(&|e| e[4] = e[4].wrapping_add(1)),
            "",
        ),
        bad("magic changed", mangled(&|e| e[0] ^= 0xff), ""),
        bad("suite changed", mangled(&|e| e[6] ^= 1), ""),
        bad(
            "key_section_len at its maximum",
            mangled(&|e| {
                e[7] = 0xff;
                e[8] = 0xff;
            }),
            "",
        ),
        bad("provider_len 0", mangled(&|e| e[9] = 0), ""),
        bad(
            "key_id_len at its maximum",
            mangled(&|e| {
                let at = 10 + usize::from(e[9]);
                e[at] = 0xff;
                e[at + 1] = 0xff;
            }),
            "",
        ),
        bad(
            "a bit flipped in the middle",
            mangled(&|e| {
                let n = e.len() / 2;
                e[n] ^= 1
            }),
            "",
        ),
        bad(
            "a bit flipped in the tag",
            mangled(&|e| {
                let n = e.len() - 1;
                e[n] ^= 0x80
            }),
            "",
        ),
        Case {
            name: "payload presented as another tenant's (swap)",
            req: post("/decode", as_in(&cli, "team-a"), sealed.to_string()),
            status: 400,
            says: "encryption context",
        },
        // --- namespaces and routes ---
        decode(
            "no namespace",
            vec![("authorization", alice.clone())],
            400,
            "X-Namespace",
        ),
        decode(
            "namespace of 10 KB",
            as_in(&alice, &"n".repeat(10_000)),
            400,
            "namespace",
        ),
        decode(
            "namespace with control characters",
            as_in(&alice, "pay\tments"),
            400,
            "namespace",
        ),
        decode(
            "namespace not permitted to the token",
            as_in(&cli, "payments"),
            403,
            "",
        ),
        Case {
            name: "encode with a decode-only token",
            req: post("/encode", as_in(&cli, "team-a"), ok_body.clone()),
            status: 403,
            says: "",
        },
        Case {
            name: "unknown route",
            req: post("/admin", h(&alice), ok_body.clone()),
            status: 404,
            says: "",
        },
        Case {
            name: "GET on /decode",
            req: http(Method::GET, "/decode", &[], ""),
            status: 405,
            says: "",
        },
        // --- credentials ---
        decode(
            "no credentials",
            vec![("x-namespace", "payments".into())],
            401,
            "",
        ),
        decode(
            "wrong static token",
            as_in(&bearer("cli-token-0123456789abcdeX"), "team-a"),
            401,
            "invalid credentials",
        ),
        decode("Basic credentials", pay("Basic YWxpY2U6cGFzcw=="), 401, ""),
        decode(
            "expired JWT",
            pay(&jwt(claims("alice", json!({"exp": now() - 3600})))),
            401,
            "invalid credentials",
        ),
        decode(
            "JWT signed by an unknown key",
            pay(&bearer(&token(
                &rsa("rsa2.pem"),
                Algorithm::RS256,
                "rsa1",
                claims("alice", json!({})),
            ))),
            401,
            "invalid credentials",
        ),
        decode(
            "alg=none JWT",
            pay(&bearer(&format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"rsa1"}"#),
                URL_SAFE_NO_PAD.encode(claims("alice", json!({})).to_string())
            ))),
            401,
            "invalid credentials",
        ),
        decode(
            "HS256 keyed with the RSA public key",
            pay(&bearer(&token(
                &EncodingKey::from_secret(&fixture("rsa1.pub.pem")),
                Algorithm::HS256,
                "rsa1",
                claims("alice", json!({})),
            ))),
            401,
            "invalid credentials",
        ),
        decode(
            "JWT without claims",
            pay(&jwt(json!({}))),
            401,
            "invalid credentials",
        ),
        decode(
            "JWT without sub",
            pay(&alice_without("sub")),
            401,
            "invalid credentials",
        ),
        decode(
            "JWT for another audience",
            pay(&jwt(claims("alice", json!({"aud": "other"})))),
            401,
            "invalid credentials",
        ),
        decode(
            "JWT with a 20 KB garbage signature",
            pay(&format!(
                "{}{}",
                &alice[..alice.rfind('.').expect("dot") + 1],
                "A".repeat(20_000)
            )),
            401,
            "invalid credentials",
        ),
        // --- browsers ---
        Case {
            name: "preflight from a disallowed origin",
            req: http(
                Method::OPTIONS,
                "/decode",
                &[
                    ("origin", "https://evil.example"),
                    ("access-control-request-method", "POST"),
                ],
                "",
            ),
            status: 200,
            says: "",
        },
        // --- malformed HTTP on the socket ---
        Case {
            name: "garbage request line",
            req: Req::Raw(b"GARBAGE\r\n\r\n".to_vec()),
            status: 400,
            says: "",
        },
        Case {
            name: "a 200 KiB header",
            req: Req::Raw(request_head(&format!(
                "x-big: {}\r\n",
                "a".repeat(200 * 1024)
            ))),
            status: 431,
            says: "",
        },
        Case {
            name: "200 headers",
            req: Req::Raw(request_head(
                &(0..200)
                    .map(|i| format!("x-h{i}: v\r\n"))
                    .collect::<String>(),
            )),
            status: 431,
            says: "",
        },
        Case {
            name: "content-length larger than the body sent",
            req: Req::Raw({
                let mut r = request_head("");
                let s = String::from_utf8(r.clone()).expect("utf8").replace(
                    &format!("content-length: {}", ok_body.len()),
                    "content-length: 1000",
                );
                r = s.into_bytes();
                r
            }),
            status: 504,
            says: "took longer than",
        },
        Case {
            name: "slow-loris headers (a byte every 300 ms)",
            req: Req::Slow {
                chunks: request_head("").chunks(1).map(<[u8]>::to_vec).collect(),
                gap: Duration::from_millis(300),
            },
            status: 0,
            says: "",
        },
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());

    let mut answers = String::new();
    let mut wrong = Vec::new();
    for case in &cases {
        let (status, text) = match &case.req {
            Req::Http {
                method,
                path,
                headers,
                body,
            } => {
                let mut r = client
                    .request(method.clone(), format!("{base}{path}"))
                    .body(body.clone());
                for (k, v) in headers {
                    r = r.header(*k, v);
                }
                let resp = r
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                let status = resp.status().as_u16();
                let head = format!("{:?}", resp.headers());
                (
                    status,
                    format!("{head}\n{}", resp.text().await.unwrap_or_default()),
                )
            }
            Req::Raw(bytes) => raw(addr, std::slice::from_ref(bytes), Duration::ZERO).await,
            Req::Slow { chunks, gap } => raw(addr, chunks, *gap).await,
        };
        // A preflight from a disallowed origin is answered, but without the header that
        // would let the browser send the request.
        let grants_origin = text.contains("access-control-allow-origin");
        if status != case.status
            || !text.contains(case.says)
            || (case.name.contains("origin") && grants_origin)
        {
            wrong.push(format!(
                "{}: expected {} with `{}`, got {status}: {text}",
                case.name, case.status, case.says
            ));
        }
        answers.push_str(&text);
    }

    sealbox_testkit::assert_no_wrong_cases(&wrong, cases.len());
    // The server is still serving.
    let healthy = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(healthy.status(), 200);
    server
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");

    // Debug output of the public types holding the same configuration: the server settings
    // (tokens, JWT), the policy and its key-rings and providers.
    let path = fx._dir.path().join("policy.toml");
    let policy = sealbox_policy::ReloadablePolicy::load(&path)
        .await
        .expect("policy");
    let current = policy.current();
    let debug = format!(
        "{:?}\n{policy:?}\n{current:?}\n{:?}\n{:?}",
        ServerConfig::from_file(&path).expect("config"),
        current.keyrings(),
        current.providers(),
    );
    assert!(
        debug.contains("payments") && debug.contains("cli"),
        "the Debug output covers the configuration: {debug}"
    );
    answers.push_str(&debug);
    let logs = logs.text();
    let audit = std::fs::read_to_string(&fx.audit).expect("audit");
    assert!(
        logs.contains("key provider") || logs.contains("codec"),
        "the logs were captured:\n{logs}"
    );
    assert!(
        audit.lines().count() >= 45,
        "every request is audited:\n{audit}"
    );
    let secret_b64 = B64.encode(format!("\"{SECRET}\""));
    let bearer_alice = alice.trim_start_matches("Bearer ");
    for (what, needle) in [
        ("plaintext", SECRET),
        ("plaintext as base64", secret_b64.as_str()),
        ("the KEK", kek_b64.as_str()),
        ("the static token", CLI_TOKEN),
        ("a valid JWT", bearer_alice),
    ] {
        for (place, text) in [
            ("responses", &answers),
            ("logs", &logs),
            ("audit log", &audit),
        ] {
            assert!(!text.contains(needle), "{what} appears in the {place}");
        }
    }
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "a request made the server panic"
    );
}
