from django.db import models


class GatewayEvent(models.Model):
    """One HTTP request that reached /ws/<route> (i.e. one integration call from the gateway)."""

    route = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    connection_id = models.CharField(max_length=255, blank=True, default="", db_index=True)
    query_string = models.TextField(blank=True, default="")
    headers = models.JSONField(default=dict)
    body = models.TextField(blank=True, default="")
    status_code = models.IntegerField()
    response_body = models.TextField(blank=True, default="")
    created_on = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def as_dict(self):
        return {
            "id": self.pk,
            "route": self.route,
            "method": self.method,
            "connection_id": self.connection_id,
            "query_string": self.query_string,
            "headers": self.headers,
            "body": self.body,
            "status_code": self.status_code,
            "response_body": self.response_body,
            "created_on": self.created_on.isoformat(),
        }
