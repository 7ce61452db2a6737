//! The default IPv4 gateway: the router PCP and NAT-PMP talk to. Linux lists its routes in
//! `/proc/net/route`; elsewhere there is no portable way without platform calls, and the
//! gateway is unknown (UPnP still finds its router by multicast).

use std::net::Ipv4Addr;

/// Where Linux lists its IPv4 routes.
#[cfg(target_os = "linux")]
const ROUTE_TABLE: &str = "/proc/net/route";
/// Most bytes of the route table read (a few thousand routes; a home machine has a handful).
#[cfg(target_os = "linux")]
const MAX_ROUTE_TABLE_BYTES: u64 = 256 * 1024;
/// Route flags (`linux/route.h`): the route is up, and goes through a gateway.
const RTF_UP: u16 = 0x1;
const RTF_GATEWAY: u16 = 0x2;

/// The gateway of the default IPv4 route, if there is one (the lowest metric wins).
pub(crate) fn default_gateway() -> Option<Ipv4Addr> {
    #[cfg(target_os = "linux")]
    {
        use std::io::Read as _;
        let mut table = String::new();
        let read = std::fs::File::open(ROUTE_TABLE)
            .and_then(|f| f.take(MAX_ROUTE_TABLE_BYTES).read_to_string(&mut table));
        match read {
            Ok(_) => parse_default_gateway(&table),
            Err(e) => {
                log::debug!("port mapping: cannot read {ROUTE_TABLE}: {e}");
                None
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
/// Reads `/proc/net/route`: a header line, then tab-separated `Iface Destination Gateway Flags
/// RefCnt Use Metric Mask ...` with addresses as the hex of their in-memory (network order)
/// bytes read as a native-endian `u32`.
pub(crate) fn parse_default_gateway(table: &str) -> Option<Ipv4Addr> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, gateway, flags, metric, mask) = (
                hex(f.get(1)?)?,
                hex(f.get(2)?)?,
                u16::from_str_radix(f.get(3)?, 16).ok()?,
                f.get(6)?.parse::<u32>().ok()?,
                hex(f.get(7)?)?,
            );
            let wanted = RTF_UP | RTF_GATEWAY;
            (dest == 0 && mask == 0 && flags & wanted == wanted && gateway != 0)
                .then(|| (metric, Ipv4Addr::from(gateway.to_ne_bytes())))
        })
        .min_by_key(|&(metric, _)| metric)
        .map(|(_, gateway)| gateway)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the bytes 192.168.77.1 look like in the table on this machine.
    fn hex(ip: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip))
    }

    #[test]
    fn finds_the_default_route_with_the_lowest_metric() {
        let table = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             wlan0\t00000000\t{}\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
             eth0\t00000000\t{}\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth0\t{}\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
            hex([10, 0, 0, 1]),
            hex([192, 168, 77, 1]),
            hex([192, 168, 77, 0]),
        );
        assert_eq!(
            parse_default_gateway(&table),
            Some(Ipv4Addr::new(192, 168, 77, 1))
        );
    }

    #[test]
    fn no_default_route_or_garbage_gives_none() {
        let down = format!(
            "header\neth0\t00000000\t{}\t0002\t0\t0\t0\t00000000\t0\t0\t0\n",
            hex([192, 168, 1, 1])
        );
        assert_eq!(parse_default_gateway(&down), None);
        assert_eq!(parse_default_gateway(""), None);
        assert_eq!(parse_default_gateway("header\nfoo bar\n\t\t\n"), None);
        // A default route on a point-to-point link has no gateway.
        let direct = "header\nppp0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(parse_default_gateway(direct), None);
    }
}
