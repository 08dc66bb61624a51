#!/bin/sh
# The bake's validation step, run on the build host after playbooks/node.yml: the GPU is
# visible (with TL_VALIDATE_GPU=true) and vLLM answers one real completion. Any failure
# exits non-zero, which fails the build before an image exists.
set -eu

: "${TL_VALIDATE_URL:?}" "${TL_VALIDATE_MODEL:?}" "${TL_VALIDATE_TIMEOUT_S:=900}"

if [ "${TL_VALIDATE_GPU:-false}" = "true" ]; then
  echo "validate: nvidia-smi"
  nvidia-smi
fi

echo "validate: one completion from ${TL_VALIDATE_MODEL} at ${TL_VALIDATE_URL} (up to ${TL_VALIDATE_TIMEOUT_S} s)"
exec python3 - <<'PY'
import json, os, sys, time, urllib.error, urllib.request

url = os.environ["TL_VALIDATE_URL"].rstrip("/") + "/v1/completions"
model = os.environ["TL_VALIDATE_MODEL"]
deadline = time.monotonic() + float(os.environ["TL_VALIDATE_TIMEOUT_S"])
body = json.dumps({"model": model, "prompt": "Hello", "max_tokens": 8, "temperature": 0}).encode()
last = "no answer yet"
while time.monotonic() < deadline:
    request = urllib.request.Request(url, body, {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            reply = json.load(answer)
        text = reply["choices"][0]["text"]
        tokens = reply.get("usage", {}).get("completion_tokens")
        print(f"validate: completion ok ({tokens} tokens): {text!r}")
        sys.exit(0)
    except urllib.error.HTTPError as exc:
        last = f"HTTP {exc.code}: {exc.read()[:300]!r}"
        if exc.code < 500 and exc.code != 404:
            break  # the server is up and refuses the request: waiting will not help
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        last = f"{type(exc).__name__}: {exc}"
    time.sleep(3)
print(f"validate: no completion from {url}: {last}", file=sys.stderr)
sys.exit(1)
PY
