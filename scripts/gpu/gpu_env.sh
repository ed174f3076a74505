# Sourced (not run) by the scripts that run ON the GPU machine beside it in .device/cuda (copied
# there by build_for_device.sh): `here` (that directory: bin/, tests/, lib/, configs/), `out`
# ($OUT, else /tmp/gs-gpu-out; created), the library path of the shipped binaries, and `cfg`, the
# real 26B-A4B config.json that the benchmarks build their dummy model from.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${OUT:-/tmp/gs-gpu-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}:$here/lib
cfg="$here/configs/gemma-4-26B-A4B-it/config.json"
