import json

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from django_aws_api_gateway_websockets.views import WebSocketView
from gwtest import support

REPLY_MARKER = "django-aws-api-gateway-websockets says hi"


class ChatWebSocketView(WebSocketView):
    """The backend view wsedge's HTTP_PROXY integrations call.

    $connect -> POST /ws/connect   (package's WebSocketView.connect, views.py:654-761)
    $disconnect -> POST /ws/disconnect (views.py:785-794)
    $default / custom routes -> POST /ws/<anything>; the *body* picks the method:
        body["handler"] then body["action"], if listed in ALLOWED_HANDLERS (views.py:587-636)
    """

    # Explicit whitelist (the package would otherwise expose every public method).
    ALLOWED_HANDLERS = {"default", "sendMessage"}

    def sendMessage(self, request, *args, **kwargs):
        """{"action": "sendMessage", "message": "..."} -> reply to the sender via boto3."""
        self.websocket_session.send_message(
            {
                "type": "reply",
                "marker": REPLY_MARKER,
                "handler": "sendMessage",
                "echo": self.body.get("message"),
                "connectionId": self.websocket_session.connection_id,
                "user": request.user.username if request.user.is_authenticated else None,
            }
        )
        return JsonResponse({"ok": True, "handler": "sendMessage"})

    def default(self, request, *args, **kwargs):
        """Any other {"action": ...} message."""
        self.websocket_session.send_message(
            {
                "type": "reply",
                "marker": REPLY_MARKER,
                "handler": "default",
                "action": self.body.get("action"),
                "echo": self.body.get("message"),
                "connectionId": self.websocket_session.connection_id,
            }
        )
        return JsonResponse({"ok": True, "handler": "default"})


# ---------------------------------------------------------------- test helpers


@csrf_exempt
@require_http_methods(["GET", "POST"])
def test_token(request):
    """Mint a user session + ws_token. ?username=alice (default alice)."""
    username = request.GET.get("username") or request.POST.get("username") or "alice"
    support.ensure_gateway()
    return JsonResponse(support.mint_token(username))


@require_http_methods(["GET"])
def test_sessions(request):
    """WebSocketSession rows (+ how many $disconnect / message calls each got)."""
    connection_id = request.GET.get("connection_id")
    rows = support.sessions_snapshot(connection_id)
    for row in rows:
        events = support.events_snapshot(row["connection_id"])
        row["disconnect_calls"] = sum(1 for e in events if e["route"] == "disconnect")
        row["connect_calls"] = sum(1 for e in events if e["route"] == "connect")
        row["message_calls"] = sum(
            1 for e in events if e["route"] not in ("connect", "disconnect")
        )
    return JsonResponse({"sessions": rows})


@require_http_methods(["GET"])
def test_events(request):
    """Every request that reached /ws/<route>, with headers and the package's answer."""
    return JsonResponse(
        {
            "events": support.events_snapshot(
                request.GET.get("connection_id"), request.GET.get("route")
            )
        }
    )


@csrf_exempt
@require_http_methods(["GET", "POST"])
def test_setup(request):
    gateway = support.ensure_gateway()
    return JsonResponse(support.gateway_config(gateway))
