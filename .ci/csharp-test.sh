#!/bin/bash
# The C# binding (ffi/csharp, issue 12) under Mono against the real library: builds the cdylib
# (release) for Linux and, with mingw and the rustup target present, for Windows; assembles the
# NuGet layout (ffi/pack.sh) and checks it is complete; checks FfxpEvent's layout against the
# header (gcc runs it for Linux, mingw's static assertions cover Windows); compiles the test
# program and the sample with mcs against the packed FfxivP2p.dll and runs them on the packed
# libffxiv_p2p_peer_v1.so with a pi-server started here. Then the packed Windows DLL under Wine:
# the C test program (ffi/tests/c/test.c, built with mingw) with the same pi-server, bad input
# and two nodes (no C# there: there is no Mono or .NET for Windows here). Prints how long it took.
# Apt packages: mono-mcs mono-runtime libmono-corlib4.5-cil libmono-system4.0-cil (the test's
# sockets), gcc libc6-dev binutils (layout program, strip, nm), gcc-mingw-w64-x86-64
# binutils-mingw-w64-x86-64 (the Windows DLL, its strip and objdump; windows-test installs
# them too), wine64 (the DLL's test; likewise), zip unzip (the .nupkg), python3 (a free port).
# Debian's Wine 8 lacks bcryptprimitives.dll: the stand-in of tests/wine/ goes beside the test.
set -euo pipefail
cd "$(dirname "$0")/.."
t_start=$(date +%s)
PKGS=(mono-mcs mono-runtime libmono-corlib4.5-cil libmono-system4.0-cil gcc libc6-dev binutils
    gcc-mingw-w64-x86-64 binutils-mingw-w64-x86-64 wine64 zip unzip python3)
.ci/apt-install.sh csharp-test "${PKGS[@]}"
for tool in mcs mono gcc strip nm zip unzip python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "csharp-test: SKIP: $tool missing (install: ${PKGS[*]}; needs root)"
        exit 0
    fi
done
target=${CARGO_TARGET_DIR:-target}
pkg=$target/nuget/FfxivP2p

cargo build -p peer-ffi --release
cargo build -p pi-server --bin pi-server
win=""
if ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    echo "csharp-test: win-x64 part skipped: x86_64-w64-mingw32-gcc missing (gcc-mingw-w64-x86-64)"
elif ! rustup target add x86_64-pc-windows-gnu >/dev/null 2>&1; then
    echo "csharp-test: win-x64 part skipped: rustup cannot add the x86_64-pc-windows-gnu target"
else
    t=$(date +%s)
    cargo build -p peer-ffi --release --target x86_64-pc-windows-gnu
    echo "csharp-test: Windows DLL built in $(( $(date +%s) - t )) s"
    win=1
fi
ffi/pack.sh

echo "== the NuGet layout"
want=(FfxivP2p.nuspec lib/netstandard2.0/FfxivP2p.dll lib/netstandard2.0/FfxivP2p.xml
    runtimes/linux-x64/native/libffxiv_p2p_peer_v1.so)
[ -z "$win" ] || want+=(runtimes/win-x64/native/ffxiv_p2p_peer_v1.dll)
for f in "${want[@]}"; do
    [ -s "$pkg/$f" ] || { echo "csharp-test: FAIL: $pkg/$f missing or empty"; exit 1; }
done
nupkg=$(ls "$target"/nuget/FfxivP2p.*.nupkg)
listing=$(unzip -Z1 "$nupkg")
for f in "${want[@]}"; do
    grep -qx "$f" <<<"$listing" || { echo "csharp-test: FAIL: $f not in $nupkg"; exit 1; }
done
# Every function of the header is exported by each library, and declared by the binding.
fns=$(grep -o 'ffxp_[a-z_]*(' ffi/include/ffxiv_p2p_peer.h | tr -d '(' | sort -u)
so_syms=$(nm -D --defined-only "$pkg/runtimes/linux-x64/native/libffxiv_p2p_peer_v1.so")
dll_syms=""
[ -z "$win" ] || dll_syms=$(x86_64-w64-mingw32-objdump -p "$pkg/runtimes/win-x64/native/ffxiv_p2p_peer_v1.dll")
for f in $fns; do
    grep -q "static extern FfxpStatus $f(" ffi/csharp/FfxivP2p.cs || { echo "csharp-test: FAIL: $f not in FfxivP2p.cs"; exit 1; }
    grep -qw "$f" <<<"$so_syms" \
        || { echo "csharp-test: FAIL: $f not exported by the .so"; exit 1; }
    [ -z "$win" ] || grep -qw "$f" <<<"$dll_syms" \
        || { echo "csharp-test: FAIL: $f not exported by the DLL"; exit 1; }
