#!/usr/bin/env bash
# Enforce the include arrows of STYLE.md section 1: a folder may include a
# lower folder's public header, never a higher one's. Fails on a new edge.
set -u
cd "$(dirname "$0")/.."
declare -A allow=(
  [src]="src"
  [src/h1]="src src/h1 src/h2 src/ws"
  [src/h2]="src src/h2 src/ws"
  [src/ws]="src src/ws"
  [src/proxy]="src src/proxy src/h1 src/ws"  # ws: handshake helpers for WebSocket proxying
  [src/harness]="src src/harness"
  [src/static]="src src/static"
  [src/jobs]="src src/jobs src/proxy"
  [src/reply]="src src/reply src/jobs src/ws"
)
bad=0
for f in $(find src -name '*.[ch]' | sort); do
  dir=$(dirname "$f")
  [ "$f" = src/main.c ] && continue
  ok="${allow[$dir]:-}"
  while IFS= read -r inc; do
    target=$(realpath -m --relative-to=. "$dir/$inc")
    tdir=$(dirname "$target")
    case " $ok " in *" $tdir "*) ;; *) echo "check-includes: $f includes $inc ($tdir not allowed from $dir)"; bad=1;; esac
    # A folder's _int.h is its own: other folders use its public header.
    case "$inc" in *_int.h) [ "$tdir" = "$dir" ] || { echo "check-includes: $f includes $inc (another folder's private header)"; bad=1; } ;; esac
  done < <(sed -n 's/^#include "\(.*\)".*/\1/p' "$f")
done
[ $bad = 0 ] && echo "check-includes: ok"
exit $bad
