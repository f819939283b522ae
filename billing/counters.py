"""Credit holds: how parallel requests share a balance without overspending it.

The ledger in the database is the truth; these counters are its fast mirror for
the request path. Per account they keep the balance as of the last committed
ledger change (``bal``) and the sum of holds of requests still running
(``held``); per API key with a limit, what the key spent in the current limit
window (``spent``) and its running holds (``kheld``).

- ``hold`` reserves a request's worst-case cost, atomically, only if
  ``bal - held`` (and the key's ``limit - spent - kheld``) covers it. A balance
  at or below zero refuses everything, free models included.
- ``settle`` runs only *after* the ledger transaction that charged the real cost
  committed: it lowers ``bal`` by the charge and releases the hold. A crash in
  between leaves the hold in place, which only understates what is available.
- ``adjust`` mirrors any other committed ledger movement (grants, purchases).

Two stores implement this: Redis (Lua scripts, shared by every process) when
``REDIS_URL`` is set, else an in-process store. A missing ``bal``/``spent`` is
loaded from the database, once however many requests miss it at the same time
(``single_flight``); a per-account version, bumped by every settle and adjust, makes
that load safe against a settle racing it (the load is not stored, the hold tries again).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import socket
import threading
import time
import weakref
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, Sum

from openrouter_site import redis_clients
from openrouter_site.db_threads import in_db_thread
from openrouter_site.single_flight import SingleFlight

logger = logging.getLogger("openrouter.counters")

WINDOW_TTL_SECONDS = 40 * 86400
# A key with ``include_byok_in_limit`` counts its spend in windows named "<window>+byok": its BYOK
# usage counts there too, and switching the flag switches counters instead of mixing two sums.
BYOK_WINDOW_SUFFIX = "+byok"
LOCAL_SNAPSHOT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class HoldResult:
    ok: bool
    reason: str | None  # "balance" | "key_limit" | "budget"
    available: int  # nano-dollars left for the check that decided
    budget: int = -1  # for "budget": the index of the budget that refused


@dataclass(frozen=True, slots=True)
class BudgetHold:
    """One guardrail budget a request holds against: ``subject`` ("k:<key hash>" or
    "m:<account id>:<user id>") spends in ``window`` (``limit_window``, "+byok" when BYOK usage counts)."""

    subject: str
    window: str
    limit: int  # nano-dollars
    amount: int  # what this hold adds


@dataclass(frozen=True, slots=True)
class Settlement:
    account_id: int
    key_hash: str | None
    window: str | None  # the key-limit window the hold was taken in, None if the key has no limit
    held: int
    charged: int
    key_held: int | None = None  # what the key's limit held and is charged, when it differs from the
    key_charged: int | None = None  # account's (BYOK usage counted in the key's limit); None = the same
    budgets: tuple[tuple[str, str, int, int], ...] = ()  # guardrail budgets: (subject, window, held, charged)


def limit_window(limit_reset: str | None, now: dt.datetime | None = None) -> str:
    """The id of the current key-limit window: UTC day, Monday-based week, or month."""
    now = now or dt.datetime.now(dt.UTC)
    if limit_reset == "daily":
        return now.strftime("d%Y%m%d")
    if limit_reset == "weekly":
        monday = now.date() - dt.timedelta(days=now.weekday())
        return monday.strftime("w%Y%m%d")
    if limit_reset == "monthly":
        return now.strftime("m%Y%m")
    return "all"


def window_reset_at(limit_reset: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """When the current window of ``limit_reset`` ends: next UTC midnight, next Monday, the 1st of next month."""
    now = now or dt.datetime.now(dt.UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if limit_reset == "daily":
        return day + dt.timedelta(days=1)
    if limit_reset == "weekly":
        return day + dt.timedelta(days=7 - day.weekday())
    if limit_reset == "monthly":
        return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return None


def window_start(window: str) -> dt.datetime | None:
    window = window.partition("+")[0]
    if window == "all":
        return None
    if window[0] == "m":
        return dt.datetime.strptime(window[1:] + "01", "%Y%m%d").replace(tzinfo=dt.UTC)
    return dt.datetime.strptime(window[1:], "%Y%m%d").replace(tzinfo=dt.UTC)


def _db_balance(account_id: int) -> int:
    from accounts.models import Account

    return Account.objects.filter(id=account_id).values_list("balance", flat=True).first() or 0


def _db_key_spent(key_hash: str, window: str) -> int:
    """What the key spent in ``window``: its charges, plus its BYOK usage for a ``+byok`` window."""
    from activity.models import Generation

    rows = Generation.objects.filter(api_key__hash=key_hash)
    start = window_start(window)
    if start is not None:
        rows = rows.filter(created_at__gte=start)
    if window.endswith(BYOK_WINDOW_SUFFIX):
        totals = rows.aggregate(total=Sum("cost"), byok=Sum("upstream_cost", filter=Q(is_byok=True)))
        return (totals["total"] or 0) + (totals["byok"] or 0)
    return rows.aggregate(total=Sum("cost"))["total"] or 0


def _db_budget_spent(subject: str, window: str) -> int:
    """What a guardrail budget's subject spent in ``window``: a key's spend, or a member's (the keys
    they created in the account), plus BYOK usage for a ``+byok`` window."""
    from activity.models import Generation

    kind, _, rest = subject.partition(":")
    if kind == "k":
        return _db_key_spent(rest, window)
    account_id, _, user_id = rest.partition(":")
    rows = Generation.objects.filter(account_id=int(account_id), api_key__creator_id=int(user_id))
    start = window_start(window)
    if start is not None:
        rows = rows.filter(created_at__gte=start)
    if window.endswith(BYOK_WINDOW_SUFFIX):
        totals = rows.aggregate(total=Sum("cost"), byok=Sum("upstream_cost", filter=Q(is_byok=True)))
        return (totals["total"] or 0) + (totals["byok"] or 0)
    return rows.aggregate(total=Sum("cost"))["total"] or 0


def budget_spent(subject: str, window: str) -> int:
    """What a guardrail budget's subject spent in ``window``, from the database (pages)."""
    return _db_budget_spent(subject, window)


