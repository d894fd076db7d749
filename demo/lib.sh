# Helpers for the demo sections.
banner() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
show() { printf '\n$ %s\n' "$*"; }
# expect CODE CMD...: run CMD, print it, and stop the demo if it does not exit with CODE.
expect() {
  local want=$1; shift
  show "$*"
  set +e; "$@"; local got=$?; set -e
  if [ "$got" -ne "$want" ]; then
    echo "demo: expected exit code $want, got $got from: $*" >&2
    exit 1
  fi
  echo "(exit code $got, as expected)"
}
