//! Endpoint checks and the retry backoff shared by the network KEK providers.
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

/// Whether a setting, option or URL parameter named `name` holds a secret (a password,
/// token, secret, SAS or key), so its value must stay out of policy files, messages and logs.
/// Names of identifiers (`…_id`, `…_name`) are not secrets.
pub fn names_a_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if name.ends_with("_id") || name.ends_with("_name") {
        return false;
    }
    [
        "password",
        "passwd",
        "secret",
        "token",
        "sslkey",
        "sas",
        "credential",
        "_key",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// Bounded exponential backoff, the one retry schedule of the providers: the wait before
/// retry `n` (1 = the first retry) is `first × 2^(n-1)`, never more than `max`. The caller
/// bounds the number of attempts; the sleeping is the caller's runtime's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: std::time::Duration,
    max: std::time::Duration,
}

impl Backoff {
    /// Waits of `first`, `2 × first`, … up to `max`.
    pub const fn new(first: std::time::Duration, max: std::time::Duration) -> Self {
        Self { first, max }
    }

    /// The wait before retry `retry` (1-based; 0 waits nothing).
    pub fn delay(&self, retry: u32) -> std::time::Duration {
        if retry == 0 {
            return std::time::Duration::ZERO;
        }
        let factor = 1u32 << (retry - 1).min(20);
        self.first.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The plain-HTTP rule over many hosts is checked in `tests/core/transport.rs` with the
    // test kit's table, which the providers' endpoint checks run too.

    #[test]
    fn secret_names_are_told_apart() {
        for secret in [
            "aws_secret_access_key",
            "aws_session_token",
            "azure_storage_account_key",
            "google_service_account_key",
            "azure_storage_sas_key",
            "password",
            "sslkey",
        ] {
            assert!(names_a_secret(secret), "{secret}");
        }
        for plain in [
            "aws_access_key_id",
            "azure_storage_account_name",
            "azure_client_id",
            "aws_region",
            "table",
        ] {
            assert!(!names_a_secret(plain), "{plain}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        use std::time::Duration;
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let waits: Vec<u128> = (0..8).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(waits, [0, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(2));
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
