# Helpers for the demo sections.
# Bold banners only on a terminal (and not under NO_COLOR): a log file or a pipe gets plain text.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  BOLD=$'\033[1m' PLAIN=$'\033[0m'
else
  BOLD='' PLAIN=''
fi
banner() { printf '\n%s== %s ==%s\n' "$BOLD" "$*" "$PLAIN"; }
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
