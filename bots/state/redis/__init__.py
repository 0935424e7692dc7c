"""Shared state in Redis: client and pub/sub, the limiter, the store, health, and the local fallback.

- client.py: the client for the per-message path, pub/sub, the key prefix, the time budget, FAULTS.
- limiter.py: GCRA rate limits in one Lua script per batch of routing decisions.
- admission.py: a whole message decision (claim, opt-out, history append, mutes, every limit) in one
  Lua script per batch of concurrent messages (the script itself: admissionscript.py); it writes no
  keys of its own (see the table).
- batch.py: coalescing concurrent calls into one script call (admission, limits, claim settling,
  first contacts).
- store.py: the Store protocol in Redis (history, dedupe, opt-outs, mutes, first contacts, usage).
- health.py: whether Redis is usable right now, shared by the store and the limiter.
- epoch.py: noticing that Redis lost its data, and writing back the choices a process remembers.
- fallback.py: local state that answers while Redis is away, and `open_redis_state`.
- journal.py: writes that did not reach Redis, replayed after an outage or drained when it was slow.
- mirror.py: every process's local copy of every opt-out, mute and follower choice, kept current.
- care.py: care mode (who the personas stay quiet toward) and the indexed healthy-use counters;
  fallback_care.py keeps care records locally while Redis is away and writes them through after.

Every key, under the prefix (`botfleet:` by default), and how long it lives:

| key                              | type   | lifetime                                                        |
|----------------------------------|--------|-----------------------------------------------------------------|
| `rl:<rate key>`                  | string | until its tat passes (set by the limit script with PSETEX)      |
| `seen:<platform>:<event>`        | string | fleet.dedupe_seconds (SET NX PX)                                |
| `h:<conversation>`               | list   | retention_days after the conversation's last write              |
| `uc:<platform>:<user>`           | set    | twice retention_days after the user's last turn                 |
| `told:<platform>:<user>`         | hash   | retention_days after the last first contact                     |
| `told:<platform>:channel:<id>`   | hash   | the same: personas that said their greeting there (greeting.py) |
| `usage:<day>`                    | hash   | three days                                                      |
| `daily:<day>:use:<platform>:<user>` | hash | three days (healthy-use counters, bots/core/safety/desk.py)     |
| `daily-days:use:<platform>:<user>` | set | three days: the days with counters, for /forget (care.py)       |
| `care:<platform>:<user>`         | hash   | the person's longest care quiet time (care.py)                  |
| `notes:<person>`                 | hash   | retention_days after the last update (notes.py)                 |
| `link:<platform>:<user>`         | string | retention_days after linking (notes.py)                         |
| `linkcode:<code>`                | string | memory.link_minutes (notes.py)                                  |
| `why:<platform>:<message>`       | string | the why record's ttl (bots/ops/admin.py)                        |
| `lease:<account>`                | string | one lease time, renewed by its holder (bots/ops/leases.py)      |
| `members:<pool>`, `accounts`     | zset   | twice the lease time, renewed by every tick (bots/ops/leases.py)|
| `claims`                         | zset   | fleet.dedupe_seconds after the last claim (claims.py)           |
| `claims:payload`                 | hash   | fleet.dedupe_seconds after the last claim (claims.py)           |
| `pace:<key>`, `pause:<key>`      | list/str | until the slot or pause passes (pacing.py)                    |
| `identify:<account>`             | hash   | the platform's session-start window (bots/ops/leases.py)        |
| `identify-turn:<account>:<n>`    | string | one identify interval (bots/ops/identifyturns.py)               |
| `optout:<platform>`              | set    | none: see below                                                 |
| `mute:<conversation>`            | set    | none: see below                                                 |
| `follow:<platform>:<user>`       | string | none: see below                                                 |
| `state-epoch`                    | string | none: see below                                                 |
| `choices-version`                | string | none: see below                                                 |
| `epoch`                          | string | none: see below (bots/ops/leases.py)                            |

The admission script (admissionscript.py) reads and writes, for each message of its batch, the keys the
step-by-step path would: `seen:`, `claims` and `claims:payload` (the claim; a message nothing can
come of is claimed as done, with no pending entry), `optout:<platform>`, `h:<conversation>` and
`uc:<platform>:<user>` (the append), `mute:<conversation>` (and the parent channel's), `rl:<rate key>`
(the limits) and `state-epoch` (it runs only on the epoch the process trusts). So the table above is
complete: the one-call path changes how often keys are touched, not which keys exist or how long
they live.

Channels (pub/sub, nothing stored): `forget` (a /forget for every process's local state),
`choices` (every opt-out, mute and follower choice as it is written, with its version: mirror.py)
and `reload` (bots/ops/control.py).

Why some keys never expire:

- `optout:*` are people's requests not to be answered, `mute:*` a moderator's decision and
  `follow:*` a person's choice of personas. Expiring one would silently undo somebody's decision,
  which is exactly the failure the store exists to prevent. They stay small: one set member or key per
  person or persona that chose, and the key disappears when the choice is undone (SREM of the last
  member, or DEL for `follow:`).
- `state-epoch` marks the data as a whole: its absence is how a process learns that Redis lost its
  data (epoch.py). With an expiry it would vanish on a healthy Redis and trigger needless write-backs.
- `choices-version` counts the choice writes, so a process can tell that it missed one on the
  `choices` channel (mirror.py). With an expiry a process would take its disappearance for a missed
  change and reload every choice for nothing.
- `epoch` does the same for leases: it tells when this Redis started holding leases, so that after a
  data loss nobody takes an account for one lease time while holders re-assert theirs.
"""

from bots.state.redis.client import CALL_TIMEOUT, FAULTS, PREFIX, make_client, stop_task, subscribe
from bots.state.redis.fallback import FallbackRateLimiter, FallbackStore, open_redis_state
from bots.state.redis.health import RedisHealth
from bots.state.redis.limiter import RedisRateLimiter
from bots.state.redis.pacing import pacer_for
from bots.state.redis.store import RedisStore

__all__ = [
    "CALL_TIMEOUT",
    "FAULTS",
    "PREFIX",
    "FallbackRateLimiter",
    "FallbackStore",
    "RedisHealth",
    "RedisRateLimiter",
    "RedisStore",
    "make_client",
    "open_redis_state",
    "pacer_for",
    "stop_task",
    "subscribe",
]
