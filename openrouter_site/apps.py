from django.apps import AppConfig


class SiteConfig(AppConfig):
    """The project package as an app: it has no models, only project-wide system checks."""

    name = "openrouter_site"
    label = "openrouter_site"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