done
echo "csharp-test: layout complete: ${#want[@]} files, $(wc -w <<<"$fns") functions declared and exported"
[ -n "$win" ] || echo "csharp-test: (win-x64 not checked: see above)"

work=$(mktemp -d)
pb=""
cleanup() {
    [ -z "$pb" ] || kill "$pb" 2>/dev/null || true
    [ ! -d "$work/wineprefix" ] || WINEPREFIX=$work/wineprefix /usr/lib/wine/wineserver -k 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
echo "== FfxpEvent's layout"
gcc -std=c11 -Wall -Wextra -Werror -Iffi/include ffi/csharp/tests/layout.c -o "$work/layout"
layout=$("$work/layout")
echo "C (gcc, Linux x64): $layout"
if [ -n "$win" ]; then
    x86_64-w64-mingw32-gcc -std=c11 -Wall -Wextra -Werror -Iffi/include -c ffi/csharp/tests/layout.c \
        -o "$work/layout-win.o"
    echo "C (mingw, Windows x64): the same (static assertions hold)"
fi

echo "== the C# test and sample under Mono ($(mono --version | head -n 1))"
dll=$pkg/lib/netstandard2.0/FfxivP2p.dll
mcs -langversion:7 -warn:4 -warnaserror -r:"$dll" -r:System.dll -out:"$work/Test.exe" ffi/csharp/tests/Test.cs
mcs -langversion:7 -warn:4 -warnaserror -r:"$dll" -out:"$work/Sample.exe" ffi/csharp/sample/Sample.cs
cp "$dll" "$work/"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$target/debug/pi-server" --listen "127.0.0.1:$port" >"$work/pb.log" 2>&1 &
pb=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
export LD_LIBRARY_PATH=$pkg/runtimes/linux-x64/native
mkdir -p "$work/test" "$work/sample"
mono --debug "$work/Test.exe" "http://127.0.0.1:$port" "$work/test" --layout="$layout" \
    || { echo "csharp-test: FAIL: Test.exe (pi-server log: $(tail -n 5 "$work/pb.log"))"; exit 1; }
mono --debug "$work/Sample.exe" "http://127.0.0.1:$port" "$work/sample" \
    || { echo "csharp-test: FAIL: Sample.exe"; exit 1; }
echo "== the packed win-x64 DLL under Wine: the C test program"
if [ -z "$win" ]; then
    echo "csharp-test: skipped: no Windows DLL (see above)"
elif [ ! -x /usr/lib/wine/wine64 ]; then
    echo "csharp-test: skipped: /usr/lib/wine/wine64 missing (wine64)"
else
    w=$work/win
    mkdir -p "$w/shared"
    cp "$pkg/runtimes/win-x64/native/ffxiv_p2p_peer_v1.dll" "$w/"
    x86_64-w64-mingw32-gcc -std=c11 -Wall -Wextra -Werror -O2 -Iffi/include ffi/tests/c/test.c \
        "$w/ffxiv_p2p_peer_v1.dll" -o "$w/test.exe"
    x86_64-w64-mingw32-gcc -O2 -shared -o "$w/bcryptprimitives.dll" tests/wine/bcryptprimitives.c -ladvapi32
    export WINEPREFIX=$work/wineprefix WINEDEBUG=-all
    /usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1 || true
    head -c 3000000 /dev/urandom >"$w/shared/mod.tex"
    hash=$(sha1sum "$w/shared/mod.tex" | cut -d' ' -f1)
    winpath() { local p=$1; echo "Z:${p//\//\\}"; }
    timeout 300 /usr/lib/wine/wine64 "$w/test.exe" "http://127.0.0.1:$port" "$(winpath "$w")" \
        "$(winpath "$w/shared")" "$hash" || { echo "csharp-test: FAIL: test.exe under Wine"; exit 1; }
    cmp "$w/shared/mod.tex" "$w/b/downloads/$hash"
    echo "csharp-test: the Windows DLL passed the C test under Wine ($(/usr/lib/wine/wine64 --version))"
fi
echo "csharp-test: ok in $(( $(date +%s) - t_start )) s; .so $(stat -c %s "$pkg/runtimes/linux-x64/native/libffxiv_p2p_peer_v1.so") bytes (stripped)$(
    [ -z "$win" ] || echo ", DLL $(stat -c %s "$pkg/runtimes/win-x64/native/ffxiv_p2p_peer_v1.dll") bytes (stripped)")"
