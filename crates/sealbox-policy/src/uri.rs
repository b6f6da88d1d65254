//! KEK URIs, following the conventions of Temporal Proxy and gocloud.dev where they exist.
//!
//! | URI | KEK |
//! |---|---|
//! | `local:///dev` | the local development KEK (`.sealbox/dev.kek`, or `$SEALBOX_LOCAL_KEK[_FILE]`) |
//! | `local:///NAME?file=PATH` / `local:///NAME?env=VAR` | a local KEK from a key file / an env var |
//! | `awskms:///arn:aws:kms:REGION:ACCOUNT:key/ID?region=R` | an AWS KMS key (also `awskms://alias/NAME?region=R`, `awskms:///KEY-ID`) |
//! | `gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K` | a Cloud KMS key |
//! | `vault://HOST[:PORT]/MOUNT/keys/NAME?namespace=NS` | a Vault/OpenBao Transit key over HTTPS (`vault+http://` for plain HTTP, development only) |

use std::fmt;

/// A parsed KEK URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KekUri {
    /// A local development KEK.
    Local {
        /// The key's name (its key ID in envelopes).
        name: String,
        /// Where the key comes from.
        source: LocalSource,
    },
    /// An AWS KMS key.
    AwsKms {
        /// Key ID, ARN, alias name or alias ARN.
        key: String,
        /// Region override.
        region: Option<String>,
        /// Endpoint override.
        endpoint: Option<String>,
    },
    /// A Cloud KMS key.
    GcpKms {
        /// `projects/…/cryptoKeys/…`.
        name: String,
    },
    /// A Vault / OpenBao Transit key.
    Vault {
        /// `https://host:port` or `http://host:port`.
        address: String,
        /// Transit mount path.
        mount: String,
        /// Key name.
        key: String,
        /// Namespace.
        namespace: Option<String>,
    },
}

/// Where a local KEK comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LocalSource {
    /// `LocalKek::dev_default()` (only for the name `dev`).
    DevDefault,
    /// A key file.
    File(String),
    /// An environment variable.
    Env(String),
}

impl KekUri {
    /// Parses a KEK URI; the error says what is wrong and shows the expected form.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
            format!("`{uri}` is not a KEK URI (expected SCHEME://…, e.g. awskms:///arn:…)")
        })?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let params = parse_query(query)?;
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let allow = |allowed: &[&str]| -> Result<(), String> {
            for (k, _) in &params {
                if !allowed.contains(&k.as_str()) {
                    return Err(format!(
                        "unknown parameter `{k}` in `{uri}` (allowed: {})",
                        if allowed.is_empty() {
                            "none".to_owned()
                        } else {
                            allowed.join(", ")
                        }
                    ));
                }
            }
            Ok(())
        };
        match scheme {
            "local" => {
                allow(&["file", "env"])?;
                let name = path.strip_prefix('/').unwrap_or(path);
                if name.is_empty() || name.contains('/') {
                    return Err(format!("`{uri}`: expected local:///NAME"));
                }
                let source = match (get("file"), get("env")) {
                    (Some(_), Some(_)) => {
                        return Err(format!("`{uri}`: give `file` or `env`, not both"));
                    }
                    (Some(f), None) => LocalSource::File(f),
                    (None, Some(e)) => LocalSource::Env(e),
                    (None, None) if name == "dev" => LocalSource::DevDefault,
                    (None, None) => {
                        return Err(format!(
                            "`{uri}`: a local KEK other than `dev` needs ?file=PATH or ?env=VAR"
                        ));
                    }
                };
                Ok(KekUri::Local {
                    name: name.to_owned(),
                    source,
                })
            }
            "awskms" => {
                allow(&["region", "endpoint"])?;
                let key = path.strip_prefix('/').unwrap_or(path);
                if key.is_empty() {
                    return Err(format!(
                        "`{uri}`: expected awskms:///KEY-ARN or awskms://alias/NAME"
                    ));
                }
                Ok(KekUri::AwsKms {
                    key: key.to_owned(),
                    region: get("region"),
                    endpoint: get("endpoint"),
                })
            }
            "gcpkms" => {
                allow(&[])?;
                let parts: Vec<&str> = path.split('/').collect();
                let ok = parts.len() == 8
                    && parts[0] == "projects"
                    && parts[2] == "locations"
                    && parts[4] == "keyRings"
                    && parts[6] == "cryptoKeys"
                    && parts.iter().all(|p| !p.is_empty());
                if !ok {
                    return Err(format!(
                        "`{uri}`: expected gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K"
                    ));
                }
                Ok(KekUri::GcpKms {
                    name: path.to_owned(),
                })
            }
            "vault" | "vault+http" => {
                allow(&["namespace"])?;
                let (host, key_path) = path.split_once('/').ok_or_else(|| {
                    format!("`{uri}`: expected {scheme}://HOST[:PORT]/MOUNT/keys/NAME")
                })?;
                let (mount, key) = key_path
                    .rsplit_once("/keys/")
                    .filter(|(m, k)| !m.is_empty() && !k.is_empty() && !k.contains('/'))
                    .ok_or_else(|| {
                        format!("`{uri}`: expected {scheme}://HOST[:PORT]/MOUNT/keys/NAME")
                    })?;
                if host.is_empty() {
                    return Err(format!("`{uri}`: the Vault host is missing"));
                }
                if !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
                {
                    return Err(format!("`{uri}`: `{host}` is not a host[:port]"));
                }
                let tls = if scheme == "vault" { "https" } else { "http" };
                check_vault_host(host).map_err(|why| {
                    format!("`{uri}`: the Vault address `{tls}://{host}` is invalid: {why}")
                })?;
                if let Some(ns) = get("namespace")
                    && !ns
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
                {
                    return Err(format!(
                        "`{uri}`: the namespace may only hold ASCII letters, digits and - _ . /"
                    ));
                }
                Ok(KekUri::Vault {
                    address: format!("{tls}://{host}"),
                    mount: mount.to_owned(),
                    key: key.to_owned(),
                    namespace: get("namespace"),
                })
            }
            other => Err(format!(
                "unknown KEK provider `{other}` in `{uri}` (known: local, awskms, gcpkms, vault, vault+http)"
            )),
        }
    }

    /// The provider ID this URI's envelopes carry.
    pub fn provider_id(&self) -> &'static str {
        match self {
            KekUri::Local { .. } => "local",
            KekUri::AwsKms { .. } => "aws-kms",
            KekUri::GcpKms { .. } => "gcp-kms",
            KekUri::Vault { .. } => "vault-transit",
        }
    }
}

