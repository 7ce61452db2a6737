#!/bin/bash
# Windows (issue 12): builds the `peer` CLI for x86_64-pc-windows-gnu with Debian's mingw, runs
# the peer crate's unit and loopback tests under Wine, then a Windows peer (under Wine) and a Linux peer
# register with one pi-server on loopback, find each other by name and fetch a file each way,
# checked by SHA-1; then the Windows peer looks a player up over HTTPS (a test CA, --phonebook-ca).
# About 5 minutes on a fresh machine (the Windows build, then the loopback
# tests under Wine, about 2 minutes).
# Debian's Wine 8 lacks bcryptprimitives.dll, which Rust's std needs (ProcessPrng): a stand-in
# built from tests/wine/bcryptprimitives.c is put beside the executables (test harness only;
# Windows 10 and later have the real one).
# Needs root to install packages (without root and without them: says so and exits 0).
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(gcc-mingw-w64-x86-64 wine64 procps coreutils python3 openssl)
.ci/apt-install.sh windows-test "${PKGS[@]}"
missing=""
for t in x86_64-w64-mingw32-gcc /usr/lib/wine/wine64; do
    command -v "$t" >/dev/null || missing="$missing $t"
done
if [ -n "$missing" ]; then
    echo "windows-test: SKIP: missing$missing (install: ${PKGS[*]}; needs root)"
    exit 0
fi
rustup target add x86_64-pc-windows-gnu >/dev/null 2>&1 || rustup target add x86_64-pc-windows-gnu
TARGET=${CARGO_TARGET_DIR:-target}
WIN=$TARGET/x86_64-pc-windows-gnu/debug
WORK=$(mktemp -d)
export WINEPREFIX=$WORK/wineprefix WINEDEBUG=-all
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
    /usr/lib/wine/wineserver -k 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
wine() { /usr/lib/wine/wine64 "$@"; }

cargo build -p peer --bin peer --target x86_64-pc-windows-gnu
cargo build -p peer -p pi-server --bin peer --bin pi-server
mkdir -p "$WIN/deps"
x86_64-w64-mingw32-gcc -O2 -shared -o "$WIN/bcryptprimitives.dll" tests/wine/bcryptprimitives.c -ladvapi32
cp "$WIN/bcryptprimitives.dll" "$WIN/deps/"
wine wineboot --init >/dev/null 2>&1 || true

echo "== the peer crate's unit and loopback tests under Wine"
# Cargo runs the test executables through Wine (the runner); they sit in deps/ with the
# stand-in. The loopback suite moves real files over real QUIC (a 256 MiB one included); its
# Unix-only tests (kill(1), network namespaces) are not built for Windows.
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/usr/lib/wine/wine64 \
    cargo test -p peer --lib --test integration --target x86_64-pc-windows-gnu

echo "== a Windows peer and a Linux peer through one phone book"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TARGET/debug/pi-server" --listen "127.0.0.1:$PORT" --snapshot "$WORK/pb.snapshot" --log-level warn \
    > "$WORK/pb.log" 2>&1 &
PIDS+=($!)
PB=http://127.0.0.1:$PORT
for _ in $(seq 100); do
    python3 tests/natlab/natlab.py http-ok "$PB/api/health" --timeout 1 2>/dev/null && break
    sleep 0.1
done
mkdir -p "$WORK/win-files" "$WORK/linux-files"
head -c 3000001 /dev/urandom > "$WORK/win-files/from-windows.bin"
head -c 2000003 /dev/urandom > "$WORK/linux-files/from-linux.bin"
serve_ready() { # log
    for _ in $(seq 300); do grep -q "^candidates" "$1" && return 0; sleep 0.1; done
    echo "windows-test: FAIL: a server did not start:"; cat "$1"; exit 1
}
winpath() { local p=$1; echo "Z:${p//\//\\}"; }
wine "$WIN/peer.exe" serve "$(winpath "$WORK/win-files")" --visibility public \
    --identity "C:\\users\\win.key" --pins "C:\\users\\win.pins" --listen 127.0.0.1:0 \
    --phonebook "$PB" --name "Windows Player@World" --no-portmap > "$WORK/win-serve.log" 2>&1 &
PIDS+=($!)
"$TARGET/debug/peer" serve "$WORK/linux-files" --visibility public --identity "$WORK/linux.key" --pins "$WORK/linux.pins" \
    --listen 127.0.0.1:0 --phonebook "$PB" --name "Linux Player@World" --no-portmap \
    > "$WORK/linux-serve.log" 2>&1 &
PIDS+=($!)
serve_ready "$WORK/win-serve.log"
serve_ready "$WORK/linux-serve.log"

sum() { sha1sum "$1" | cut -d' ' -f1; }
FROM_WIN=$(sum "$WORK/win-files/from-windows.bin")
FROM_LINUX=$(sum "$WORK/linux-files/from-linux.bin")
"$TARGET/debug/peer" fetch "$FROM_WIN" --out "$WORK/got-from-windows.bin" --player "Windows Player@World" \
    --phonebook "$PB" --identity "$WORK/lf.key" --pins "$WORK/lf.pins" --no-portmap --quiet \
    > "$WORK/linux-fetch.log" 2>&1 || { echo "windows-test: FAIL: Linux fetching from Windows:"; cat "$WORK/linux-fetch.log"; exit 1; }
