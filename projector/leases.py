"""Shard leases in Redis: one projector consumes a shard at a time, so a run's events apply in
order. A lease is ``SET lease_key <consumer> NX PX ttl``, renewed by its holder well before it
expires; a holder that dies stops renewing and another projector takes the shard over once
the lease expires.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis.asyncio as aioredis

from runstream.schemas import constants as c

_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases:
    """The leases one projector process holds (or wants)."""

    def __init__(self, redis: aioredis.Redis, prefix: str, holder: str, ttl_ms: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.holder = holder
        self.ttl_ms = ttl_ms
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._valid_until: dict[int, float] = {}

    async def refresh(self, shards: Iterable[int]) -> set[int]:
        """Acquire or renew each shard's lease; return the shards held now."""
        held = set()
        for shard in shards:
            started = time.monotonic()
            ok = await self._acquire(
                keys=[c.lease_key(self.prefix, shard)], args=[self.holder, self.ttl_ms]
            )
            if ok:
                # Counted from before the call: the lease cannot outlive this in Redis.
                self._valid_until[shard] = started + self.ttl_ms / 1000
                held.add(shard)
            else:
                self._valid_until.pop(shard, None)
        return held

    def holds(self, shard: int) -> bool:
        """Whether the lease is certainly still ours (renewed within its ttl)."""
        return time.monotonic() < self._valid_until.get(shard, 0.0)

    async def release(self, shard: int) -> None:
        self._valid_until.pop(shard, None)
        await self._release(keys=[c.lease_key(self.prefix, shard)], args=[self.holder])
