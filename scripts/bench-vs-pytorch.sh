#!/usr/bin/env bash
# Times one DARTS search step in nasrs and in the PyTorch peer, one after the other on the same
# machine with the same settings, and prints both JSON lines and the ratio nasrs / PyTorch.
# Usage: scripts/bench-vs-pytorch.sh [--threads 2] [--batch 32] [--cells 5] [--channels 16]
# Nothing else should run on the machine meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
peer="${NASRS_PEER:-../shared/peers/run-pytorch-peer}"
[ -x "$peer" ] || { echo "PyTorch peer not found at $peer (set NASRS_PEER)" >&2; exit 1; }

threads=2 batch=32 cells=5 channels=16 size=32
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads=$2; shift 2 ;;
        --batch) batch=$2; shift 2 ;;
        --cells) cells=$2; shift 2 ;;
        --channels) channels=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 1 ;;
    esac
done
args=(--threads "$threads" --batch "$batch" --cells "$cells" --channels "$channels" --size "$size")

cargo build --release --quiet
ours=$(./target/release/nas bench "${args[@]}" 2>/dev/null)
theirs=$("$peer" "${args[@]}" 2>/dev/null | tail -n 1)
echo "nasrs:   $ours"
echo "pytorch: $theirs"
python3 - "$ours" "$theirs" <<'PY'
import json, sys
ours, theirs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for key in ("forward_ms", "step_ms"):
    print(f"{key}: nasrs {ours[key]:.0f} ms, pytorch {theirs[key]:.0f} ms, "
          f"ratio {ours[key] / theirs[key]:.2f}")
print(f"peak memory: nasrs {ours['peak_rss_mb']:.0f} MiB, pytorch {theirs['peak_rss_mb']:.0f} MiB")
PY
