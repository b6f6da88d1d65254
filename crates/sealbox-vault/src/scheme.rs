//! The `vault://` KEK scheme and the `[vault]` settings table.
//!
//! | URI | KEK |
//! |---|---|
//! | `vault://HOST[:PORT]/MOUNT/keys/NAME?namespace=NS` | a Transit key over HTTPS |
//! | `vault+http://HOST[:PORT]/MOUNT/keys/NAME` | the same over plain HTTP (development only) |
//! | `vault:///KEY-ID` | host-less: the key as an envelope header names it (`[NS/]MOUNT/keys/NAME`); for matching, not for connecting |

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sealbox_core::scheme::{
    self, SchemeSettings, UriParts, duration_setting, toml_error, with_query,
};
use sealbox_core::{KekRef, KekScheme, KekUri, KeyProvider, ProviderError, SettingError};
use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;
use zeroize::Zeroizing;

use crate::{PROVIDER_ID, VaultAuth, VaultTransit, VaultTransitConfig};

/// The `vault://` scheme (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct VaultScheme;

/// A parsed `vault://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VaultUri {
    /// `https://host:port` or `http://host:port`; `None` in the host-less form.
    address: Option<String>,
    mount: String,
    key: String,
    namespace: Option<String>,
    /// The key ID envelopes carry.
    key_id: String,
}

/// How to authenticate, with secrets referenced (env var or file), never inline.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthSetting {
    Token {
        env: Option<String>,
        file: Option<String>,
    },
    AppRole {
        mount: String,
        role_id: String,
        secret_id_env: Option<String>,
        secret_id_file: Option<String>,
    },
    Kubernetes {
        mount: String,
        role: String,
        jwt_path: String,
    },
}

/// The validated `[vault]` table (`None` inside when the file has none).
#[derive(Debug, Clone)]
struct VaultSettings(Option<Settings>);

#[derive(Debug, Clone)]
struct Settings {
    auth: AuthSetting,
    ca_cert: Option<String>,
    timeout: Option<Duration>,
}

#[derive(Deserialize)]
struct Doc {
    vault: Option<Spanned<RawVault>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    auth: Spanned<String>,
    token: Option<Spanned<String>>,
    token_env: Option<String>,
    token_file: Option<String>,
    approle_mount: Option<String>,
    role_id: Option<String>,
    secret_id: Option<Spanned<String>>,
    secret_id_env: Option<String>,
    secret_id_file: Option<String>,
    kubernetes_mount: Option<String>,
    kubernetes_role: Option<String>,
    jwt_path: Option<String>,
    ca_cert: Option<String>,
    timeout: Option<Spanned<String>>,
}

fn key_id(namespace: Option<&str>, mount: &str, key: &str) -> String {
    match namespace {
        Some(ns) => format!("{}/{mount}/keys/{key}", ns.trim_matches('/')),
        None => format!("{mount}/keys/{key}"),
    }
}

fn misconfigured(kek: &KekUri, message: impl Into<String>) -> ProviderError {
    scheme::misconfigured(PROVIDER_ID, kek, message)
}

fn read_secret(
    kek: &KekUri,
    env: Option<&str>,
    file: Option<&str>,
) -> Result<SecretString, ProviderError> {
    if let Some(var) = env {
        return std::env::var(var)
            .map(|v| SecretString::from(v.trim().to_owned()))
            .map_err(|_| misconfigured(kek, format!("environment variable {var} is not set")));
    }
    if let Some(path) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| misconfigured(kek, format!("cannot read secret file {path}: {e}")))?,
        );
        return Ok(SecretString::from(text.trim().to_owned()));
    }
    Err(misconfigured(kek, "no secret source configured"))
}

impl AuthSetting {
    fn resolve(&self, kek: &KekUri) -> Result<VaultAuth, ProviderError> {
        Ok(match self {
            AuthSetting::Token { env, file } => {
                VaultAuth::Token(read_secret(kek, env.as_deref(), file.as_deref())?)
            }
            AuthSetting::AppRole {
                mount,
                role_id,
                secret_id_env,
                secret_id_file,
            } => VaultAuth::AppRole {
                mount: mount.clone(),
                role_id: role_id.clone(),
                secret_id: read_secret(kek, secret_id_env.as_deref(), secret_id_file.as_deref())?,
            },
            AuthSetting::Kubernetes {
                mount,
                role,
                jwt_path,
            } => VaultAuth::Kubernetes {
                mount: mount.clone(),
                role: role.clone(),
                jwt_path: PathBuf::from(jwt_path),
            },
        })
    }
}

