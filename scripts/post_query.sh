#!/usr/bin/env bash
# Sends one SQL statement to querygate's HTTP bridge, as the original tool's
# script of the same name did:   scripts/post_query.sh HOST PORT "SQL"
# Set QUERYGATE_TOKEN to send it as a Bearer credential.
set -euo pipefail
if [ "$#" -ne 3 ]; then
  echo "usage: $0 HOST PORT \"SQL\"" >&2
  exit 2
fi
host=$1 port=$2 sql=$3
# JSON-escape the statement: backslashes, quotes, and control characters.
sql=${sql//\\/\\\\}
sql=${sql//\"/\\\"}
sql=${sql//$'\n'/\\n}
sql=${sql//$'\r'/\\r}
sql=${sql//$'\t'/\\t}
# JSON allows no raw control character in a string: the rest go as \u00XX.
for ((code = 1; code < 32; code++)); do
  printf -v hex '%02x' "$code"
  printf -v char "\\x$hex"
  [[ $sql == *"$char"* ]] || continue
  printf -v escaped '\\u%04x' "$code"
  sql=${sql//"$char"/"$escaped"}
done
auth=()
# ${auth[@]+...}: an empty array is "unbound" under set -u in bash before 4.4 (macOS).
if [ -n "${QUERYGATE_TOKEN:-}" ]; then auth=(-H "authorization: Bearer ${QUERYGATE_TOKEN}"); fi
curl -sS -X POST "http://${host}:${port}/query" \
  -H "content-type: application/json" ${auth[@]+"${auth[@]}"} \
  -d "{\"query\": \"${sql}\"}"
echo
