#!/bin/bash
# The NAT lab (tests/natlab/README.md): network namespaces with a public phone book and home
# routers of every common NAT type (nftables, miniupnpd), the real `peer` CLI between every ordered
# pair of NAT types; prints the matrix. Needs root (it says so and exits 0 without it). Runs the
# debug binaries that the test step has built (the cargo build below then only checks them);
# about 5 minutes: the matrix twice, the second time with the first phone book silent, once more
# with a player's peer relay instead of the phone book's, once with that player behind a home
# router of its own (miniupnpd), whose relay port it maps, and once with the two phone books as
# instances of one over Redis.
# NATLAB_MIN_DIRECT: fewest ordered pairs of the matrix that must connect directly; the default is
# issue 10's goal, 32 (the lab measures 33 of 49: every pair where both sides have UDP except
# port-restricted <-> symmetric and symmetric -> symmetric; 6 before NAT traversal).
# NATLAB_MIN_CONNECTED: fewest ordered pairs that must connect at all, directly or through the
# phone book's relay; the default is issue 11's goal, every one of the 49.
# NATLAB_MIN_FAILOVER: the same with the first of the two phone books silent (all its traffic
# dropped after the first matrix): every one of the 49 again (issue 11, several phone books).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "natlab-test: SKIP: needs root (network namespaces, nftables)"
    exit 0
fi
cargo build -p peer -p pi-server --bin peer --bin pi-server
NATLAB_BIN_DIR=${CARGO_TARGET_DIR:-target}/debug NATLAB_MIN_DIRECT=${NATLAB_MIN_DIRECT:-32} \
    NATLAB_MIN_CONNECTED=${NATLAB_MIN_CONNECTED:-49} NATLAB_MIN_FAILOVER=${NATLAB_MIN_FAILOVER:-49} \
    tests/natlab/run.sh
# Peers as relays (issue 11): the phone book runs no relay, a player on the internet relays for
# all the others (--relay-listen; everyone names it with --relay-via): every pair connects again,
# the relayed ones through the player (about a minute).
echo
echo "natlab-test: again with the phone book's relay off and a player relaying for its friends"
NATLAB_BIN_DIR=${CARGO_TARGET_DIR:-target}/debug NATLAB_RELAY=0 NATLAB_PEER_RELAY=1 NATLAB_FAILOVER=0 \
    NATLAB_MIN_DIRECT=${NATLAB_MIN_DIRECT:-32} NATLAB_MIN_CONNECTED=${NATLAB_MIN_CONNECTED:-49} \
    tests/natlab/run.sh
# The relaying player behind a router with miniupnpd and no --relay-public: its relay's TCP port
# is mapped there (UPnP, NAT-PMP or PCP), the mapped address is what friends use, and the mapping
# is gone once the player stops (about a minute).
echo
echo "natlab-test: again with the relaying player behind its own router, which maps its relay port"
NATLAB_BIN_DIR=${CARGO_TARGET_DIR:-target}/debug NATLAB_RELAY=0 NATLAB_PEER_RELAY=upnp NATLAB_FAILOVER=0 \
    NATLAB_MIN_DIRECT=${NATLAB_MIN_DIRECT:-32} NATLAB_MIN_CONNECTED=${NATLAB_MIN_CONNECTED:-49} \
    tests/natlab/run.sh
# Two instances of one phone book over one Redis (issue 13): servers register with the first,
# fetchers with the second, so every punch request and relay session crosses between instances
# (about 50 s).
echo
echo "natlab-test: again with the two phone books as instances of one over Redis"
NATLAB_BIN_DIR=${CARGO_TARGET_DIR:-target}/debug NATLAB_INSTANCES=1 \
    NATLAB_MIN_DIRECT=${NATLAB_MIN_DIRECT:-32} NATLAB_MIN_CONNECTED=${NATLAB_MIN_CONNECTED:-49} \
    tests/natlab/run.sh