impl fmt::Display for KekUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KekUri::Local { name, source } => {
                write!(f, "local:///{name}")?;
                match source {
                    LocalSource::DevDefault => Ok(()),
                    LocalSource::File(p) => write!(f, "?file={p}"),
                    LocalSource::Env(v) => write!(f, "?env={v}"),
                }
            }
            KekUri::AwsKms {
                key,
                region,
                endpoint,
            } => {
                write!(f, "awskms:///{key}")?;
                let mut sep = '?';
                if let Some(r) = region {
                    write!(f, "{sep}region={r}")?;
                    sep = '&';
                }
                if let Some(e) = endpoint {
                    write!(f, "{sep}endpoint={e}")?;
                }
                Ok(())
            }
            KekUri::GcpKms { name } => write!(f, "gcpkms://{name}"),
            KekUri::Vault {
                address,
                mount,
                key,
                namespace,
            } => {
                let (scheme, host) = match address.strip_prefix("https://") {
                    Some(h) => ("vault", h),
                    None => (
                        "vault+http",
                        address.strip_prefix("http://").unwrap_or(address),
                    ),
                };
                write!(f, "{scheme}://{host}/{mount}/keys/{key}")?;
                if let Some(ns) = namespace {
                    write!(f, "?namespace={ns}")?;
                }
                Ok(())
            }
        }
    }
}

/// Checks a Vault `host[:port]` as strictly as a URL parser would (what the HTTP layer does
/// later, where a bad address used to panic): a DNS name (dot-separated labels of letters,
/// digits and `-`), a dotted-quad IPv4 address, or a bracketed IPv6 address; an optional
/// port 1–65535.
fn check_vault_host(host_port: &str) -> Result<(), String> {
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

fn parse_query(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("query parameter `{pair}` has no value"))?;
        if v.is_empty() {
            return Err(format!("query parameter `{k}` is empty"));
        }
        if out.iter().any(|(key, _)| key == k) {
            return Err(format!("query parameter `{k}` is given twice"));
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses_and_round_trips() {
        for uri in [
            "local:///dev",
            "local:///old?file=/etc/sealbox/old.kek",
            "local:///ci?env=CI_KEK",
            "awskms:///arn:aws:kms:eu-west-1:111122223333:key/abc?region=eu-west-1",
            "awskms:///alias/payments?region=us-east-1&endpoint=http://127.0.0.1:5000",
            "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k",
            "vault://vault.example:8200/transit/keys/payments?namespace=team-a",
            "vault+http://127.0.0.1:8200/kms/keys/dev",
            "vault://[::1]:8200/transit/keys/k",
            "vault://vault-1.example:65535/transit/keys/k",
            "vault://10.0.0.1/transit/keys/k",
        ] {
            let parsed = KekUri::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(parsed.to_string(), uri);
            assert_eq!(KekUri::parse(&parsed.to_string()), Ok(parsed));
        }
        assert_eq!(
            KekUri::parse("awskms://alias/x").map(|u| u.to_string()),
            Ok("awskms:///alias/x".to_owned())
        );
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("kms://x", "unknown KEK provider `kms`"),
            ("local:///other", "needs ?file=PATH or ?env=VAR"),
            ("local:///dev?file=a&env=b", "not both"),
            ("awskms:///", "expected awskms:///KEY-ARN"),
            ("awskms:///k?regoin=x", "unknown parameter `regoin`"),
            (
                "gcpkms://projects/p/keyRings/r",
                "expected gcpkms://projects/P/locations/L",
            ),
            (
                "vault://host/transit/name",
                "expected vault://HOST[:PORT]/MOUNT/keys/NAME",
            ),
            ("vault://bad host/transit/keys/k", "is not a host[:port]"),
            (
                "vault://h/transit/keys/k?namespace=t\u{e9}am",
                "namespace may only hold",
            ),
            ("vault:///transit/keys/k", "host is missing"),
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
            ("no-scheme", "is not a KEK URI"),
            ("awskms:///k?region=a&region=b", "given twice"),
        ];
        for (uri, want) in cases {
            let err = KekUri::parse(uri).expect_err(uri);
            assert!(err.contains(want), "{uri}: {err}");
        }
    }
}
