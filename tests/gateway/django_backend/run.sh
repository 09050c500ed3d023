#!/usr/bin/env bash
# Start the gateway-mode test backend on 127.0.0.1:$PORT.
#
#   PORT=8000 WSEDGE_ADMIN_PORT=9001 WSEDGE_API_ID=wsedgetest1 WSEDGE_STAGE=production \
#   AWS_ACCESS_KEY_ID=AKIDWSEDGETEST AWS_SECRET_ACCESS_KEY=wsedge-test-secret AWS_REGION=us-east-1 \
#   ./run.sh
#
# Env (all optional):
#   PORT                  Django port (default 8000)
#   WSEDGE_ADMIN_PORT     port of wsedge's @connections API (default 9001)
#   WSEDGE_MGMT_ENDPOINT  full template instead, default http://127.0.0.1:$WSEDGE_ADMIN_PORT/{stage}
#   WSEDGE_API_ID / WSEDGE_STAGE / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION
#   GW_DATA_DIR           sqlite dir (default: a fresh mktemp -d, printed on start)
#   PYTHON                interpreter with requirements.txt installed (default ../venv/bin/python
#                         if it exists, else python3)
# Prints one line "GW_READY <json>" (gateway config + data dir) on stdout once migrated;
# then execs runserver (no autoreload, threaded) in the foreground.
set -euo pipefail
cd "$(dirname "$0")"

export PORT="${PORT:-8000}"
export WSEDGE_ADMIN_PORT="${WSEDGE_ADMIN_PORT:-9001}"
# (Not ${WSEDGE_MGMT_ENDPOINT:-…/{stage}}: bash ends that expansion at the
# "}" of "{stage}", and a set value would get a stray "}" appended.)
if [[ -z "${WSEDGE_MGMT_ENDPOINT:-}" ]]; then
  WSEDGE_MGMT_ENDPOINT="http://127.0.0.1:${WSEDGE_ADMIN_PORT}/{stage}"
fi
export WSEDGE_MGMT_ENDPOINT
export WSEDGE_API_ID="${WSEDGE_API_ID:-wsedgetest1}"
export WSEDGE_STAGE="${WSEDGE_STAGE:-production}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-AKIDWSEDGETEST}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-wsedge-test-secret}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export GW_DATA_DIR="${GW_DATA_DIR:-$(mktemp -d -t wsedge-gw-XXXXXX)}"
export DJANGO_SETTINGS_MODULE=gwbackend.settings
export PYTHONUNBUFFERED=1

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x ../venv/bin/python ]]; then PYTHON=../venv/bin/python; else PYTHON=python3; fi
fi

"$PYTHON" manage.py migrate --noinput >&2
CONFIG="$("$PYTHON" manage.py gw_setup)"
echo "GW_READY $("$PYTHON" -c 'import json,sys,os; d=json.loads(sys.argv[1]); d["data_dir"]=os.environ["GW_DATA_DIR"]; print(json.dumps(d))' "$CONFIG")"
exec "$PYTHON" manage.py runserver --noreload 127.0.0.1:"$PORT" 2>&1
