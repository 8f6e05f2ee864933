"""Calls of one Redis Lua script that arrive together go to Redis in one pipeline (one round trip).

While a pipeline is on its way, the calls made meanwhile gather and go together in the next one, so under load
a batch grows with the traffic and a lone call goes at once. Each call still runs as its own script on
Redis (in order, not as one transaction): batching changes the round trips, not what any call does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import NoScriptError

Call = tuple[list[Any], list[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    """Runs `script` (from `redis.register_script`) for many callers, one pipeline per batch."""

    def __init__(self, redis: Any, script: Any) -> None:
        self._redis = redis
        self._script = script
        self._pending: list[Call] = []
        self._sender: asyncio.Task[None] | None = None
        self.round_trips = 0  # pipelines and lone calls sent (for tests and profiling)

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        """The script's answer for these keys and arguments; Redis's error is raised to this caller alone."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send(), name="redis-script-batch")
        return await future

    async def _send(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                batch = [call for call in batch if not call[2].done()]  # a caller gone (timed out) is skipped
                if batch:
                    await self._run(batch)
        finally:
            self._sender = None

    async def _run(self, batch: list[Call]) -> None:
        try:
            if len(batch) == 1:
                self.round_trips += 1
                keys, args, _ = batch[0]
                answers: list[Any] = [await self._script(keys=keys, args=args)]  # loads the script if need be
            else:
                answers = await self._pipelined(batch)
        except asyncio.CancelledError:
            for *_, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # Redis away or refusing: every caller of this batch learns it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self._settle(batch, answers)

    async def _pipelined(self, batch: list[Call]) -> list[Any]:
        """The answers of a batch sent as one pipeline of EVALSHA (redis-py's script objects would ask Redis
        whether the script exists before every pipeline: a second round trip each time)."""
        answers = await self._pipeline(batch)
        if any(isinstance(answer, NoScriptError) for answer in answers):
            # Redis restarted or was flushed since: the script did not run for those; load it, send them again.
            await self._redis.script_load(self._script.script)
            again = [i for i, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
            for i, answer in zip(again, await self._pipeline([batch[i] for i in again]), strict=True):
                answers[i] = answer
        return answers

    async def _pipeline(self, batch: list[Call]) -> list[Any]:
        self.round_trips += 1
        async with self._redis.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))

    @staticmethod
    def _settle(batch: list[Call], answers: list[Any]) -> None:
        for (*_, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
