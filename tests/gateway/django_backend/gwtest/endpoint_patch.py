"""Point the package's boto3 ``apigatewaymanagementapi`` client at wsedge.

django-aws-api-gateway-websockets 4.1.0 builds the management endpoint itself and
passes it to boto3 as an explicit ``endpoint_url``:

    models.py:1390-1396  WebSocketSession.send_message()
        endpoint_url=f"https://{gateway.api_id}.execute-api.{region}.amazonaws.com/{gateway.stage_name}"
    models.py:1322-1336  WebSocketSessionQuerySet.send_message()  (broadcast)
        endpoint_url=f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage_name}"

Both go through ``models.get_boto3_client(service, **kwargs)`` (models.py:331), looked up
as a module global at call time, so wrapping that one function redirects every send.
An explicit ``endpoint_url`` beats boto3's ``AWS_ENDPOINT_URL_*`` environment variables
(botocore/args.py ``_compute_configured_endpoint_url``), so there is no setting-only way.

The replacement URL comes from ``settings.WSEDGE_MGMT_ENDPOINT``, a template that may use
``{api_id}``, ``{region}`` and ``{stage}``, e.g. ``http://127.0.0.1:9001/{stage}``.
An empty value leaves the package untouched.
"""

import logging
import re

from django.conf import settings

logger = logging.getLogger(__name__)

AWS_MGMT_URL = re.compile(
    r"^https://(?P<api_id>[^./]+)\.execute-api\.(?P<region>[^./]+)\.amazonaws\.com/(?P<stage>[^/]*)$"
)

_installed = False


def rewrite_endpoint(endpoint_url: str) -> str:
    template = getattr(settings, "WSEDGE_MGMT_ENDPOINT", "")
    match = AWS_MGMT_URL.match(endpoint_url or "")
    if not template or not match:
        return endpoint_url
    return template.format(**match.groupdict())


def install():
    global _installed
    if _installed:
        return
    from django_aws_api_gateway_websockets import models as pkg_models

    original = pkg_models.get_boto3_client

    def get_boto3_client(service: str = "apigatewayv2", **kwargs):
        if service == "apigatewaymanagementapi" and "endpoint_url" in kwargs:
            new_url = rewrite_endpoint(kwargs["endpoint_url"])
            if new_url != kwargs["endpoint_url"]:
                logger.debug("management endpoint %s -> %s", kwargs["endpoint_url"], new_url)
                kwargs["endpoint_url"] = new_url
        return original(service, **kwargs)

    get_boto3_client.__wrapped__ = original
    pkg_models.get_boto3_client = get_boto3_client
    _installed = True
