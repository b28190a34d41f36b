#!/bin/sh
# Runs `bench:device` on a GPU machine that has no Node.js, from the bundle `npm run bench:device:bundle`
# built (.bench-out/device-bundle beside this repository, or $BENCH_BUNDLE): unpacks Node and the runtime
# into a temp dir, lets the dynamic linker find the bundled Vulkan loader and the Vulkan loader find the
# NVIDIA driver, and runs the bench. Results go to $OUT when it is set (the device machine's output
# folder), else $BENCH_OUT_DIR, else .bench-out/device; `--out DIR` overrides both.
#
#   sh bench/device/launch.sh [bench:device flags, e.g. --tiny or --layers 2,4 --dtypes fp16]
#
# The Vulkan driver: $VK_DRIVER_FILES (or $VK_ICD_FILENAMES) when set, else NVIDIA's ICD file where the
# driver installs it, else whatever the loader finds (on a CPU machine: Mesa's lavapipe).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
bundle=${BENCH_BUNDLE:-$here/../../.bench-out/device-bundle}
if [ ! -f "$bundle/node.xz" ] || [ ! -f "$bundle/runtime.tar.xz" ]; then
  echo "launch.sh: no bundle in $bundle (build it with npm run bench:device:bundle and carry it, or set BENCH_BUNDLE)" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-device.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# xz is in every Debian/Ubuntu base image; Python's lzma is the fallback where it is not.
unxz_to_stdout() {
  if command -v xz >/dev/null 2>&1; then
    xz -dc "$1"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
  fi
}
unxz_to_stdout "$bundle/node.xz" >"$work/node"
chmod +x "$work/node"
unxz_to_stdout "$bundle/runtime.tar.xz" | tar -xf - -C "$work"

# The bundled libvulkan.so.1 first (onnxruntime's Dawn dlopens it); the NVIDIA driver's own libraries
# (its ICD names libGLX_nvidia.so.0) where the container mounts them.
LD_LIBRARY_PATH="$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  if [ -d "$d" ]; then LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"; fi
done
export LD_LIBRARY_PATH
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -z "${VK_ICD_FILENAMES:-}" ]; then
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$f" ]; then
      export VK_DRIVER_FILES="$f"
      break
    fi
  done
fi
# Without it the Vulkan loader prints a warning on every start.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$work}"

BENCH_OUT_DIR="${OUT:-${BENCH_OUT_DIR:-$PWD/.bench-out/device}}"
export BENCH_OUT_DIR
echo "launch.sh: node $("$work/node" --version); Vulkan driver: ${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-the loader's default}}; results to $BENCH_OUT_DIR" >&2
"$work/node" "$work/bench-device.mjs" "$@"
