# shellcheck shell=bash
# Shared by the ops scripts (sourced, not run): the checkout, its virtualenv's Python, one-line errors.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="$REPO/.venv/bin/python"
export REPO PYTHON

die() {
    echo "error: $*" >&2
    exit 1
}

# Print the calling script's usage (the text given on stdin) and exit, when its first argument asks for help.
help_if_asked() {
    local first="${1:-}"
    local text
    text="$(cat)"
    if [[ "$first" == "-h" || "$first" == "--help" ]]; then
        echo "$text"
        exit 0
    fi
}

require_venv() {
    [[ -x "$PYTHON" ]] || die "no virtualenv at $REPO/.venv: run scripts/setup first"
}

# Run a Python module of the kit from the checkout with the virtualenv's interpreter.
run_module() {
    require_venv
    cd "$REPO" || die "cannot enter $REPO"
    exec "$PYTHON" -m "$@"
}

# The docker compose command line, or a clear error when Docker or its compose plugin is missing.
require_compose() {
    command -v docker >/dev/null 2>&1 || die "docker not found: install Docker, or drop --compose to use the embedded stack"
    docker compose version >/dev/null 2>&1 || die "'docker compose' is not available: install the Docker Compose plugin"
    compgen -G "$REPO/*compose*.y*ml" >/dev/null || die "no compose file in $REPO"
}
