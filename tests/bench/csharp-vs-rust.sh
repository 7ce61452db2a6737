#!/bin/bash
# The same fetch through the C# binding (Mono, ffi/csharp over libffxiv_p2p_peer_v1.so) and from
# Rust (peer::Node, tests/examples/node_fetch.rs), side by side: SIZE_MIB (256) of random bytes
# over loopback between two nodes in one process, both registered with one pi-server, RUNS (5)
# fetches each, alternating C# and Rust, and which goes first, so that drift in the machine hits
# both alike. Each run is a fresh process with fresh data folders (the same keys: the phone book
# binds a name to its key for a day), after `sync` so that no earlier run's writeback overlaps
# it; the time runs from the fetch call to its Done event (polled every 1 ms on both sides). Prints every run, the medians and the ratio C# / Rust
# (issue 12's goal: within 5 %), and appends them to OUT if set. Not a test: nothing is asserted.
# Run with, from the workspace root (about 2 minutes after the builds):
#   bash tests/bench/csharp-vs-rust.sh
# Needs: mono-mcs mono-runtime (see .ci/csharp-test.sh), python3, cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB=${SIZE_MIB:-256}
RUNS=${RUNS:-5}
OUT=${OUT:-}
target=${CARGO_TARGET_DIR:-target}

cargo build -q -p peer-ffi --release
cargo build -q -p pi-server --release --bin pi-server
cargo build -q -p pb-tests --release --example node_fetch
work=$(mktemp -d)
pb=""
trap '[ -z "$pb" ] || kill "$pb" 2>/dev/null; rm -rf "$work"' EXIT
mcs -langversion:7 -target:library -optimize+ -out:"$work/FfxivP2p.dll" ffi/csharp/FfxivP2p.cs
mcs -langversion:7 -optimize+ -r:"$work/FfxivP2p.dll" -out:"$work/Bench.exe" tests/bench/csharp/Bench.cs
export LD_LIBRARY_PATH=$target/release

mkdir -p "$work/shared"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$work/shared/big.bin"
hash=$(sha1sum "$work/shared/big.bin" | cut -d' ' -f1)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$target/release/pi-server" --listen "127.0.0.1:$port" --log-level warn >"$work/pb.log" 2>&1 &
pb=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
url=http://127.0.0.1:$port

one() { # one SIDE RUN: prints the seconds
    local side=$1 dir=$work/run-$1-$2 line
    mkdir -p "$dir" "$work/keys-$side"
    sync
    if [ "$side" = csharp ]; then
        line=$(mono "$work/Bench.exe" "$url" "$work/keys-$side" "$dir" "$work/shared" "$hash")
    else
        line=$("$target/release/examples/node_fetch" "$url" "$work/keys-$side" "$dir" "$work/shared" "$hash")
    fi
    cmp -s "$work/shared/big.bin" "$dir/b/downloads/$hash" || { echo "bench: $side run $2: file differs" >&2; exit 1; }
    rm -rf "$dir"
    sed -n 's/^fetch_seconds=\([0-9.]*\) .*/\1/p' <<<"$line"
}
cs=() rs=()
for i in $(seq "$RUNS"); do
    if [ $((i % 2)) = 1 ]; then c=$(one csharp "$i"); r=$(one rust "$i")
    else r=$(one rust "$i"); c=$(one csharp "$i"); fi
    cs+=("$c") rs+=("$r")
    printf 'run %d: C# %s s, Rust %s s\n' "$i" "$c" "$r"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mc=$(median "${cs[@]}")
mr=$(median "${rs[@]}")
bc=$(printf '%s\n' "${cs[@]}" | sort -g | head -n 1)
br=$(printf '%s\n' "${rs[@]}" | sort -g | head -n 1)
report=$(awk -v c="$mc" -v r="$mr" -v bc="$bc" -v br="$br" -v mib="$SIZE_MIB" -v n="$RUNS" 'BEGIN {
    printf "%d MiB over loopback, median of %d: C# (Mono) %.3f s (%.0f MiB/s), Rust %.3f s (%.0f MiB/s), C# / Rust = %.3f (%+.1f %%); best: C# %.3f s, Rust %.3f s, ratio %.3f",
        mib, n, c, mib / c, r, mib / r, c / r, (c / r - 1) * 100, bc, br, bc / br }')
echo "$report"
echo "machine: $(nproc) cores, $(uname -r), $(mono --version | head -n 1)"
[ -z "$OUT" ] || printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$report" >>"$OUT"
