#!/usr/bin/env bash
# The NAT lab (tests/natlab/README.md): network namespaces that play the internet, a public phone
# book and home routers of every common NAT type (nftables; miniupnpd for UPnP/NAT-PMP/PCP), then
# the real `peer` CLI between every ordered pair of NAT types. Prints a self-check of each NAT and
# the matrix: which pairs connect directly, which candidate won, how long it took.
#
# Usage: tests/natlab/run.sh [--keep] [--no-matrix]
#        tests/natlab/run.sh --clean      remove a lab left up by --keep (or by a killed run)
#   --keep       leave the lab up afterwards (phone book, STUN server, miniupnpd, peer servers),
#                also after a failure, and print how to enter it
#   --no-matrix  build and check the lab, start the servers, skip the fetches (with --keep)
# Environment:
#   NATLAB_BIN_DIR        folder holding `peer` and `pi-server` (default: build them with
#                         `cargo build --profile bench-fast` and use target/bench-fast)
#   NATLAB_FETCH_TIMEOUT  seconds one fetch may take before it counts as failed (12)
#   NATLAB_SETTLE         seconds between the servers' registration and the first fetch (3):
#                         time for servers to open mappings, send keep-alives, etc.
#   NATLAB_FILE_KIB       size of the served file (256)
#   NATLAB_SERVE_ARGS, NATLAB_FETCH_ARGS   extra flags for every `peer serve` / `peer fetch`
#   NATLAB_REPORT         also write the matrix as markdown to this file
#   NATLAB_MIN_DIRECT     exit 1 if fewer ordered pairs of the matrix connect directly
#   NATLAB_MIN_CONNECTED  exit 1 if fewer ordered pairs connect at all (directly or relayed)
#   NATLAB_RELAY          1 (default): the phone book runs its relay (TLS on TCP port 443);
#                         0: no relay, to see which pairs need it
#   NATLAB_FAILOVER       1 (default): a second phone book (with a relay when NATLAB_RELAY=1);
#                         every player registers with both; after the matrix the first one goes
#                         silent (nftables drops all its traffic, like a host that vanished) and
#                         the matrix runs again. 0: one phone book, one matrix
#   NATLAB_MIN_FAILOVER   exit 1 if fewer ordered pairs connect with the first phone book silent
#   NATLAB_INSTANCES      1: the two phone books are instances of one, sharing their records in a
#                         Redis (redis-server in nl-pb); servers register with the first only and
#                         fetchers with the second only, so every punch request and relay
#                         session crosses from one instance to the other (Redis pub/sub). No
#                         failover phase. 0 (default)
#   NATLAB_PEER_RELAY     1: a player on the internet (nl-friend, 203.0.113.6) relays for every
#                         other player (`peer serve --relay-listen`, all their keys as friends),
#                         and every server and fetcher names it with --relay-via; run it with
#                         NATLAB_RELAY=0 to see that no pair needs the phone book's relay. 0 (default)
#                         upnp: the same player behind a home router of its own with miniupnpd
#                         (nl-upnpc, WAN 203.0.113.28), without --relay-public: its relay's TCP port
#                         must be mapped on that router (UPnP, NAT-PMP or PCP) and the mapped address
#                         published, and the mapping is gone after it stops
# Needs root, iproute2, nftables, miniupnpd-nftables, miniupnpc, python3 (installed through
# .ci/apt-install.sh). Without root it says so and exits 0. One lab per machine at a time (lock).
set -Eeuo pipefail
trap 'echo "natlab: FAIL: line $LINENO: \"$BASH_COMMAND\" exited non-zero" >&2' ERR
# Paths given relative to the caller's folder.
REPORT=${NATLAB_REPORT:+$(realpath -m -- "$NATLAB_REPORT")}
BIN_DIR=${NATLAB_BIN_DIR:+$(realpath -m -- "$NATLAB_BIN_DIR")}
cd "$(dirname "$0")/../.."
T_START=$(date +%s)

KEEP=0; MATRIX=1; CLEAN_ONLY=0
for a in "$@"; do
    case $a in
        --keep) KEEP=1 ;;
        --no-matrix) MATRIX=0 ;;
        --clean) CLEAN_ONLY=1 ;;
        -h|--help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "natlab: unknown argument $a (see --help)"; exit 2 ;;
    esac
done

if [ "$(id -u)" != 0 ]; then
    echo "natlab: skipped: needs root (network namespaces, nftables)"
    exit 0
fi

FETCH_TIMEOUT=${NATLAB_FETCH_TIMEOUT:-12}
SETTLE=${NATLAB_SETTLE:-3}
FILE_KIB=${NATLAB_FILE_KIB:-256}
read -r -a SERVE_ARGS <<< "${NATLAB_SERVE_ARGS:-}"
read -r -a FETCH_ARGS <<< "${NATLAB_FETCH_ARGS:-}"
LAB_DIR=$PWD/tests/natlab
HELPER=$LAB_DIR/natlab.py
LOCK=/run/lock/natlab.lock
KEPT=/run/lock/natlab.kept     # the work folder of a lab left up by --keep
# The lab's own environment for the peer CLI: nothing from the caller's.
unset PEER_IDENTITY PEER_PINS PEER_LISTEN PEER_PHONEBOOK PEER_NAME

# ---- addresses (RFC 5737 and RFC 3849 only; nothing is routed to the host) -----------------
INET_GW=203.0.113.254        # the "internet" namespace's own address on the bridge
PB_IP=203.0.113.1            # the phone book
PB_IP6=2001:db8:ffff::1
STUN_IPS=(203.0.113.2 203.0.113.3)
STUN_IPS6=(2001:db8:ffff::2 2001:db8:ffff::3)
STUN_PORTS=(3478 3479)
PB_URL=http://$PB_IP:8080
PB_URL6=http://[$PB_IP6]:8080
PB2_IP=203.0.113.4           # the second phone book (NATLAB_FAILOVER=1)
FRIEND_IP=203.0.113.6        # the player who relays for all others (NATLAB_PEER_RELAY=1)
FRIEND_NAME="Relay Friend@Natlab"
PEER_RELAY=${NATLAB_PEER_RELAY:-0}
PB2_IP6=2001:db8:ffff::4
PB2_URL=http://$PB2_IP:8080
PB2_URL6=http://[$PB2_IP6]:8080
FAILOVER=${NATLAB_FAILOVER:-1}
INSTANCES=${NATLAB_INSTANCES:-0}
# Two instances need the second phone book's namespace and daemon.
[ "$INSTANCES" = 1 ] && FAILOVER=1
REDIS_PORT=6379
SERVE_PORT=7000

# The seven site types of the matrix, in matrix order. Each exists twice: site a holds the serving
# player, site b the fetching one (so same-type pairs cross two routers).
TYPES=(fullcone restricted portrestricted symmetric upnp public udpblocked)
declare -A CODE=([fullcone]=fc [restricted]=rc [portrestricted]=prc [symmetric]=sym [upnp]=upnp
                 [public]=pub [udpblocked]=udpb)
declare -A LABEL=([fullcone]="full cone" [restricted]="restricted" [portrestricted]="port-restr."
                  [symmetric]="symmetric" [upnp]="sym+UPnP" [public]="public"
                  [udpblocked]="UDP blocked")
declare -A EXPECT=([fullcone]=full-cone [restricted]=restricted-cone
                   [portrestricted]=port-restricted-cone [symmetric]=symmetric [upnp]=symmetric
                   [public]=public [udpblocked]=udp-blocked [hairpin]=port-restricted-cone
                   [v6]=firewall)
declare -A SERVER_NAME=([fullcone]="Serve Fullcone@Natlab" [restricted]="Serve Restricted@Natlab"
                        [portrestricted]="Serve Portrestricted@Natlab"
                        [symmetric]="Serve Symmetric@Natlab" [upnp]="Serve Upnp@Natlab"
                        [public]="Serve Public@Natlab" [udpblocked]="Serve Udpblocked@Natlab")

