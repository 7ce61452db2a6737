//! The rule of each kind of value: integers in a range, booleans, lists of networks.

use super::{MAX_QUOTED_VALUE_CHARS, MAX_TRUSTED_PROXIES};
use crate::config::Cidr;
use std::ops::RangeInclusive;

pub(super) fn int(value: &str, range: RangeInclusive<u32>) -> Result<u32, String> {
    let rule = || {
        format!(
            "must be an integer from {} to {}",
            range.start(),
            range.end()
        )
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(rule());
    }
    match value.parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(rule()),
    }
}

pub(super) fn boolean(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false".to_string()),
    }
}

pub(super) fn cidrs(value: &str) -> Result<Vec<Cidr>, String> {
    let mut out = Vec::new();
    if value.trim().is_empty() {
        return Ok(out);
    }
    for item in value.split(',') {
        let item = item.trim();
        if out.len() == MAX_TRUSTED_PROXIES {
            return Err(format!("must list at most {MAX_TRUSTED_PROXIES} networks"));
        }
        let net = Cidr::parse(item).map_err(|e| {
            format!(
                "must be comma-separated networks such as 10.0.0.0/8,fd00::/8; {:?}: {e}",
                shorten(item)
            )
        })?;
        out.push(net);
    }
    Ok(out)
}

pub(super) fn shorten(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_VALUE_CHARS) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_string(),
    }
}
