#!/usr/bin/env bash
# Build llama.cpp's own C++ OpenAI-compatible server, `llama-server`, from the llama.cpp sources that the
# installed llama-cpp-python vendors (same llama.cpp version as the Python server the tests also run).
#
# Why: the word-rank test's prefill mode (--rank-mode prefill) needs a server that continues a final
# assistant message (continue_final_message); llama-cpp-python's server does not, llama-server does.
# The tests that use it (tests/test_rank.py, prefill) find it as $GHOSTSENT_LLAMA_SERVER or on PATH.
#
#   bash scripts/build_llama_server.sh [DEST_DIR]       # default DEST_DIR: /usr/local/bin
#
# CPU only, portable (-DGGML_NATIVE=OFF), no web UI, no downloads beyond the sdist from the package
# registry; about 10 minutes on 2 cores.
set -euo pipefail
DEST=${1:-/usr/local/bin}
PY=${PYTHON:-python}
VER=${LLAMA_CPP_PYTHON_VERSION:-$("$PY" -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))")}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PY" -m pip download -q --no-deps --no-binary llama-cpp-python -d "$WORK" "llama-cpp-python==$VER" 2>/dev/null
tar xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
SRC=$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >/dev/null
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >/dev/null
mkdir -p "$DEST"
install -m 755 "$WORK/build/bin/llama-server" "$DEST/llama-server"
echo "llama-server (llama.cpp vendored by llama-cpp-python $VER) -> $DEST/llama-server"
