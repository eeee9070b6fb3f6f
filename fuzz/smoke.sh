#!/usr/bin/env bash
# Fuzz smoke test: builds every cargo-fuzz target in fuzz/ and runs each for a bounded
# time from the committed seeds (fuzz/seeds/TARGET); fails on any crash, panic, failed
# assertion, timeout or out-of-memory. Installs cargo-fuzz from crates.io if missing.
#
#   bash fuzz/smoke.sh                  # every target, FUZZ_SECONDS (default 30) each
#   FUZZ_SECONDS=1200 FUZZ_SANITIZER=address bash fuzz/smoke.sh enable scram   # long run
#
# The smoke builds without a sanitizer (FUZZ_SANITIZER=none): the code is safe Rust, the
# build is minutes shorter and runs about twice as fast; long runs add AddressSanitizer.
# Each sanitizer builds into its own fuzz/target/SANITIZER.
#
# New inputs go to fuzz/corpus/TARGET (not committed); a crashing input goes to
# fuzz/artifacts/TARGET/ and is reproduced with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none --target-dir target/none TARGET artifacts/TARGET/crash-…
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-30}"
sanitizer="${FUZZ_SANITIZER:-none}"
flags=(--sanitizer "$sanitizer" --target-dir "target/$sanitizer")
# cargo-fuzz passes -Z flags (sanitizer, coverage instrumentation) to rustc; only the
# stable toolchain is installed here, and RUSTC_BOOTSTRAP lets it take them.
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz --version 0.13.2
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

start=$SECONDS
echo "== fuzz: building ${#targets[@]} targets"
cargo fuzz build "${flags[@]}"
echo "== fuzz: built in $((SECONDS - start)) s"

# libFuzzer dictionaries: the XML targets share one.
dict() {
  case "$1" in
    xml_reader | stanza | enable) echo dicts/xml.dict ;;
    *) echo "dicts/$1.dict" ;;
  esac
}

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== fuzz: $t for ${seconds} s"
  # -timeout: one input running longer than 10 s is a failure (a hang or a blow-up);
  # -rss_limit_mb: so is one needing 2 GiB.
  if ! cargo fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -dict="$(dict "$t")" -print_final_stats=1 2>"corpus/$t.log"; then
    failed+=("$t")
    tail -n 60 "corpus/$t.log"
  fi
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "corpus/$t.log" || true
done

echo "== fuzz: ${#targets[@]} targets in $((SECONDS - start)) s"
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
