"""Test doubles, used by the tests and the benchmarks; never shipped in the package.

- `tokens`: signing keys, ID tokens and a JWKS server, as Cognito would make them;
- `inference`: an OpenAI-compatible server that behaves like a loaded vLLM;
- `ec2`: the GPU node's instance record in the stand-in;
- `hosted_ui`: Cognito's hosted UI and token endpoint, for `tlops login`;
- `runners`: a watcher runner that finishes every job at once (queue benchmarks).
"""
