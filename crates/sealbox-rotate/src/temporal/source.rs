//! `temporal://` URLs and the connection they describe.

use super::*;

/// TLS settings of a connection.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct Tls {
    /// PEM of the CA to trust instead of the system's roots.
    ca: Option<Vec<u8>>,
    /// Client certificate and key (PEM) for mTLS.
    client: Option<(Vec<u8>, Vec<u8>)>,
    /// The name to verify the server's certificate against.
    server_name: Option<String>,
}

/// A Temporal namespace to scan, parsed from a `temporal://` URL (see the
/// [module documentation](self) for the URL, the TLS settings and the API key).
#[derive(Clone)]
pub struct TemporalSource {
    host: url::Host,
    port: u16,
    namespace: String,
    tls: Option<Tls>,
    api_key: Option<secrecy::SecretString>,
}

impl fmt::Debug for TemporalSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemporalSource")
            .field("address", &self.address())
            .field("namespace", &self.namespace)
            .field("tls", &self.tls.is_some())
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Whether `url` names a Temporal namespace (`temporal://…`), so that the caller dispatches
/// to [`inventory`] or [`check`] instead of opening a store.
pub fn is_temporal_url(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("temporal"))
}

impl TemporalSource {
    /// The same connection settings for namespace `namespace`.
    pub fn with_namespace(&self, namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            ..self.clone()
        }
    }

    /// Parses `url` alone (no environment variables).
    pub fn parse(url: &str) -> Result<Self, TemporalError> {
        Self::from_url_with_env(url, |_| None)
    }

    /// Parses `url`, taking settings the URL does not give from the process environment
    /// (`TEMPORAL_TLS*`, `TEMPORAL_API_KEY`).
    pub fn from_url_and_env(url: &str) -> Result<Self, TemporalError> {
        Self::from_url_with_env(url, |name| {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        })
    }

    /// Parses `url`, taking settings the URL does not give from `env` (a variable's value
    /// by name). TLS files are read here.
    pub fn from_url_with_env(
        url: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TemporalError> {
        let shown = redact(url);
        let bad = |why: &str| {
            TemporalError::InvalidUrl(format!(
                "invalid Temporal URL `{shown}`: {why}; expected \
                 temporal://HOST[:PORT]/NAMESPACE[?tls=true&ca=PATH&cert=PATH&key=PATH&server_name=NAME]"
            ))
        };
        if !is_temporal_url(url) {
            return Err(bad("the scheme is not temporal://"));
        }
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "credentials do not go in the URL (set TEMPORAL_API_KEY for an API key)",
            ));
        }
        if parsed.fragment().is_some() {
            return Err(bad("a fragment is not allowed"));
        }
        let host = match parsed.host_str() {
            Some(h) if !h.is_empty() => {
                url::Host::parse(h).map_err(|e| bad(&format!("bad host: {e}")))?
            }
            _ => return Err(bad("no host")),
        };
        let port = parsed.port().unwrap_or(DEFAULT_PORT);
        let segments: Vec<&str> = parsed
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let namespace = match segments.as_slice() {
            [ns] => percent_encoding::percent_decode_str(ns)
                .decode_utf8()
                .map_err(|_| bad("the namespace is not UTF-8"))?
                .into_owned(),
            [] => return Err(bad("no namespace")),
            _ => return Err(bad("the path must be exactly one namespace")),
        };

        let mut query: HashMap<String, String> = HashMap::new();
        for (k, v) in parsed.query_pairs() {
            let k = k.to_ascii_lowercase().replace('-', "_");
            match k.as_str() {
                "api_key" | "apikey" => {
                    return Err(bad(
                        "an API key is never read from the URL; set TEMPORAL_API_KEY",
                    ));
                }
                "tls" | "ca" | "cert" | "key" | "server_name" => {
                    if query.insert(k.clone(), v.into_owned()).is_some() {
                        return Err(bad(&format!("`{k}` is given twice")));
                    }
                }
                _ => {
                    return Err(bad(&format!(
                        "unknown parameter `{}` (known: tls, ca, cert, key, server_name)",
                        k.escape_debug()
                    )));
                }
            }
        }
        let setting = |q: &str, var: &str| query.get(q).cloned().or_else(|| env(var));
        let tls_flag = match setting("tls", "TEMPORAL_TLS") {
            None => None,
            Some(v) => Some(parse_bool(&v).ok_or_else(|| {
                bad(&format!(
                    "tls must be true or false, not `{}`",
                    v.escape_debug()
                ))
            })?),
        };
        let ca = setting("ca", "TEMPORAL_TLS_CA_PATH");
        let cert = setting("cert", "TEMPORAL_TLS_CERT_PATH");
        let key = setting("key", "TEMPORAL_TLS_KEY_PATH");
        let server_name = setting("server_name", "TEMPORAL_TLS_SERVER_NAME");
        let api_key = env("TEMPORAL_API_KEY").map(secrecy::SecretString::from);
        let tls_files = ca.is_some() || cert.is_some() || key.is_some() || server_name.is_some();
        let use_tls = match tls_flag {
            Some(false) if tls_files => {
                return Err(bad(
                    "tls=false conflicts with a CA, client certificate or server name",
                ));
            }
            Some(flag) => flag,
            None => tls_files || api_key.is_some(),
        };
        if api_key.is_some() && !use_tls && !is_loopback(&host) {
            return Err(bad(
                "an API key is sent only over TLS to a non-loopback host (remove tls=false)",
            ));
        }
        let tls = if use_tls {
            let read = |what: &str, path: &str| {
                std::fs::read(Path::new(path)).map_err(|e| {
                    TemporalError::InvalidUrl(format!("{what} `{}`: {e}", path.escape_debug()))
                })
            };
            let client = match (cert, key) {
                (Some(c), Some(k)) => {
                    Some((read("client certificate", &c)?, read("client key", &k)?))
                }
                (None, None) => None,
                _ => {
                    return Err(bad(
                        "a client certificate and its key go together (cert and key)",
                    ));
                }
            };
            Some(Tls {
                ca: ca.map(|p| read("CA certificate", &p)).transpose()?,
                client,
                server_name,
            })
        } else {
            None
        };
        Ok(Self {
            host,
            port,
            namespace,
            tls,
            api_key,
        })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `host:port` of the frontend.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Whether the connection uses TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `temporal://host:port/namespace` (no secret).
    pub fn describe(&self) -> String {
        format!("temporal://{}/{}", self.address(), self.namespace)
    }

    /// Connects to the frontend (and checks that it answers).
    pub async fn connect(&self) -> Result<Connection, TemporalError> {
        let failed = |message: String| TemporalError::Connect {
            address: self.address(),
            message,
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let target = url::Url::parse(&format!("{scheme}://{}", self.address()))
            .map_err(|e| failed(e.to_string()))?;
        let tls = self.tls.as_ref().map(|t| {
            // tonic uses the process's default rustls provider; install ring's if none is.
            let _ = rustls::crypto::ring::default_provider().install_default();
            TlsOptions::builder()
                .maybe_server_root_ca_cert(t.ca.clone())
                .maybe_domain(t.server_name.clone())
                .maybe_client_tls_options(t.client.clone().map(|(cert, key)| {
                    ClientTlsOptions::builder()
                        .client_cert(cert)
                        .client_private_key(key)
                        .build()
                }))
                .build()
        });
        let options = ConnectionOptions::new(target)
            .identity(format!("sealbox-rotate@{}", std::process::id()))
            .maybe_tls_options(tls)
            .maybe_api_key(
                self.api_key
                    .as_ref()
                    .map(|k| secrecy::ExposeSecret::expose_secret(k).to_owned()),
            )
            .connect_timeout(Duration::from_secs(10))
            .build();
        Connection::connect(options)
            .await
            .map_err(|e| failed(e.to_string()))
    }
}

pub(super) fn is_loopback(host: &url::Host) -> bool {
    let borrowed = match host {
        url::Host::Domain(d) => url::Host::Domain(d.as_str()),
        url::Host::Ipv4(a) => url::Host::Ipv4(*a),
        url::Host::Ipv6(a) => url::Host::Ipv6(*a),
    };
    sealbox_core::transport::is_loopback_host(Some(borrowed))
}

pub(super) fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `url` without its query, fragment or user information.
pub(super) fn redact(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or_default();
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}{path}")
                .escape_debug()
                .to_string()
        }
        None => no_query.escape_debug().to_string(),
    }
}
