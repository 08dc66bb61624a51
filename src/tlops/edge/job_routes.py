"""`GET /jobs` and `POST /jobs/{id}/cancel`: a user's list of jobs and the cancel of one.

Mixed into the router (`tlops.edge.router.Router`), whose Redis client, control
link and token check these routes use.

The list reads `jobs:of:{sub}`, the sorted set of the user's job ids that the
admission script writes in the same round trip as the job (and the node's move
of a job held while the stack slept): one Lua script pages through it, newest
first, with each record's status, and drops the ids whose record is gone. It
reaches back as far as the records do (docs/decisions.md, "The list of a
user's jobs").

The cancel is one Lua script on the record too (`cancel_record`), shared with
the OpenAI-compatible routes: a queued job becomes `cancelled` at once and
leaves the open jobs, a running one is only marked (`cancel_requested`): the
watcher running it closes its request and settles it `cancelled`. Neither
route counts against the submit limits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

from tlops import contract
from tlops.contract import ErrorCode, records
from tlops.contract.states import StackState
from tlops.edge import lambda_http
from tlops.edge.lambda_http import Answer, Refusal
from tlops.edge.resp import RedisUnavailable, RedisUnreachable, RespClient, Script

LIMIT_DEFAULT = 20
LIMIT_MAX = 100
CURSOR_MAX_CHARS = 200  # openapi.yaml's maxLength of `cursor`
_LIMIT = re.compile(r"[0-9]{1,3}")
_CURSOR = re.compile(rf"[A-Za-z0-9_-]{{1,{CURSOR_MAX_CHARS}}}")
_POSITION = re.compile(r"([0-9]{1,15}):([0-9a-f-]{36}):([0-9a-f]{16})")

# KEYS: the record, the open jobs. ARGV: the caller's sub, the finished TTL, the job id.
# 0: no record of the caller's (nothing written); 1: cancelled, marked, or left as it was.
_CANCEL = Script(
    records.lua(
        """
local state = redis.call('HMGET', KEYS[1], '$status', '$sub')
if not state[1] or state[2] ~= ARGV[1] then
  return 0
end
if state[1] == '$queued' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], '$status', '$cancelled', '$finished_ts', now)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
  redis.call('ZREM', KEYS[2], ARGV[3])
elseif state[1] == '$running' then
  redis.call('HSET', KEYS[1], '$cancel_requested', '1')
end
return 1
"""
    )
)

# KEYS: the user's list. ARGV: the record key prefix, the caller's sub, the cursor's ms and
# id ('' and '' for the first page), the page's length. Newest first; ids of the same ms in
# ZREVRANGE's order (by id, descending). Returns {more, {{id, listed ms, admitted ms, status,
# finished ms, kind}, ...}}: more is 1 when another listed job follows the page.
_PAGE = Script(
    records.lua(
        """
