from django.apps import AppConfig


class GwtestConfig(AppConfig):
    name = "gwtest"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from gwtest import endpoint_patch

        endpoint_patch.install()
