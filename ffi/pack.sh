#!/bin/bash
# Assembles the C# binding and the native libraries in the layout of a NuGet package, so a
# plugin's build can restore them without compiling Rust:
#   $OUT/FfxivP2p/FfxivP2p.nuspec
#   $OUT/FfxivP2p/lib/netstandard2.0/FfxivP2p.dll, FfxivP2p.xml   (mcs -target:library, docs)
#   $OUT/FfxivP2p/runtimes/linux-x64/native/libffxiv_p2p_peer_v1.so
#   $OUT/FfxivP2p/runtimes/win-x64/native/ffxiv_p2p_peer_v1.dll    (only if it was built)
#   $OUT/FfxivP2p.VERSION.nupkg   (a zip of the above, nuspec at the root; only with `zip`)
# OUT is $CARGO_TARGET_DIR/nuget (default target/nuget). It builds no Rust: first run
#   cargo build -p peer-ffi --release
#   cargo build -p peer-ffi --release --target x86_64-pc-windows-gnu   (optional: mingw, see .ci/windows-test.sh)
# (.ci/csharp-test.sh does both, then checks this layout and runs the C# test against it).
# The native libraries are copied with their symbol tables stripped (exports stay).
# Needs: mcs (mono-mcs), strip (binutils), x86_64-w64-mingw32-strip for the DLL (gcc-mingw-w64-x86-64),
# zip for the .nupkg. Prints what it put where, and why a part was left out.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
out=$target/nuget
pkg=$out/FfxivP2p
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "pack: FAIL: no version in Cargo.toml"; exit 1; }
so=$target/release/libffxiv_p2p_peer_v1.so
dll=$target/x86_64-pc-windows-gnu/release/ffxiv_p2p_peer_v1.dll
[ -f "$so" ] || { echo "pack: FAIL: $so missing: cargo build -p peer-ffi --release"; exit 1; }

rm -rf "$pkg" "$out"/FfxivP2p.*.nupkg
mkdir -p "$pkg/lib/netstandard2.0" "$pkg/runtimes/linux-x64/native"
# -nowarn:1591: members whose names say it all have no XML comment.
mcs -langversion:7 -target:library -optimize+ -warn:4 -warnaserror -nowarn:1591 \
    -doc:"$pkg/lib/netstandard2.0/FfxivP2p.xml" -out:"$pkg/lib/netstandard2.0/FfxivP2p.dll" \
    ffi/csharp/FfxivP2p.cs
strip --strip-unneeded -o "$pkg/runtimes/linux-x64/native/libffxiv_p2p_peer_v1.so" "$so"
if [ -f "$dll" ]; then
    mkdir -p "$pkg/runtimes/win-x64/native"
    x86_64-w64-mingw32-strip --strip-unneeded -o "$pkg/runtimes/win-x64/native/ffxiv_p2p_peer_v1.dll" "$dll"
else
    echo "pack: no win-x64 library: $dll not built (cargo build -p peer-ffi --release --target x86_64-pc-windows-gnu)"
fi

cat >"$pkg/FfxivP2p.nuspec" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>FfxivP2p</id>
    <version>$version</version>
    <authors>ffxiv-p2p</authors>
    <description>Peer-to-peer mod sharing for FFXIV plugins: a C# binding (P/Invoke) over the native library ffxiv_p2p_peer_v1 (Rust), with the native library for linux-x64$( [ -f "$dll" ] && echo " and win-x64").</description>
    <license type="expression">MIT OR Apache-2.0</license>
    <dependencies>
      <group targetFramework=".NETStandard2.0" />
    </dependencies>
  </metadata>
</package>
EOF
# NuGet reads packages as Open Packaging Convention zips: declare the content types.
cat >"$pkg/[Content_Types].xml" <<'EOF'
<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
  <Default Extension="nuspec" ContentType="application/octet" />
  <Default Extension="dll" ContentType="application/octet" />
  <Default Extension="xml" ContentType="application/octet" />
  <Default Extension="so" ContentType="application/octet" />
</Types>
EOF

echo "pack: $pkg (version $version):"
(cd "$pkg" && find . -type f | sort | while read -r f; do printf '  %10s  %s\n' "$(stat -c %s "$f")" "${f#./}"; done)
if command -v zip >/dev/null; then
    nupkg=$(realpath "$out")/FfxivP2p.$version.nupkg
    (cd "$pkg" && zip -q -X -D -r "$nupkg" .)
    echo "pack: $nupkg ($(stat -c %s "$nupkg") bytes)"
else
    echo "pack: no .nupkg: zip is not installed (the folder above is the package's content)"
fi
