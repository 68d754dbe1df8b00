"""Everything a Redis holds, read back for privacy tests: no identifier may hide in a key."""

from __future__ import annotations

import redis


def values_by_key(client: redis.Redis) -> dict[bytes, list[bytes]]:
    """Every key's values, whatever its type: job records, blobs, broker messages."""
    readers = {
        b"string": lambda key: [client.get(key)],
        b"hash": lambda key: [*client.hkeys(key), *client.hvals(key)],
        b"list": lambda key: client.lrange(key, 0, -1),
        b"set": lambda key: list(client.smembers(key)),
        b"zset": lambda key: client.zrange(key, 0, -1),
    }
    found: dict[bytes, list[bytes]] = {}
    for key in client.scan_iter("*"):
        reader = readers.get(client.type(key))
        found[key] = [value for value in (reader(key) if reader else []) if value]
    return found


def all_redis_values(client: redis.Redis) -> list[bytes]:
    """Every key and every value, in one list."""
    return [item for key, values in values_by_key(client).items() for item in (key, *values)]
