"""What the Lambda functions run behind the HTTP API: the router (`POST /infer`,
`GET /jobs/{id}`, `POST /stop`, `/ping`) and `queue_health`, with what they need on the
hot path: token verification, admission, a small Redis client, the GPU node's EC2 calls.
Zipped by `tlops.tooling.lambda_zip` with exactly the modules a handler imports."""
