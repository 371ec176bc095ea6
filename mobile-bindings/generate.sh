#!/usr/bin/env bash
# Generates the Kotlin and Swift sources of the collector library (UniFFI) into a folder.
#
#   bash mobile-bindings/generate.sh [OUT_DIR]        (default: target/bindings)
#
# It builds the library (cdylib) and the workspace's uniffi-bindgen, then runs
#   uniffi-bindgen generate --library target/debug/libhamlet_mobile.so --language kotlin|swift --out-dir OUT_DIR/<language>
# Kotlin and Swift cannot be compiled on this machine; CI runs this script so that generation never
# breaks, and the tests drive the same library through its generated Python bindings.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/bindings}"
# Two commands: `--lib` would apply to both packages, and the generator has only a binary.
cargo build --quiet -p hamlet-mobile --lib
cargo build --quiet -p hamlet-uniffi-bindgen --bins
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
case "$(uname -s)" in
  Darwin) library="$target/debug/libhamlet_mobile.dylib" ;;
  *) library="$target/debug/libhamlet_mobile.so" ;;
esac
for language in kotlin swift; do
  rm -rf "$out/$language"
  "$target/debug/uniffi-bindgen" generate --no-format --library "$library" --language "$language" --out-dir "$out/$language"
done
# Fail loudly if a language produced nothing.
test -s "$out/kotlin/uniffi/hamlet_mobile/hamlet_mobile.kt"
test -s "$out/swift/hamlet_mobile.swift"
echo "Kotlin and Swift bindings in $out"
