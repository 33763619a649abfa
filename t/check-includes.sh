#!/usr/bin/env bash
# Enforce the include arrows of STYLE.md section 1: a folder may include a
# lower folder's public header, never a higher one's, never another folder's
# private _int.h, and no two modules include each other, even through
# others. Fails on a new edge.
set -u
cd "$(dirname "$0")/.."
declare -A allow=(
  [src]="src"
  [src/h1]="src src/h1 src/h2 src/ws"
  [src/h2]="src src/h2 src/ws"
  [src/h3]="src src/h3"
  [src/ws]="src src/ws"
  [src/proxy]="src src/proxy src/h1 src/ws src/cache"  # ws: handshake helpers for WebSocket proxying; cache: answered first
  [src/cache]="src src/cache"
  [src/harness]="src src/harness"
  [src/static]="src src/static"
  [src/jobs]="src src/jobs src/proxy"
  [src/reply]="src src/reply src/jobs src/ws src/proxy"  # proxy: reply_to delivers through the upstream client
  [src/auth]="src src/auth src/proxy"  # proxy: the auth service is an upstream group
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
# No include cycle between modules (x.c, x.h and x_int.h are one module):
# a cycle means two rooms that cannot be read, tested or replaced apart.
python3 - <<'PY' || bad=1
import os, re, sys
edges = {}
for root, _, files in os.walk("src"):
    for f in files:
        p = os.path.join(root, f)
        if not f.endswith((".c", ".h")) or p == "src/main.c":
            continue
        mod = re.sub(r"_int$", "", os.path.splitext(p)[0])
        for inc in re.findall(r'^#include "(.*)"', open(p).read(), re.M):
            t = os.path.normpath(os.path.join(root, inc))
            tmod = re.sub(r"_int$", "", os.path.splitext(t)[0])
            if tmod != mod and os.path.exists(t):
                edges.setdefault(mod, set()).add(tmod)
state, cycles = {}, []
def visit(m, stack):
    state[m] = 1
    stack.append(m)
    for t in sorted(edges.get(m, ())):
        if state.get(t) == 1:
            cycles.append(stack[stack.index(t):] + [t])
        elif t not in state:
            visit(t, stack)
    stack.pop()
    state[m] = 2
for m in sorted(edges):
    if m not in state:
        visit(m, [])
for c in cycles:
    print("check-includes: include cycle " + " -> ".join(c))
sys.exit(1 if cycles else 0)
PY
[ $bad = 0 ] && echo "check-includes: ok"
exit $bad
