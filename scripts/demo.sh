#!/usr/bin/env bash
# `make demo`: the committed hc18 sample through the service, in embedded mode (SQLite, a local
# worker process, no PostgreSQL, no Redis, no GPU). 40% of the masks are corrupted with known
# noise; `segaudit serve --embedded` starts the API and a worker; `segaudit submit --wait`
# uploads the images and the noisy masks, audits them and downloads the export; `segaudit
# evaluate` says how well the noise was found. The server is stopped however this ends.
# It ends by printing the dashboard's address and a reviewer key to open it with, and keeps the
# server up until Enter (or at once when stdin is not a terminal).
# Extra audit options (e.g. "--epochs 4 --size 64" for a quick check) come in $DEMO_AUDIT_ARGS.
set -euo pipefail

BIN=${BIN:-.venv/bin}
DEMO=${DEMO:-build/demo}
SAMPLE=${SAMPLE:-data/sample/hc18}

rm -rf "$DEMO"
"$BIN/segaudit" corrupt --masks "$SAMPLE/masks" --out "$DEMO/noisy_masks" \
    --truth "$DEMO/noise_truth.csv" --fraction 0.4 --protocol mixed --seed 0

# The embedded defaults, under the demo's folder, whatever this shell has set.
unset SEGAUDIT_DATABASE_URL SEGAUDIT_BROKER_URL SEGAUDIT_STORAGE_DIR SEGAUDIT_AUDIT_QUEUE \
    SEGAUDIT_CPU_QUEUE SEGAUDIT_DEVICE
export SEGAUDIT_DATA_DIR="$PWD/$DEMO/var"
"$BIN/segaudit" db upgrade > /dev/null
key=$("$BIN/segaudit" keys create --project demo --role annotator --name demo 2> /dev/null)
ui_key=$("$BIN/segaudit" keys create --project demo --role reviewer --name dashboard 2> /dev/null)

"$BIN/segaudit" serve --embedded --port 0 --url-file "$DEMO/url" --log-level warning \
    > "$DEMO/serve.log" 2>&1 &
server=$!
stop() {
    kill -TERM "$server" 2> /dev/null || true
    wait "$server" 2> /dev/null || true
}
trap stop EXIT
for _ in $(seq 300); do
    [ -s "$DEMO/url" ] && break
    if ! kill -0 "$server" 2> /dev/null; then
        echo "demo: the server did not start; its log:" >&2
        cat "$DEMO/serve.log" >&2
        exit 1
    fi
    sleep 0.1
done
url=$(cat "$DEMO/url")
echo "demo: segaudit serve --embedded at $url (log: $DEMO/serve.log)"

# shellcheck disable=SC2086  # DEMO_AUDIT_ARGS holds several options
# The key through the environment, not the command line (where `ps` would show it).
SEGAUDIT_API_KEY="$key" "$BIN/segaudit" submit --server "$url" --dataset hc18-demo \
    --images "$SAMPLE/images" --masks "$DEMO/noisy_masks" --seed 0 ${DEMO_AUDIT_ARGS:-} \
    --wait --out "$DEMO/audit"
echo
"$BIN/segaudit" evaluate --audit "$DEMO/audit" --truth "$DEMO/noise_truth.csv" \
    --true-masks "$SAMPLE/masks" --given-masks "$DEMO/noisy_masks"
echo
echo "demo: the QA dashboard is at $url/ui; open it with this reviewer key: $ui_key"
if [ -t 0 ]; then
    read -r -p "demo: press Enter to stop the server. "
fi