_db_balance_async = in_db_thread(_db_balance)
_db_budget_spent_async = in_db_thread(_db_budget_spent)
_db_key_spent_async = in_db_thread(_db_key_spent)
# A burst from an account not loaded yet shares one read of its balance (and of its key's window).
balance_loads: SingleFlight[object, None] = SingleFlight("balance")
key_spent_loads: SingleFlight[object, None] = SingleFlight("key window")
budget_spent_loads: SingleFlight[object, None] = SingleFlight("guardrail budget")


# --- Redis store ---------------------------------------------------------------------------

# Running holds live in hashes with one field per gateway process, so that the holds of a
# process that died (no heartbeat) can be dropped by the reconcile task instead of
# understating the balance for ever.
_SUM = """
local function held(name)
  local total = 0
  local values = redis.call('HVALS', name)
  for i = 1, #values do total = total + tonumber(values[i]) end
  return total
end
"""

# KEYS: bal, held, spent, kheld, then (spent, held) per guardrail budget ;
# ARGV: amount, key limit ('' = none), ttl, process, key amount, then (limit, amount) per budget.
# Every check passes before anything is held: a refusal holds nothing. Returns {code, available, budget}.
_HOLD_LUA = _SUM + """
local bal = redis.call('GET', KEYS[1])
if not bal then return {-1, 0, 0} end
local avail = tonumber(bal) - held(KEYS[2])
local amount = tonumber(ARGV[1])
if avail <= 0 or avail < amount then return {0, avail, 0} end
if ARGV[2] ~= '' then
  local spent = redis.call('GET', KEYS[3])
  if not spent then return {-2, 0, 0} end
  local kavail = tonumber(ARGV[2]) - tonumber(spent) - held(KEYS[4])
  if kavail <= 0 or kavail < tonumber(ARGV[5]) then return {2, kavail, 0} end
end
local budgets = (#KEYS - 4) / 2
for i = 1, budgets do
  local spent = redis.call('GET', KEYS[3 + 2 * i])
  if not spent then return {-3, 0, i} end
  local bavail = tonumber(ARGV[4 + 2 * i]) - tonumber(spent) - held(KEYS[4 + 2 * i])
  if bavail <= 0 or bavail < tonumber(ARGV[5 + 2 * i]) then return {3, bavail, i} end
end
if ARGV[2] ~= '' then
  redis.call('HINCRBY', KEYS[4], ARGV[4], ARGV[5])
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
for i = 1, budgets do
  redis.call('HINCRBY', KEYS[4 + 2 * i], ARGV[4], ARGV[5 + 2 * i])
  redis.call('EXPIRE', KEYS[4 + 2 * i], ARGV[3])
end
redis.call('HINCRBY', KEYS[2], ARGV[4], ARGV[1])
return {1, avail, 0}
"""

