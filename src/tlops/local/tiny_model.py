"""Build the local stack's model: a tiny Llama with seeded random weights and a local tokenizer.

No model hub is reachable from where the local stack runs, and the production
model (TinyLlama-1.1B-Chat) arrives later through Packer, so the stack serves a
model it makes itself. Its output is noise, but every layer vLLM runs is real:
tokenizer, attention, KV cache, sampling, the OpenAI API around them.

Runs under the vLLM venv (it needs torch, transformers and tokenizers, which
the control venv does not carry):

    .venv-vllm/bin/python -m tlops.local.tiny_model --out DIR

The build is deterministic. Its inputs (the recipe below and this file's own
text) are hashed and the hash stored in DIR; a later run whose hash matches
returns at once, and any change to the recipe rebuilds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

MODEL_NAME = "tlops-tiny-llama"
STAMP_FILE = "tlops-recipe.sha256"
SEED = 20261122

# head_dim = hidden_size / num_attention_heads must be one vLLM's CPU attention
# supports (32, 64, 80, ...): 64 / 2 = 32. 16 fails on the first request.
CONFIG = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]
UNK, BOS, EOS = SPECIAL_TOKENS

# Enough varied text for a byte-level BPE to learn a few hundred merges.
CORPUS = """\
The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.
A small language model answers questions about the weather, the time and the queue.
Requests arrive through the gateway, wait in Redis and reach the inference server.
The watcher takes one job at a time from the stream and writes the result to storage.
When nobody sends a prompt for a while the node stops itself to save money.
Tell me a story about a robot who learned to bake bread in a quiet village.
What is the capital of France? Paris is the capital and largest city of France.
Numbers: one two three four five six seven eight nine ten eleven twelve 0123456789.
Write a haiku about autumn leaves falling on a still pond at dawn.
Explain why the sky is blue in one short sentence for a curious child.
Hello, world! How are you today? I am fine, thank you, and you?
def add(a, b): return a + b  # a tiny function in a tiny program
{"prompt": "hello", "idle": 5, "max_tokens": 16, "temperature": 0.7}
"""


def recipe_hash() -> str:
    """What the output depends on: the recipe constants and this builder's source."""
    digest = hashlib.sha256()
    digest.update(Path(__file__).read_bytes())
    digest.update(json.dumps({"config": CONFIG, "seed": SEED}, sort_keys=True).encode())
    return digest.hexdigest()


def is_built(out: Path) -> bool:
    stamp = out / STAMP_FILE
    return stamp.is_file() and stamp.read_text().strip() == recipe_hash()


def _train_tokenizer(into: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=CONFIG["vocab_size"],
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=CONFIG["max_position_embeddings"],
    )
    # A chat template, so /v1/chat/completions works against the tiny model too.
    fast.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant: {% endif %}"
    )
    fast.save_pretrained(into)


def _save_model(into: Path, vocab_size: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    config = LlamaConfig(
        **{**CONFIG, "vocab_size": vocab_size},
        bos_token_id=SPECIAL_TOKENS.index(BOS),
        eos_token_id=SPECIAL_TOKENS.index(EOS),
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(into, safe_serialization=True)


def build(out: Path) -> Path:
    """Build the model into `out` unless an identical build is already there."""
    if is_built(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built aside and moved in, so a killed build never leaves a half model behind.
    work = Path(tempfile.mkdtemp(prefix=".tiny-model-", dir=out.parent))
    work.chmod(0o755)
    try:
        _train_tokenizer(work)
        from transformers import AutoTokenizer

        vocab_size = len(AutoTokenizer.from_pretrained(work))
        _save_model(work, vocab_size)
        (work / STAMP_FILE).write_text(recipe_hash() + "\n")
        # safetensors writes the weights 0600 through a temporary file: the server runs as
        # another user than the build on a node (root builds, tlops serves). Nothing secret.
        for path in work.iterdir():
            path.chmod(0o644)
        # Builds running side by side (test workers) may race here: the first one moved
        # in wins, and an identical build already there is never pulled from under a reader.
        if not is_built(out):
            shutil.rmtree(out, ignore_errors=True)
            try:
                work.rename(out)
            except OSError:
                if not is_built(out):
                    raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tlops.local.tiny_model", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", required=True, type=Path, help="model directory to (re)build")
    args = parser.parse_args(argv)
    if is_built(args.out):  # checked before importing torch, which alone takes seconds
        print(json.dumps({"model_dir": str(args.out), "cached": True, "recipe": recipe_hash()}))
        return 0
    try:
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        parser.exit(
            2,
            f"error: {exc.name} is missing: run this with the vLLM venv's python "
            "(`make vllm`, then .venv-vllm/bin/python -m tlops.local.tiny_model)\n",
        )
    build(args.out)
    print(json.dumps({"model_dir": str(args.out), "cached": False, "recipe": recipe_hash()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
