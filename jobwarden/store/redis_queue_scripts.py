"""The work queue's Lua scripts: leases are pending entries of the ``workers`` consumer group.

A node holds a job while the job's queue entry is pending under the node's consumer name; the
entry's idle time is the age of the lease. Renewing resets it (``XCLAIM`` with ``JUSTID``, which
leaves the delivery counter alone); ``XAUTOCLAIM`` hands entries idle longer than a lease to
another node and counts one more delivery. ``XACK`` is not tied to a consumer, so each script
checks the entry is still this node's before it acknowledges or renews anything: a node that
lost a lease must not end the lease of the node that took the job over.
"""

from __future__ import annotations

from jobwarden.store.redis_keys import LUA_KEYS

GROUP = "workers"

_OWNED = f"""
local function owned(entry, node)
  local pending = redis.call('XPENDING', K.queue, '{GROUP}', entry, entry, 1)
  return pending[1] ~= nil and pending[1][2] == node
end
"""

# ARGV: prefix, node, entries. Returns the entries the node no longer holds.
RENEW = (
    LUA_KEYS
    + _OWNED
    + f"""
local lost = {{}}
for i = 3, #ARGV do
  if owned(ARGV[i], ARGV[2]) then
    redis.call('XCLAIM', K.queue, '{GROUP}', ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""
)

# ARGV: prefix, node, entries. Acknowledges and deletes those the node still holds.
SETTLE = (
    LUA_KEYS
    + _OWNED
    + f"""
for i = 3, #ARGV do
  if owned(ARGV[i], ARGV[2]) then
    redis.call('XACK', K.queue, '{GROUP}', ARGV[i])
    redis.call('XDEL', K.queue, ARGV[i])
  end
end
return 0
"""
)

# ARGV: prefix, node, then entry/job pairs: each entry the node holds goes back to the queue's end.
HAND_BACK = (
    LUA_KEYS
    + _OWNED
    + f"""
for i = 3, #ARGV, 2 do
  if owned(ARGV[i], ARGV[2]) then
    redis.call('XACK', K.queue, '{GROUP}', ARGV[i])
    redis.call('XDEL', K.queue, ARGV[i])
    local record = redis.call('HGET', K.job(ARGV[i + 1]), 'record')
    if record then
      redis.call('XADD', K.queue, '*', 'job', ARGV[i + 1], 'record', record)
    end
  end
end
return 0
"""
)

# ARGV: prefix, node, minimum idle ms, count. Claims expired leases for the node; returns
# entry, job, deliveries, record ('' when the job is gone) for each. An entry whose stream entry
# was deleted (a settle that ran halfway on an old server) is acknowledged and skipped.
RECLAIM = (
    LUA_KEYS
    + f"""
local claimed = redis.call('XAUTOCLAIM', K.queue, '{GROUP}', ARGV[2], ARGV[3], '0-0',
  'COUNT', ARGV[4])
local out = {{}}
for _, item in ipairs(claimed[2]) do
  local entry, fields = item[1], item[2]
  if fields then
    local job = fields[2]
    local pending = redis.call('XPENDING', K.queue, '{GROUP}', entry, entry, 1)
    out[#out + 1] = entry
    out[#out + 1] = job
    out[#out + 1] = pending[1] and pending[1][4] or 1
    out[#out + 1] = redis.call('HGET', K.job(job), 'record') or ''
  else
    redis.call('XACK', K.queue, '{GROUP}', entry)
  end
end
return out
"""
)

# ARGV: prefix, node, start, count: the node's pending entries from ``start`` on, each as entry,
# job, deliveries, record; job '' for an entry deleted meanwhile (acknowledged here: nothing to
# run).
RETAKE = (
    LUA_KEYS
    + f"""
local pending = redis.call('XPENDING', K.queue, '{GROUP}', ARGV[3], '+', ARGV[4], ARGV[2])
local out = {{}}
for _, item in ipairs(pending) do
  local entry = item[1]
  local found = redis.call('XRANGE', K.queue, entry, entry)
  out[#out + 1] = entry
  if found[1] then
    local job = found[1][2][2]
    out[#out + 1] = job
    out[#out + 1] = item[4]
    out[#out + 1] = redis.call('HGET', K.job(job), 'record') or ''
  else
    redis.call('XACK', K.queue, '{GROUP}', entry)
    out[#out + 1] = ''
    out[#out + 1] = 0
    out[#out + 1] = ''
  end
end
return out
"""
)

# ARGV: prefix, node. Removes the node's consumer from the group if it holds no lease (checked in
# the same script: deleting a consumer drops its pending entries, and with them their jobs).
# Returns 1 when removed.
RETIRE = (
    LUA_KEYS
    + f"""
if redis.call('EXISTS', K.queue) == 0 then
  return 0
end
local pending = redis.call('XPENDING', K.queue, '{GROUP}', '-', '+', 1, ARGV[2])
if pending[1] ~= nil then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', K.queue, '{GROUP}', ARGV[2])
return 1
"""
)

# ARGV: prefix, now (wall clock, microseconds), count, skip. The queued jobs whose time to start
# ran out by ``now``, past the ``skip`` earliest: {the next deadline after now ('' for none),
# records...}. Entries of jobs that left the queued state or are gone are dropped on the way.
OVERDUE = (
    LUA_KEYS
    + """
local due = redis.call('ZRANGE', K.queue_deadlines, '-inf', ARGV[2], 'BYSCORE', 'LIMIT',
  ARGV[4], ARGV[3])
local out = {''}
for _, id in ipairs(due) do
  local row = redis.call('HMGET', K.job(id), 'state', 'record')
  if row[1] == 'queued' then
    out[#out + 1] = row[2]
  else
    redis.call('ZREM', K.queue_deadlines, id)
  end
end
local next = redis.call('ZRANGE', K.queue_deadlines, '(' .. ARGV[2], '+inf', 'BYSCORE',
  'LIMIT', 0, 1, 'WITHSCORES')
if next[2] then
  out[1] = next[2]
end
return out
"""
)

QUEUE_SCRIPTS = {
    "renew": RENEW,
    "settle": SETTLE,
    "hand_back": HAND_BACK,
    "reclaim": RECLAIM,
    "retake": RETAKE,
    "retire": RETIRE,
    "overdue": OVERDUE,
}