# One call settles a whole batch (one round trip, atomic: a retry never releases a hold twice).
# Per settlement, KEYS: bal, held, ver, spent, kheld, kver, then (spent, held, ver) per guardrail
# budget ; ARGV: charged, has_window, -held, key charged, -key held, budget count, then (charged,
# -held) per budget ; ARGV[1] is the process. (Amounts reach Redis as the strings Python sent: Lua
# would print large numbers as 1e+15.)
_SETTLE_LUA = """
local process = ARGV[1]
local function release(name, delta)
  local left = redis.call('HINCRBY', name, process, delta)
  if left == 0 then redis.call('HDEL', name, process) elseif left < 0 then redis.call('HSET', name, process, 0) end
end
local k, a = 0, 1
while k < #KEYS do
  if redis.call('EXISTS', KEYS[k + 1]) == 1 then redis.call('DECRBY', KEYS[k + 1], ARGV[a + 1]) end
  release(KEYS[k + 2], ARGV[a + 3])
  redis.call('INCR', KEYS[k + 3])
  if ARGV[a + 2] == '1' then
    if redis.call('EXISTS', KEYS[k + 4]) == 1 then redis.call('INCRBY', KEYS[k + 4], ARGV[a + 4]) end
    release(KEYS[k + 5], ARGV[a + 5])
    redis.call('INCR', KEYS[k + 6])
  end
  local budgets = tonumber(ARGV[a + 6])
  k, a = k + 6, a + 6
  for _ = 1, budgets do
    if redis.call('EXISTS', KEYS[k + 1]) == 1 then redis.call('INCRBY', KEYS[k + 1], ARGV[a + 1]) end
    release(KEYS[k + 2], ARGV[a + 2])
    redis.call('INCR', KEYS[k + 3])
    k, a = k + 3, a + 2
  end
end
return 1
"""

# KEYS: value key, version key ; ARGV: value, expected version, ttl (0 = none)
_INIT_LUA = """
local ver = redis.call('GET', KEYS[2]) or '0'
if ver ~= ARGV[2] then return 0 end
if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[1], 'NX')
else redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) end
return 1
"""

# KEYS: bal, held, ver ; ARGV: database balance, version seen before reading it
_RECONCILE_LUA = _SUM + """
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[2] then return 0 end
if held(KEYS[2]) ~= 0 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = tonumber(redis.call('GET', KEYS[1]))
redis.call('SET', KEYS[1], ARGV[1])
return old - tonumber(ARGV[1])
"""