log() { printf '%s\n' "$*"; }
fail() { printf 'natlab: FAIL: %s\n' "$*"; exit 1; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# daemon NS LOG CMD...: a long-running process of the lab. fd 9 holds the lab's lock, which the
# processes left up by --keep must not hold.
daemon() { local ns=$1 out=$2; shift 2; ip netns exec "$ns" "$@" > "$out" 2>&1 9>&- & }

# ---- removing a lab ---------------------------------------------------------------------------
lab_namespaces() { ip netns list 2>/dev/null | awk '$1 ~ /^nl-/ {print $1}'; }

# Ends every process inside the lab's namespaces (only lab processes live there), peer servers
# first so that they unregister while the phone book still runs, then deletes the namespaces.
# (A subshell without errexit: processes may end while it runs.)
remove_lab() (
    set +eE
    trap - ERR
    local ns p t peers=() left
    for ns in $(lab_namespaces); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do
            [ "$(cat "/proc/$p/comm" 2>/dev/null)" = peer ] || continue
            kill -TERM "$p" 2>/dev/null && peers+=("$p")
        done
    done
    for t in $(seq 30); do
        left=""
        for p in "${peers[@]}"; do [ -e "/proc/$p" ] && left=1; done
        [ -z "$left" ] && break
        sleep 0.1
    done
    for t in TERM TERM TERM TERM TERM TERM TERM TERM TERM TERM KILL; do
        left=""
        for ns in $(lab_namespaces); do
            for p in $(ip netns pids "$ns" 2>/dev/null); do kill -"$t" "$p" 2>/dev/null; left=1; done
        done
        [ -z "$left" ] && break
        sleep 0.2
    done
    for ns in $(lab_namespaces); do
        ip netns del "$ns" 2>/dev/null || { sleep 0.5; ip netns del "$ns" 2>/dev/null; } \
            || echo "natlab: could not delete namespace $ns"
    done
    if [ -f "$KEPT" ]; then
        local w; w=$(cat "$KEPT")
        case $w in /tmp/natlab.*) rm -rf "$w" ;; esac
        rm -f "$KEPT"
    fi
)

exec 9>"$LOCK"
if ! flock -n 9; then
    fail "another NAT lab run holds $LOCK (one lab per machine; its namespaces are named nl-*)"
fi
if [ "$CLEAN_ONLY" = 1 ]; then
    n=$(lab_namespaces | wc -l)
    remove_lab
    echo "natlab: removed $n namespaces"
    exit 0
fi
if [ -n "$(lab_namespaces)" ] || [ -f "$KEPT" ]; then
    echo "natlab: removing the leftovers of an earlier run: $(lab_namespaces | tr '\n' ' ')"
    remove_lab
fi

# ---- tools ------------------------------------------------------------------------------------
# miniupnpd-nftables holds only the daemon and its nft scripts: no service, no maintainer script
# (the `miniupnpd` package adds those; it is not installed), so nothing starts on the host.
.ci/apt-install.sh natlab iproute2 nftables miniupnpd-nftables miniupnpc python3 coreutils mawk util-linux
[ "${NATLAB_INSTANCES:-0}" != 1 ] || .ci/apt-install.sh natlab redis-server
export PATH=$PATH:/usr/sbin:/sbin
for t in ip nft miniupnpd upnpc python3 sha1sum timeout flock; do
    command -v "$t" >/dev/null || fail "$t is missing (see the package list above)"
done
if ! ip netns add nl-probe 2>/dev/null; then
    echo "natlab: skipped: cannot create network namespaces here (a container without CAP_SYS_ADMIN?)"
    exit 0
fi
ip netns del nl-probe

if [ -n "$BIN_DIR" ]; then
    BIN=$BIN_DIR
else
    cargo build --profile bench-fast -p peer -p pi-server --bin peer --bin pi-server
    BIN=$(cd "${CARGO_TARGET_DIR:-target}/bench-fast" && pwd)
fi
PEER=$BIN/peer
PI_SERVER=$BIN/pi-server
[ -x "$PEER" ] && [ -x "$PI_SERVER" ] || fail "no peer or pi-server in $BIN"

WORK=$(mktemp -d /tmp/natlab.XXXXXX)
mkdir -p "$WORK/log" "$WORK/res" "$WORK/keys" "$WORK/files" "$WORK/out"

keep_notes() {
    cat <<EOF

== the lab is left up (--keep); logs and keys in $WORK
Enter a namespace:    ip netns exec nl-fca bash         (players: nl-{fc,rc,prc,sym,upnp,pub,udpb}{a,b}, nl-hp1, nl-hp2, nl-v6a, nl-v6b;
                                                          routers: the same name + -gw; nl-inet the bridge, nl-pb the phone book, nl-stun)
Router rules:         ip netns exec nl-fca-gw nft list ruleset
Classify a NAT:       ip netns exec nl-rcb python3 $HELPER classify ${STUN_IPS[*]} --ports ${STUN_PORTS[*]}
Fetch by hand:        ip netns exec nl-symb $PEER fetch ${HASH:-HASH} --player 'Serve Upnp@Natlab' \\
                          --phonebook $PB_URL --out /tmp/x --identity $WORK/keys/manual.key --pins $WORK/keys/manual.pins
Servers' logs:        $WORK/log/serve-nl-*.err (they keep running, registered as 'Serve <Type>@Natlab')
Remove it all:        tests/natlab/run.sh --clean
EOF
}

finish() {
    local rc=$?
    set +eE
    trap - EXIT INT TERM ERR
    if [ "$KEEP" = 1 ]; then
        echo "$WORK" > "$KEPT"
        keep_notes
    else
        local j; for j in $(jobs -p); do kill "$j" 2>/dev/null; done
        remove_lab
        rm -rf "$WORK"
        [ -z "$(lab_namespaces)" ] || echo "natlab: namespaces left behind: $(lab_namespaces | tr '\n' ' ')"
    fi
    exit "$rc"
}
trap finish EXIT
trap 'echo "natlab: interrupted"; exit 130' INT
trap 'echo "natlab: terminated"; exit 143' TERM

# ---- building blocks --------------------------------------------------------------------------
# No duplicate address detection in the lab: an address (link-local ones included) would stay
# "tentative" for a second or two after its link comes up, and neighbour discovery through it can
# lose the first packets of the self-check (the IPv6 sites then look UDP-blocked).
ns_add() {
    ip netns add "$1"
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 >/dev/null
    ip -n "$1" link set lo up
}
# veth NS_A IF_A NS_B IF_B: a cable between two namespaces (created in them, never in the host's).
veth() {
    ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
    ip -n "$1" link set "$2" up
    ip -n "$3" link set "$4" up
}
# plug NS IF PORT: connect NS to the internet bridge (PORT is the bridge side's name).
plug() { veth nl-inet "$3" "$1" "$2"; ip -n nl-inet link set "$3" master br0; }
sysctls() { local ns=$1; shift; nsx "$ns" sysctl -qw "$@" >/dev/null; }

