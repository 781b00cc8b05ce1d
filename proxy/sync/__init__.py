"""The upstream sync: sessions changed through the proxy reach the upstream's own
working-memory document behind the hot path, so its long-term memory (promotion,
extraction), its MCP server and its workers keep working, and what they write back
(``persisted_at``, ``discrete_memory_extracted``) becomes visible through the proxy.

::

    PUT ──▶ flusher: session script, then its due mark (store/scripts.py MARK_DUE)
                                   │
          ledger in the proxy's Redis (ledger.py): 16 shards of due / dirty / claims,
                                   │  round permits; claimed by any proxy from the shards
                                   │  due, one round per session at a time
                                   ▼
    round (handover.py): read the proxy's copy ── GET the upstream's copy ── merge.py
                          │ stamps / foreign content              │ what the upstream lacks
                          ▼                                       ▼
                  rewrite here (no due mark)          PUT /v1/working-memory/{id}
                                                      ?context_window_max=2^31-1

* **Coalesced**: a session is due ``sync_quiet_ms`` after its last write, but at most
  ``sync_max_lag_ms`` after its oldest change not yet handed over; a round hands over the
  state it reads then, so many PUTs become one hand-over of the latest state.
* **Bounded**: at most ``sync_concurrency`` rounds run at once, across all proxies sharing
  the Redis (the claims are counted there); each costs the upstream one GET and, when the
  copies differ, one PUT of the whole session.
* **In order, retried, durable**: a session is in one round at a time anywhere; a failed
  round is retried with backoff without blocking writes; the due marks live in Redis and
  a write is acknowledged only once its mark is applied, after the write itself (a round
  that starts in between reads the write), so an acknowledged write is never lost to the
  sync, even if the proxy crashes right after.
* **Sharded**: on a Redis Cluster the ledger's shards sit with the sessions they mark, so
  no slot takes every write's mark and a failover stops only its own master's writes.
* **Never summarized**: the hand-over's context window is one no session can fill.
* **Reconciled**: merge.py holds the rule.

``upstream_sync = false`` turns all of it off: the proxy then deletes the upstream's copy
of sessions it holds, as before.
"""