impl RawVault {
    fn validate(self, span: std::ops::Range<usize>) -> Result<Settings, Vec<SettingError>> {
        let mut errors = Vec::new();
        let secret_inline = |s: &Option<Spanned<String>>, field: &str, instead: &str| {
            s.as_ref().map(|t| {
                SettingError::new(
                    t.span(),
                    format!("vault.{field}"),
                    format!("secrets are never written in the policy file: use {instead}"),
                )
            })
        };
        errors.extend(secret_inline(
            &self.token,
            "token",
            "token_env or token_file",
        ));
        errors.extend(secret_inline(
            &self.secret_id,
            "secret_id",
            "secret_id_env or secret_id_file",
        ));
        let timeout = match &self.timeout {
            Some(t) => match duration_setting(t.get_ref(), t.span(), "vault.timeout") {
                Ok(d) => Some(d),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            None => None,
        };
        let auth = match self.auth.get_ref().as_str() {
            "token" => {
                if self.token_env.is_some() && self.token_file.is_some() {
                    errors.push(SettingError::new(
                        span.clone(),
                        "vault",
                        "give token_env or token_file, not both",
                    ));
                }
                Some(AuthSetting::Token {
                    env: self
                        .token_env
                        .clone()
                        .or_else(|| self.token_file.is_none().then(|| "VAULT_TOKEN".to_owned())),
                    file: self.token_file.clone(),
                })
            }
            "approle" => match self.role_id.clone() {
                None => {
                    errors.push(SettingError::new(
                        span,
                        "vault.role_id",
                        "AppRole auth needs role_id",
                    ));
                    None
                }
                Some(_) if self.secret_id_env.is_none() == self.secret_id_file.is_none() => {
                    errors.push(SettingError::new(
                        span,
                        "vault",
                        "AppRole auth needs exactly one of secret_id_env, secret_id_file",
                    ));
                    None
                }
                Some(role_id) => Some(AuthSetting::AppRole {
                    mount: self.approle_mount.unwrap_or_else(|| "approle".into()),
                    role_id,
                    secret_id_env: self.secret_id_env,
                    secret_id_file: self.secret_id_file,
                }),
            },
            "kubernetes" => match self.kubernetes_role {
                None => {
                    errors.push(SettingError::new(
                        span,
                        "vault.kubernetes_role",
                        "Kubernetes auth needs kubernetes_role",
                    ));
                    None
                }
                Some(role) => Some(AuthSetting::Kubernetes {
                    mount: self.kubernetes_mount.unwrap_or_else(|| "kubernetes".into()),
                    role,
                    jwt_path: self.jwt_path.unwrap_or_else(|| {
                        "/var/run/secrets/kubernetes.io/serviceaccount/token".into()
                    }),
                }),
            },
            other => {
                errors.push(SettingError::new(
                    self.auth.span(),
                    "vault.auth",
                    format!("unknown auth method `{other}` (token, approle, kubernetes)"),
                ));
                None
            }
        };
        match auth {
            Some(auth) if errors.is_empty() => Ok(Settings {
                auth,
                ca_cert: self.ca_cert,
                timeout,
            }),
            _ => Err(errors),
        }
    }
}

#[async_trait]
impl KekScheme for VaultScheme {
    fn uri_schemes(&self) -> &'static [&'static str] {
        &["vault", "vault+http"]
    }