# The router's nftables ruleset. Mapping: masquerade keeps the source port when it is free, so one
# socket gets one external port whatever the destination (endpoint-independent); `fully-random`
# draws a new port for every new destination (symmetric). Filtering: conntrack lets in replies
# from the exact remote address and port (port-restricted); the cone types add dynamic sets,
# filled by outgoing UDP after NAT, whose members are let in from anyone (full cone, keyed by
# external port) or from the remote address the port sent to (restricted, keyed by address and
# port). Timeouts as conntrack's: a mapping lives 30 s after its last packet while nothing came
# back (cone_new), 120 s once a reply came in (cone_ans, refreshed by traffic either way).
router_rules() { # type lan-cidr player-ip
    local type=$1 lan=$2 player=$3 masq=masquerade key_out="" key_in="" key_ans="" set_type=""
    case $type in
        symmetric|upnp) masq="masquerade fully-random" ;;
        fullcone) set_type=inet_service; key_out="udp sport"; key_in="udp dport"; key_ans="udp dport" ;;
        restricted) set_type="ipv4_addr . inet_service"; key_out="ip daddr . udp sport"
                    key_in="ip saddr . udp dport"; key_ans="ip saddr . udp dport" ;;
    esac
    echo "table inet natlab {"
    if [ -n "$set_type" ]; then
        cat <<EOF
    set cone_new { type $set_type; flags timeout; timeout 30s; }
    set cone_ans { type $set_type; flags timeout; timeout 120s; }
    chain track {
        type filter hook postrouting priority srcnat + 10; policy accept;
        oifname "wan" meta l4proto udp ct state new update @cone_new { $key_out timeout 30s }
        oifname "wan" meta l4proto udp ct state established update @cone_ans { $key_out timeout 120s }
    }
    chain answered {
        type filter hook prerouting priority dstnat - 10; policy accept;
        iifname "wan" meta l4proto udp ct state established update @cone_ans { $key_ans timeout 120s }
    }
EOF
    fi
    if [ "$type" = upnp ]; then
        printf '    chain miniupnpd {\n    }\n    chain prerouting_miniupnpd {\n    }\n    chain postrouting_miniupnpd {\n    }\n'
    fi
    echo "    chain prerouting {"
    echo "        type nat hook prerouting priority dstnat; policy accept;"
    if [ -n "$set_type" ]; then
        echo "        iifname \"wan\" $key_in @cone_ans dnat ip to $player"
        echo "        iifname \"wan\" $key_in @cone_new dnat ip to $player"
    fi
    [ "$type" = upnp ] && echo "        jump prerouting_miniupnpd"
    echo "    }"
    echo "    chain postrouting {"
    echo "        type nat hook postrouting priority srcnat; policy accept;"
    [ "$type" = upnp ] && echo "        jump postrouting_miniupnpd"
    echo "        oifname \"wan\" ip saddr $lan $masq"
    echo "    }"
    # Like a home router's own firewall: nothing unsolicited from the internet reaches the router
    # itself. (Accepted, a stray packet to the router's public port would leave a conntrack entry
    # that makes the next outgoing flow from that port clash and get another port.)
    echo "    chain input {"
    echo "        type filter hook input priority filter; policy accept;"
    echo "        iifname \"wan\" ct state established,related accept"
    # miniupnpd checks with STUN (answers from another address and port) that its WAN is not
    # itself filtered before it maps anything: let the lab's STUN server in.
    [ "$type" = upnp ] && echo "        iifname \"wan\" ip saddr { $(IFS=,; echo "${STUN_IPS[*]}") } accept"
    echo "        iifname \"wan\" drop"
    echo "    }"
    echo "    chain forward {"
    echo "        type filter hook forward priority filter; policy drop;"
    [ "$type" = udpblocked ] && echo "        meta l4proto udp drop"
    echo "        ct state established,related accept"
    [ -n "$set_type" ] && echo "        ct status dnat accept"
    [ "$type" = upnp ] && echo "        jump miniupnpd"
    echo "        iifname \"lan\" oifname \"wan\" accept"
    echo "    }"
    echo "}"
}

# A stateful IPv6 firewall without NAT: out freely, in only what answers.
firewall6_rules() {
    cat <<'EOF'
table inet natlab {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan" oifname "wan" accept
    }
}
EOF
}

router_common() { # ns
    sysctls "$1" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    # Mappings like real routers': 30 s unanswered, 120 s once answered (per namespace).
    sysctls "$1" net.netfilter.nf_conntrack_udp_timeout=30 net.netfilter.nf_conntrack_udp_timeout_stream=120
}

# SITE_* describe every player namespace of the lab.
declare -A SITE_TYPE SITE_NS SITE_GW SITE_IP SITE_WAN SITE_FAMILY
SITES=()
# The phone book URL and the listening address of a player, by its address family.
site_url() { if [ "${SITE_FAMILY[$1]}" = 6 ]; then echo "$PB_URL6"; else echo "$PB_URL"; fi; }
# The --phonebook flags of a player, in BOOK_ARGS: the first phone book, and the second with
# NATLAB_FAILOVER=1.
site_books() {
    if [ "$INSTANCES" = 1 ]; then
        # Servers at the first instance, everyone else at the second.
        local pl is_server=0
        for pl in "${SERVERS[@]}"; do [ "$pl" = "$1" ] && is_server=1; done
        if [ "$is_server" = 1 ]; then
            BOOK_ARGS=(--phonebook "$(site_url "$1")")
        elif [ "${SITE_FAMILY[$1]}" = 6 ]; then
            BOOK_ARGS=(--phonebook "$PB2_URL6")
        else
            BOOK_ARGS=(--phonebook "$PB2_URL")
        fi
        return
    fi
    BOOK_ARGS=(--phonebook "$(site_url "$1")")
    if [ "$FAILOVER" = 1 ]; then
        if [ "${SITE_FAMILY[$1]}" = 6 ]; then BOOK_ARGS+=(--phonebook "$PB2_URL6"); else BOOK_ARGS+=(--phonebook "$PB2_URL"); fi
    fi
}
site_listen() { if [ "${SITE_FAMILY[$1]}" = 6 ]; then echo "[::]:$2"; else echo "0.0.0.0:$2"; fi; }

# add_nat_site TYPE SIDE IDX: router nl-CODE{a,b}-gw (WAN 203.0.113.(10+IDX), LAN 10.IDX.0.0/24)
# with one player nl-CODE{a,b} at 10.IDX.0.2; or, for `public`, the player alone on the bridge.
add_nat_site() {
    local type=$1 side=$2 idx=$3
    local pl=nl-${CODE[$type]}$side wan=203.0.113.$((10 + idx))
    ns_add "$pl"
    SITES+=("$pl"); SITE_TYPE[$pl]=$type; SITE_NS[$pl]=$pl; SITE_FAMILY[$pl]=4; SITE_WAN[$pl]=$wan
    if [ "$type" = public ]; then
        plug "$pl" eth0 "s$idx"
        ip -n "$pl" addr add "$wan/24" dev eth0
        ip -n "$pl" route add default via "$INET_GW"
        SITE_IP[$pl]=$wan; SITE_GW[$pl]=""
        return
    fi
    local gw=$pl-gw
    ns_add "$gw"
    plug "$gw" wan "s$idx"
    veth "$gw" lan "$pl" eth0
    ip -n "$gw" addr add "$wan/24" dev wan
    ip -n "$gw" route add default via "$INET_GW"
    ip -n "$gw" addr add "10.$idx.0.1/24" dev lan
    ip -n "$pl" addr add "10.$idx.0.2/24" dev eth0
    ip -n "$pl" route add default via "10.$idx.0.1"
    router_rules "$type" "10.$idx.0.0/24" "10.$idx.0.2" | nsx "$gw" nft -f -
    router_common "$gw"
    SITE_IP[$pl]=10.$idx.0.2; SITE_GW[$pl]=$gw
}

