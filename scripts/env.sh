# Sourced by the scripts: puts uv (installed with pip --user) on PATH and makes uv use
# the machine's Python instead of downloading one.
export PATH="$HOME/.local/bin:$PATH"
export UV_PYTHON_DOWNLOADS=never
export UV_LINK_MODE=copy
