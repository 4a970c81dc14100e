#!/usr/bin/env bash
# Install the pinned agent CLIs the end-to-end tests drive (Claude Code, Codex) into
# .ci/.cache/npm (git-ignored).  Idempotent: does nothing when the pinned versions are there.
# Used by CI (.ci/run) and by developers:  bash tests/install_clis.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.ci/.cache/npm"
CLAUDE_VERSION="2.1.197"
CODEX_VERSION="0.169.0"

installed_version() {  # package name -> version in PREFIX, or nothing
  local pkg_json="$PREFIX/node_modules/$1/package.json"
  [ -f "$pkg_json" ] && node -e "process.stdout.write(require(process.argv[1]).version)" "$pkg_json" || true
}

if ! command -v npm >/dev/null 2>&1; then
  echo "install_clis.sh: npm is not installed; the real-CLI tests will be skipped" >&2
  exit 0
fi

if [ "$(installed_version @anthropic-ai/claude-code)" = "$CLAUDE_VERSION" ] \
   && [ "$(installed_version @openai/codex)" = "$CODEX_VERSION" ] \
   && [ -x "$PREFIX/node_modules/.bin/claude" ] && [ -x "$PREFIX/node_modules/.bin/codex" ] \
   && "$PREFIX/node_modules/.bin/claude" --version >/dev/null 2>&1; then
  echo "install_clis.sh: claude $CLAUDE_VERSION and codex $CODEX_VERSION already installed in $PREFIX"
  exit 0
fi

mkdir -p "$PREFIX"
# A fresh HOME for npm itself: nothing of the user's npm config or cache is touched.
NPM_HOME="$(mktemp -d)"
trap 'rm -rf "$NPM_HOME"' EXIT
HOME="$NPM_HOME" npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
  "@anthropic-ai/claude-code@$CLAUDE_VERSION" "@openai/codex@$CODEX_VERSION"

"$PREFIX/node_modules/.bin/claude" --version
"$PREFIX/node_modules/.bin/codex" --version