# KEYS: bal, ver ; ARGV: delta
_ADJUST_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[1]) end
redis.call('INCR', KEYS[2])
return 1
"""


HEARTBEAT_SECONDS = 10
HEARTBEAT_TTL = 60


class RedisCounters:
    def __init__(self) -> None:
        self.prefix = settings.COUNTER_PREFIX
        self._async_scripts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._last_scripts: tuple | None = None
        self._sync_scripts: dict[str, object] = {}
        self._process: str | None = None
        self._process_pid: int | None = None
        self._beat_at = 0.0

    @property
    def process(self) -> str:
        """This process's name in the hold hashes (new after a fork)."""
        if self._process_pid != os.getpid():
            self._process = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
            self._process_pid = os.getpid()
            self._beat_at = 0.0
        return self._process

    def beat_due(self) -> bool:
        return time.monotonic() - self._beat_at > HEARTBEAT_SECONDS

    def heartbeat(self) -> None:
        """Mark this process alive (the settlement writer calls it every few seconds)."""
        redis_clients.sync_client().set(f"{self.prefix}:proc:{self.process}", 1, ex=HEARTBEAT_TTL)
        self._beat_at = time.monotonic()

    def _acct(self, account_id: int) -> tuple[str, str, str]:
        base = f"{self.prefix}:acct:{account_id}"
        return f"{base}:bal", f"{base}:held", f"{base}:ver"

    def _key(self, key_hash: str, window: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:key:{key_hash}:{window}"
        return f"{base}:spent", f"{base}:held", f"{self.prefix}:key:{key_hash}:ver"

    def _budget(self, subject: str, window: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:gb:{subject}"
        return f"{base}:{window}:spent", f"{base}:{window}:held", f"{base}:ver"

    def _scripts(self):
        loop = asyncio.get_running_loop()
        last = self._last_scripts  # the common case, one event loop: no pool or weak-dictionary lookups
        if last is not None and last[0] is loop:
            return last[1]
        client = redis_clients.async_client()
        scripts = self._async_scripts.get(client)
        if scripts is None:
            scripts = (client, client.register_script(_HOLD_LUA), client.register_script(_INIT_LUA))
            self._async_scripts[client] = scripts
        self._last_scripts = (loop, scripts)
        return scripts

    async def hold(
        self, *, account_id: int, amount: int, key_hash: str, key_limit: int | None, window: str,
        key_amount: int | None = None, budgets: tuple[BudgetHold, ...] = (),
    ) -> HoldResult:
        """Hold ``amount`` of the account's balance, ``key_amount`` (default: the same) of the key's limit
        and each guardrail budget's ``amount``, all at once or none."""
        client, _hold_script, init_script = self._scripts()
        if self.beat_due():  # the settlement writer's loop keeps it alive while long requests run
            await client.set(f"{self.prefix}:proc:{self.process}", 1, ex=HEARTBEAT_TTL)
            self._beat_at = time.monotonic()
        bal, held, ver = self._acct(account_id)
        spent, kheld, kver = self._key(key_hash, window)
        limit_arg = "" if key_limit is None else str(key_limit)
        keys = [bal, held, spent, kheld]
        args = [amount, limit_arg, WINDOW_TTL_SECONDS, self.process, amount if key_amount is None else key_amount]
        for budget in budgets:
            bspent, bheld, _bver = self._budget(budget.subject, budget.window)
            keys += (bspent, bheld)
            args += (budget.limit, budget.amount)
        for _ in range(5):
            # a load landing after these marks: look again
            marks = balance_loads.mark(), key_spent_loads.mark(), budget_spent_loads.mark()
            code, available, index = await redis_clients.script_client().evalsha(_HOLD_LUA, keys, args)
            if code == 1:
                return HoldResult(True, None, int(available))
            if code == 0:
                return HoldResult(False, "balance", int(available))
            if code == 2:
                return HoldResult(False, "key_limit", int(available))
            if code == 3:
                return HoldResult(False, "budget", int(available), budget=int(index) - 1)
            loads = []
            if code == -1:
                loads.append(
                    balance_loads.run(bal, lambda: self._load_balance(account_id, client, init_script), since=marks[0])
                )
            if code == -2 or key_limit is not None:  # an account new here: its key's window is missing too
                loads.append(
                    key_spent_loads.run(
                        spent, lambda: self._load_key_spent(key_hash, window, client, init_script), since=marks[1]
                    )
                )
            first_missing = int(index) - 1 if code == -3 else 0
            for budget in budgets[first_missing:]:
                loads.append(
                    budget_spent_loads.run(
                        self._budget(budget.subject, budget.window)[0],
                        lambda b=budget: self._load_budget_spent(b.subject, b.window, client, init_script),
                        since=marks[2],
                    )
                )
            await asyncio.gather(*loads)  # at once: a burst then retries its hold once, not twice
        raise RuntimeError("credit counters did not settle after 5 tries")

    async def _load_balance(self, account_id: int, client, init_script) -> None:
        bal, _held, ver = self._acct(account_id)
        version = (await client.get(ver)) or b"0"
        value = await _db_balance_async(account_id)
        await init_script(keys=[bal, ver], args=[value, version, 0])

    async def _load_key_spent(self, key_hash: str, window: str, client, init_script) -> None:
        spent, _kheld, kver = self._key(key_hash, window)
        version = (await client.get(kver)) or b"0"
        value = await _db_key_spent_async(key_hash, window)
        await init_script(keys=[spent, kver], args=[value, version, WINDOW_TTL_SECONDS])

    async def _load_budget_spent(self, subject: str, window: str, client, init_script) -> None:
        spent, _held, ver = self._budget(subject, window)
        version = (await client.get(ver)) or b"0"
        value = await _db_budget_spent_async(subject, window)
        await init_script(keys=[spent, ver], args=[value, version, WINDOW_TTL_SECONDS])

    async def budget_refusal_note(self, subject: str, window: str, limit: int) -> None:
        """Remember that the budget refused a request in ``window`` at ``limit`` (the guardrails page)."""
        client, _hold, _init = self._scripts()
        await client.set(f"{self.prefix}:gb:{subject}:{window}:refused", limit, ex=WINDOW_TTL_SECONDS)

    def budget_refused(self, subject: str, window: str) -> int | None:
        """The limit at which the budget last refused a request in ``window``, None if it did not."""
        raw = redis_clients.sync_client().get(f"{self.prefix}:gb:{subject}:{window}:refused")
        return None if raw is None else int(raw)

    def budget_snapshot(self, subject: str, window: str) -> dict[str, int | None]:
        """A budget's mirrored spend (None: not loaded) and running holds (pages, tests)."""
        client = redis_clients.sync_client()
        spent, held, _ver = self._budget(subject, window)
        raw = client.get(spent)
        return {"spent": None if raw is None else int(raw), "held": sum(int(v) for v in client.hvals(held))}

    def forget_budgets(self, subjects: list[str]) -> None:
        """Drop these subjects' mirrored spends (re-read from the database on next use): a budget that
        starts applying again must not trust a mirror that was not kept while it did not apply."""
        if not subjects:
            return
        client = redis_clients.sync_client()
        wanted = set(subjects)
        base = f"{self.prefix}:gb:"
        for name in client.scan_iter(f"{base}*:spent", count=1000):
            subject = name.decode()[len(base):].rsplit(":", 2)[0]
            if subject in wanted:
                client.delete(name)
        with client.pipeline(transaction=False) as pipe:
            for subject in wanted:
                pipe.incr(f"{base}{subject}:ver")  # a load already in flight must not write back
            pipe.execute()

    def _sync_script(self, source: str):
        """A script registered once on the shared synchronous client (EVALSHA, loaded on first use)."""
        script = self._sync_scripts.get(source)
        if script is None:
            script = self._sync_scripts[source] = redis_clients.sync_client().register_script(source)
        return script

    def settle(self, items: list[Settlement]) -> None:
        keys: list[str] = []
        args: list = [self.process]
        for item in items:
            bal, held, ver = self._acct(item.account_id)
            if item.window is not None and item.key_hash:
                spent, kheld, kver = self._key(item.key_hash, item.window)
                has_window = "1"
            else:
                spent = kheld = kver = f"{self.prefix}:none"
                has_window = "0"
            keys += (bal, held, ver, spent, kheld, kver)
            args += (
                item.charged,
                has_window,
                -item.held,
                item.charged if item.key_charged is None else item.key_charged,
                -(item.held if item.key_held is None else item.key_held),
                len(item.budgets),
            )
            for subject, budget_window, budget_held, budget_charged in item.budgets:
                keys += self._budget(subject, budget_window)
                args += (budget_charged, -budget_held)
        if keys:
            self._sync_script(_SETTLE_LUA)(keys=keys, args=args)

    def adjust(self, *, account_id: int, delta: int) -> None:
        bal, _held, ver = self._acct(account_id)
        self._sync_script(_ADJUST_LUA)(keys=[bal, ver], args=[delta])

    def reconcile(self) -> int:
        """Re-read idle accounts' balances from the database; returns how many mirrors were corrected."""
        client = redis_clients.sync_client()
        self._drop_dead_holds(client)
        script = client.register_script(_RECONCILE_LUA)
        corrected = 0
        for name in client.scan_iter(f"{self.prefix}:acct:*:bal"):
            account_id = int(name.decode().split(":")[-2])
            bal, held, ver = self._acct(account_id)
            version = client.get(ver) or b"0"
            drift = script(keys=[bal, held, ver], args=[_db_balance(account_id), version])
            corrected += 1 if drift else 0
        return corrected

    def _drop_dead_holds(self, client) -> int:
        """Remove the holds of processes whose heartbeat expired (they crashed mid-request)."""
        dropped = 0
        for name in client.scan_iter(f"{self.prefix}:*:held"):
            for field in client.hkeys(name):
                if not client.exists(f"{self.prefix}:proc:{field.decode()}"):
                    client.hdel(name, field)
                    dropped += 1
        return dropped

    def forget_key(self, key_hash: str) -> None:
        client = redis_clients.sync_client()
        for name in client.scan_iter(f"{self.prefix}:key:{key_hash}:*:spent"):
            client.delete(name)
        client.incr(f"{self.prefix}:key:{key_hash}:ver")  # an init already in flight must not write back

    def snapshot(self, account_id: int) -> dict[str, int | None]:
        client = redis_clients.sync_client()
        bal, held, _ver = self._acct(account_id)
        raw_bal = client.get(bal)
        total = sum(int(v) for v in client.hvals(held))
        return {"bal": None if raw_bal is None else int(raw_bal), "held": total}

    def reset(self) -> None:
        """Forget everything under the prefix (tests)."""
        client = redis_clients.sync_client()
        for name in client.scan_iter(f"{self.prefix}:*"):
            client.delete(name)
        self._beat_at = 0.0


# --- In-process store ------------------------------------------------------------------------


class LocalCounters:
    """The same semantics in one process, for the embedded default setup.

    A balance mirror with no running holds is re-read from the database after
    ``LOCAL_SNAPSHOT_SECONDS``, so credits granted by another process (a management
    command, a Celery worker) show up without Redis.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bal: dict[int, tuple[int, float]] = {}
        self._held: dict[int, int] = {}
        self._ver: dict[object, int] = {}
        self._spent: dict[tuple[str, str], int] = {}
        self._kheld: dict[tuple[str, str], int] = {}
        self._bspent: dict[tuple[str, str], int] = {}
        self._bheld: dict[tuple[str, str], int] = {}
        self._refused: dict[tuple[str, str], int] = {}

    def _try_hold(
        self, account_id: int, amount: int, key_hash: str, key_limit: int | None, window: str, key_amount: int,
        budgets: tuple[BudgetHold, ...] = (),
    ) -> tuple[int, int, int]:
        with self._lock:
            entry = self._bal.get(account_id)
            held = self._held.get(account_id, 0)
            if entry is None or (held == 0 and time.monotonic() - entry[1] > LOCAL_SNAPSHOT_SECONDS):
                return -1, 0, 0
            available = entry[0] - held
            if available <= 0 or available < amount:
                return 0, available, 0
            if key_limit is not None:
                spent = self._spent.get((key_hash, window))
                if spent is None:
                    return -2, 0, 0
                kavail = key_limit - spent - self._kheld.get((key_hash, window), 0)
                if kavail <= 0 or kavail < key_amount:
                    return 2, kavail, 0
            for index, budget in enumerate(budgets, start=1):
                name = (budget.subject, budget.window)
                spent = self._bspent.get(name)
                if spent is None:
                    return -3, 0, index
                bavail = budget.limit - spent - self._bheld.get(name, 0)
                if bavail <= 0 or bavail < budget.amount:
                    return 3, bavail, index
            if key_limit is not None:
                self._kheld[(key_hash, window)] = self._kheld.get((key_hash, window), 0) + key_amount
            for budget in budgets:
                name = (budget.subject, budget.window)
                self._bheld[name] = self._bheld.get(name, 0) + budget.amount
            self._held[account_id] = held + amount
            return 1, available, 0

    def _init(self, store: dict, name, value: int, expected: int, version_key) -> None:
        with self._lock:
            if self._ver.get(version_key, 0) != expected:
                return
            if store is self._bal:
                store[name] = (value, time.monotonic())
            else:
                store.setdefault(name, value)

    async def hold(
        self, *, account_id: int, amount: int, key_hash: str, key_limit: int | None, window: str,
        key_amount: int | None = None, budgets: tuple[BudgetHold, ...] = (),
    ) -> HoldResult:
        key_amount = amount if key_amount is None else key_amount
        for _ in range(5):
            marks = balance_loads.mark(), key_spent_loads.mark(), budget_spent_loads.mark()
            code, available, index = self._try_hold(
                account_id, amount, key_hash, key_limit, window, key_amount, budgets
            )
            if code == 1:
                return HoldResult(True, None, available)
            if code == 0:
                return HoldResult(False, "balance", available)
            if code == 2:
                return HoldResult(False, "key_limit", available)
            if code == 3:
                return HoldResult(False, "budget", available, budget=index - 1)
            loads = []
            if code == -1:
                loads.append(
                    balance_loads.run(("local", account_id), lambda: self._load_balance(account_id), since=marks[0])
                )
            if code == -2 or (key_limit is not None and (key_hash, window) not in self._spent):
                loads.append(
                    key_spent_loads.run(
                        ("local", key_hash, window), lambda: self._load_key_spent(key_hash, window), since=marks[1]
                    )
                )
            for budget in budgets:
                if (budget.subject, budget.window) not in self._bspent:
                    loads.append(
                        budget_spent_loads.run(
                            ("local", budget.subject, budget.window),
                            lambda b=budget: self._load_budget_spent(b.subject, b.window),
                            since=marks[2],
                        )
                    )
            await asyncio.gather(*loads)
        raise RuntimeError("credit counters did not settle after 5 tries")

    async def _load_budget_spent(self, subject: str, window: str) -> None:
        version = self._ver.get(("gb", subject), 0)
        value = await _db_budget_spent_async(subject, window)
        self._init(self._bspent, (subject, window), value, version, ("gb", subject))

    async def budget_refusal_note(self, subject: str, window: str, limit: int) -> None:
        with self._lock:
            self._refused[(subject, window)] = limit

    def budget_refused(self, subject: str, window: str) -> int | None:
        with self._lock:
            return self._refused.get((subject, window))

    def budget_snapshot(self, subject: str, window: str) -> dict[str, int | None]:
        with self._lock:
            return {"spent": self._bspent.get((subject, window)), "held": self._bheld.get((subject, window), 0)}

    def forget_budgets(self, subjects: list[str]) -> None:
        with self._lock:
            wanted = set(subjects)
            for name in [n for n in self._bspent if n[0] in wanted]:
                del self._bspent[name]
            for subject in wanted:
                self._ver[("gb", subject)] = self._ver.get(("gb", subject), 0) + 1

    async def _load_balance(self, account_id: int) -> None:
        version = self._ver.get(("acct", account_id), 0)
        value = await _db_balance_async(account_id)
        self._init(self._bal, account_id, value, version, ("acct", account_id))

    async def _load_key_spent(self, key_hash: str, window: str) -> None:
        version = self._ver.get(("key", key_hash), 0)
        value = await _db_key_spent_async(key_hash, window)
        self._init(self._spent, (key_hash, window), value, version, ("key", key_hash))

    def settle(self, items: list[Settlement]) -> None:
        with self._lock:
            for item in items:
                entry = self._bal.get(item.account_id)
                if entry is not None:
                    self._bal[item.account_id] = (entry[0] - item.charged, entry[1])
                self._held[item.account_id] = self._held.get(item.account_id, 0) - item.held
                self._ver[("acct", item.account_id)] = self._ver.get(("acct", item.account_id), 0) + 1
                if item.window is not None and item.key_hash:
                    name = (item.key_hash, item.window)
                    if name in self._spent:
                        self._spent[name] += item.charged if item.key_charged is None else item.key_charged
                    key_held = item.held if item.key_held is None else item.key_held
                    self._kheld[name] = self._kheld.get(name, 0) - key_held
                    self._ver[("key", item.key_hash)] = self._ver.get(("key", item.key_hash), 0) + 1
                for subject, budget_window, budget_held, budget_charged in item.budgets:
                    name = (subject, budget_window)
                    if name in self._bspent:
                        self._bspent[name] += budget_charged
                    self._bheld[name] = self._bheld.get(name, 0) - budget_held
                    self._ver[("gb", subject)] = self._ver.get(("gb", subject), 0) + 1

    def adjust(self, *, account_id: int, delta: int) -> None:
        with self._lock:
            entry = self._bal.get(account_id)
            if entry is not None:
                self._bal[account_id] = (entry[0] + delta, entry[1])
            self._ver[("acct", account_id)] = self._ver.get(("acct", account_id), 0) + 1

    def reconcile(self) -> int:
        """Nothing to do: idle mirrors are re-read from the database after a few seconds anyway."""
        return 0

    def forget_key(self, key_hash: str) -> None:
        with self._lock:
            for name in [n for n in self._spent if n[0] == key_hash]:
                del self._spent[name]
            self._ver[("key", key_hash)] = self._ver.get(("key", key_hash), 0) + 1

    def snapshot(self, account_id: int) -> dict[str, int | None]:
        with self._lock:
            entry = self._bal.get(account_id)
            return {"bal": None if entry is None else entry[0], "held": self._held.get(account_id, 0)}

    def reset(self) -> None:
        with self._lock:
            self._bal.clear()
            self._held.clear()
            self._ver.clear()
            self._spent.clear()
            self._kheld.clear()
            self._bspent.clear()
            self._bheld.clear()
            self._refused.clear()


_store: RedisCounters | LocalCounters | None = None
_deferred: list[Settlement] = []
_deferred_lock = threading.Lock()


def holds_release(items: list[Settlement]) -> None:
    """Apply committed settlements to the counters; if Redis fails, keep them for the writer to retry.

    Called after the ledger commit: the records are written, so they are never re-queued; only
    their counter update is retried (``holds_release_retry``), and the pipeline is atomic.
    """
    try:
        counters().settle(items)
    except Exception:
        logger.warning("could not release %s hold(s) now; will retry", len(items), exc_info=True)
        with _deferred_lock:
            _deferred.extend(items)


def holds_release_retry() -> None:
    with _deferred_lock:
        items = list(_deferred)
        _deferred.clear()
    if items:
        holds_release(items)


def counters() -> RedisCounters | LocalCounters:
    global _store
    if _store is None:
        _store = RedisCounters() if redis_clients.redis_enabled() else LocalCounters()
    return _store