# The hairpin site: one port-restricted router, two players on one LAN bridge. The router does no
# hairpin NAT: a packet from the LAN to the router's public address is not sent back into the
# LAN, so the two reach each other only at their LAN addresses.
add_hairpin_site() {
    local idx=15 gw=nl-hp-gw wan=203.0.113.25
    ns_add "$gw"
    plug "$gw" wan "s$idx"
    ip -n "$gw" addr add "$wan/24" dev wan
    ip -n "$gw" route add default via "$INET_GW"
    ip -n "$gw" link add lan type bridge
    ip -n "$gw" link set lan up
    ip -n "$gw" addr add "10.$idx.0.1/24" dev lan
    local i pl
    for i in 1 2; do
        pl=nl-hp$i
        ns_add "$pl"
        veth "$gw" "lan$i" "$pl" eth0
        ip -n "$gw" link set "lan$i" master lan
        ip -n "$pl" addr add "10.$idx.0.$((i + 1))/24" dev eth0
        ip -n "$pl" route add default via "10.$idx.0.1"
        SITES+=("$pl"); SITE_TYPE[$pl]=hairpin; SITE_NS[$pl]=$pl; SITE_FAMILY[$pl]=4
        SITE_IP[$pl]=10.$idx.0.$((i + 1)); SITE_GW[$pl]=$gw; SITE_WAN[$pl]=$wan
    done
    router_rules portrestricted "10.$idx.0.0/24" "" | nsx "$gw" nft -f -
    router_common "$gw"
    # Where br_netfilter is loaded (Docker hosts), bridged frames would pass the router's forward
    # chain: a home router's LAN switch does not filter.
    if nsx "$gw" sysctl -n net.bridge.bridge-nf-call-iptables >/dev/null 2>&1; then
        sysctls "$gw" net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0
    fi
}

# The IPv6 pair: IPv6-only sites, global addresses 2001:db8:IDX::2, behind stateful firewalls.
add_v6_site() { # side idx
    local side=$1 idx=$2
    local pl=nl-v6$side gw=nl-v6$side-gw
    ns_add "$pl"; ns_add "$gw"
    router_common "$gw"
    plug "$gw" wan "s$idx"
    veth "$gw" lan "$pl" eth0
    ip -n "$gw" -6 addr add "2001:db8:ffff::$idx/64" dev wan nodad
    ip -n "$gw" -6 route add default via 2001:db8:ffff::254
    ip -n "$gw" -6 addr add "2001:db8:$idx::1/64" dev lan nodad
    ip -n "$pl" -6 addr add "2001:db8:$idx::2/64" dev eth0 nodad
    ip -n "$pl" -6 route add default via "2001:db8:$idx::1"
    ip -n nl-inet -6 route add "2001:db8:$idx::/64" via "2001:db8:ffff::$idx"
    firewall6_rules | nsx "$gw" nft -f -
    SITES+=("$pl"); SITE_TYPE[$pl]=v6; SITE_NS[$pl]=$pl; SITE_FAMILY[$pl]=6
    SITE_IP[$pl]=2001:db8:$idx::2; SITE_GW[$pl]=$gw; SITE_WAN[$pl]=2001:db8:ffff::$idx
}

# ---- the lab ----------------------------------------------------------------------------------
log "== building the lab in $WORK (namespaces nl-*)"
T_SETUP=$(date +%s)
ns_add nl-inet
ip -n nl-inet link add br0 type bridge
ip -n nl-inet link set br0 up
ip -n nl-inet addr add "$INET_GW/24" dev br0
ip -n nl-inet -6 addr add 2001:db8:ffff::254/64 dev br0 nodad
sysctls nl-inet net.ipv6.conf.all.forwarding=1

ns_add nl-pb
plug nl-pb eth0 pb
ip -n nl-pb addr add "$PB_IP/24" dev eth0
ip -n nl-pb -6 addr add "$PB_IP6/64" dev eth0 nodad
ip -n nl-pb route add default via "$INET_GW"
ip -n nl-pb -6 route add default via 2001:db8:ffff::254

if [ "$FAILOVER" = 1 ]; then
    ns_add nl-pb2
    plug nl-pb2 eth0 pb2
    ip -n nl-pb2 addr add "$PB2_IP/24" dev eth0
    ip -n nl-pb2 -6 addr add "$PB2_IP6/64" dev eth0 nodad
    ip -n nl-pb2 route add default via "$INET_GW"
    ip -n nl-pb2 -6 route add default via 2001:db8:ffff::254
fi

FRIEND_NS=nl-friend
[ "$PEER_RELAY" = upnp ] && FRIEND_NS=nl-upnpc
if [ "$PEER_RELAY" = 1 ]; then
    ns_add nl-friend
    plug nl-friend eth0 friend
    ip -n nl-friend addr add "$FRIEND_IP/24" dev eth0
    ip -n nl-friend route add default via "$INET_GW"
fi

ns_add nl-stun
plug nl-stun eth0 stun
for ip in "${STUN_IPS[@]}"; do ip -n nl-stun addr add "$ip/24" dev eth0; done
for ip in "${STUN_IPS6[@]}"; do ip -n nl-stun -6 addr add "$ip/64" dev eth0 nodad; done
ip -n nl-stun route add default via "$INET_GW"
ip -n nl-stun -6 route add default via 2001:db8:ffff::254

k=0
for type in "${TYPES[@]}"; do
    add_nat_site "$type" a $((2 * k + 1))
    add_nat_site "$type" b $((2 * k + 2))
    k=$((k + 1))
done
add_hairpin_site
add_v6_site a 16
add_v6_site b 17
UPNP_SIDES="a b"
if [ "$PEER_RELAY" = upnp ]; then
    # The relaying player's own router: not one of the matrix's sites.
    add_nat_site upnp c 18
    unset 'SITES[-1]'
    UPNP_SIDES="a b c"
fi

daemon nl-stun "$WORK/log/stun.log" python3 "$HELPER" stun-server "${STUN_IPS[@]}" "${STUN_IPS6[@]}" \
    --ports "${STUN_PORTS[@]}"
