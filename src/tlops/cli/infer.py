"""`tlops infer`: send a prompt (or a one-message chat), follow the job with its progress,
print the completion; on a terminal, the text as it is generated."""

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
        """Clear the line and stay quiet from now on (the completion's text may follow on
        the same terminal)."""
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()
        self.live = False


class StreamedText:
    """Prints a job's text as it grows, each part once, so that the terminal ends up showing
    the final output exactly once. Only an extension of what is shown is printed; the final
    output, when it does not extend it (it always should), comes whole on a line of its own."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.shown = ""

    def grew(self, text: str) -> None:
        if len(text) > len(self.shown) and text.startswith(self.shown):
            self.stream.write(text[len(self.shown) :])
            self.stream.flush()
            self.shown = text

    def end(self, output: str | None) -> None:
        """The final output (None: the job has none), then a newline."""
        if output is None:
            rest = "\n" if self.shown else ""
        elif output.startswith(self.shown):
            rest = output[len(self.shown) :] + "\n"
        else:
            rest = "\n" + output + "\n"
        self.stream.write(rest)
        self.stream.flush()


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """POST /infer's body: the text as a `prompt` (completed as it is), or with --chat or
    --system as the user's message of a conversation (through the model's chat template)."""
    body: dict[str, Any] = {"idle": args.idle}
    if args.chat or args.system is not None:
        system = [] if args.system is None else [{"role": "system", "content": args.system}]
        body["messages"] = [*system, {"role": "user", "content": args.prompt}]
    else:
        body["prompt"] = args.prompt
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    return body


def cmd_infer(args: argparse.Namespace) -> int:
    from tlops.cli import client

    api_url, tokens = api_and_tokens(resolve(args), args)
    api = client.Api(api_url, tokens)
    progress = Progress()
    text = StreamedText()
    last = {"status": "queued"}

    def grew(partial: str) -> None:
        if partial:
            progress.finish()
            text.grew(partial)

    streaming = sys.stdout.isatty() and not args.json
    try:
        answer = api.submit(request_body(args))
        progress.accepted(answer)

        def sleep(seconds: float) -> None:
            time.sleep(seconds)
            progress.tick(last["status"])

        def changed(view: dict[str, Any]) -> None:
            last["status"] = view.get("status", "")
            progress.changed(view)

        view = client.follow(
            api,
            answer["id"],
            timeout=args.timeout,
            on_change=changed,
            on_partial=grew if streaming else None,
            sleep=sleep,
        )
    except client.ApiError as exc:
        progress.finish()
        text.end(None)
        print(f"tlops infer: {exc}", file=sys.stderr)
        return for_api_error(exc.status)
    except TimeoutError as exc:
        progress.finish()
        text.end(None)
        print(
            f"tlops infer: {exc}; it may still finish: tlops job {answer['id']} --wait",
            file=sys.stderr,
        )
        return ExitCode.TIMEOUT
    progress.finish()
    if args.json:
        print(json.dumps(view, sort_keys=True))
    elif view.get("status") == "done":
        text.end(view.get("output", ""))
    else:  # a cancelled job may keep the text generated before; a failed one has none
        text.end((view.get("output") if view.get("status") == "cancelled" else None) or None)
    if view.get("status") != "done":
        if not args.json:
            reason = view.get("error") or _no_error(view.get("status"))
            print(f"tlops infer: job {view['id']} {view.get('status')}: {reason}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK


def _no_error(status: str | None) -> str:
    return "its owner cancelled it" if status == "cancelled" else "no reason recorded"
