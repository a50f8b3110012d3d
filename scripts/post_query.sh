#!/bin/sh
# Sends one SQL statement to querygate's HTTP bridge, as the original tool's
# script of the same name did:   sh scripts/post_query.sh HOST PORT "SQL"
# and prints the response body. Set QUERYGATE_TOKEN to send it as a Bearer
# credential. Plain POSIX sh, because the original README runs it with `sh`:
# dash on Debian, busybox in small images, bash elsewhere.
set -eu
if [ "$#" -ne 3 ]; then
  echo "usage: $0 HOST PORT \"SQL\"" >&2
  exit 2
fi
host=$1 port=$2

# JSON-escape the statement: backslashes, quotes, and every control character
# (JSON allows none raw: \n \r \t by name, the rest as \u00XX). awk, since sh
# has no string replacement; the SQL goes through the environment so its
# newlines, trailing ones included, arrive intact.
sql=$(QUERYGATE_SQL=$3 awk 'BEGIN {
  for (i = 1; i < 32; i++) escaped[sprintf("%c", i)] = sprintf("\\u%04x", i)
  escaped["\n"] = "\\n"; escaped["\r"] = "\\r"; escaped["\t"] = "\\t"
  escaped["\""] = "\\\""; escaped["\\"] = "\\\\"
  s = ENVIRON["QUERYGATE_SQL"]
  n = length(s)
  for (i = 1; i <= n; i++) {
    c = substr(s, i, 1)
    printf "%s", ((c in escaped) ? escaped[c] : c)
  }
}')

set -- -H "content-type: application/json"
if [ -n "${QUERYGATE_TOKEN:-}" ]; then set -- "$@" -H "authorization: Bearer ${QUERYGATE_TOKEN}"; fi
curl -sS -X POST "http://${host}:${port}/query" "$@" -d "{\"query\": \"${sql}\"}"
echo
