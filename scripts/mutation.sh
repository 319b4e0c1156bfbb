#!/usr/bin/env bash
# Mutation testing with mutmut (3.x) of edge-sr's core modules against their fast tests.
#
#   scripts/mutation.sh                      # every module below, one after the other
#   scripts/mutation.sh color imresize       # only these (names from the table below)
#
# Runs in a copy of the repository (mutmut writes mutants/ and its caches there; the live tree is never
# touched), under the shared CPU lock, with a time limit per module (EDGE_SR_MUTATION_TIMEOUT, default 900 s).
# Results: $EDGE_SR_MUTATION_DIR/<module>/results.txt (default /tmp/edge-sr-mutation); survivors are listed in
# docs/testing.md with why each is harmless, or killed by a new test. Needs: .venv/bin/pip install mutmut
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${EDGE_SR_MUTATION_DIR:-/tmp/edge-sr-mutation}
limit=${EDGE_SR_MUTATION_TIMEOUT:-900}
export EDGE_SR_DATA=${EDGE_SR_DATA:-$(cd .. && pwd)/shared/data}
[ -x .venv/bin/mutmut ] || { echo "mutation.sh: mutmut is not installed: .venv/bin/pip install mutmut" >&2; exit 2; }

# module -> the fast tests that guard it (mutmut runs, for each mutant, only those of them that reach the
# mutated function; tests that call the CLI in a subprocess are not seen by its coverage and do not count)
declare -A FILE=(
  [color]=edge_sr/color.py
  [imresize]=edge_sr/imresize.py
  [quality]=edge_sr/quality.py
  [checkpoint]=edge_sr/checkpoint.py
  [report]=calibration/report.py
)
declare -A TESTS=(
  [color]="tests/test_color_pipeline.py tests/test_promises.py tests/test_protocol.py"
  [imresize]="tests/test_protocol.py"
  [quality]="tests/test_protocol.py tests/test_promises.py"
  [checkpoint]="tests/test_tiling_checkpoint.py tests/test_promises.py"
  [report]="tests/test_calibration.py"
)
order=(color checkpoint imresize quality report)   # smallest first
[ $# -gt 0 ] && order=("$@")

for m in "${order[@]}"; do
  [ -n "${FILE[$m]:-}" ] || { echo "mutation.sh: unknown module $m (${!FILE[*]})" >&2; exit 2; }
  work=$out/$m
  rm -rf "$work"
  mkdir -p "$work"
  git ls-files -co --exclude-standard -z | xargs -0 -I{} cp --parents {} "$work" 2>/dev/null || true
  tests=$(printf '    %s\n' ${TESTS[$m]})
  # mutmut forks its test runs from a process whose caches are warm: imresize's lru_cache of weight
  # matrices would hide every mutant of the kernel. Clear it before each test, in the copy only.
  cat >> "$work/tests/conftest.py" <<'PY'


@pytest.fixture(autouse=True)
def _mutation_cold_caches():
    from edge_sr import imresize as _imresize

    if hasattr(_imresize._weight_matrix, "cache_clear"):
        _imresize._weight_matrix.cache_clear()
PY
  cat > "$work/setup.cfg" <<CFG
[mutmut]
source_paths =
    edge_sr
    calibration
    train
    deploy
only_mutate =
    ${FILE[$m]}
pytest_add_cli_args_test_selection =
$tests
pytest_add_cli_args =
    -m
    not slow and not gpu
    -p
    no:cacheprovider
    -q
CFG
  # no [tool.mutmut] in the copy's pyproject.toml, so mutmut reads setup.cfg
  echo "== $m (${FILE[$m]}) against ${TESTS[$m]}"
  start=$(date +%s)
  set +e
  (cd "$work" && timeout "$limit" flock -s /tmp/edge-sr-quiet.lock "$repo/.venv/bin/mutmut" run --max-children 2 \
      > "$work/run.log" 2>&1)
  rc=$?
  set -e
  (cd "$work" && "$repo/.venv/bin/mutmut" results --all true > "$work/results.txt" 2>&1 || \
                 "$repo/.venv/bin/mutmut" results > "$work/results.txt" 2>&1 || true)
  echo "   $(( $(date +%s) - start )) s, mutmut exit $rc$( [ $rc = 124 ] && echo ' (time limit: partial)')"
  awk '{print $NF}' "$work/results.txt" | sort | uniq -c | sed 's/^/   /'
  grep -E ": (survived|no tests|timeout|suspicious)" "$work/results.txt" | sed 's/^/   /' || true
done