local listed, prefix, sub = KEYS[1], ARGV[1], ARGV[2]
local after_ms, after_id, most = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local top = '+inf'
if after_ms then top = after_ms end
local page = {}
local ids = redis.call('ZREVRANGEBYSCORE', listed, top, '-inf', 'WITHSCORES')
for i = 1, #ids, 2 do
  local id, at = ids[i], ids[i + 1]
  if not after_ms or tonumber(at) < after_ms or id < after_id then
    local key = prefix .. id
    local r = redis.call('HMGET', key, '$status', '$sub', '$ts', '$finished_ts')
    if not r[1] or r[2] ~= sub then
      redis.call('ZREM', listed, id)
    elseif #page == most then
      return {1, page}
    else
      local kind = ''
      if redis.call('HEXISTS', key, '$messages') == 1 then
        kind = 'chat'
      elseif redis.call('HEXISTS', key, '$prompt') == 1 then
        kind = 'prompt'
      end
      page[#page + 1] = {id, at, r[3] or at, r[1], r[4] or '', kind}
    end
  end
end
return {0, page}
"""
    )
)


def cancel_record(redis: RespClient, *, sub: str, job_id: str) -> bool:
    """Cancel `sub`'s job `job_id` in Redis, in one script: queued → cancelled (it never
    runs), running → `cancel_requested` (the watcher settles it), finished → unchanged.
    False when Redis holds no record of `sub`'s by that id (nothing written). Raises
    RedisUnavailable (RedisUnreachable while the stack sleeps) and RedisReplyError."""
    found = redis.run_script(
        _CANCEL,
        [contract.job_key(job_id), contract.OPEN_JOBS_KEY],
        [sub, contract.FINISHED_TTL_SECONDS, job_id],
    )
    return bool(found)


class JobRoutes:
    def list_jobs(self, event: dict[str, Any], rid: str) -> Answer:
        """The caller's own jobs, newest first, `limit` at a time from `cursor`. While the
        stack sleeps (no queue) the list is empty: it starts again with the next job."""
        sub = self._authenticate(event)["sub"]
        query = event.get("queryStringParameters") or {}
        limit = _page_length(query.get("limit"))
        after = None if query.get("cursor") is None else _position(query["cursor"], sub)
        try:
            more, page = self.redis.run_script(
                _PAGE,
                [contract.jobs_of_key(sub)],
                [contract.JOB_KEY_PREFIX, sub, *(after or ("", "")), limit],
            )
        except RedisUnreachable:
            state = self.control.state(fresh=True)
            if state.get("state") not in (StackState.ASLEEP, StackState.WAKING):
                raise RedisUnavailable("Redis is unreachable and the stack is not asleep") from None
            return Answer(200, {"jobs": [], "next_cursor": None})
        cursor = None
        if more and page:
            job_id, listed_ms, *_ = page[-1]
            cursor = _cursor(sub, _ms(listed_ms), job_id)
        jobs = [
            _summary(job_id, created, status, finished, kind)
            for job_id, _, created, status, finished, kind in page
        ]
        return Answer(200, {"jobs": jobs, "next_cursor": cursor})

    def cancel_job(self, event: dict[str, Any], rid: str) -> Answer:
        """Cancel the caller's job and answer its view after (`GET /jobs/{id}`'s shape); 404
        for anyone else's, 409 for one held in S3 while the stack wakes (not queued yet)."""
        sub = self._authenticate(event)["sub"]
        job_id = lambda_http.path_parameter(event, "id")
        if not contract.is_job_id(job_id):
            raise lambda_http.invalid("id", "must be a job id (a lowercase UUIDv4)")
        try:
            found = cancel_record(self.redis, sub=sub, job_id=job_id)
        except RedisUnreachable:
            self._refuse_held(sub, job_id)
            return Answer(200, self._held_view(sub, job_id, unreachable=True))
        if not found:
            self._refuse_held(sub, job_id)
        return Answer(200, self.job_view_of(sub, job_id))

    def _refuse_held(self, sub: str, job_id: str) -> None:
        """409 for a job of `sub` held in S3: only the node's move puts it in the queue, where
        it can be cancelled; the router does not delete what the node is about to move."""
        if self.control.held_job(sub, job_id) is not None:
            raise Refusal(
                409,
                ErrorCode.JOB_HELD,
                id=job_id,
                message="held while the stack wakes; cancel it once it is queued",
            )


def _page_length(raw: str | None) -> int:
    if raw is None:
        return LIMIT_DEFAULT
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= LIMIT_MAX:
        raise lambda_http.invalid("limit", f"must be a whole number from 1 to {LIMIT_MAX}")
    return int(raw)


def _owner_tag(sub: str) -> str:
    """Which user a cursor was made for, without naming them."""
    return hashlib.sha256(sub.encode()).hexdigest()[:16]


def _cursor(sub: str, created_ms: int, job_id: str) -> str:
    """Opaque to clients: where the page ended (its last job's place in the list), and for
    whom."""
    raw = f"{created_ms}:{job_id}:{_owner_tag(sub)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(cursor: str, sub: str) -> tuple[int, str]:
    """(ms, id) a cursor of `sub`'s continues from; 400 naming `cursor` for anything else."""
    position = None
    if _CURSOR.fullmatch(cursor):
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            raw = ""
        position = _POSITION.fullmatch(raw)
    if position is None or not contract.is_job_id(position[2]):
        raise lambda_http.invalid("cursor", "must be the next_cursor of a page of this list")
    if position[3] != _owner_tag(sub):
        raise lambda_http.invalid("cursor", "was made for another user's list")
    return int(position[1]), position[2]


def _summary(job_id: str, created: str, status: str, finished: str, kind: str) -> dict[str, Any]:
    summary: dict[str, Any] = {"id": job_id, "status": status, "created_at_ms": _ms(created)}
    if finished:
        summary["finished_at_ms"] = _ms(finished)
    if kind:
        summary["kind"] = kind
    return summary


def _ms(value: str) -> int:
    """A time the scripts wrote (ms since the epoch); a score may read as a float."""
    try:
        return max(0, int(float(value)))
    except ValueError:
        return 0
