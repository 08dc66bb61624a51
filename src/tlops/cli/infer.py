"""`tlops infer`: send a prompt, follow the job with its progress, print the completion."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tlops.cli.exits import ExitCode, for_api_error
from tlops.cli.session import api_and_tokens
from tlops.cli.target import resolve


class Progress:
    """queued → starting (the boot's phase, ETA countdown) → running → done, on stderr;
    quiet when not a TTY. The phase is the node's own (`boot_phase` of the job's view)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self.eta_until: float | None = None
        self.phase: str | None = None

    def show(self, text: str) -> None:
        if self.live:
            self.stream.write(f"\r\033[K{text}")
            self.stream.flush()

    def accepted(self, answer: dict[str, Any]) -> None:
        if answer.get("status") == "starting":
            self.eta_until = time.monotonic() + float(answer.get("eta", 0))
        self.show(self._label(answer.get("status", "queued")))

    def _label(self, status: str) -> str:
        if status in ("queued", "starting") and (self.eta_until is not None or self.phase):
            doing = "starting the GPU node" + (f" ({self.phase})" if self.phase else "")
            if self.eta_until is None:
                return doing
            left = max(0, round(self.eta_until - time.monotonic()))
            return f"{doing}, ETA {left} s"
        return status

    def changed(self, view: dict[str, Any]) -> None:
        self.phase = view.get("boot_phase")
        if view.get("status") == "running":
            self.eta_until = None
        self.show(self._label(view.get("status", "")))

    def tick(self, status: str) -> None:
        self.show(self._label(status))

    def finish(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


def cmd_infer(args: argparse.Namespace) -> int:
    from tlops.cli import client

    api_url, tokens = api_and_tokens(resolve(args), args)
    api = client.Api(api_url, tokens)
    payload: dict[str, Any] = {"prompt": args.prompt, "idle": args.idle}
    if args.max_tokens is not None:
        payload["max_tokens"] = args.max_tokens
    progress = Progress()
    last = {"status": "queued"}
    try:
        answer = api.submit(payload)
        progress.accepted(answer)

        def sleep(seconds: float) -> None:
            time.sleep(seconds)
            progress.tick(last["status"])

        def changed(view: dict[str, Any]) -> None:
            last["status"] = view.get("status", "")
            progress.changed(view)

        view = client.follow(
            api, answer["id"], timeout=args.timeout, on_change=changed, sleep=sleep
        )
    except client.ApiError as exc:
        progress.finish()
        print(f"tlops infer: {exc}", file=sys.stderr)
        return for_api_error(exc.status)
    except TimeoutError as exc:
        progress.finish()
        print(
            f"tlops infer: {exc}; it may still finish: tlops job {answer['id']} --wait",
            file=sys.stderr,
        )
        return ExitCode.TIMEOUT
    progress.finish()
    if args.json:
        print(json.dumps(view, sort_keys=True))
    elif view.get("status") == "done":
        print(view.get("output", ""))
    if view.get("status") != "done":
        if not args.json:
            reason = view.get("error") or "no reason recorded"
            print(f"tlops infer: job {view['id']} {view.get('status')}: {reason}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK
