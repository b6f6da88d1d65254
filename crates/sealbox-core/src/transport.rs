//! Endpoint checks shared by the network KEK providers.
//!
//! A provider that talks to a KMS over HTTP accepts `https://` endpoints, `http://` ones whose
//! host is loopback (`127.0.0.0/8`, `::1`, `localhost`), and other `http://` ones only when
//! the user opted in; everything else (other schemes, credentials in the URL, unparsable
//! URLs) is refused with a message that names the endpoint (without its credentials).

/// How an endpoint will be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `https://`.
    Tls,
    /// `http://` to a loopback host (tests, local emulators).
    LoopbackHttp,
    /// `http://` to another host, accepted only because `allow_http` is set.
    OptedInHttp,
}

/// What a provider's endpoint messages say: which service the endpoint is for, what would
/// cross the network unencrypted, and how to opt in to plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointLabels<'a> {
    /// The service named in messages, e.g. `"KMS"` or `"Cloud KMS"`.
    pub service: &'a str,
    /// What plain HTTP would expose, e.g. `"data keys"`.
    pub exposed: &'a str,
    /// The provider's opt-in hint, e.g.
    /// ``"`AwsKmsConfig::allow_http(true)` (policy file: `[aws] allow_http = true`)"``.
    pub opt_in: &'a str,
}

/// `endpoint` without user name and password, for messages and logs. An unparsable endpoint
/// is returned escaped.
pub fn redact_endpoint(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => endpoint.escape_debug().to_string(),
    }
}

/// Whether `host` is loopback: `127.0.0.0/8`, `::1` (also as `::ffff:127.x.y.z`) or
/// `localhost`.
pub fn is_loopback_host(host: Option<url::Host<&str>>) -> bool {
    match host {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

/// Accepts `https://` endpoints, `http://` ones on loopback hosts, and other `http://` ones
/// only with `allow_http`; refuses everything else (other schemes, credentials in the URL,
/// unparsable URLs) with a message naming the endpoint (redacted) and, for plain HTTP, the
/// opt-in from `labels`.
pub fn check_endpoint(
    endpoint: &str,
    allow_http: bool,
    labels: &EndpointLabels<'_>,
) -> Result<Transport, String> {
    let EndpointLabels {
        service,
        exposed,
        opt_in,
    } = labels;
    let url = url::Url::parse(endpoint).map_err(|e| {
        format!(
            "{service} endpoint `{}` is not a valid URL: {e}",
            endpoint.escape_debug()
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{service} endpoint `{}` must not contain a user name or password",
            redact_endpoint(endpoint)
        ));
    }
    match url.scheme() {
        "https" => Ok(Transport::Tls),
        "http" if is_loopback_host(url.host()) => Ok(Transport::LoopbackHttp),
        "http" if allow_http => Ok(Transport::OptedInHttp),
        "http" => Err(format!(
            "refusing plain-HTTP {service} endpoint `{}`: http:// is accepted only for loopback \
             hosts (127.0.0.0/8, ::1, localhost), because {exposed} would cross the network \
             unencrypted; use https://, or opt in for development with {opt_in}",
            redact_endpoint(endpoint)
        )),
        other => Err(format!(
            "{service} endpoint `{}` must be an https:// URL, not `{other}:`",
            redact_endpoint(endpoint)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABELS: EndpointLabels<'static> = EndpointLabels {
        service: "Test KMS",
        exposed: "data keys",
        opt_in: "`TestConfig::allow_http(true)`",
    };

    fn transport(endpoint: &str, allow_http: bool) -> Result<Transport, String> {
        check_endpoint(endpoint, allow_http, &LABELS)
    }

    #[test]
    fn plain_http_is_accepted_only_for_loopback_hosts_or_with_the_opt_in() {
        for ok in [
            "https://kms.eu-west-1.amazonaws.com",
            "https://vpce-1.kms.eu-west-1.vpce.amazonaws.com:443/",
            "https://cloudkms.europe-west1.rep.googleapis.com/",
            "https://127.0.0.1:4566",
        ] {
            assert_eq!(transport(ok, false), Ok(Transport::Tls), "{ok}");
        }
        for loopback in [
            "http://127.0.0.1:5000",
            "http://127.8.9.10",
            "http://127.255.0.1",
            "http://localhost:4566/",
            "http://LOCALHOST",
            "http://[::1]:5000",
            "http://[::ffff:127.0.0.1]:5000",
            "http://[::ffff:127.0.0.1]",
        ] {
            assert_eq!(
                transport(loopback, false),
                Ok(Transport::LoopbackHttp),
                "{loopback}"
            );
        }
        for remote in [
            "http://kms.example.com",
            "http://10.0.0.5:4566",
            "http://192.168.1.10:8080",
            "http://0.0.0.0:4566",
            "http://[::]:4566",
            "http://localhost.example.com",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
        ] {
            let e = transport(remote, false).expect_err(remote);
            assert!(
                e.contains("refusing plain-HTTP Test KMS endpoint")
                    && e.contains(remote.trim_start_matches("http://"))
                    && e.contains("`TestConfig::allow_http(true)`"),
                "{e}"
            );
            assert_eq!(
                transport(remote, true),
                Ok(Transport::OptedInHttp),
                "{remote}"
            );
        }
        for bad in ["kms.example.com", "ftp://kms.example.com", "not a url", ""] {
            let e = transport(bad, true).expect_err(bad);
            assert!(e.contains("https://") || e.contains("valid URL"), "{e}");
        }
        let e = transport("https://user:hunter2@kms.example.com", false).expect_err("creds");
        assert!(
            e.contains("user name or password") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host(Some(url::Host::Domain("LocalHost"))));
        assert!(!is_loopback_host(Some(url::Host::Domain(
            "localhost.example"
        ))));
        assert!(!is_loopback_host(None));
    }

    #[test]
    fn redaction_drops_credentials() {
        let r = redact_endpoint("https://u:hunter2@kms.example.com/");
        assert!(
            !r.contains("hunter2") && r.contains("kms.example.com"),
            "{r}"
        );
    }
}
