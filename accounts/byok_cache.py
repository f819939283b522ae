"""The hot path's view of an account's own provider keys (BYOK), cached in each process.

``provider_keys_for(account_id)`` costs a dict access when cached; a miss reads and
decrypts the account's usable keys in a worker thread. Any change to a key invalidates
the account's entry at once in this process and, when Redis is configured, in every other
process through a pub/sub message; entries also expire after ``GATEWAY_BYOK_CACHE_SECONDS``.
Same pattern as ``accounts.keycache``.

Per provider slug (``routing.Provider.slug``, as in the catalog's endpoints) the list is in
the order to try: prioritized keys by ``sort_order``, then fallback keys by ``sort_order``.
The gateway tries the prioritized keys, then OpenRouter's own capacity (skipped when a usable
key of the provider has ``always_use``), then the fallback keys. Disabled and deleted keys,
and keys that no longer decrypt (their encryption key was removed), are left out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings

from openrouter_site.process_cache import InvalidatingCache

logger = logging.getLogger("openrouter.byok_cache")



@dataclass(frozen=True, slots=True)
class ByokKey:
    id: str  # the credential's UUID, as the API shows it
    provider_slug: str
    secret: str = field(repr=False)  # the decrypted provider key: never log it
    always_use: bool  # no fallback to OpenRouter's shared capacity for this provider
    prioritized: bool  # tried before OpenRouter's capacity (else after it: a fallback key)
    sort_order: int = 0
    # Allowlists; None means no restriction.
    allowed_models: frozenset[str] | None = None
    allowed_api_key_hashes: frozenset[str] | None = None
    allowed_user_ids: frozenset[str] | None = None

    def allows(self, *, model: str, api_key_hash: str | None = None, user_id: str | None = None) -> bool:
        """Whether this credential may serve ``model`` for the calling key and user."""
        if self.allowed_models is not None and model not in self.allowed_models:
            return False
        if self.allowed_api_key_hashes is not None and api_key_hash not in self.allowed_api_key_hashes:
            return False
        if self.allowed_user_ids is not None and user_id not in self.allowed_user_ids:
            return False
        return True


ProviderKeys = dict[str, list[ByokKey]]

def _frozen(values) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _load(account_id: int) -> ProviderKeys:
    from . import secrets
    from .models import ProviderKey

    rows = (
        ProviderKey.objects.filter(account_id=account_id, disabled=False, deleted_at__isnull=True)
        .select_related("provider")
        .order_by("provider__slug", "is_fallback", "sort_order", "created_at")
    )
    keys: ProviderKeys = {}
    for row in rows:
        try:
            secret = secrets.decrypt(row.encrypted_key)
        except secrets.InvalidToken:
            logger.warning("BYOK credential %s does not decrypt with the configured keys; skipped", row.id)
            continue
        keys.setdefault(row.provider.slug, []).append(
            ByokKey(
                id=str(row.id),
                provider_slug=row.provider.slug,
                secret=secret,
                always_use=row.always_use,
                prioritized=not row.is_fallback,
                sort_order=row.sort_order,
                allowed_models=_frozen(row.allowed_models),
                allowed_api_key_hashes=_frozen(row.allowed_api_key_hashes),
                allowed_user_ids=_frozen(row.allowed_user_ids),
            )
        )
    return keys


cache: InvalidatingCache[int, ProviderKeys] = InvalidatingCache(
    name="byok",
    load=_load,
    ttl=lambda: settings.GATEWAY_BYOK_CACHE_SECONDS,
    parse_key=int,
)


async def provider_keys_for(account_id: int) -> ProviderKeys:
    """The account's usable provider keys by provider slug, in the order to try (see module doc).

    The dict and lists are shared with other requests: do not mutate them.
    """
    return await cache.get(account_id)


def invalidate(account_id: int) -> None:
    """Forget an account's keys here and, through Redis, in every other process."""
    cache.invalidate(account_id)


def clear() -> None:
    cache.clear()
