#!/usr/bin/env bash
# Regenerates the figures of docs/policies.md and its charts (docs/policies/*/*.svg) with
# `sim compare`: the text between each pair of `<!-- generated: NAME -->` and
# `<!-- end generated: NAME -->` markers is replaced; the prose around them is left alone (read
# the new figures and update it if they changed). Same seeds, same bytes: on an unchanged tree
# this changes nothing.
#
#   bash docs/policies.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p sim --quiet
sim=target/release/sim
doc=docs/policies.md

# splice NAME FILE: the text of FILE goes between NAME's markers in $doc.
splice() {
    local name=$1 file=$2 tmp
    tmp=$(mktemp)
    awk -v begin="<!-- generated: $name -->" -v end="<!-- end generated: $name -->" -v file="$file" '
        $0 == begin { print; while ((getline line < file) > 0) print line; skipping = 1; found = 1; next }
        $0 == end { skipping = 0 }
        !skipping { print }
        END { if (!found) { print "no marker " begin > "/dev/stderr"; exit 1 } }
    ' "$doc" > "$tmp"
    mv "$tmp" "$doc"
}

# compare NAME ARGS...: runs one comparison into docs/policies/NAME/ and splices its Markdown.
compare() {
    local name=$1 out
    shift
    out=$(mktemp)
    rm -rf "docs/policies/$name"
    "$sim" compare "$@" --format markdown --plot "docs/policies/$name" > "$out"
    {
        echo
        echo "Charts (one per metric):"
        echo
        for svg in "docs/policies/$name"/*.svg; do
            echo "- [$(basename "$svg" .svg)](policies/$name/$(basename "$svg"))"
        done
    } >> "$out"
    splice "$name" "$out"
    rm -f "$out"
}

params=$(mktemp)
{ echo; echo '```text'; "$sim" compare --params; echo '```'; echo; } > "$params"
splice params "$params"
rm -f "$params"

compare ttl --sessions 1000 --sweep identity_ttl=1m,10m,1h,1d
compare restarts --sessions 1000 --set identity_ttl=1d --sweep restarts_per_day=1,4,16,64 \
    --policies expiry=reacquire,persist_task=true expiry=reacquire,persist_task=false
