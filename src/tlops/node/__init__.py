"""What runs on the GPU node next to vLLM: the watcher (`python -m tlops.node.watcher`),
which takes jobs from Redis, runs them and stores their results in S3."""
