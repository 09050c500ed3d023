"""Minimal Django settings for the wsedge gateway-mode acceptance test backend.

Everything that the test harness needs to vary comes from environment variables:

  PORT                    port Django listens on (used for ALLOWED_HOSTS)      default 8000
  GW_DATA_DIR             directory holding db.sqlite3                          default $TMPDIR/wsedge-gw-backend-$PORT
  WSEDGE_MGMT_ENDPOINT    wsedge @connections endpoint, a template that may use
                          {stage}, {api_id}, {region}                           default http://127.0.0.1:9001/{stage}
                          (set to "" to keep the package's hard-coded AWS URL)
  AWS_ACCESS_KEY_ID       key id boto3 signs with (SigV4)                       default AKIDWSEDGETEST
  AWS_SECRET_ACCESS_KEY   secret boto3 signs with                               default wsedge-test-secret
  AWS_REGION              region used in the SigV4 credential scope             default us-east-1
  WSEDGE_API_ID           api id wsedge sends in X-Amzn-Apigateway-Api-Id       default wsedgetest1
  WSEDGE_STAGE            stage name (first path segment of the mgmt endpoint)  default production
  GW_ALLOWED_HOSTS        extra comma separated Host values to accept          default ""
  GW_DEBUG                "1" for Django DEBUG                                  default 0
  GW_GATEWAY_SECRET       if set (>=32 chars [A-Za-z0-9._~+/=-]), every /ws/ request must carry
                          X-Ws-Gateway-Secret: <value>                          default unset
  GW_TOKEN_EXPIRY         ws_token lifetime in seconds                          default 300
"""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

PORT = os.environ.get("PORT", "8000")
DATA_DIR = Path(
    os.environ.get("GW_DATA_DIR")
    or os.path.join(tempfile.gettempdir(), f"wsedge-gw-backend-{PORT}")
)
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = "wsedge-gateway-mode-test-only-not-secret-0123456789abcdef"
DEBUG = os.environ.get("GW_DEBUG", "0") == "1"

# The package compares the *raw* Host header (including the port) against this
# list (views.py:398-406), so "127.0.0.1:<PORT>" must be listed verbatim.
ALLOWED_HOSTS = [
    "127.0.0.1",
    "localhost",
    f"127.0.0.1:{PORT}",
    f"localhost:{PORT}",
] + [h.strip() for h in os.environ.get("GW_ALLOWED_HOSTS", "").split(",") if h.strip()]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django_aws_api_gateway_websockets",
    "gwtest",
]

MIDDLEWARE = [
    "gwtest.middleware.GatewayEventMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

ROOT_URLCONF = "gwbackend.urls"
WSGI_APPLICATION = "gwbackend.wsgi.application"
TEMPLATES = []

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DATA_DIR / "db.sqlite3"),
        # runserver is threaded: wait for the write lock instead of failing
        "OPTIONS": {"timeout": 20},
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

# ---- django-aws-api-gateway-websockets ------------------------------------
# Credentials/region the package hands to boto3 (models.py:358-384, 270-284).
AWS_ACCESS_KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID", "AKIDWSEDGETEST")
AWS_SECRET_ACCESS_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY", "wsedge-test-secret")
AWS_GATEWAY_REGION_NAME = os.environ.get("AWS_REGION", "us-east-1")

WEBSOCKETS = {
    # Tokens are minted by the harness just before connecting; allow slow CI.
    "token_expiry_seconds": int(os.environ.get("GW_TOKEN_EXPIRY", "300")),
    # All test connections come from 127.0.0.1; do not trip the per-IP limiter.
    "rate_limit_max_attempts": 10000,
    "rate_limit_window_minutes": 1,
    # Never try to reach real AWS when the ApiGateway record is saved.
    "push_changes_to_aws": False,
}
# Optional: require the static X-Ws-Gateway-Secret header (models.py:62-69, views.py:290-304).
# AWS adds it via the integration's RequestParameters; wsedge would add it as a static header.
if os.environ.get("GW_GATEWAY_SECRET"):
    WEBSOCKETS["gateway_secret"] = os.environ["GW_GATEWAY_SECRET"]

# ---- wsedge test glue -------------------------------------------------------
# The package hard-codes https://{api_id}.execute-api.{region}.amazonaws.com/{stage}
# (models.py:1324-1326 and 1390-1396). gwtest/endpoint_patch.py rewrites it to this.
WSEDGE_MGMT_ENDPOINT = os.environ.get(
    "WSEDGE_MGMT_ENDPOINT", "http://127.0.0.1:9001/{stage}"
)
WSEDGE_API_ID = os.environ.get("WSEDGE_API_ID", "wsedgetest1")
WSEDGE_STAGE = os.environ.get("WSEDGE_STAGE", "production")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_aws_api_gateway_websockets": {"handlers": ["console"], "level": "INFO"},
        "gwtest": {"handlers": ["console"], "level": "INFO"},
    },
}
