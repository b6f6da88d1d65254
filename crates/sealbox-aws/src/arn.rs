//! Key ARN helpers.

/// The region of an ARN (`arn:partition:kms:REGION:account:…`).
pub(crate) fn arn_region(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("kms"), Some(region)) if !region.is_empty() => Some(region),
        _ => None,
    }
}

/// Whether two key ARNs are the same Multi-Region key (possibly in different regions). The
/// region must be a plausible region name (`[a-z0-9-]+`).
pub(crate) fn same_multi_region_key(a: &str, b: &str) -> bool {
    let split = |arn: &str| -> Option<(String, String, String)> {
        let p: Vec<&str> = arn.splitn(6, ':').collect();
        if p.len() != 6 || p[0] != "arn" || p[2] != "kms" {
            return None;
        }
        let region_ok = !p[3].is_empty()
            && p[3]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return None;
        }
        let key = p[5].strip_prefix("key/")?;
        key.starts_with("mrk-")
            .then(|| (p[1].to_owned(), p[4].to_owned(), key.to_owned()))
    };
    matches!((split(a), split(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_regions() {
        assert_eq!(
            arn_region("arn:aws:kms:eu-west-1:111122223333:key/abc"),
            Some("eu-west-1")
        );
        assert_eq!(arn_region("alias/sealbox"), None);
        assert_eq!(arn_region("1234abcd-12ab"), None);
    }

    #[test]
    fn multi_region_replicas_match_only_their_own_family() {
        let east = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd";
        let west = "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd";
        assert!(same_multi_region_key(east, west));
        assert!(!same_multi_region_key(
            east,
            "arn:aws:kms:us-west-2:999999999999:key/mrk-1234abcd"
        ));
        assert!(!same_multi_region_key(
            east,
            "arn:aws:kms:us-west-2:111122223333:key/mrk-ffff"
        ));
        assert!(!same_multi_region_key(
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd",
            "arn:aws:kms:us-west-2:111122223333:key/1234abcd"
        ));
        assert!(!same_multi_region_key(
            east,
            "arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1234abcd"
        ));
        assert!(!same_multi_region_key(
            east,
            "arn:aws:kms:US West 2:111122223333:key/mrk-1234abcd"
        ));
        assert!(!same_multi_region_key(
            east,
            "arn:aws:kms::111122223333:key/mrk-1234abcd"
        ));
    }
}