RELAY=${NATLAB_RELAY:-1}
RELAY_ARGS=()
[ "$RELAY" = 1 ] && RELAY_ARGS=(--relay-listen "[::]:443")
INSTANCE_ARGS=()
if [ "$INSTANCES" = 1 ]; then
    # The instances' Redis, on the first phone book's host (the lab's network only).
    daemon nl-pb "$WORK/log/redis.log" redis-server --bind "$PB_IP" --port "$REDIS_PORT" \
        --protected-mode no --save '' --appendonly no --dir "$WORK"
    for i in $(seq 100); do
        [ "$(nsx nl-pb redis-cli -h "$PB_IP" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
        [ "$i" = 100 ] && fail "redis-server does not listen ($(tail -n 3 "$WORK/log/redis.log"))"
        sleep 0.1
    done
    INSTANCE_ARGS=(--redis-url "redis://$PB_IP:$REDIS_PORT/" --redis-prefix natlab)
fi
daemon nl-pb "$WORK/log/phonebook.log" "$PI_SERVER" --listen "[::]:8080" --log-level info \
    "${RELAY_ARGS[@]}" "${INSTANCE_ARGS[@]}"
[ "$FAILOVER" != 1 ] || daemon nl-pb2 "$WORK/log/phonebook2.log" "$PI_SERVER" --listen "[::]:8080" \
    --log-level info "${RELAY_ARGS[@]}" "${INSTANCE_ARGS[@]}"

# miniupnpd on both UPnP routers: UPnP IGD and NAT-PMP/PCP on the LAN side. It refuses a WAN
# address from a reserved range (RFC 5737 included) unless STUN tells it that the WAN is not
# filtered, so it asks the lab's STUN server (which answers from another address when asked).
for side in $UPNP_SIDES; do
    pl=nl-upnp$side; gw=$pl-gw; idx=${SITE_IP[$pl]#10.}; idx=${idx%%.*}
    cat > "$WORK/miniupnpd-$side.conf" <<EOF
ext_ifname=wan
listening_ip=lan
http_port=0
enable_upnp=yes
enable_natpmp=yes
secure_mode=yes
system_uptime=no
ipv6_disable=yes
notify_interval=60
uuid=6e61746c-6162-4000-8000-$(printf '%012d' "$idx")
lease_file=$WORK/miniupnpd-$side.leases
ext_perform_stun=yes
ext_stun_host=${STUN_IPS[0]}
ext_stun_port=${STUN_PORTS[0]}
upnp_table_name=natlab
upnp_nat_table_name=natlab
allow 1024-65535 10.$idx.0.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF
done

wait_for() { # what file pattern seconds
    local i
    for i in $(seq $(($3 * 10))); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "$4 (waited $3 s; $1 ends with: $(tail -n 3 "$1" 2>/dev/null | tr '\n' ' '))"
}
wait_for "$WORK/log/stun.log" "listening" 10 "the STUN server did not start"
for side in $UPNP_SIDES; do
    daemon "nl-upnp$side-gw" "$WORK/log/miniupnpd-$side.log" \
        miniupnpd -f "$WORK/miniupnpd-$side.conf" -d -P "$WORK/miniupnpd-$side.pid"
done
for i in $(seq 100); do
    nsx nl-stun python3 "$HELPER" http-ok "$PB_URL/api/health" --timeout 1 && break
    [ "$i" = 100 ] && fail "the phone book does not answer on $PB_URL ($(tail -n 3 "$WORK/log/phonebook.log"))"
    sleep 0.1
done
for i in $(seq 100); do
    [ "$FAILOVER" = 1 ] || break
    nsx nl-stun python3 "$HELPER" http-ok "$PB2_URL/api/health" --timeout 1 && break
    [ "$i" = 100 ] && fail "the second phone book does not answer on $PB2_URL ($(tail -n 3 "$WORK/log/phonebook2.log"))"
    sleep 0.1
done
for side in $UPNP_SIDES; do
    wait_for "$WORK/log/miniupnpd-$side.log" "Listening for NAT-PMP/PCP" 15 "miniupnpd ($side) did not start"
    grep -q "Port forwarding is now enabled" "$WORK/log/miniupnpd-$side.log" \
        || fail "miniupnpd ($side) did not enable port forwarding: $(grep STUN "$WORK/log/miniupnpd-$side.log" | tail -n 2)"
done
log "lab up in $(( $(date +%s) - T_SETUP )) s: $(lab_namespaces | wc -l) namespaces, phone book $PB_URL and $PB_URL6"

# ---- self-check -------------------------------------------------------------------------------
T_CHECK=$(date +%s)
log ""
log "== self-check: each player asks a STUN server that can answer from another address or port"
site_label() {
    case ${SITE_TYPE[$1]} in
        hairpin) echo "hairpin" ;;
        v6) echo "IPv6 firewall" ;;
        *) echo "${LABEL[${SITE_TYPE[$1]}]}" ;;
    esac
}
CHECKS=()
for pl in "${SITES[@]}"; do
    (
        if [ "${SITE_FAMILY[$pl]}" = 6 ]; then ips=("${STUN_IPS6[@]}"); url=$PB_URL6; else ips=("${STUN_IPS[@]}"); url=$PB_URL; fi
        rc=0
        nsx "$pl" python3 "$HELPER" classify "${ips[@]}" --ports "${STUN_PORTS[@]}" \
            --expect "${EXPECT[${SITE_TYPE[$pl]}]}" > "$WORK/log/check-$pl.txt" 2>&1 || rc=1
        if nsx "$pl" python3 "$HELPER" http-ok "$url/api/health"; then
            echo "phone book over TCP: reachable" >> "$WORK/log/check-$pl.txt"
        else
            echo "phone book over TCP: NOT reachable" >> "$WORK/log/check-$pl.txt"; rc=1
        fi
        exit $rc
    ) &
    CHECKS+=($!)
done
check_fail=0
for j in "${CHECKS[@]}"; do wait "$j" || check_fail=1; done
for pl in "${SITES[@]}"; do
    printf '%-13s %-10s %s\n' "$(site_label "$pl")" "$pl" "$(head -n 1 "$WORK/log/check-$pl.txt")"
    sed '1d; s/^/                         /' "$WORK/log/check-$pl.txt"
done
[ "$check_fail" = 0 ] || fail "a site does not behave as its type says (above)"

# Port mapping through miniupnpd: UPnP IGD (upnpc), NAT-PMP and PCP each map a port, and a
# datagram from the internet reaches the player through it.
inbound_ok() { # player port external-ip external-port [sender namespace]
    local f=$WORK/log/recv-$1-$2.txt
    nsx "$1" python3 "$HELPER" recv --port "$2" --timeout 3 > "$f" 2>&1 &
    local r=$!
    wait_for "$f" ready 5 "receiver did not start"
    nsx "${5:-nl-stun}" python3 "$HELPER" send "$3" "$4"
    wait "$r"
}
check_portmap() { # player
    local pl=$1 gw_lan=${SITE_IP[$1]%.2}.1 wan=${SITE_WAN[$1]} out desc eip eport nonce
    # miniupnpc counts an IGD whose external address is reserved (RFC 5737) as "not connected":
    # -i uses it anyway.
    out=$(nsx "$pl" upnpc -i -e natlab -a "${SITE_IP[$pl]}" 45000 45000 UDP 120 2>&1) \
        || fail "upnpc could not map a port on $pl: $out"
    grep -q "is redirected to internal" <<< "$out" || fail "upnpc did not map a port on $pl: $out"
    desc=$(grep -m1 -o 'desc: http[^ ]*' <<< "$out" | cut -d' ' -f2)
    inbound_ok "$pl" 45000 "$wan" 45000 || fail "a UPnP mapping of $pl lets nothing in"
    nsx "$pl" upnpc -i -u "$desc" -d 45000 UDP >/dev/null 2>&1 || fail "upnpc could not delete its mapping on $pl"
    out=$(nsx "$pl" python3 "$HELPER" natpmp "$gw_lan" --internal-port 45001) || fail "NAT-PMP on $pl: $out"
    read -r _ eip eport < <(grep '^MAPPED' <<< "$out")
    inbound_ok "$pl" 45001 "$eip" "$eport" || fail "a NAT-PMP mapping of $pl lets nothing in"
    nsx "$pl" python3 "$HELPER" natpmp "$gw_lan" --internal-port 45001 --delete >/dev/null || fail "NAT-PMP delete on $pl"
    out=$(nsx "$pl" python3 "$HELPER" pcp "$gw_lan" --client "${SITE_IP[$pl]}" --internal-port 45002) || fail "PCP on $pl: $out"
    read -r _ eip eport nonce < <(grep '^MAPPED' <<< "$out")
    inbound_ok "$pl" 45002 "$eip" "$eport" || fail "a PCP mapping of $pl lets nothing in"
    nsx "$pl" python3 "$HELPER" pcp "$gw_lan" --client "${SITE_IP[$pl]}" --internal-port 45002 --nonce "$nonce" --delete >/dev/null \
        || fail "PCP delete on $pl"
    echo "port mapping on $pl (miniupnpd, WAN $wan): UPnP IGD, NAT-PMP and PCP each mapped a UDP port that let a datagram in; deleted"
}
CHECKS=()
for pl in nl-upnpa nl-upnpb; do
    check_portmap "$pl" > "$WORK/log/portmap-$pl.txt" 2>&1 &
    CHECKS+=($!)
done
check_fail=0
for j in "${CHECKS[@]}"; do wait "$j" || check_fail=1; done
cat "$WORK/log/portmap-nl-upnpa.txt" "$WORK/log/portmap-nl-upnpb.txt"
[ "$check_fail" = 0 ] || fail "port mapping through miniupnpd does not work (above)"
# The hairpin players reach each other on the LAN.
inbound_ok nl-hp2 45003 10.15.0.3 45003 nl-hp1 || fail "nl-hp1 cannot reach nl-hp2 on their LAN"
log "hairpin site: nl-hp1 reaches nl-hp2 at its LAN address; the router does no hairpin NAT"
# Mapping timeouts, read back from every router namespace.
timeouts=$(for ns in $(lab_namespaces); do
    case $ns in *-gw) nsx "$ns" sysctl -n net.netfilter.nf_conntrack_udp_timeout net.netfilter.nf_conntrack_udp_timeout_stream | tr '\n' '/' ; echo ;; esac
