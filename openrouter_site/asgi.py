"""ASGI entry point.

The two inference routes go straight to the gateway's own ASGI handler (no Django
view or middleware machinery on the hot path); websockets go to Channels
consumers; everything else is ordinary Django.
"""

import functools
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openrouter_site.settings")

import django  # noqa: E402

django.setup()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

from chatroom.routing import websocket_urlpatterns  # noqa: E402
from openrouter_site import metrics  # noqa: E402
from openrouter_site.daphne_tuning import daphne_tune  # noqa: E402
from openrouter_site.gc_tuning import gc_tune  # noqa: E402
from openrouter_site.inputs import BodyLimit  # noqa: E402
from routing.gateway import GatewayApp  # noqa: E402

daphne_tune()  # Twisted's per-request waste under Daphne (see daphne_tuning.py); uvicorn never calls it
django_app = BodyLimit(get_asgi_application())
gateway_app = GatewayApp()

GATEWAY_PATHS = {
    "/api/v1/chat/completions": "chat",
    "/api/v1/completions": "completions",
    "/api/v1/responses": "responses",
    "/api/v1/embeddings": "embeddings",
    "/api/v1/messages": "messages",
    "/api/v1/messages/count_tokens": "messages_count_tokens",
}
# One ASGI callable per inference path, made once (not a closure per request).
GATEWAY_APPS = {path: functools.partial(gateway_app, kind=kind) for path, kind in GATEWAY_PATHS.items()}


async def http_app(scope, receive, send):
    path = scope["path"].rstrip("/") or "/"
    app = GATEWAY_APPS.get(path)
    if app is not None:
        await metrics.observe(app, scope, receive, send, path, inference=True)
    else:
        await metrics.observe(django_app, scope, receive, send, metrics.django_route(scope["path"]))


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
        "lifespan": gateway_app.lifespan,
    }
)

gc_tune()  # the loaded app frozen out of the collector's walks (see gc_tuning.py)