    fn provider_id(&self) -> &'static str {
        PROVIDER_ID
    }

    fn section(&self) -> Option<&'static str> {
        Some("vault")
    }

    fn parse(&self, uri: &str) -> Result<KekUri, String> {
        let parts = UriParts::parse(uri, &["namespace"])?;
        let scheme = parts.scheme;
        let expected = || format!("`{uri}`: expected {scheme}://HOST[:PORT]/MOUNT/keys/NAME");
        let (host, key_path) = parts.path.split_once('/').ok_or_else(expected)?;
        let (mount, key) = key_path
            .rsplit_once("/keys/")
            .filter(|(m, k)| !m.is_empty() && !k.is_empty() && !k.contains('/'))
            .ok_or_else(expected)?;
        let namespace = parts.get("namespace");
        if let Some(ns) = &namespace
            && !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        {
            return Err(format!(
                "`{uri}`: the namespace may only hold ASCII letters, digits and - _ . /"
            ));
        }
        if host.is_empty() {
            // The host-less form names a key as a header does: `vault:///KEY-ID`.
            if scheme != "vault" || namespace.is_some() {
                return Err(format!(
                    "`{uri}`: the Vault host is missing (the host-less form is \
                     vault:///[NAMESPACE/]MOUNT/keys/NAME, for matching envelopes only)"
                ));
            }
            return Ok(KekUri::new(
                format!("vault:///{key_path}"),
                PROVIDER_ID,
                VaultUri {
                    address: None,
                    mount: mount.to_owned(),
                    key: key.to_owned(),
                    namespace: None,
                    key_id: key_path.to_owned(),
                },
            ));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        {
            return Err(format!("`{uri}`: `{host}` is not a host[:port]"));
        }
        let tls = if scheme == "vault" { "https" } else { "http" };
        check_host(host).map_err(|why| {
            format!("`{uri}`: the Vault address `{tls}://{host}` is invalid: {why}")
        })?;
        let text = with_query(
            format!("{scheme}://{host}/{mount}/keys/{key}"),
            &[("namespace", namespace.as_deref())],
        );
        Ok(KekUri::new(
            text,
            PROVIDER_ID,
            VaultUri {
                address: Some(format!("{tls}://{host}")),
                mount: mount.to_owned(),
                key: key.to_owned(),
                key_id: key_id(namespace.as_deref(), mount, key),
                namespace,
            },
        ))
    }

    fn connectable(&self, kek: &KekUri) -> Result<(), String> {
        match kek.parsed::<VaultUri>() {
            Some(u) if u.address.is_none() => Err(format!(
                "`{kek}`: the Vault host is missing (vault:///KEY-ID names a key for matching \
                 envelopes only; write vault://HOST[:PORT]/MOUNT/keys/NAME)"
            )),
            _ => Ok(()),
        }
    }

    fn settings(
        &self,
        policy_text: &str,
        used: &[&KekUri],
    ) -> Result<SchemeSettings, Vec<SettingError>> {
        let doc: Doc = toml::from_str(policy_text)
            .map_err(|e| vec![toml_error(e.span(), "vault", e.message())])?;
        let settings = match doc.vault {
            Some(raw) => {
                let span = raw.span();
                Some(raw.into_inner().validate(span)?)
            }
            None => None,
        };
        let connects = used
            .iter()
            .any(|k| k.parsed::<VaultUri>().is_some_and(|u| u.address.is_some()));
        if connects && settings.is_none() {
            return Err(vec![SettingError::new(
                0..0,
                "vault",
                "a vault:// KEK is used but there is no [vault] table saying how to authenticate",
            )]);
        }
        Ok(Arc::new(VaultSettings(settings)))
    }

    async fn connect(
        &self,
        kek: &KekUri,
        settings: &SchemeSettings,
    ) -> Result<Arc<dyn KeyProvider>, ProviderError> {
        let uri = kek
            .parsed::<VaultUri>()
            .ok_or_else(|| misconfigured(kek, "not a vault:// KEK"))?;
        self.connectable(kek).map_err(|m| misconfigured(kek, m))?;
        let address = uri
            .address
            .as_ref()
            .ok_or_else(|| misconfigured(kek, "no host"))?;
        let settings = settings
            .downcast_ref::<VaultSettings>()
            .and_then(|s| s.0.as_ref())
            .ok_or_else(|| misconfigured(kek, "no [vault] settings"))?;
        let mut config = VaultTransitConfig::new(address, &uri.key, settings.auth.resolve(kek)?)
            .mount(&uri.mount);
        if let Some(t) = settings.timeout {
            config = config.timeout(t);
        }
        if let Some(ns) = &uri.namespace {
            config = config.namespace(ns);
        }
        if let Some(ca) = &settings.ca_cert {
            config = config.ca_cert(ca);
        }
        Ok(Arc::new(VaultTransit::connect(config).await?))
    }

    fn key_id(&self, kek: &KekUri) -> Option<String> {
        kek.parsed::<VaultUri>().map(|u| u.key_id.clone())
    }

    fn display(&self, kek: &KekRef) -> String {
        format!("vault:///{}", kek.key_id())
    }

    fn describe(&self, kek: &KekUri) -> String {
        match kek.parsed::<VaultUri>().and_then(|u| u.address.as_deref()) {
            Some(address) => format!("Vault at {address}"),
            None => "Vault (host not given)".into(),
        }
    }
}

