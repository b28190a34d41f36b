/**
 * Which GPU nodes are alive: each node refreshes its entry in a sorted set (node name → last
 * heartbeat in Redis server milliseconds, so no two clocks need to agree), and the Worker answers 503
 * instead of queueing when no entry is fresh: a request never waits on a pool that does not exist.
 * Scripts only (no I/O here): each side runs them on its own Redis client.
 */

/** How often a node refreshes its entry. */
export const NODE_HEARTBEAT_MS = 2_000;
/** A node whose entry is older than this counts as gone. */
export const NODE_ALIVE_WINDOW_MS = 15_000;

/** KEYS[1] = registry, ARGV[1] = node name. Refreshes the entry and drops long-dead ones; returns server ms. */
export const HEARTBEAT_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ${NODE_ALIVE_WINDOW_MS * 20})
return now`;

/** KEYS[1] = registry. How many nodes sent a heartbeat within the alive window. */
export const LIVE_NODES_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], now - ${NODE_ALIVE_WINDOW_MS}, '+inf')`;
