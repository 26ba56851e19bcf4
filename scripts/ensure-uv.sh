# Sourced by the scripts: makes `uv` available (pip --user install, via Debian's
# python3-pip when pip itself is missing) and keeps uv on the machine's Python.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv (pip --user)" >&2
  if ! python3 -m pip --version >/dev/null 2>&1; then
    sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq python3-pip >/dev/null
  fi
  python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages uv
fi
