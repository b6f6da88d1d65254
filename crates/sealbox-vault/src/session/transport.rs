//! Reaching the Vault server: address validation, the HTTP client (with the configured CA
//! pinned and an optional client certificate), and vaultrs clients holding one token each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{VaultClient, VaultClientSettings};
use zeroize::{Zeroize, Zeroizing};

/// Parses and checks a Vault address: an `http(s)://host[:port]` URL whose port is 1–65535,
/// without credentials, path, query or fragment. Never panics; the error names the address.
pub(crate) fn parse_address(address: &str) -> Result<reqwest::Url, String> {
    let shown = redact_credentials(address).escape_debug().to_string();
    let bad = |why: String| format!("Vault address `{shown}` {why}");
    if !address.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "must be an http(s):// URL (no spaces or non-ASCII characters)".into(),
        ));
    }
    let url = reqwest::Url::parse(address).map_err(|e| {
        let hint = if e.to_string().contains("port") {
            " (a port is 1-65535)"
        } else {
            ""
        };
        bad(format!(
            "must be an http(s):// URL: it does not parse ({e}){hint}"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be an http(s):// URL".into()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host".into()));
    }
    if url.port() == Some(0) {
        return Err(bad("has port 0 (a port is 1-65535)".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not hold credentials".into()));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "must be SCHEME://HOST[:PORT], without a path, query or fragment".into(),
        ));
    }
    Ok(url)
}

/// `address` with any `user:password@` replaced, for error messages.
fn redact_credentials(address: &str) -> String {
    if let Some((scheme, rest)) = address.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://<credentials>@{}", &rest[at + 1..]);
        }
    }
    address.to_owned()
}

/// Builds the HTTP client. When a CA is configured (or given by `VAULT_CACERT`/`BAO_CACERT`),
/// **only** that CA is trusted: the system roots are not consulted (`tls_certs_only`).
pub(crate) fn build_http(
    address: &reqwest::Url,
    ca_cert: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_rustls()
        .timeout(timeout);
    if address.scheme() == "http" {
        // No TLS is used; an empty root set also keeps the platform verifier from loading
        // (as vaultrs does, reqwest issue 2988).
        builder = builder.tls_certs_only(Vec::new());
    } else {
        let from_env = || {
            ["VAULT_CACERT", "BAO_CACERT"]
                .iter()
                .filter_map(std::env::var_os)
                .find(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(path) = ca_cert.map(Path::to_path_buf).or_else(from_env) {
            builder = builder.tls_certs_only(read_ca(&path)?);
        }
        if let Some(identity) = client_identity()? {
            builder = builder.identity(identity);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the CA certificate {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "the CA certificate {} is not a PEM certificate: {e}",
            path.display()
        )
    })?;
    if certs.is_empty() {
        return Err(format!(
            "the CA certificate {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// The TLS client certificate from `VAULT_CLIENT_CERT` + `VAULT_CLIENT_KEY` (PEM files), as
/// the Vault CLI reads them; an unreadable pair is an error rather than silently ignored.
fn client_identity() -> Result<Option<reqwest::Identity>, String> {
    let var = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    let (Some(cert), Some(key)) = (var("VAULT_CLIENT_CERT"), var("VAULT_CLIENT_KEY")) else {
        return Ok(None);
    };
    let read = |p: &std::ffi::OsStr| {
        std::fs::read(p).map(Zeroizing::new).map_err(|e| {
            format!(
                "cannot read the client certificate or key {}: {e}",
                Path::new(p).display()
            )
        })
    };
    let mut pem = read(&cert)?;
    pem.extend_from_slice(&read(&key)?);
    reqwest::Identity::from_pem(&pem)
        .map(Some)
        .map_err(|e| format!("VAULT_CLIENT_CERT / VAULT_CLIENT_KEY are not a PEM pair: {e}"))
}

/// Whether `token` can travel in an HTTP header (vaultrs panics otherwise).
pub(crate) fn token_is_sendable(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_graphic())
}

/// What is needed to talk to one Vault server; clients for new tokens are built from it.
pub(crate) struct Transport {
    http: reqwest::Client,
    pub(crate) address: reqwest::Url,
    timeout: Duration,
    namespace: Option<String>,
}

impl Transport {
    pub(crate) fn new(
        http: reqwest::Client,
        address: reqwest::Url,
        timeout: Duration,
        namespace: Option<String>,
    ) -> Self {
        Self {
            http,
            address,
            timeout,
            namespace,
        }
    }

    /// A vaultrs client sending `token` (empty: no token, for logins). The connection pool is
    /// shared by all clients of this transport.
    pub(crate) fn client(&self, token: &str) -> TokenClient {
        let settings = VaultClientSettings {
            address: self.address.clone(),
            ca_certs: Vec::new(),
            identity: None,
            timeout: Some(self.timeout),
            // Requests take the token from the middleware; no second copy here.
            token: String::new(),
            verify: true,
            version: 1,
            wrapping: false,
            namespace: self.namespace.clone(),
            proxy: None,
        };
        let middle = EndpointMiddleware {
            token: token.to_owned(),
            version: "v1".into(),
            wrap: None,
            namespace: self.namespace.clone(),
        };
        TokenClient(VaultClient {
            http: rustify::clients::reqwest::Client::new(self.address.as_str(), self.http.clone()),
            middle,
            settings,
        })
    }
}

/// A vaultrs client holding one token, which is zeroized when the client is dropped (vaultrs
/// keeps it as a plain `String`; this is as far as its API lets the token be protected).
pub(crate) struct TokenClient(pub(crate) VaultClient);

impl Drop for TokenClient {
    fn drop(&mut self) {
        self.0.middle.token.zeroize();
        self.0.settings.token.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_without_panicking() {
        for ok in [
            "http://127.0.0.1:8200",
            "https://vault.example.com",
            "https://vault.example.com:8200/",
            "https://[::1]:8200",
            "http://h:65535",
        ] {
            parse_address(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, want) in [
            ("http://h:99999", "a port is 1-65535"),
            ("http://h:65536", "a port is 1-65535"),
            ("http://h:0", "port 0"),
            ("http://h:-1", "does not parse"),
            ("https://1.2.3.999", "does not parse"),
            ("https://[zz]:8200", "does not parse"),
            ("ftp://h", "must be an http(s):// URL"),
            ("vault.example.com:8200", "must be an http(s):// URL"),
            ("http://", "does not parse"),
            ("http://bad host", "no spaces"),
            ("https://h/v1", "without a path"),
            ("https://h?x=1", "without a path"),
        ] {
            let err = parse_address(bad).expect_err(bad);
            assert!(err.contains(want), "{bad}: {err}");
            assert!(
                err.contains(&format!("`{bad}`")),
                "names the address: {err}"
            );
        }
        // Credentials in the address are refused and not repeated.
        let err = parse_address("https://user:s3cret@h:8200").expect_err("credentials");
        assert!(err.contains("must not hold credentials"), "{err}");
        assert!(err.contains("`https://<credentials>@h:8200`"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