wine "$WIN/peer.exe" fetch "$FROM_LINUX" --out "C:\\users\\got-from-linux.bin" --player "Linux Player@World" \
    --phonebook "$PB" --identity "C:\\users\\wf.key" --pins "C:\\users\\wf.pins" --no-portmap --quiet \
    > "$WORK/win-fetch.log" 2>&1 || { echo "windows-test: FAIL: Windows fetching from Linux:"; cat "$WORK/win-fetch.log"; exit 1; }
GOT_WIN=$(sum "$WORK/got-from-windows.bin")
GOT_LINUX=$(sum "$WINEPREFIX/drive_c/users/got-from-linux.bin")
grep '^path:' "$WORK/linux-fetch.log" "$WORK/win-fetch.log" || true
[ "$GOT_WIN" = "$FROM_WIN" ] || { echo "windows-test: FAIL: Linux got $GOT_WIN, want $FROM_WIN"; exit 1; }
[ "$GOT_LINUX" = "$FROM_LINUX" ] || { echo "windows-test: FAIL: Windows got $GOT_LINUX, want $FROM_LINUX"; exit 1; }
echo "windows-test: Windows -> Linux $FROM_WIN, Linux -> Windows $FROM_LINUX (3,000,001 and 2,000,003 bytes, SHA-1 checked)"

echo "== a Windows peer looks a player up over HTTPS (issue 13)"
# A test CA signs the HTTPS phone book's certificate; the Windows peer trusts it through
# --phonebook-ca (beside its bundled web roots) and refuses the phone book without it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=windows-test CA" \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$WORK/tls.key" -out "$WORK/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' > "$WORK/tls.ext"
openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 \
    -extfile "$WORK/tls.ext" -out "$WORK/tls.pem" 2>/dev/null
TPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TARGET/debug/pi-server" --listen "127.0.0.1:$TPORT" --udp-listen off --tls-cert "$WORK/tls.pem" \
    --tls-key "$WORK/tls.key" --log-level warn > "$WORK/pb-tls.log" 2>&1 &
PIDS+=($!)
TPB=https://localhost:$TPORT
"$TARGET/debug/peer" serve "$WORK/linux-files" --visibility public --identity "$WORK/linux2.key" --pins "$WORK/linux2.pins" \
    --listen 127.0.0.1:0 --phonebook "$TPB" --phonebook-ca "$WORK/ca.pem" --name "Tls Player@World" \
    --no-portmap > "$WORK/linux-tls-serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do grep -q "^registered" "$WORK/linux-tls-serve.log" && break; sleep 0.1; done
grep -q "^registered" "$WORK/linux-tls-serve.log" ||
    { echo "windows-test: FAIL: the Linux peer did not register over HTTPS:"; cat "$WORK/linux-tls-serve.log"; exit 1; }
wine "$WIN/peer.exe" lookup "Tls Player@World" --phonebook "$TPB" --phonebook-ca "$(winpath "$WORK/ca.pem")" \
    --identity "C:\\users\\wt.key" --pins "C:\\users\\wt.pins" --no-portmap > "$WORK/win-tls.log" 2>&1 ||
    { echo "windows-test: FAIL: Windows lookup over HTTPS:"; cat "$WORK/win-tls.log"; exit 1; }
grep -q "^Tls Player@World " "$WORK/win-tls.log" ||
    { echo "windows-test: FAIL: Windows lookup over HTTPS printed no record:"; cat "$WORK/win-tls.log"; exit 1; }
if wine "$WIN/peer.exe" lookup "Tls Player@World" --phonebook "$TPB" --identity "C:\\users\\wt.key" \
    --pins "C:\\users\\wt.pins" --no-portmap > "$WORK/win-tls-untrusted.log" 2>&1; then
    echo "windows-test: FAIL: Windows trusted a phone book certificate from an unknown CA"; exit 1
fi
grep -q "UnknownIssuer" "$WORK/win-tls-untrusted.log" ||
    { echo "windows-test: FAIL: unexpected error without the CA:"; cat "$WORK/win-tls-untrusted.log"; exit 1; }
echo "windows-test: HTTPS: the Windows peer found the player with --phonebook-ca, refused the server without"

echo "== the C ABI under Wine: ffxiv_p2p_peer_v1.dll and the C test program built by mingw"
# The same program as .ci/ffi-test.sh: bad input (null pointers, invalid UTF-8, stale handles,
# shutdown twice), then two nodes in one process with the Linux phone book above: register,
# look up, fetch with progress, cancel, shut down.
cargo build -p peer-ffi --lib --target x86_64-pc-windows-gnu
x86_64-w64-mingw32-gcc -std=c11 -Wall -Wextra -Werror -Iffi/include ffi/tests/c/test.c \
    -L"$WIN" -lffxiv_p2p_peer_v1 -o "$WIN/ffi-test.exe"
wine "$WIN/ffi-test.exe" --bad-input-only
mkdir -p "$WORK/ffi/shared"
head -c 1500007 /dev/urandom > "$WORK/ffi/shared/mod.tex"
FFI_HASH=$(sum "$WORK/ffi/shared/mod.tex")
wine "$WIN/ffi-test.exe" "$PB" "$(winpath "$WORK/ffi")" "$(winpath "$WORK/ffi/shared")" "$FFI_HASH"
cmp "$WORK/ffi/shared/mod.tex" "$WORK/ffi/b/downloads/$FFI_HASH" \
    || { echo "windows-test: FAIL: the file fetched through the C ABI under Wine differs"; exit 1; }
echo "windows-test: PASS: the peer crate's tests, Windows <-> Linux peers, a Windows lookup over HTTPS, and the C ABI under Wine"