/// Checks a Vault `host[:port]` as strictly as a URL parser would (what the HTTP layer does
/// later, where a bad address used to panic): a DNS name (dot-separated labels of letters,
/// digits and `-`), a dotted-quad IPv4 address, or a bracketed IPv6 address; an optional
/// port 1–65535.
fn check_host(host_port: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| "an IPv6 address needs a closing `]`".to_owned())?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`[{v6}]` is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected `{p}` after the IPv6 address"))?,
            ),
        };
        (None, port)
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(host_port), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("the host is missing".into());
        }
        if host.contains(['[', ']']) {
            return Err(format!("`{host}` is not a host name"));
        }
        let labels: Vec<&str> = host.split('.').collect();
        if labels.iter().any(|l| l.is_empty()) {
            return Err(format!("`{host}` has an empty label"));
        }
        // As in URL parsing, a host whose last label is numeric is an IPv4 address.
        let last = labels.last().copied().unwrap_or_default();
        let numeric = last.bytes().all(|b| b.is_ascii_digit())
            || (last.len() > 1
                && (last.starts_with("0x") || last.starts_with("0X"))
                && last[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        if numeric && host.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(format!("`{host}` is not an IPv4 address"));
        }
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && matches!(port.parse::<u32>(), Ok(1..=65535));
        if !valid {
            return Err(format!("`{port}` is not a port (1-65535)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_round_trip() {
        for uri in [
            "vault://vault.example:8200/transit/keys/payments?namespace=team-a",
            "vault+http://127.0.0.1:8200/kms/keys/dev",
            "vault://[::1]:8200/transit/keys/k",
            "vault://vault-1.example:65535/transit/keys/k",
            "vault://10.0.0.1/transit/keys/k",
            "vault:///transit/keys/k",
            "vault:///team-a/transit/keys/k",
        ] {
            let parsed = VaultScheme
                .parse(uri)
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(parsed.to_string(), uri);
            assert_eq!(VaultScheme.parse(&parsed.to_string()), Ok(parsed));
        }
        let with_ns = VaultScheme
            .parse("vault://h/transit/keys/k?namespace=team-a")
            .expect("valid");
        assert_eq!(
            VaultScheme.key_id(&with_ns).as_deref(),
            Some("team-a/transit/keys/k")
        );
        // The header's display form names the same key ID.
        let kek = KekRef::new(PROVIDER_ID, "team-a/transit/keys/k").expect("valid");
        let shown = VaultScheme
            .parse(&VaultScheme.display(&kek))
            .expect("parses");
        assert_eq!(VaultScheme.key_id(&shown), VaultScheme.key_id(&with_ns));
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                "vault://host/transit/name",
                "expected vault://HOST[:PORT]/MOUNT/keys/NAME",
            ),
            ("vault://bad host/transit/keys/k", "is not a host[:port]"),
            (
                "vault://h/transit/keys/k?namespace=t\u{e9}am",
                "namespace may only hold",
            ),
            ("vault+http:///transit/keys/k", "host is missing"),
            ("vault:///transit/keys/k?namespace=a", "host is missing"),
            (
                "vault://h:99999/transit/keys/k",
                "the Vault address `https://h:99999` is invalid: `99999` is not a port (1-65535)",
            ),
            (
                "vault+http://h:0/transit/keys/k",
                "`http://h:0` is invalid: `0` is not a port",
            ),
            ("vault://h:/transit/keys/k", "`` is not a port"),
            ("vault://h:80:81/transit/keys/k", "`80:81` is not a port"),
            ("vault://h:8x/transit/keys/k", "`8x` is not a port"),
            ("vault://:8200/transit/keys/k", "the host is missing"),
            ("vault://a..b/transit/keys/k", "has an empty label"),
            ("vault://1.2.3.999/transit/keys/k", "is not an IPv4 address"),
            ("vault://vault.0x1/transit/keys/k", "is not an IPv4 address"),
            (
                "vault://[zz]:8200/transit/keys/k",
                "`[zz]` is not an IPv6 address",
            ),
            ("vault://[::1/transit/keys/k", "closing `]`"),
            ("vault://[::1]8200/transit/keys/k", "unexpected `8200`"),
            ("vault://h]:1/transit/keys/k", "is not a host name"),
        ];
        for (uri, want) in cases {
            let err = VaultScheme.parse(uri).expect_err(uri);
            assert!(err.contains(want), "{uri}: {err}");
        }
    }
}