done | sort | uniq -c)
[ "$(wc -l <<< "$timeouts")" = 1 ] && grep -q ' 30/120/$' <<< "$timeouts" || fail "conntrack UDP timeouts differ: $timeouts"
log "conntrack UDP timeouts in all $(awk '{print $1}' <<< "$timeouts") routers: 30 s unanswered, 120 s answered (cone sets: the same)"
log "self-check done in $(( $(date +%s) - T_CHECK )) s"

# What the peer itself concludes, beside the lab's truth above (once the CLI has `netcheck`).
if "$PEER" --help 2>&1 | grep -q netcheck; then
    log ""
    log "== peer netcheck in every player namespace (compare with the self-check above)"
    CHECKS=()
    for pl in "${SITES[@]}"; do
        listen=(); [ "${SITE_FAMILY[$pl]}" = 6 ] && listen=(--listen "[::]:0")
        nsx "$pl" timeout -k 2 15 "$PEER" netcheck --phonebook "$(site_url "$pl")" \
            --identity "$WORK/keys/netcheck-$pl.key" --pins "$WORK/keys/netcheck-$pl.pins" "${listen[@]}" \
            > "$WORK/log/netcheck-$pl.txt" 2>&1 &
        CHECKS+=($!)
    done
    for j in "${CHECKS[@]}"; do wait "$j" || true; done
    for pl in "${SITES[@]}"; do
        log "$(printf '%-13s %-10s (expected: %s)' "$(site_label "$pl")" "$pl" "${EXPECT[${SITE_TYPE[$pl]}]}")"
        head -n 12 "$WORK/log/netcheck-$pl.txt" | sed 's/^/    /'
    done
else
    log "(this peer CLI has no netcheck command: skipped comparing its view with the self-check)"
fi

# ---- servers ----------------------------------------------------------------------------------
head -c $((FILE_KIB * 1024)) /dev/urandom > "$WORK/files/mod.bin"
HASH=$(sha1sum "$WORK/files/mod.bin" | cut -d' ' -f1)
declare -A SERVE_NAME SERVE_URL SERVE_LISTEN SERVE_STATE

SERVERS=()
for type in "${TYPES[@]}"; do
    pl=nl-${CODE[$type]}a; SERVERS+=("$pl"); SERVE_NAME[$pl]=${SERVER_NAME[$type]}
done
SERVERS+=(nl-hp1 nl-hp2 nl-v6a nl-v6b)
SERVE_NAME[nl-hp1]="Serve Hairpin-One@Natlab"; SERVE_NAME[nl-hp2]="Serve Hairpin-Two@Natlab"
SERVE_NAME[nl-v6a]="Serve Vsix-One@Natlab"; SERVE_NAME[nl-v6b]="Serve Vsix-Two@Natlab"

