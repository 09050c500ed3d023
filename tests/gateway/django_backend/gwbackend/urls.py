from django.urls import path

from django_aws_api_gateway_websockets.views import WebSocketTokenView
from gwtest import views

urlpatterns = [
    # API Gateway HTTP_PROXY integrations: {target_base_endpoint}connect|disconnect|default
    # and, for custom routes, whatever integration_url the ApiGatewayAdditionalRoute has
    # (gw_setup uses .../ws/sendMessage). The slug MUST be named "route".
    path("ws/<slug:route>", views.ChatWebSocketView.as_view(), name="websocket"),
    # The package's own CSRF-protected token endpoint (needs a logged-in browser session).
    path("api/ws-token/", WebSocketTokenView.as_view(), name="websocket_token"),
    # Test-only helpers.
    path("test/token", views.test_token, name="test_token"),
    path("test/sessions", views.test_sessions, name="test_sessions"),
    path("test/events", views.test_events, name="test_events"),
    path("test/setup", views.test_setup, name="test_setup"),
]
