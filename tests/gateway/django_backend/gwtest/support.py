"""Test fixtures: the ApiGateway row, users, logged-in sessions and ws_tokens."""

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore

from django_aws_api_gateway_websockets.conf import get_setting
from django_aws_api_gateway_websockets.models import (
    ApiGateway,
    ApiGatewayAdditionalRoute,
    WebSocketSession,
    WebSocketToken,
)
from gwtest.models import GatewayEvent


def ensure_gateway(api_id=None, stage=None, backend_base=None):
    """The ApiGateway row whose api_id the view matches against X-Amzn-Apigateway-Api-Id."""
    api_id = api_id or settings.WSEDGE_API_ID
    stage = stage or settings.WSEDGE_STAGE
    backend_base = backend_base or f"http://127.0.0.1:{settings.PORT}/ws/"
    gateway = ApiGateway.objects.filter(api_id=api_id).first()
    if gateway is None:
        gateway = ApiGateway(api_name=f"wsedge-{api_id}")
    gateway.api_id = api_id
    gateway.stage_name = stage
    gateway.target_base_endpoint = backend_base
    gateway.route_selection_expression = "$request.body.action"
    # Not deployed (deployment_id empty), so the package never calls AWS for it.
    gateway.save(push_to_aws=False)
    route = ApiGatewayAdditionalRoute.objects.filter(
        api_gateway=gateway, route_key="sendMessage"
    ).first() or ApiGatewayAdditionalRoute(api_gateway=gateway, route_key="sendMessage")
    route.name = "sendMessage"
    route.integration_url = f"{gateway.target_base_endpoint}sendMessage"
    route.save(push_to_aws=False)
    return gateway


def gateway_config(gateway):
    """What wsedge must be configured with to front this backend."""
    base = gateway.target_base_endpoint
    return {
        "api_id": gateway.api_id,
        "stage": gateway.stage_name,
        "route_selection_expression": gateway.route_selection_expression,
        "integrations": {
            "$connect": f"{base}connect",
            "$disconnect": f"{base}disconnect",
            "$default": f"{base}default",
            **{r.route_key: r.integration_url for r in gateway.additional_routes.all()},
        },
        "management_endpoint_template": settings.WSEDGE_MGMT_ENDPOINT,
        "aws_access_key_id": settings.AWS_ACCESS_KEY_ID,
        "aws_region": settings.AWS_GATEWAY_REGION_NAME,
    }


def mint_token(username="alice"):
    """Create (or reuse) a user, log them into a fresh Django session, and issue a ws_token.

    The token is bound to the session (WebSocketToken.session_key = HMAC of the session
    key), so the WebSocket client must send BOTH ``?ws_token=<token>`` and the
    ``Cookie: sessionid=<session_key>`` on the upgrade request.
    """
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    if created:
        user.set_password("wsedge-test-password")
        user.save()
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    token = WebSocketToken.generate_token(user=user, session_key=session.session_key)
    return {
        "username": user.username,
        "user_id": user.pk,
        "ws_token": token.token,
        "session_key": session.session_key,
        "cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}",
        "expires_in": get_setting("token_expiry_seconds"),
        # the Origin the WebSocket client must send (host:port of the Host wsedge sends)
        "origin": f"http://127.0.0.1:{settings.PORT}",
    }


def sessions_snapshot(connection_id=None):
    qs = WebSocketSession.objects.select_related("user", "api_gateway").order_by("pk")
    if connection_id:
        qs = qs.filter(connection_id=connection_id)
    return [
        {
            "connection_id": s.connection_id,
            "connected": s.connected,
            "user": s.user.username if s.user else None,
            "channel_name": s.channel_name,
            "api_id": s.api_gateway.api_id if s.api_gateway else None,
            "request_count": s.request_count,
            "created_on": s.created_on.isoformat(),
            "updated_on": s.updated_on.isoformat(),
        }
        for s in qs
    ]


def events_snapshot(connection_id=None, route=None):
    qs = GatewayEvent.objects.all()
    if connection_id:
        qs = qs.filter(connection_id=connection_id)
    if route:
        qs = qs.filter(route=route)
    return [e.as_dict() for e in qs]