# A player on the internet who relays for all the others: it lists every key the lab will use
# (servers and fetchers) as a friend, and everyone names it with --relay-via.
FRIEND_PID=""
if [ "$PEER_RELAY" != 0 ]; then
    FRIEND_ARGS=()
    for pl in "${SERVERS[@]}"; do
        FRIEND_ARGS+=(--friend "$("$PEER" id --identity "$WORK/keys/serve-$pl.key")")
    done
    NT=${#TYPES[@]}
    for ((s = 0; s < NT; s++)); do for ((f = 0; f < NT; f++)); do
        FRIEND_ARGS+=(--friend "$("$PEER" id --identity "$WORK/keys/fetch-$s-$f.key")")
    done; done
    for e in 0 1 2 3; do FRIEND_ARGS+=(--friend "$("$PEER" id --identity "$WORK/keys/fetch-x$e.key")"); done
    mkdir -p "$WORK/friend-files"
    SITE_FAMILY[nl-friend]=4
    site_books nl-friend
    if [ "$PEER_RELAY" = upnp ]; then
        # Behind its router: nothing given outright, the relay's port is mapped there.
        FRIEND_WHERE=(--listen "${SITE_IP[nl-upnpc]}:7000" --relay-listen "0.0.0.0:7443")
    else
        FRIEND_WHERE=(--listen "$FRIEND_IP:7000" --no-portmap --relay-listen "0.0.0.0:7443"
                      --relay-public "$FRIEND_IP:7443")
    fi
    ip netns exec "$FRIEND_NS" "$PEER" serve "$WORK/friend-files" --identity "$WORK/keys/friend.key" \
        --pins "$WORK/keys/friend.pins" "${BOOK_ARGS[@]}" --name "$FRIEND_NAME" --visibility public \
        "${FRIEND_WHERE[@]}" "${FRIEND_ARGS[@]}" \
        > "$WORK/log/friend.out" 2> "$WORK/log/friend.err" 9>&- &
    FRIEND_PID=$!
    wait_for "$WORK/log/friend.err" "peer relay: published" 20 "the relaying player did not publish its relay"
    if [ "$PEER_RELAY" = upnp ]; then
        wan=${SITE_WAN[nl-upnpc]}
        grep -q "^peer relay: .* maps TCP $wan:" "$WORK/log/friend.err" \
            || fail "the relaying player's TCP port was not mapped on its router: $(grep 'peer relay' "$WORK/log/friend.err" | tr '\n' ' ')"
        grep -q "^peer relay: published at $wan:" "$WORK/log/friend.err" \
            || fail "the relaying player did not publish its mapped address: $(grep 'peer relay' "$WORK/log/friend.err" | tr '\n' ' ')"
        log "relaying player: nl-upnpc behind its own router (miniupnpd): $(grep -m1 '^peer relay: .* maps TCP' "$WORK/log/friend.err" | sed 's/^peer relay: //'), $(grep -m1 '^peer relay: published' "$WORK/log/friend.err" | sed 's/^peer relay: //')"
    else
        log "relaying player: nl-friend ($FRIEND_IP) relays on TCP 7443 for $(( ${#FRIEND_ARGS[@]} / 2 )) keys"
    fi
    SERVE_ARGS+=(--relay-via "$FRIEND_NAME")
    FETCH_ARGS+=(--relay-via "$FRIEND_NAME")
fi

log ""
log "== servers: \`peer serve\` in ${#SERVERS[@]} player namespaces, registered with the phone book"
for pl in "${SERVERS[@]}"; do
    site_books "$pl"
    ip netns exec "$pl" "$PEER" serve "$WORK/files" --identity "$WORK/keys/serve-$pl.key" \
        --pins "$WORK/keys/serve-$pl.pins" "${BOOK_ARGS[@]}" --name "${SERVE_NAME[$pl]}" --visibility public \
        --listen "$(site_listen "$pl" $SERVE_PORT)" "${SERVE_ARGS[@]}" \
        > "$WORK/log/serve-$pl.out" 2> "$WORK/log/serve-$pl.err" 9>&- &
done
for pl in "${SERVERS[@]}"; do
    SERVE_STATE[$pl]=""
    for i in $(seq 200); do
        if grep -q "^registered" "$WORK/log/serve-$pl.err"; then SERVE_STATE[$pl]=ok; break; fi
        if [ -z "$(ip netns pids "$pl")" ]; then break; fi
        sleep 0.1
    done
    if [ "${SERVE_STATE[$pl]}" = ok ]; then
        log "$(printf '%-13s %-10s %s' "$(site_label "$pl")" "$pl" "registered as '${SERVE_NAME[$pl]}' ($(grep -m1 '^listening' "$WORK/log/serve-$pl.out"))")"
    else
        SERVE_STATE[$pl]="server did not register: $(tail -n 1 "$WORK/log/serve-$pl.err")"
        log "$(printf '%-13s %-10s %s' "$(site_label "$pl")" "$pl" "${SERVE_STATE[$pl]}")"
    fi
done

# ---- the matrix -------------------------------------------------------------------------------
# fetch_pair ID SERVER FETCHER: one `peer fetch` by player name; writes $WORK/res/ID as
# "ok wall_ms kind addr connect_ms reason" (tab-separated).
fetch_pair() {
    local id=$1 srv=$2 fet=$3 out=$WORK/out/$1.bin rc=0 t0 t1 ok=0 reason="" kind=- addr=- cms=- listen=()
    if [ "${SERVE_STATE[$srv]}" != ok ]; then
        printf '0\t0\t-\t-\t-\t%s\n' "${SERVE_STATE[$srv]}" > "$WORK/res/$id"
        return
    fi
    [ "${SITE_FAMILY[$fet]}" = 6 ] && listen=(--listen "[::]:0")
    site_books "$fet"
    t0=$(date +%s%N)
    nsx "$fet" timeout -k 3 "$FETCH_TIMEOUT" "$PEER" fetch "$HASH" --player "${SERVE_NAME[$srv]}" \
        "${BOOK_ARGS[@]}" --out "$out" --identity "$WORK/keys/fetch-$id.key" \
        --pins "$WORK/keys/fetch-$id.pins" "${listen[@]}" "${FETCH_ARGS[@]}" \
        > "$WORK/log/fetch-$id.out" 2> "$WORK/log/fetch-$id.err" || rc=$?
    t1=$(date +%s%N)
    if [ "$rc" = 0 ] && [ -f "$out" ] && [ "$(sha1sum < "$out" | cut -d' ' -f1)" = "$HASH" ]; then
        ok=1
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        reason="no connection within ${FETCH_TIMEOUT} s"
        # What the CLI said before the deadline's SIGTERM interrupted it.
        local last; last=$(grep -v -e '^path: ' -e 'bytes (' -e 'interrupted' -e 'terminated' \
            -e 'unregister' "$WORK/log/fetch-$id.err" | tail -n 1 || true)
        [ -z "$last" ] || reason+=" (it said: $last)"
    elif [ "$rc" = 0 ]; then
        reason="exit 0 but the file is missing or wrong"
    else
        reason="exit $rc: $(grep -v '^path: ' "$WORK/log/fetch-$id.err" | tail -n 1 || true)"
    fi
    # `path: <player> <addr> <kind> <ms> ms`, one per source the fetch connected to (the name
    # holds a space, so read from the right).
    local path
    path=$(grep -m1 '^path: ' "$WORK/log/fetch-$id.err" || true)
    if [ -n "$path" ]; then
        read -r addr kind cms < <(awk '{print $(NF-3), $(NF-2), $(NF-1)}' <<< "$path")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$ok" "$(( (t1 - t0) / 1000000 ))" "$kind" "$addr" "$cms" "$reason" \
        > "$WORK/res/$id"
}

EXTRA=("nl-hp1 nl-hp2 hairpin" "nl-hp2 nl-hp1 hairpin" "nl-v6a nl-v6b IPv6" "nl-v6b nl-v6a IPv6")
NT=${#TYPES[@]}
T_MATRIX=$(date +%s)
if [ "$MATRIX" = 1 ]; then
    log ""
    log "== fetches: $((NT * NT)) ordered type pairs + ${#EXTRA[@]} hairpin/IPv6 pairs, in $NT waves (each site once per wave)"
    log "(servers settle for $SETTLE s; a fetch gets $FETCH_TIMEOUT s)"
    sleep "$SETTLE"
    for ((w = 0; w < NT; w++)); do
        tw=$(date +%s); WAVE=()
        for ((s = 0; s < NT; s++)); do
            f=$(( (s + w) % NT ))
            fetch_pair "$s-$f" "nl-${CODE[${TYPES[$s]}]}a" "nl-${CODE[${TYPES[$f]}]}b" &
            WAVE+=($!)
        done
        if [ "$w" = 0 ]; then
            for e in "${!EXTRA[@]}"; do
                read -r srv fet _ <<< "${EXTRA[$e]}"
                fetch_pair "x$e" "$srv" "$fet" &
                WAVE+=($!)
            done
        fi
        for j in "${WAVE[@]}"; do wait "$j" || fail "a fetch runner failed (a bug of run.sh; logs in $WORK/log)"; done
        log "wave $((w + 1))/$NT done in $(( $(date +%s) - tw )) s"
    done

    # ---- the report -------------------------------------------------------------------------
    kind_short() {
        case $1 in
            reflexive) echo refl ;; peer-reflexive) echo prfl ;; *) echo "$1" ;;
        esac
    }
    path_words() { # kind addr ms
        if [ "$1" = - ]; then echo "no path: line from this CLI"; else echo "path $1 $2, connected in $3 ms"; fi
    }
    direct=0; relayed=0
    line=$(printf '%-13s' 'server \ from')
    for f in "${TYPES[@]}"; do line+=$(printf ' %-12s' "${LABEL[$f]}"); done
    md_head="| server \\ fetcher |"; md_rule="|---|"
    for f in "${TYPES[@]}"; do md_head+=" ${LABEL[$f]} |"; md_rule+="---|"; done
    TABLE=("$line"); MD=("$md_head" "$md_rule"); DETAILS=(); MD_DETAILS=()
    for ((s = 0; s < NT; s++)); do
        line=$(printf '%-13s' "${LABEL[${TYPES[$s]}]}"); md="| **${LABEL[${TYPES[$s]}]}** |"
        for ((f = 0; f < NT; f++)); do
            IFS=$'\t' read -r ok ms kind addr cms reason < "$WORK/res/$s-$f"
            if [ "$ok" = 1 ] && [ "$kind" = relayed ]; then
                relayed=$((relayed + 1))
                line+=$(printf ' %-12s' "relay")
                md+=" relayed $cms ms |"
            elif [ "$ok" = 1 ]; then
                direct=$((direct + 1))
                line+=$(printf ' %-12s' "ok $(kind_short "$kind")")
                if [ "$kind" = - ]; then md+=" ok |"; else md+=" ok $kind $cms ms |"; fi
            else
                line+=$(printf ' %-12s' "--")
                md+=" — |"
            fi
            pair="${LABEL[${TYPES[$s]}]} -> ${LABEL[${TYPES[$f]}]}"
            if [ "$ok" = 1 ]; then
                d="ok in $ms ms; $(path_words "$kind" "$addr" "$cms")"
            else
                d="no connection ($ms ms): $reason"
            fi
            DETAILS+=("$(printf '%-28s %s' "$pair" "$d")"); MD_DETAILS+=("| $pair | $d |")
        done
        TABLE+=("$line"); MD+=("$md")
    done
    EXTRA_LINES=()
    declare -A extra_ok=([hairpin]=0 [IPv6]=0) extra_n=([hairpin]=0 [IPv6]=0)
    for e in "${!EXTRA[@]}"; do
        read -r srv fet what <<< "${EXTRA[$e]}"
        IFS=$'\t' read -r ok ms kind addr cms reason < "$WORK/res/x$e"
        extra_n[$what]=$((extra_n[$what] + 1))
        pair="$what: $srv -> $fet"
        if [ "$ok" = 1 ]; then
            extra_ok[$what]=$((extra_ok[$what] + 1))
            d="ok in $ms ms; $(path_words "$kind" "$addr" "$cms")"
        else
            d="no direct connection ($ms ms): $reason"
        fi
        DETAILS+=("$(printf '%-28s %s' "$pair" "$d")"); MD_DETAILS+=("| $pair | $d |")
    done
    connected=$((direct + relayed))
    SUMMARY="direct: $direct of $((NT * NT)) ordered pairs; relayed: $relayed; connected: $connected of $((NT * NT))"
    # What the relay carried, from the phone book's own counters, against what was fetched.
    RELAY_SHARE=""
    if [ "$RELAY" = 1 ]; then
        relay_in=$(nsx nl-pb python3 -c 'import urllib.request as u
t = u.urlopen("http://127.0.0.1:8080/metrics", timeout=5).read().decode()
print(sum(int(float(l.split()[-1])) for l in t.splitlines() if l.startswith("phonebook_relay_bytes_total{direction=\"in\"}")))' 2>/dev/null || echo 0)
        fetched=$(( (direct + relayed + ${extra_ok[hairpin]} + ${extra_ok[IPv6]}) * FILE_KIB * 1024 ))
        RELAY_SHARE="bytes through the relay: $relay_in of $fetched fetched ($(awk -v a="$relay_in" -v b="$fetched" 'BEGIN { printf "%.1f", b ? 100 * a / b : 0 }') %; QUIC packets of both directions, handshakes included)"
    fi
    if [ -n "$FRIEND_PID" ]; then
        # The relaying player says what it carried when it stops.
        kill -TERM "$FRIEND_PID" 2>/dev/null || true
        wait_for "$WORK/log/friend.err" "peer relay: carried" 10 "the relaying player did not report"
        if [ "$PEER_RELAY" = upnp ] \
            && nsx nl-upnpc-gw nft list chain inet natlab prerouting_miniupnpd | grep -q "dport 7443 "; then
            fail "the relaying player's TCP mapping outlived it: $(nsx nl-upnpc-gw nft list chain inet natlab prerouting_miniupnpd | tr '\n' ' ')"
        fi
        friend_in=$(grep -m1 'peer relay: carried' "$WORK/log/friend.err" | awk '{print $(NF-2)}')
        friend_sessions=$(grep -m1 'peer relay: carried' "$WORK/log/friend.err" | awk '{print $4}')
        fetched=$(( (direct + relayed + ${extra_ok[hairpin]} + ${extra_ok[IPv6]}) * FILE_KIB * 1024 ))
        RELAY_SHARE+="${RELAY_SHARE:+; }bytes through the friend's peer relay: $friend_in of $fetched fetched ($(awk -v a="$friend_in" -v b="$fetched" 'BEGIN { printf "%.1f", b ? 100 * a / b : 0 }') %), $friend_sessions sessions"
    fi
    EXTRA_SUMMARY="hairpin (two players behind one router, no hairpin NAT): ${extra_ok[hairpin]} of ${extra_n[hairpin]}; IPv6 (stateful firewalls): ${extra_ok[IPv6]} of ${extra_n[IPv6]}"
    T_END=$(date +%s)
    TIMES="run time $((T_END - T_START)) s (packages and build $((T_SETUP - T_START)) s, lab $((T_CHECK - T_SETUP)) s, self-check and servers $((T_MATRIX - T_CHECK)) s, fetches $((T_END - T_MATRIX)) s)"

    log ""
    log "== matrix: rows = the serving player's site, columns = the fetching player's site"
    log "   ok KIND: fetched directly, KIND = the candidate that won (- when the CLI does not say);"
    log "   relay: fetched through a relay (the phone book's, or the friend's with NATLAB_PEER_RELAY=1); --: not fetched"
    printf '%s\n' "${TABLE[@]}"
    log ""
    printf '%s\n' "${DETAILS[@]}"
    log ""
    log "$SUMMARY"
    log "$EXTRA_SUMMARY"
    [ -z "$RELAY_SHARE" ] || log "$RELAY_SHARE"
    log "$TIMES"

    if [ -n "$REPORT" ]; then
        {
            echo "# NAT lab matrix"
            echo
            echo "\`tests/natlab/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown);"
            echo "peer and pi-server from \`${BIN#"$PWD"/}\`; a fetch gets $FETCH_TIMEOUT s, servers settle $SETTLE s."
            echo
            echo "Rows: the serving player's site; columns: the fetching player's site."
            echo "\"ok KIND N ms\": fetched directly, KIND = the candidate that won, N = time to connect;"
            echo "\"relayed N ms\": through the phone book's relay ($([ "$RELAY" = 1 ] && echo on || echo "off in this run"))."
            echo
            printf '%s\n' "${MD[@]}"
            echo
            echo "**$SUMMARY**; $EXTRA_SUMMARY."
            echo
            [ -z "$RELAY_SHARE" ] || { echo "$RELAY_SHARE."; echo; }
            echo "$TIMES."
            echo
            echo "| pair | result |"
            echo "|---|---|"
            printf '%s\n' "${MD_DETAILS[@]}"
            echo
            echo "Self-check:"
            echo
            echo '```'
            for pl in "${SITES[@]}"; do
                printf '%-13s %-10s %s\n' "$(site_label "$pl")" "$pl" "$(head -n 1 "$WORK/log/check-$pl.txt")"
            done
            echo '```'
        } > "$REPORT"
        log "report written to $REPORT"
    fi
    if [ -n "${NATLAB_MIN_DIRECT:-}" ] && [ "$direct" -lt "$NATLAB_MIN_DIRECT" ]; then
        fail "$direct ordered pairs connected directly, fewer than NATLAB_MIN_DIRECT=$NATLAB_MIN_DIRECT"
    fi
    if [ -n "${NATLAB_MIN_CONNECTED:-}" ] && [ "$connected" -lt "$NATLAB_MIN_CONNECTED" ]; then
        fail "$connected ordered pairs connected, fewer than NATLAB_MIN_CONNECTED=$NATLAB_MIN_CONNECTED"
    fi
fi

# ---- failover: the first phone book goes silent ----------------------------------------------
if [ "$MATRIX" = 1 ] && [ "$FAILOVER" = 1 ] && [ "$INSTANCES" != 1 ]; then
    log ""
    log "== failover: the first phone book goes silent (nftables drops all its traffic); the matrix again"
    nsx nl-pb nft -f - <<'EOF_NFT'
table inet natlab_silent {
    chain in { type filter hook input priority -10; policy drop; }
    chain out { type filter hook output priority -10; policy drop; }
}
EOF_NFT
    T_FO=$(date +%s)
    for ((w = 0; w < NT; w++)); do
        WAVE=()
        for ((s = 0; s < NT; s++)); do
            f=$(( (s + w) % NT ))
            fetch_pair "fo$s-$f" "nl-${CODE[${TYPES[$s]}]}a" "nl-${CODE[${TYPES[$f]}]}b" &
            WAVE+=($!)
        done
        for j in "${WAVE[@]}"; do wait "$j" || fail "a fetch runner failed (a bug of run.sh; logs in $WORK/log)"; done
    done
    fo_direct=0; fo_relayed=0; FO_FAILED=()
    for ((s = 0; s < NT; s++)); do
        for ((f = 0; f < NT; f++)); do
            IFS=$'\t' read -r ok ms kind addr cms reason < "$WORK/res/fo$s-$f"
            if [ "$ok" = 1 ] && [ "$kind" = relayed ]; then
                fo_relayed=$((fo_relayed + 1))
            elif [ "$ok" = 1 ]; then
                fo_direct=$((fo_direct + 1))
            else
                FO_FAILED+=("${LABEL[${TYPES[$s]}]} -> ${LABEL[${TYPES[$f]}]}: $reason")
            fi
        done
    done
    fo_connected=$((fo_direct + fo_relayed))
    FO_SUMMARY="with the first phone book silent: direct $fo_direct, relayed $fo_relayed, connected $fo_connected of $((NT * NT)) (in $(( $(date +%s) - T_FO )) s)"
    log "$FO_SUMMARY"
    for l in "${FO_FAILED[@]}"; do log "  not connected: $l"; done
    if [ -n "$REPORT" ]; then
        { echo; echo "**Failover:** $FO_SUMMARY."; } >> "$REPORT"
    fi
    if [ -n "${NATLAB_MIN_FAILOVER:-}" ] && [ "$fo_connected" -lt "$NATLAB_MIN_FAILOVER" ]; then
        fail "$fo_connected ordered pairs connected with the first phone book silent, fewer than NATLAB_MIN_FAILOVER=$NATLAB_MIN_FAILOVER"
    fi
fi

log "natlab: done"
