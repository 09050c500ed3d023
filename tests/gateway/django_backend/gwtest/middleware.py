import logging

logger = logging.getLogger(__name__)

# Headers worth keeping in the event log (values of Cookie are kept: test-only data)
_SKIP = {"HTTP_AUTHORIZATION"}


class GatewayEventMiddleware:
    """Record every request to /ws/<route> with the status the package answered.

    Done in a middleware so the package's WebSocketView.dispatch (which carries the
    csrf_exempt decorator) is not overridden.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/ws/"):
            return self.get_response(request)
        body = request.body.decode("utf-8", "replace")  # read before the view does
        headers = {k: v for k, v in request.headers.items()}
        try:
            response = self.get_response(request)
        except Exception:
            self._record(request, headers, body, 500, "exception")
            raise
        content = getattr(response, "content", b"")
        self._record(
            request, headers, body, response.status_code, content.decode("utf-8", "replace")
        )
        return response

    @staticmethod
    def _record(request, headers, body, status, response_body):
        from gwtest.models import GatewayEvent

        route = request.path[len("/ws/"):]
        GatewayEvent.objects.create(
            route=route,
            method=request.method,
            connection_id=request.headers.get("Connectionid", ""),
            query_string=request.META.get("QUERY_STRING", ""),
            headers=headers,
            body=body[:4096],
            status_code=status,
            response_body=response_body[:1024],
        )
        logger.info(
            "gateway %s /ws/%s connectionId=%s -> %s %s",
            request.method, route, request.headers.get("Connectionid", ""), status,
            response_body[:200],
        )
