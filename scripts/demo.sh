#!/bin/sh
# make demo: build a small namespace lab and trace across it.
#   src - r1 - r2 - r3 (silent) - r4 - r5 - dst
# Everything it creates is removed on every way out.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
sonde="$root/build/sonde"
lab="$root/spec/support/lab.lua"

if [ "$(id -u)" != 0 ]; then
  echo "make demo: needs root to build network namespaces (try: sudo make demo)" >&2
  exit 1
fi
name="sddemo$$-"
cleanup() { luajit "$lab" down "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

eval "$(luajit "$lab" up "$name" --routers 5 --silent 3)"
# Names for the lab's addresses, from the namespace's own hosts file; its
# resolver is its own loopback, so no lookup leaves the lab.
mkdir -p "/etc/netns/$SRC_NS"
{
  echo "127.0.0.1 localhost"
  for i in 1 2 3 4 5; do eval "echo \"\$HOP${i}_V4 r$i.lab\"; echo \"\$HOP${i}_V6 r$i.lab\""; done
  echo "$DST_V4 dst.lab"
  echo "$DST_V6 dst.lab"
} > "/etc/netns/$SRC_NS/hosts"
echo "nameserver 127.0.0.1" > "/etc/netns/$SRC_NS/resolv.conf"

run() {
  printf '\n$ %s\n' "$*"
  ip netns exec "$SRC_NS" "$@" || true
}
echo "demo lab: $SRC_NS -> 5 routers (r3 sends no time-exceeded) -> $DST_NS"
run "$sonde" trace dst.lab
run "$sonde" trace -n -I -6 dst.lab
run "$sonde" trace -n -T -q 1 --format json "$DST_V4"
