#!/usr/bin/env bash
# Benchmark ClinicVault against restic, borg and the clinics' tar scripts on the shared clinic dataset.
# usage: npm run bench [-- --scale 1.0] [--reps 3] [--tools "restic borg-lz4 tar-pigz-openssl clinicvault"]
#        npm run bench -- --scale-check        (scale 0.25, 1.0 and 2.0, restic and clinicvault, one rep each)
# Every tool runs in the same invocation, so the ratios compare tools on the same machine at the same moment.
# Results: $BENCH_OUT (default /tmp/clinic-bench/out-<scale>) timings.csv, sizes.csv and logs; the summary is
# printed (and is what docs/PERFORMANCE.md quotes). ClinicVault runs through bin/clinicvault, the launcher a Linux
# install uses (glibc's huge-page tunable and libuv's pool of 8 threads, decisions 0030 and 0031).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$(cd "$ROOT/.." && pwd)/shared}
KIT=$SHARED/bench
SCALES=1.0
REPS=3
TOOLS="restic borg-lz4 tar-pigz-openssl clinicvault"
while [ $# -gt 0 ]; do
  case $1 in
    --scale) SCALES=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --tools) TOOLS=$2; shift 2 ;;
    --scale-check) SCALES="0.25 1.0 2.0"; REPS=1; TOOLS="restic clinicvault"; shift ;;
    *) echo "unknown option $1 (see the header of scripts/bench.sh)" >&2; exit 2 ;;
  esac
done
[ -f "$KIT/run_anchors.sh" ] || { echo "The benchmark kit is missing: expected $KIT/run_anchors.sh (set SHARED=...)." >&2; exit 2; }

need=()
for c in restic borg age pigz zstd sqlite3 openssl; do command -v $c >/dev/null || need+=("$c"); done
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  echo "Installing the peer tools from Debian (missing: ${need[*]})"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq restic borgbackup age pigz zstd sqlite3 time openssl >/dev/null
fi

[ -f "$ROOT/dist/src-main/cli/main.js" ] || (cd "$ROOT" && npm run build >/dev/null)
BASE=${BENCH_ROOT:-/tmp/clinic-bench}
for scale in $SCALES; do
  DATA=$BASE/data-$scale
  if [ ! -f "$DATA/.clinic_gen.json" ]; then
    echo "Generating the clinic dataset at scale $scale in $DATA"
    rm -rf "$DATA"
    python3 "$KIT/gen_clinic.py" --root "$DATA" --scale "$scale" --seed 42
  fi
  OUT=${BENCH_OUT:-$BASE/out-$scale}
  RUN=$(date -u +%Y%m%dT%H%M%SZ)
  for rep in $(seq 1 "$REPS"); do
    BENCH=$BASE/scratch REP=$rep RUN_ID=$RUN-s$scale OUTDIR=$OUT TOOLS="$TOOLS" \
      CLINICVAULT="$ROOT/bin/clinicvault" bash "$KIT/run_anchors.sh" "$DATA"
  done
  echo
  echo "## scale $scale ($(du -sh "$DATA" | cut -f1)), $REPS repetition(s), run $RUN"
  python3 "$ROOT/scripts/bench_medians.py" "$OUT" "$RUN-s$scale"
done
