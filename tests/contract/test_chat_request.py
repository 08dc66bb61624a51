"""`POST /infer` with `messages`: OpenAI's chat format, text only, limits for the whole
conversation. Expected limits are the contract's documented figures (6144 bytes, 64 messages),
the roles those of OpenAI's chat format (system, user, assistant; `developer` is the system
role's newer name)."""

from __future__ import annotations

import json

import pytest

from tlops.contract import records
from tlops.contract.request import RequestError, parse_infer_request


def refused(payload) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_infer_request(payload)
    return info.value


def chat(*messages, **fields):
    return {"messages": list(messages), **fields}


def test_a_conversation_is_kept_in_order_with_text_content():
    job = parse_infer_request(
        chat(
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [
                {"type": "text", "text": "Why "}, {"type": "text", "text": "blue?"},
            ]},
            max_tokens=16,
        )
    )  # fmt: skip
    assert job.prompt is None
    assert job.max_tokens == 16
    assert job.messages == (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Why blue?"},
    )


def test_the_developer_role_is_the_system_message_and_a_name_is_not_sent_on():
    job = parse_infer_request(
        chat(
            {"role": "developer", "content": "Be brief.", "name": "ops"},
            {"role": "user", "content": "Hi"},
        )
    )
    assert job.messages[0] == {"role": "system", "content": "Be brief."}


def test_the_record_keeps_the_conversation_and_no_prompt():
    job = parse_infer_request(chat({"role": "user", "content": "Hi é"}))
    fields = records.queued(job, sub="u", job_id="j", reply_bucket="b")
    assert records.Field.PROMPT not in fields
    assert json.loads(fields[records.Field.MESSAGES]) == [{"role": "user", "content": "Hi é"}]
    assert records.conversation(fields) == [{"role": "user", "content": "Hi é"}]
    plain = records.queued(
        parse_infer_request({"prompt": "Hi"}), sub="u", job_id="j", reply_bucket="b"
    )
    assert records.conversation(plain) is None
    assert plain[records.Field.PROMPT] == "Hi"


def test_a_chat_and_a_prompt_are_different_requests_for_an_idempotency_key():
    as_chat = parse_infer_request(chat({"role": "user", "content": "Hi"}))
    as_prompt = parse_infer_request({"prompt": "Hi"})
    assert records.fingerprint(as_chat) != records.fingerprint(as_prompt)


def test_the_largest_conversation_fits():
    job = parse_infer_request(chat(*[{"role": "user", "content": "a" * 96}] * 64))
    assert len(job.messages) == 64  # 64 x 96 = 6144 bytes: both limits exactly


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        (chat(), "messages", "at least one"),
        ({"messages": "Hi"}, "messages", "list"),
        ({"messages": None}, "messages", "list"),
        (chat({"role": "user", "content": ""}), "messages", "some text"),
        (chat(*[{"role": "user", "content": "a"}] * 65), "messages", "at most 64"),
        (chat(*[{"role": "user", "content": "a" * 97}] * 64), "messages", "6144 bytes"),
        (chat({"role": "user", "content": "é" * 3073}), "messages", "6144 bytes"),
        (chat({"role": "tool", "content": "x"}), "messages[0].role", "system, user, assistant"),
        (chat({"role": "function", "content": "x"}), "messages[0].role", "'function'"),
        (chat({"role": "USER", "content": "x"}), "messages[0].role", "'USER'"),
        (chat({"content": "x"}), "messages[0].role", "None"),
        (chat({"role": "user"}), "messages[0].content", "required"),
        (chat({"role": "user", "content": 5}), "messages[0].content", "string"),
        (chat({"role": "user", "content": None}), "messages[0].content", "string"),
        (
            chat({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}),
            "messages[0].content[0].type",
            "only text",
        ),
        (
            chat({"role": "user", "content": [{"type": "text", "text": 5}]}),
            "messages[0].content[0].text",
            "string",
        ),
        (chat({"role": "user", "content": ["Hi"]}), "messages[0].content[0]", "object"),
        (
            chat({"role": "assistant", "content": "", "tool_calls": []}),
            "messages[0].tool_calls",
            "not supported",
        ),
        (chat({"role": "user", "content": "x", "audio": {}}), "messages[0].audio", "unknown"),
        (chat("Hi"), "messages[0]", "object"),
        (chat({"role": "user", "content": "\ud800"}), "messages[0].content", "UTF-8"),
        ({"messages": [{"role": "user", "content": "x"}], "prompt": "x"}, "prompt", "not both"),
        (chat({"role": "user", "content": "x"}, tools=[]), "tools", "unknown"),
        ({"idle": 5}, "prompt", "messages"),
    ],
)
def test_a_bad_conversation_is_refused_naming_the_field(payload, field, words):
    error = refused(payload)
    assert error.field == field
    assert words in error.message
