"""The store's Lua scripts: the writes that must read and write in one atomic step."""

from __future__ import annotations

# Write a job record (and its blobs) unless the stored record is gone (deleted: do not bring it
# back) or already final (another delivery finished first: do not overwrite its answer). A
# record that is no JSON object cannot be final: a worker replaces it with the failed job that
# says so (`CorruptRecord`). A final write also counts itself, so a duplicate would show,
# leaves the pending index, and announces the job id on the finished channel, so long polls
# wake at once (gateway.wakeups); a refused write announces nothing. The channel is an ARGV:
# channels are not keys.
# A final write also drops the upload: pictures and input.png are drawn from the model input,
# and an upload is most of a job's memory (300 KB against 20 KB) for the rest of its TTL.
# A final write with a result counts it by assessment in the service's result counts (for
# /metrics): here, so a job is counted once however often its final write is retried, and
# whether or not a client ever reads it. Failed jobs ("" for an assessment) are not results.
# KEYS: record, final-write counter, pending index, upload, result counts, blob...
# ARGV: JSON, ttl, "final" or "claim", job id, finished channel, assessment or "", blob...
WRITE_UNLESS_FINAL = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local readable, stored = pcall(cjson.decode, current)
if readable and type(stored) == 'table' then
  local status = stored['status']
  if status == 'succeeded' or status == 'failed' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
for index = 6, #KEYS do
  redis.call('SET', KEYS[index], ARGV[index + 1], 'EX', ARGV[2])
end
if ARGV[3] == 'final' then
  redis.call('DEL', KEYS[4])
  if ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[5], ARGV[6], 1) end
  redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[4])
  redis.call('PUBLISH', ARGV[5], ARGV[4])
end
return 1
"""

# KEYS: job record, blob; ARGV: blob bytes. The blob gets whatever time the record has left.
SET_WHILE_JOB_LIVES = """
local ttl = redis.call('TTL', KEYS[1])
if ttl <= 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ttl)
return 1
"""

# Erase a job: every key of it, and its entry in the pending index. A script rather than MULTI:
# a full Redis (maxmemory, noeviction) refuses every command queued in MULTI, deletions too,
# but runs a script that only deletes, so a refused submission can still be taken back and an
# owner can still free memory.
# KEYS: the job's keys and lookups..., pending index; ARGV: job id.
DELETE_JOB = """
local removed = redis.call('DEL', unpack(KEYS, 1, #KEYS - 1))
redis.call('ZREM', KEYS[#KEYS], ARGV[1])
return removed
"""
